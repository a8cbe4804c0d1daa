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


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in value.shape)


def _listed(kind: str, names: list[str], limit: int = 20) -> str:
    more = f" … and {len(names) - limit} more" if len(names) > limit else ""
    return f"{kind} ({len(names)}): " + ", ".join(names[:limit]) + more


def mismatch_report(wanted: dict[str, tuple[int, ...]], params: dict[str, Any]) -> list[str]:
    """Lines naming the keys that are missing, extra or of another shape in ``params``; empty if none."""
    missing = sorted(n for n in wanted if n not in params)
    extra = sorted(n for n in params if n not in wanted)
    wrong = sorted(
        f"{n} {_shape(params[n])} in the file, {wanted[n]} here"
        for n in wanted
        if n in params and _shape(params[n]) != wanted[n]
    )
    lines = []
    for kind, names in (("missing keys", missing), ("extra keys", extra), ("shape mismatches", wrong)):
        if names:
            lines.append(_listed(kind, names))
    return lines


def _load_strict(cell: Any, params: dict[str, Any], source: str) -> None:
    """``load_param_into_net`` with ``strict_load=True``, its two return lists checked.

    Not strict, MindSpore fills a parameter it does not find by *suffix* from any key that ends with
    its name (``_load_dismatch_prefix_params``): a model weight ``x.gamma`` absent from the dict gets
    the optimizer moment ``adam_m.x.gamma``, and both returned lists are then empty. Strict loading
    matches exact names only.
    """
    import mindspore as ms

    try:
        not_loaded, unused = ms.load_param_into_net(cell, params, strict_load=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot load {source}: {exc}") from exc
    if not_loaded or unused:
        lines = [_listed("not loaded", sorted(not_loaded))] if not_loaded else []
        lines += [_listed("unused keys of the file", sorted(unused))] if unused else []
        raise CheckpointError(f"{source} was not loaded completely:\n  " + "\n  ".join(lines))


def restore_all(cell: Any, params: dict[str, Any], source: str) -> None:
    """Load a full training state: every parameter of ``cell`` and nothing else, exact names and shapes.

    Raises ``CheckpointError`` listing the missing, extra and shape-mismatched keys otherwise.
    """
    wanted = {p.name: _shape(p) for p in cell.get_parameters()}
    problems = mismatch_report(wanted, params)
    if problems:
        raise CheckpointError(
            f"{source} does not match this run's model and optimizer:\n  "
            + "\n  ".join(problems)
            + "\nIt was written by other settings (--preset, --optimizer, --amp) or another version: resume "
            "with the settings that wrote it, or train into another --output."
        )
    _load_strict(cell, params, source)


def load_into(net: Any, params: dict[str, Any], source: str, strict_model: bool = True) -> None:
    """Load model weights into ``net``; every model parameter must be present when ``strict_model``.

    Keys of the file that are not model parameters (optimizer state) are ignored.
    """
    wanted = {p.name: _shape(p) for p in net.get_parameters()}
    missing = sorted(n for n in wanted if n not in params)
    wrong = sorted(
        f"{n}: {_shape(params[n])} in file, {wanted[n]} in model"
        for n in wanted
        if n in params and _shape(params[n]) != wanted[n]
    )
    if strict_model and (missing or wrong):
        lines = [f"missing {n}" for n in missing[:10]] + wrong[:10]
        raise CheckpointError(f"{source} does not fit the model (wrong --preset?):\n  " + "\n  ".join(lines))
    subset = {n: params[n] for n in wanted if n in params and _shape(params[n]) == wanted[n]}
    not_loaded = [n for n in wanted if n not in subset]
    try:
        import mindspore as ms

        _, unused = ms.load_param_into_net(net, subset, strict_load=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot load {source}: {exc}") from exc
    if unused:
        raise CheckpointError(f"{source}: {_listed('keys not loaded', sorted(unused))}")
    if not_loaded:
        log.info("%s: %s keep their initial values", source, _listed("model parameters", not_loaded))
