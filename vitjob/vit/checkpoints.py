"""The run directory: checkpoints, ``state.json``, ``metrics.jsonl``, and resuming.

Layout of ``OUT`` (written by rank 0 only):
- ``ckpt/step-<N>.ckpt``: full training state (model + optimizer) at step N; the last K are kept;
- ``best.ckpt``: model weights with the best evaluation accuracy so far;
- ``state.json``: preset, step, epoch, the kept checkpoints and the best one — the resume point;
- ``metrics.jsonl``: one JSON object per log interval or evaluation.

Every file is written to a temporary name and renamed, so a killed process never leaves a
half-written checkpoint or state behind.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vitjob.errors import CheckpointError

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
BEST_FILE = "best.ckpt"
CKPT_DIR = "ckpt"


@dataclass
class RunState:
    preset: str
    num_classes: int
    image_size: int
    step: int = 0
    epoch: int = 0
    total_steps: int = 0
    checkpoints: list[str] = field(default_factory=list)  # relative to the run dir, oldest first
    best: dict[str, Any] | None = None  # {"file", "accuracy", "step"}

    @property
    def latest(self) -> str | None:
        return self.checkpoints[-1] if self.checkpoints else None


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def load_state(run_dir: Path) -> RunState | None:
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        return None
    try:
        return RunState(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise CheckpointError(f"{path} is corrupt ({exc}); delete it to start the run afresh") from exc


def save_state(run_dir: Path, state: RunState) -> None:
    write_json_atomic(Path(run_dir) / STATE_FILE, asdict(state))


def save_ckpt_atomic(params: Any, path: Path) -> None:
    """``mindspore.save_checkpoint`` to a temporary name, then rename."""
    import mindspore as ms

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.ckpt")
    ms.save_checkpoint(params, str(tmp))
    os.replace(tmp, path)


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    with open(Path(run_dir) / METRICS_FILE, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def find_checkpoint(path: Path) -> tuple[Path, RunState | None]:
    """A checkpoint file, or a run directory (its best checkpoint, else its latest)."""
    path = Path(path)
    if path.is_file():
        return path, load_state(path.parent) or load_state(path.parent.parent)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist")
    state = load_state(path)
    if state is not None:
        if state.best and (path / state.best["file"]).is_file():
            return path / state.best["file"], state
        if state.latest and (path / state.latest).is_file():
            return path / state.latest, state
    candidates = sorted(path.glob("*.ckpt")) + sorted((path / CKPT_DIR).glob("*.ckpt"))
    if not candidates:
        raise CheckpointError(f"no checkpoint in {path}: train first (`vitjob train --output {path}`)")
    return max(candidates, key=lambda p: p.stat().st_mtime), state


def load_params(path: Path) -> dict[str, Any]:
    import mindspore as ms

    try:
        return ms.load_checkpoint(str(path))
    except (RuntimeError, ValueError, OSError) as exc:
        raise CheckpointError(f"cannot load checkpoint {path}: {exc}") from exc


def load_into(net: Any, params: dict[str, Any], source: str, strict_model: bool = True) -> None:
    """Load parameters into ``net``; every model parameter must be present when ``strict_model``."""
    import mindspore as ms

    wanted = {p.name: tuple(p.shape) for p in net.get_parameters()}
    missing = sorted(n for n in wanted if n not in params)
    wrong = sorted(
        f"{n}: {tuple(params[n].shape)} in file, {wanted[n]} in model"
        for n in wanted
        if n in params and tuple(params[n].shape) != wanted[n]
    )
    if strict_model and (missing or wrong):
        lines = [f"missing {n}" for n in missing[:10]] + wrong[:10]
        raise CheckpointError(f"{source} does not fit the model (wrong --preset?):\n  " + "\n  ".join(lines))
    subset = {n: params[n] for n in wanted if n in params and tuple(params[n].shape) == wanted[n]}
    ms.load_param_into_net(net, subset)
