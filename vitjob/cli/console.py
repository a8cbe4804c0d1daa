"""What the terminal shows while local jobs run in the foreground (``vitjob demo``, local ``submit``).

``RunConsole`` is the local backend's ``LocalJobObserver``. Per job it prints a line when the job
starts and one when it ends; for a train job it follows rank 0's progress lines (``vitjob.progress``):
on a terminal as one live progress bar (rich), otherwise as a line per epoch. When a job does not
complete, it prints the reasons and the last lines of the failing pod. Everything every pod prints
still goes to the job's log files, which ``vitjob logs`` shows; the start line says where they are.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from vitjob.api.status import JobPhase, JobStatus, PodStatus
from vitjob.progress import MARKER, TrainProgress, describe, format_duration, parse_line

STAGE_WIDTH = 9  # "infer310" and a space


@dataclass
class RunConsole:
    """Shows local jobs on ``out``; ``tty``: draw a live progress bar instead of a line per epoch.

    Args:
        out: the terminal (or file) to write to.
        tty: whether ``out`` is a terminal.
        tail_lines: how many of the failing pod's last lines to show when a job fails.
    """

    out: IO[str]
    tty: bool
    tail_lines: int = 12
    _tails: dict[str, deque[str]] = field(default_factory=dict, repr=False)
    _started: dict[str, float] = field(default_factory=dict, repr=False)
    _stages: dict[str, str] = field(default_factory=dict, repr=False)
    _last: dict[str, TrainProgress] = field(default_factory=dict, repr=False)
    _bar: Any = field(default=None, repr=False)
    _task: Any = field(default=None, repr=False)

    # ------------------------------------------------------------------------ LocalJobObserver
    def job_started(self, name: str, stage: str, pods: list[str], log_dir: Path) -> None:
        self._started[name] = time.monotonic()
        self._stages[name] = stage or "job"
        for pod in pods:
            self._tails[pod] = deque(maxlen=max(self.tail_lines * 4, 50))
        count = f"{len(pods)} pod{'s' if len(pods) != 1 else ''}"
        self._print(name, f"job {name} started: {count}, output in {log_dir}")

    def pod_line(self, name: str, pod: str, line: str) -> None:
        progress = parse_line(line)
        if progress is None:
            if line.strip():
                self._tails.setdefault(pod, deque(maxlen=50)).append(line)
            return
        self._last[name] = progress
        if progress.event == "resume":
            self._print(
                name,
                f"resuming from step {progress.step} of {progress.total_steps} "
                f"(epoch {progress.epoch}/{progress.epochs}), its latest checkpoint",
            )
        elif self.tty:
            self._update_bar(name, progress)
        elif progress.event == "epoch":
            self._print(name, describe(progress))

    def job_finished(self, status: JobStatus, log_dir: Path) -> None:
        self._stop_bar()
        took = format_duration(time.monotonic() - self._started.get(status.name, time.monotonic()))
        restarts = f" after {status.retry_count} restart(s)" if status.retry_count else ""
        self._print(status.name, f"job {status.name} {status.phase} in {took}{restarts}")
        if status.phase == JobPhase.COMPLETED:
            return
        lines = [f"  {reason}" for reason in status.reasons]
        pod = failing_pod(status.pods)
        tail = [ln for ln in self._tails.get(pod.name, ()) if MARKER not in ln] if pod else []
        if pod is not None and tail:
            lines.append(f"  last lines of {pod.name}:")
            lines += [f"  | {ln}" for ln in tail[-self.tail_lines :]]
        lines.append(f"  all output: {log_dir}")
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()

    # ---------------------------------------------------------------------------------- output
    def _print(self, name: str, text: str) -> None:
        stage = self._stages.get(name, "job")
        line = f"{stage:<{STAGE_WIDTH}} {text}"
        if self._bar is not None:
            self._bar.console.print(line, highlight=False, markup=False, soft_wrap=True)
            return
        self.out.write(line + "\n")
        self.out.flush()

    def _update_bar(self, name: str, progress: TrainProgress) -> None:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn

            self._bar = Progress(  # fits 80 columns: "epoch 3/10 ━━━━ step 69/230 loss 0.432 …"
                TextColumn("{task.description}"),
                BarColumn(bar_width=16),
                TextColumn("{task.fields[info]}"),
                console=Console(file=self.out, force_terminal=True),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("", total=progress.total_steps, info="")
        self._bar.update(
            self._task,
            description=f"epoch {progress.epoch}/{progress.epochs}",
            completed=progress.step,
            total=progress.total_steps,
            info=bar_info(progress),
        )

    def _stop_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
            self._task = None


def bar_info(p: TrainProgress) -> str:
    """The progress bar's text: ``step 69/230 loss 0.432 acc 95.7% 140 img/s ETA 1m35s``."""
    return describe(p, compact=True)


def failing_pod(pods: list[PodStatus]) -> PodStatus | None:
    """The pod whose exit failed the job: the first that exited with a positive code (the others
    were usually stopped by a signal after it), else the first that did not exit 0."""
    failed = [p for p in pods if p.exit_code not in (None, 0)]
    positive = [p for p in failed if p.exit_code is not None and p.exit_code > 0]
    candidates = positive or failed
    return candidates[0] if candidates else None
