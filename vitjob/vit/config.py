"""Model and recipe presets.

A preset bundles the architecture (``ViTConfig``) with the training recipe that suits it, so that
``vitjob train --preset vit-tiny`` works without further flags. ``vit-b16`` follows the ModelZoo seed
(ViT-B/16 at 224×224, Momentum 0.9 fine-tuning); ``vit-tiny`` is a small ViT for CPUs (32×32 input)
trained from scratch with AdamW.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vitjob.errors import UsageError


@dataclass(frozen=True)
class ViTConfig:
    image_size: int
    patch_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    mlp_dim: int
    num_classes: int = 10
    dropout_rate: float = 0.0  # probability of dropping (not keep_prob); 0 = off, as in the seed
    attention_dropout_rate: float = 0.0
    layer_norm_eps: float = 1e-6

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise UsageError(
                f"image size {self.image_size} is not a multiple of patch size {self.patch_size}"
            )
        if self.hidden_size % self.num_heads:
            raise UsageError(f"hidden size {self.hidden_size} is not divisible by {self.num_heads} heads")


@dataclass(frozen=True)
class Recipe:
    """Training defaults of a preset. ``base_lr`` is for ``base_batch`` images per step (linear scaling)."""

    optimizer: str  # "momentum" | "adamw"
    base_lr: float
    base_batch: int
    batch_size: int  # per device
    epochs: int
    weight_decay: float
    warmup_epochs: float
    min_lr_ratio: float = 0.0
    grad_clip: float = 0.0  # global-norm clipping; 0 = off
    label_smoothing: float = 0.0


@dataclass(frozen=True)
class Preset:
    name: str
    model: ViTConfig
    recipe: Recipe
    description: str


PRESETS: dict[str, Preset] = {
    "vit-b16": Preset(
        name="vit-b16",
        model=ViTConfig(
            image_size=224, patch_size=16, hidden_size=768, num_layers=12, num_heads=12, mlp_dim=3072
        ),
        # The seed: Momentum 0.9, 0.0065 per 32 images, weight decay 1e-4, 60 epochs, batch 32 per device.
        recipe=Recipe(
            optimizer="momentum",
            base_lr=0.0065,
            base_batch=32,
            batch_size=32,
            epochs=60,
            weight_decay=1e-4,
            warmup_epochs=0.0,
            grad_clip=1.0,
        ),
        description="ViT-B/16, 224x224, 85.8M parameters (the ModelZoo seed's model)",
    ),
    "vit-tiny": Preset(
        name="vit-tiny",
        # Patch 16 on 32x32 gives 4 patch tokens: each covers 4x4 pixels of an 8x8 digit. Measured on the
        # digits split, training on 1,347 images (150 held out for validation): 97.0-97.3% test accuracy
        # after 10 epochs (seeds 1-3), 98.0-98.3% after 15 (patch 8: 86% after 40, patch 4: 55% after 30).
        model=ViTConfig(image_size=32, patch_size=16, hidden_size=96, num_layers=4, num_heads=3, mlp_dim=192),
        recipe=Recipe(
            optimizer="adamw",
            base_lr=2e-3,
            base_batch=64,
            batch_size=64,
            epochs=15,
            weight_decay=0.05,
            warmup_epochs=1.0,
            min_lr_ratio=0.01,
            grad_clip=1.0,
        ),
        description="4-block 96-wide ViT, patch 16, 32x32 input: trains from scratch on a CPU in minutes",
    ),
}


def get_preset(name: str, num_classes: int | None = None, image_size: int | None = None) -> Preset:
    """Look a preset up by name, optionally overriding its class count or input size."""
    try:
        preset = PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
    model = preset.model
    if num_classes is not None:
        model = replace(model, num_classes=num_classes)
    if image_size is not None:
        model = replace(model, image_size=image_size)
    return replace(preset, model=model)
