"""Learning-rate schedule and optimizer parameter groups.

The schedule is computed per step for the whole run (linear warm-up, then cosine decay to
``min_lr`` at the last step). Unlike the seed (``T_max`` 50 of 60 epochs, so the rate rose again after
epoch 50) it never rebounds: it is monotone after warm-up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

NO_DECAY_SUFFIXES = (".bias", ".gamma", ".beta", "cls_token", "position_embeddings")


def warmup_cosine(total_steps: int, peak_lr: float, warmup_steps: int, min_lr: float = 0.0) -> np.ndarray:
    """Per-step learning rates (float32, length ``total_steps``)."""
    if total_steps <= 0:
        raise ValueError("total_steps must be positive")
    warmup_steps = min(max(warmup_steps, 0), total_steps - 1)
    steps = np.arange(total_steps, dtype=np.float64)
    lr = np.empty(total_steps, dtype=np.float64)
    if warmup_steps:
        lr[:warmup_steps] = peak_lr * (steps[:warmup_steps] + 1) / warmup_steps
    decay = total_steps - warmup_steps
    progress = (steps[warmup_steps:] - warmup_steps) / max(decay - 1, 1)
    lr[warmup_steps:] = min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + np.cos(math.pi * progress))
    return lr.astype(np.float32)


def applies_weight_decay(name: str) -> bool:
    """No weight decay on norms, biases, the class token or position embeddings."""
    return not name.endswith(NO_DECAY_SUFFIXES)


def param_groups(params: Iterable[Any], weight_decay: float) -> list[dict[str, Any]]:
    params = list(params)
    decay = [p for p in params if applies_weight_decay(p.name)]
    no_decay = [p for p in params if not applies_weight_decay(p.name)]
    groups: list[dict[str, Any]] = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups
