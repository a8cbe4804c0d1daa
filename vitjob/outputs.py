"""What each stage reports it produced, and the gates a pipeline checks on it.

Outputs: a stage's command (``vitjob train``/``eval``/``export``/``infer310 run``) ends by writing one
compact JSON line, ``{"stage": S, "outputs": {...}}``, to the file named by ``$VITJOB_TERMINATION_LOG``
(rank 0 only; nothing when the variable is unset, e.g. run by hand). In a pod that is the container's
``terminationMessagePath`` (``/dev/termination-log``), so the kubelet puts it into the pod's
``status.containerStatuses[].state.terminated.message`` (a documented Kubernetes mechanism, at most
4 KiB) and the pipeline reads it from the API server without reading the volume; the local backend
points the variable at a file of the pod's directory and reads that. ``STAGE_OUTPUTS`` lists each
stage's outputs.

Gates: ``STAGE.OUTPUT OP NUMBER`` (``eval.accuracy>=0.95``; OP one of ``>= <= > < == !=``), checked for
syntax by ``GATE_PATTERN`` (also the VitJob CRD's pattern) and for meaning by ``gate_problems`` (a known
stage of the pipeline and one of its numeric outputs). A pipeline starts a stage only when every gate on
an earlier stage holds on that stage's recorded outputs (``failed_gate``).
"""

from __future__ import annotations

import json
import logging
import math
import operator
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitjob import constants as c

log = logging.getLogger(__name__)

# Stage → output → what it is (every output here is a number, so a gate may test it; paths too below).
STAGE_OUTPUTS: dict[str, dict[str, str]] = {
    "train": {
        "best_step": "the step of the best checkpoint (best.ckpt, chosen on the validation split)",
        "val_accuracy": "the last validation accuracy (0..1)",
        "best_val_accuracy": "the best checkpoint's validation accuracy (0..1)",
        "test_accuracy": "the final weights' test accuracy (0..1)",
        "steps": "the steps trained",
    },
    "eval": {
        "accuracy": "top-1 accuracy of the checkpoint on the test set (0..1)",
        "top1_correct": "test images classified correctly",
        "samples": "test images evaluated",
    },
    "export": {"mindir_bytes": "the MINDIR file's size in bytes"},
    "infer310": {
        "accuracy": "top-1 accuracy from acc.log (0..1)",
        "top1_correct": "images classified correctly",
        "total": "images inferred",
        "mean_ms": "mean inference time per image (ms)",
        "timed_images": "images the mean time covers",
    },
}
# Outputs that are text (paths), reported but not gateable.
TEXT_OUTPUTS: dict[str, tuple[str, ...]] = {
    "train": ("best_checkpoint",), "eval": ("checkpoint",), "export": ("mindir",)
}
# The termination message's limit (the kubelet truncates longer ones).
MESSAGE_LIMIT_BYTES = 4096

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_NUMBER = r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?"
GATE_PATTERN = (
    rf"^({'|'.join(c.STAGES)})\.[a-z][a-z0-9_]*\s*(>=|<=|==|!=|>|<)\s*{_NUMBER}$"
)
_GATE = re.compile(
    rf"^(?P<stage>[a-z0-9]+)\.(?P<output>[a-z][a-z0-9_]*)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>{_NUMBER})$"
)


# ------------------------------------------------------------------------------------------ outputs
def report(stage: str, outputs: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Path | None:
    """Write ``outputs`` of ``stage`` as one JSON line to ``$VITJOB_TERMINATION_LOG``; return the file,
    or None when the variable is unset. A failure to write is logged, never raised (the stage's work
    is done; the pipeline then says the stage reported nothing)."""
    target = (os.environ if env is None else env).get(c.ENV_TERMINATION_LOG)
    if not target:
        return None
    line = json.dumps({"stage": stage, "outputs": dict(outputs)}, separators=(",", ":"), sort_keys=True)
    if len(line.encode()) > MESSAGE_LIMIT_BYTES:
        log.warning("stage %s: outputs (%d bytes) exceed the termination message limit", stage, len(line))
    try:
        Path(target).write_text(line + "\n")
    except OSError as exc:
        log.warning("could not report the outputs of stage %s to %s: %s", stage, target, exc)
        return None
    return Path(target)


def parse(message: str, stage: str) -> dict[str, Any] | None:
    """The outputs in a termination message written by ``report`` for ``stage``; None when the message
    is not such a line (another stage's line, something else, empty)."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    try:
        data = json.loads(first)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("stage") != stage or not isinstance(data.get("outputs"), dict):
        return None
    return dict(data["outputs"])


# -------------------------------------------------------------------------------------------- gates
@dataclass(frozen=True)
class Gate:
    """``stage.output op value``, e.g. ``eval.accuracy>=0.95``."""

    text: str
    stage: str
    output: str
    op: str
    value: float

    def holds(self, measured: float) -> bool:
        return OPERATORS[self.op](measured, self.value)


def parse_gate(text: str) -> Gate:
    """A gate's parts; ``ValueError`` with the expected form when ``text`` is not one."""
    m = _GATE.match(text.strip())
    if m is None or m["stage"] not in c.STAGES:
        raise ValueError(
            f"gate {text!r} is not STAGE.OUTPUT OP NUMBER (e.g. 'eval.accuracy>=0.95'; STAGE one of "
            f"{', '.join(c.STAGES)}; OP one of {' '.join(OPERATORS)})"
        )
    return Gate(text.strip(), m["stage"], m["output"], m["op"], float(m["value"]))


def gate_problems(gates: Sequence[Any], stages: Sequence[str]) -> list[str]:
    """What is wrong with ``gates`` for a pipeline of ``stages``, one line each (empty: all fine)."""
    problems = []
    for text in gates:
        if not isinstance(text, str):
            problems.append(f"gates: {text!r} is not a string like 'eval.accuracy>=0.95'")
            continue
        try:
            gate = parse_gate(text)
        except ValueError as exc:
            problems.append(f"gates: {exc}")
            continue
        if gate.stage not in stages:
            problems.append(
                f"gates: {text!r} tests stage {gate.stage}, which this pipeline does not run "
                f"(its stages: {', '.join(stages)})"
            )
        elif gate.output not in STAGE_OUTPUTS[gate.stage]:
            problems.append(
                f"gates: {text!r}: stage {gate.stage} has no numeric output {gate.output!r} "
                f"(it reports {', '.join(STAGE_OUTPUTS[gate.stage])})"
            )
    return problems


def failed_gate(gate: Gate, outputs: Mapping[str, Any] | None) -> str | None:
    """Why ``gate`` does not hold on its stage's ``outputs`` (None: it holds)."""
    value = (outputs or {}).get(gate.output)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        reported = "reported no outputs" if not outputs else f"reported no {gate.output}"
        return f"gate {gate.text} not met: stage {gate.stage} {reported}"
    if gate.holds(float(value)):
        return None
    return f"gate {gate.text} not met: {value:g}"
