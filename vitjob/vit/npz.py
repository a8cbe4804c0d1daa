"""Google's ViT ``.npz`` checkpoints (e.g. ImageNet-21k ``ViT-B_16.npz``) → MindSpore parameters.

The mapping (key, layout transform, seed parameter name) follows the seed's converter, extended with:
- ``head="zero"`` (default): a zero-initialised head of ``num_classes`` rows, as the paper fine-tunes;
  ``head="truncate"`` keeps the first ``num_classes`` rows of the 21,843-class head, as the seed does;
- position embeddings interpolated (bilinear on the patch grid, class token kept) when the target
  image size differs from the checkpoint's, as the reference ViT code does;
- every missing key and every shape mismatch reported at once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vitjob.errors import CheckpointError
from vitjob.vit.config import ViTConfig

log = logging.getLogger(__name__)

ATTN = "Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1"
HEAD_MODES = ("zero", "truncate")


def _layer_keys(i: int, d: int, heads: int, mlp: int) -> list[tuple[str, tuple[int, ...], str, str]]:
    """(npz key, npz shape, MindSpore name, transform) for encoder block ``i``."""
    hd = d // heads
    a = ATTN.format(i=i)
    b = f"Transformer/encoderblock_{i}"
    ms = f"transformer.encoder.layer.{i}"
    rows: list[tuple[str, tuple[int, ...], str, str]] = []
    for proj in ("query", "key", "value"):
        rows.append((f"{a}/{proj}/kernel", (d, heads, hd), f"{ms}.attn.{proj}.weight", "in_heads_T"))
        rows.append((f"{a}/{proj}/bias", (heads, hd), f"{ms}.attn.{proj}.bias", "flatten"))
    rows += [
        (f"{a}/out/kernel", (heads, hd, d), f"{ms}.attn.out.weight", "heads_out_T"),
        (f"{a}/out/bias", (d,), f"{ms}.attn.out.bias", "id"),
        (f"{b}/LayerNorm_0/scale", (d,), f"{ms}.attention_norm.gamma", "id"),
        (f"{b}/LayerNorm_0/bias", (d,), f"{ms}.attention_norm.beta", "id"),
        (f"{b}/LayerNorm_2/scale", (d,), f"{ms}.ffn_norm.gamma", "id"),
        (f"{b}/LayerNorm_2/bias", (d,), f"{ms}.ffn_norm.beta", "id"),
        (f"{b}/MlpBlock_3/Dense_0/kernel", (d, mlp), f"{ms}.ffn.fc1.weight", "T"),
        (f"{b}/MlpBlock_3/Dense_0/bias", (mlp,), f"{ms}.ffn.fc1.bias", "id"),
        (f"{b}/MlpBlock_3/Dense_1/kernel", (mlp, d), f"{ms}.ffn.fc2.weight", "T"),
        (f"{b}/MlpBlock_3/Dense_1/bias", (d,), f"{ms}.ffn.fc2.bias", "id"),
    ]
    return rows


def expected_keys(cfg: ViTConfig, npz_grid: int) -> list[tuple[str, tuple[int, ...], str, str]]:
    """Every npz key the converter needs (head excluded), with its expected shape."""
    d, p = cfg.hidden_size, cfg.patch_size
    rows: list[tuple[str, tuple[int, ...], str, str]] = [
        ("embedding/kernel", (p, p, 3, d), "transformer.embeddings.patch_embeddings.weight", "hwio_oihw"),
        ("embedding/bias", (d,), "transformer.embeddings.patch_embeddings.bias", "id"),
        ("cls", (1, 1, d), "transformer.embeddings.cls_token", "id"),
        (
            "Transformer/posembed_input/pos_embedding",
            (1, npz_grid**2 + 1, d),
            "transformer.embeddings.position_embeddings",
            "posemb",
        ),
        ("Transformer/encoder_norm/scale", (d,), "transformer.encoder.encoder_norm.gamma", "id"),
        ("Transformer/encoder_norm/bias", (d,), "transformer.encoder.encoder_norm.beta", "id"),
    ]
    for i in range(cfg.num_layers):
        rows += _layer_keys(i, d, cfg.num_heads, cfg.mlp_dim)
    return rows


def interpolate_posemb(posemb: np.ndarray, new_grid: int) -> np.ndarray:
    """Resize ``(1, 1 + g*g, D)`` position embeddings to a ``new_grid`` × ``new_grid`` patch grid."""
    from scipy import ndimage

    cls_tok, grid = posemb[:, :1], posemb[0, 1:]
    old = round(np.sqrt(len(grid)))
    if old * old != len(grid):
        raise CheckpointError(f"position embeddings have {len(grid)} patch tokens: not a square grid")
    if old == new_grid:
        return posemb
    zoom = new_grid / old
    resized = ndimage.zoom(grid.reshape(old, old, -1), (zoom, zoom, 1), order=1)
    log.info("position embeddings interpolated from a %dx%d to a %dx%d grid", old, old, new_grid, new_grid)
    return np.concatenate([cls_tok, resized.reshape(1, new_grid * new_grid, -1)], axis=1)


def _transform(value: np.ndarray, how: str, d: int) -> np.ndarray:
    if how == "in_heads_T":
        return value.reshape(d, d).T
    if how == "heads_out_T":
        return value.reshape(d, d).T
    if how == "flatten":
        return value.reshape(-1)
    if how == "T":
        return value.T
    if how == "hwio_oihw":
        return np.transpose(value, (3, 2, 0, 1))
    return value


def convert(weights: dict[str, np.ndarray], cfg: ViTConfig, head: str = "zero") -> dict[str, np.ndarray]:
    """Map npz arrays to MindSpore parameter arrays (float32) for a model of config ``cfg``."""
    if head not in HEAD_MODES:
        raise CheckpointError(f"--head must be one of {', '.join(HEAD_MODES)}, not {head!r}")
    pos_key = "Transformer/posembed_input/pos_embedding"
    if pos_key not in weights:
        raise CheckpointError(f"not a ViT checkpoint: key {pos_key!r} is missing")
    npz_grid = round(np.sqrt(weights[pos_key].shape[1] - 1))
    table = expected_keys(cfg, npz_grid)
    missing = [k for k, _, _, _ in table if k not in weights]
    wrong = [
        f"{k}: shape {tuple(weights[k].shape)}, expected {shape}"
        for k, shape, _, _ in table
        if k in weights and tuple(weights[k].shape) != shape
    ]
    if missing or wrong:
        lines = [f"missing key {k}" for k in missing[:20]] + wrong[:20]
        more = len(missing) + len(wrong) - len(lines)
        suffix = f"\n  … and {more} more" if more > 0 else ""
        raise CheckpointError(
            "the .npz does not match the model "
            f"(hidden {cfg.hidden_size}, {cfg.num_layers} layers, patch {cfg.patch_size}):\n  "
            + "\n  ".join(lines)
            + suffix
        )
    out: dict[str, np.ndarray] = {}
    for key, _, name, how in table:
        value = np.asarray(weights[key], dtype=np.float32)
        if how == "posemb":
            value = interpolate_posemb(value, cfg.grid_size)
        out[name] = np.ascontiguousarray(_transform(value, how, cfg.hidden_size), dtype=np.float32)
    out.update(_head(weights, cfg, head))
    unused = sorted(set(weights) - {k for k, _, _, _ in table} - {"head/kernel", "head/bias"})
    if unused:
        log.info("ignored %d npz keys not used by the model: %s", len(unused), ", ".join(unused[:5]))
    return out


def _head(weights: dict[str, np.ndarray], cfg: ViTConfig, head: str) -> dict[str, np.ndarray]:
    n, d = cfg.num_classes, cfg.hidden_size
    if head == "zero":
        log.info("head: new zero-initialised %d-class layer (pretrained head dropped)", n)
        return {"head.weight": np.zeros((n, d), np.float32), "head.bias": np.zeros((n,), np.float32)}
    kernel, bias = weights.get("head/kernel"), weights.get("head/bias")
    if kernel is None or bias is None:
        raise CheckpointError("--head truncate needs head/kernel and head/bias in the .npz; use --head zero")
    if kernel.shape[0] != d or kernel.shape[1] < n:
        raise CheckpointError(f"head/kernel has shape {kernel.shape}: cannot keep {n} classes of width {d}")
    log.info("head: first %d of %d pretrained classes kept (as the seed does)", n, kernel.shape[1])
    return {
        "head.weight": np.ascontiguousarray(kernel.T[:n], dtype=np.float32),
        "head.bias": np.asarray(bias[:n], dtype=np.float32),
    }


def load_npz(path: Path, cfg: ViTConfig, head: str = "zero") -> dict[str, np.ndarray]:
    path = Path(path)
    try:
        with np.load(path) as npz:
            weights = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path} as an .npz archive: {exc}") from exc
    return convert(weights, cfg, head)

