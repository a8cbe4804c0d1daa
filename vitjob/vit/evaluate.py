"""Evaluation: the ``vitjob eval`` stage — top-1 accuracy of a checkpoint on the whole test set.

Unlike the seed's in-training evaluation, every test image is used (no dropped last batch) and only
the eval transforms are applied.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitjob.vit import checkpoints as ck
from vitjob.vit.config import get_preset
from vitjob.vit.data import load_split

log = logging.getLogger(__name__)


@dataclass
class EvalOptions:
    ckpt: Path
    data: Path
    preset: str | None = None  # None: from the run's state.json, else vit-b16
    device: str = "cpu"
    batch_size: int = 64
    json_out: Path | None = None
    num_workers: int | None = None


def build_from_checkpoint(ckpt: Path, preset_name: str | None) -> tuple[Any, Path, str]:
    """Model with weights from a checkpoint file or run directory; returns (net, file, preset)."""
    from vitjob.vit.model import build_model

    path, state = ck.find_checkpoint(ckpt)
    name = preset_name or (state.preset if state else "vit-b16")
    num_classes = state.num_classes if state else None
    net = build_model(get_preset(name, num_classes=num_classes).model)
    ck.load_into(net, ck.load_params(path), str(path))
    net.set_train(False)
    return net, path, name


def evaluate(opts: EvalOptions) -> dict[str, Any]:
    from vitjob.vit.runtime import set_up
    from vitjob.vit.train import evaluate_split, even_batch

    set_up(opts.device, "O0")
    net, path, preset = build_from_checkpoint(opts.ckpt, opts.preset)
    split = load_split(opts.data, "test")
    log.info("evaluating %s (%s) on %d test images", path, preset, len(split))
    batch = even_batch(len(split), opts.batch_size)  # as few batches, all of one size, few blanks
    result = evaluate_split(net, split, net.config.image_size, batch, opts.num_workers)
    result["checkpoint"] = str(path)
    if opts.json_out:
        out = Path(opts.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        ck.write_json_atomic(out, result)
    return result
