"""Export: the ``vitjob export`` stage — a checkpoint to MINDIR, ONNX or AIR.

MINDIR runs anywhere (and is what the Ascend 310 program loads); AIR needs an Ascend 910 device
(MindSpore can only write it there). The input is a float32 ``(batch, 3, H, W)`` tensor.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from vitjob.errors import UsageError

log = logging.getLogger(__name__)

FORMATS = {"MINDIR": ".mindir", "ONNX": ".onnx", "AIR": ".air"}


def parse_formats(value: str) -> list[str]:
    formats = [f.strip().upper() for f in value.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(f"--format takes {', '.join(FORMATS)} (comma-separated), not {value!r}")
    return formats


def output_path(output: Path, fmt: str) -> Path:
    """``output`` with the format's suffix (MindSpore appends it itself)."""
    output = Path(output)
    return (
        output.with_suffix(FORMATS[fmt])
        if output.suffix.lower() in FORMATS.values()
        else Path(f"{output}{FORMATS[fmt]}")
    )


def export(
    ckpt: Path,
    output: Path,
    formats: list[str],
    device: str = "cpu",
    batch_size: int = 1,
    preset: str | None = None,
) -> list[Path]:
    import mindspore as ms
    import numpy as np

    from vitjob.vit.evaluate import build_from_checkpoint
    from vitjob.vit.runtime import set_up

    if "AIR" in formats and device != "ascend":
        raise UsageError("AIR export needs an Ascend 910 device (--device ascend); use MINDIR elsewhere")
    if batch_size <= 0:
        raise UsageError("--batch-size must be positive")
    set_up(device, "O0")
    net, path, _ = build_from_checkpoint(ckpt, preset)
    size = net.config.image_size
    dummy = ms.Tensor(np.zeros((batch_size, 3, size, size), np.float32))
    written = []
    for fmt in formats:
        target = output_path(output, fmt)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp_base = target.with_name(f".{target.stem}.tmp")
        ms.export(net, dummy, file_name=str(tmp_base), file_format=fmt)
        os.replace(f"{tmp_base}{FORMATS[fmt]}", target)
        log.info("exported %s to %s (%d bytes)", path, target, target.stat().st_size)
        written.append(target)
    return written
