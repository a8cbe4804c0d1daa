"""Training progress lines: the one format that rank 0 writes and that ``vitjob status`` reads back.

While it trains, rank 0 writes a line like this to its standard output every few steps, and once
more when an epoch ends (after its evaluation)::

    vitjob-progress epoch=3/10 step=69/230 loss=0.4321 acc=0.9567 img_s=140.2 eta_s=95 event=step

Because it is ordinary output, the line reaches the pod's log: ``kubectl logs`` users can read it, and
both backends read it back. The local backend reads the end of rank 0's log file, and the Kubernetes
backend reads the last lines of rank 0's pod through the pod-log API (``tailLines``, not a stream).
Each line carries all the fields, so the last one is enough:

- ``epoch=E/N``: the epoch being trained (1-based) of N; ``step=S/T``: global steps done of T;
- ``loss``: mean training loss over the steps since the previous line;
- ``acc``: the last validation accuracy (training evaluates on the validation split after each
  epoch), ``-`` before the first evaluation or when the data set has no validation split;
- ``img_s``: training images per second (every rank together) since the previous line;
- ``eta_s``: seconds left at that speed, evaluation not included;
- ``event``: ``step`` (a periodic line), ``epoch`` (an epoch ended), ``resume`` (a restarted run
  goes on from ``step``, its latest checkpoint) or ``checkpoint`` (a checkpoint of ``step`` was just
  written: ``vitjob launch`` publishes it on the pod, see ``vitjob.launch.checkpoints``).

The marker may be preceded by a prefix such as ``vitjob launch``'s ``[rank 0] ``. Keys the parser
does not know are ignored and keys it needs may say ``-`` (unknown), so the format can grow.

The ``vitjob.io/last-checkpoint`` pod annotation (``vitjob.launch.checkpoints`` sets it from a
``checkpoint`` line) has its format here too: ``checkpoint_annotation`` writes it,
``parse_checkpoint_annotation`` reads it (``{"step": S, "epoch": E, "time": "<UTC, RFC 3339>"}``).

``ProgressWriter`` writes the lines (``vitjob.vit.train``); ``parse_line``, ``last_progress`` and
``last_progress_in_file`` read them; ``describe`` and ``ProgressReading.to_dict`` are the views that
``vitjob status``, ``vitjob list`` and ``vitjob pipeline status`` print (table and ``-o json``).

A ``ProgressReading`` is one line as read, with when it was read and whether it is final (the train
stage has ended; the values are its last ones). The controller records it in the VitJob's
``status.progress`` (``to_status``: the same fields, camelCase as Kubernetes objects have them);
``from_status`` reads it back.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

MARKER = "vitjob-progress"
EVENTS = ("step", "epoch", "resume", "checkpoint")
# How much of the end of a log file the local backend reads (progress lines come every few steps).
TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class TrainProgress:
    """One progress line. ``None`` fields were unknown when the line was written."""

    epoch: int
    epochs: int
    step: int
    total_steps: int
    loss: float | None = None
    accuracy: float | None = None
    img_s: float | None = None
    eta_s: float | None = None
    event: str = "step"

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values (``-o json``/``-o yaml`` of ``vitjob status``); a non-finite
        number (a diverged loss) becomes None, which JSON can carry."""
        data = asdict(self)
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in data.items()}


# The fields of a reading: (attribute, key in vitjob's -o json, key in the VitJob's status.progress).
READING_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("epoch", "epoch", "epoch"),
    ("epochs", "epochs", "epochs"),
    ("step", "step", "step"),
    ("total_steps", "total_steps", "totalSteps"),
    ("percent", "percent", "percent"),
    ("loss", "loss", "loss"),
    ("accuracy", "accuracy", "accuracy"),
    ("img_s", "img_s", "imgPerSecond"),
    ("eta_s", "eta_s", "etaSeconds"),
    ("eta", "eta", "eta"),
    ("event", "event", "event"),
    ("time", "time", "time"),
    ("final", "final", "final"),
)


@dataclass(frozen=True)
class ProgressReading:
    """A progress line as read: ``progress``, when it was read (``time``, RFC 3339 UTC) and whether it
    is ``final`` (training has ended: the last values, kept)."""

    progress: TrainProgress
    time: str = ""
    final: bool = False

    @classmethod
    def now(cls, progress: TrainProgress | None, *, final: bool = False) -> ProgressReading | None:
        """``progress`` read now (None stays None)."""
        if progress is None:
            return None
        when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return cls(progress, time=when, final=final)

    @property
    def percent(self) -> float:
        """Steps done of the total, in percent (one decimal)."""
        p = self.progress
        return round(100.0 * p.step / p.total_steps, 1) if p.total_steps > 0 else 0.0

    @property
    def eta(self) -> str:
        """The time left as people write it (``1m35s``); "" when unknown or training has ended."""
        p = self.progress
        if self.final or p.eta_s is None or not math.isfinite(p.eta_s) or p.step >= p.total_steps:
            return ""
        return format_duration(p.eta_s)

    def _values(self) -> dict[str, Any]:
        line = self.progress.to_dict()
        extra = {"percent": self.percent, "eta": self.eta, "time": self.time, "final": self.final}
        return {attr: line[attr] if attr in line else extra[attr] for attr, _, _ in READING_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        """The ``-o json`` view (snake_case, as the rest of vitjob's JSON)."""
        values = self._values()
        return {key: values[attr] for attr, key, _ in READING_FIELDS}

    def to_status(self) -> dict[str, Any]:
        """The VitJob's ``status.progress`` (camelCase); unknown numbers and an empty ETA are left out."""
        values = self._values()
        return {key: values[attr] for attr, _, key in READING_FIELDS if values[attr] not in (None, "")}

    @classmethod
    def from_status(cls, data: Any) -> ProgressReading | None:
        """A reading from a VitJob's ``status.progress`` (None when absent or not one)."""
        if not isinstance(data, dict):
            return None
        try:
            progress = TrainProgress(
                epoch=int(data["epoch"]),
                epochs=int(data["epochs"]),
                step=int(data["step"]),
                total_steps=int(data["totalSteps"]),
                loss=_maybe_float(data.get("loss")),
                accuracy=_maybe_float(data.get("accuracy")),
                img_s=_maybe_float(data.get("imgPerSecond")),
                eta_s=_maybe_float(data.get("etaSeconds")),
                event=str(data.get("event") or "step"),
            )
        except (KeyError, TypeError, ValueError):
            return None
        return cls(progress, time=str(data.get("time") or ""), final=bool(data.get("final")))


def format_line(progress: TrainProgress) -> str:
    """The progress line for ``progress`` (no newline)."""
    p = progress
    fields = [
        f"epoch={p.epoch}/{p.epochs}",
        f"step={p.step}/{p.total_steps}",
        f"loss={_num(p.loss, '.4f')}",
        f"acc={_num(p.accuracy, '.4f')}",
        f"img_s={_num(p.img_s, '.1f')}",
        f"eta_s={_num(p.eta_s, '.0f')}",
        f"event={p.event}",
    ]
    return f"{MARKER} {' '.join(fields)}"


def parse_line(line: str) -> TrainProgress | None:
    """The progress in ``line``, or None when it holds no (well-formed) progress line."""
    at = line.find(MARKER + " ")
    if at < 0 or (at > 0 and not line[at - 1].isspace()):
        return None
    values: dict[str, str] = {}
    for token in line[at + len(MARKER) :].split():
        key, sep, value = token.partition("=")
        if sep:
            values[key] = value
    try:
        epoch, epochs = _fraction(values["epoch"])
        step, total = _fraction(values["step"])
        event = values.get("event", "step")
        return TrainProgress(
            epoch=epoch,
            epochs=epochs,
            step=step,
            total_steps=total,
            loss=_optional(values.get("loss")),
            accuracy=_optional(values.get("acc")),
            img_s=_optional(values.get("img_s")),
            eta_s=_optional(values.get("eta_s")),
            event=event if event in EVENTS else "step",
        )
    except (KeyError, ValueError):
        return None


def last_progress(lines: Iterable[str]) -> TrainProgress | None:
    """The last progress line among ``lines``, or None."""
    found = None
    for line in lines:
        parsed = parse_line(line)
        if parsed is not None:
            found = parsed
    return found


def last_progress_in_file(path: Path, tail_bytes: int = TAIL_BYTES) -> TrainProgress | None:
    """The last progress line in the last ``tail_bytes`` of the log file ``path`` (None if absent)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - tail_bytes))
            data = fh.read()
    except FileNotFoundError:
        return None
    return last_progress(data.decode(errors="replace").splitlines())


def checkpoint_annotation(progress: TrainProgress, now: float) -> str:
    """The ``vitjob.io/last-checkpoint`` value of a checkpoint line: its step, epoch and ``now`` (UTC)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    return json.dumps({"step": progress.step, "epoch": progress.epoch, "time": stamp}, separators=(",", ":"))


def parse_checkpoint_annotation(text: str | None) -> dict[str, Any] | None:
    """A ``vitjob.io/last-checkpoint`` value as published, None when absent or malformed."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("step"), int) else None


def describe_checkpoint(published: dict[str, Any], now: float | None = None) -> str:
    """``step 120 (epoch 3), written 2m05s ago`` for a parsed ``vitjob.io/last-checkpoint``."""
    import calendar

    epoch = f" (epoch {published['epoch']})" if isinstance(published.get("epoch"), int) else ""
    text = f"step {published['step']}{epoch}"
    try:
        written = calendar.timegm(time.strptime(str(published.get("time")), "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return text
    return f"{text}, written {format_duration((time.time() if now is None else now) - written)} ago"


def format_duration(seconds: float) -> str:
    """``95`` → ``1m35s``; ``7300`` → ``2h01m``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def describe(progress: TrainProgress, *, compact: bool = False) -> str:
    """One human line: ``epoch 3/10  step 69/230  loss 0.4321  val acc 95.67%  140 img/s  ETA 1m35s``;
    ``compact`` (a progress bar's text, the epoch shown by the bar): ``step 69/230 loss 0.432 acc 95.7%
    140 img/s ETA 1m35s``."""
    p = progress
    parts = [] if compact else [f"epoch {p.epoch}/{p.epochs}"]
    parts.append(f"step {p.step}/{p.total_steps}")
    if p.loss is not None:
        parts.append(f"loss {p.loss:.3f}" if compact else f"loss {p.loss:.4f}")
    if p.accuracy is not None:
        parts.append(f"acc {p.accuracy:.1%}" if compact else f"val acc {p.accuracy:.2%}")
    if p.img_s is not None:
        parts.append(f"{p.img_s:.0f} img/s")
    if p.eta_s is not None and p.step < p.total_steps:
        parts.append(f"ETA {format_duration(p.eta_s)}")
    return (" " if compact else "  ").join(parts)


class ProgressWriter:
    """Writes progress lines for one training run (rank 0 only), flushed at once.

    Args:
        out: where the lines go (the process's stdout in a pod).
        epochs, total_steps: the run's plan.
        global_batch: images per step, all ranks together (for images per second).
        start_step: the step the run starts (or resumes) from.
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        out: IO[str],
        epochs: int,
        total_steps: int,
        global_batch: int,
        start_step: int = 0,
        clock: Any = time.monotonic,
    ) -> None:
        self.out = out
        self.epochs = epochs
        self.total_steps = total_steps
        self.global_batch = global_batch
        self.clock = clock
        self.accuracy: float | None = None
        self._losses: list[float] = []
        self._last_loss: float | None = None
        self._img_s: float | None = None
        self._mark_t = clock()
        self._mark_step = start_step

    def step(self, step: int, epoch: int, loss: float, *, emit: bool) -> TrainProgress | None:
        """Record the loss of global step ``step`` (1-based) in epoch ``epoch`` (1-based); with
        ``emit``, write a line covering the steps since the previous one and return it."""
        self._losses.append(loss)
        if not emit:
            return None
        now = self.clock()
        steps = step - self._mark_step
        if steps > 0 and now > self._mark_t:
            self._img_s = steps * self.global_batch / (now - self._mark_t)
        self._last_loss = sum(self._losses) / len(self._losses)
        self._losses.clear()
        self._mark_t, self._mark_step = now, step
        return self._write(step, epoch, "step")

    def epoch_end(self, step: int, epoch: int, accuracy: float | None) -> TrainProgress:
        """Write the line that ends epoch ``epoch`` (with its validation accuracy when it was evaluated)."""
        if accuracy is not None:
            self.accuracy = accuracy
        if self._losses:
            self._last_loss = sum(self._losses) / len(self._losses)
            self._losses.clear()  # the next epoch's first line covers its own steps only
        # The evaluation just run is not training time: the next line's speed starts from here.
        self._mark_t, self._mark_step = self.clock(), step
        return self._write(step, epoch, "epoch")

    def resumed(self, step: int, epoch: int) -> TrainProgress:
        """Write the line saying that this run resumes at global step ``step``, in ``epoch`` (1-based)."""
        return self._write(step, epoch, "resume")

    def checkpoint(self, step: int, epoch: int) -> TrainProgress:
        """Write the line saying that a checkpoint of global step ``step`` was just written."""
        return self._write(step, epoch, "checkpoint")

    def _write(self, step: int, epoch: int, event: str) -> TrainProgress:
        eta = None
        if self._img_s:
            eta = (self.total_steps - step) * self.global_batch / self._img_s
        progress = TrainProgress(
            epoch=epoch,
            epochs=self.epochs,
            step=step,
            total_steps=self.total_steps,
            loss=self._last_loss,
            accuracy=self.accuracy,
            img_s=self._img_s,
            eta_s=eta,
            event=event,
        )
        self.out.write(format_line(progress) + "\n")
        self.out.flush()
        return progress


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)  # a diverged loss stays visible as nan


def _maybe_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _optional(text: str | None) -> float | None:
    return None if text is None or text == "-" else float(text)


def _fraction(text: str) -> tuple[int, int]:
    done, sep, total = text.partition("/")
    if not sep:
        raise ValueError(text)
    return int(done), int(total)
