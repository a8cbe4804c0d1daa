"""Runs one child process per card and keeps the pod honest about them.

- Every line a child prints reaches the pod's stdout prefixed with ``[rank N]`` (so ``kubectl logs``
  alone tells the ranks apart), written whole under a lock.
- If any child fails — a helper such as the MindSpore scheduler as much as a worker — the others are
  stopped (SIGTERM, then SIGKILL after a grace period) and the supervisor returns the first failure's
  exit code with a one-line summary: which process, how it ended, and the last error line it printed.
- A helper that ends cleanly while workers still run is normal at the end of a job (MindSpore's
  scheduler exits once every worker has finalized, a few seconds before their processes are gone), but
  if the workers are still running ``helper_grace_s`` later the pod fails instead of waiting forever.
- A worker given a ``done_file`` (``VITJOB_DONE_FILE`` in its environment) writes it once its work is
  complete and its output flushed (``vitjob``'s CLI does, after a command succeeds). When every worker
  has written its file, the supervisor ends them all at once (SIGKILL) and counts them finished: when a
  pod holds the whole MindSpore cluster, nothing after that point matters to anyone, and MindSpore's
  own teardown (each worker's heartbeat thread finishing its sleep, unregistering, the scheduler waiting
  for all) costs seconds per job. A worker that exits with an error first still fails the pod.
- SIGTERM/SIGINT to the supervisor are forwarded to every child. Each child runs in its own process
  group and the whole group is signalled, so no orphan (e.g. a data-loader worker) survives.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from vitjob.constants import ENV_DONE_FILE

log = logging.getLogger(__name__)


def report_done(environ: Mapping[str, str]) -> Path | None:
    """Write this process's done file (``VITJOB_DONE_FILE``) if its launch gave it one; return its path.

    Call it last, when the process's work is complete: its standard streams are flushed first, since the
    launch may end the process as soon as the file exists."""
    name = environ.get(ENV_DONE_FILE, "").strip()
    if not name:
        return None
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")
    return path


class TextSink(Protocol):
    """Where the children's lines go: a text stream (stdout), or one that copies them (a kept log)."""

    def write(self, text: str, /) -> object: ...

    def flush(self) -> object: ...


@dataclass
class ChildSpec:
    label: str  # output prefix, e.g. "rank 3" or "sched"
    argv: list[str]
    env: dict[str, str]
    required: bool = True  # a worker; False for helpers (the scheduler) that are stopped at the end
    role: str = ""  # how the summary describes it, e.g. "the MindSpore scheduler"
    done_file: Path | None = None  # written by the child when its work is complete (see the docstring)

    @property
    def title(self) -> str:
        return f"{self.label} ({self.role})" if self.role else self.label


# A line that reports an error: MindSpore's C++ log ([ERROR]/[CRITICAL]), a Python exception line, or a
# CLI's "error:" line. The last one a child printed is the "why" of its failure.
_ERROR_LINE = re.compile(r"^\[(ERROR|CRITICAL)\]|^[\w.]*(Error|Exception)\b|\berror:", re.IGNORECASE)
# MindSpore's log prefix: "[ERROR] DISTRIBUTED(pid,tid,python):time [path/file.cc:305] Func] message".
_MS_LOG = re.compile(r"^\[(ERROR|CRITICAL)\] (\w+)\([^)]*\):\S+ \[(?:[^\]]*/)?([^\]/]+)\] (\w+)\] (.*)$")
_MAX_WHY = 300


def error_line(line: str) -> str | None:
    """``line`` shortened for a summary if it reports an error, else None."""
    text = line.strip()
    if not text or not _ERROR_LINE.search(text):
        return None
    m = _MS_LOG.match(text)
    if m:
        text = f"[{m.group(1)}] {m.group(2)} {m.group(3)} {m.group(4)}: {m.group(5)}"
    return text if len(text) <= _MAX_WHY else text[: _MAX_WHY - 3] + "..."


@dataclass
class Outcome:
    exit_code: int
    summary: str
    codes: dict[str, int | None] = field(default_factory=dict)


class Supervisor:
    def __init__(self, children: list[ChildSpec], out: TextSink | None = None, grace_s: float = 10.0,
                 helper_grace_s: float = 60.0, on_line: Callable[[str, str], None] | None = None) -> None:
        self.specs = children
        self.out = out or sys.stdout
        self.on_line = on_line  # sees every line (label, text) after it is written, e.g. a publisher
        self.grace_s = grace_s
        self.helper_grace_s = helper_grace_s
        self.procs: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._pumps: list[threading.Thread] = []
        self._stop_signal: int | None = None
        self.last_error: dict[str, str] = {}  # label -> the last error line that child printed

    def _pump(self, label: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            why = error_line(line)
            with self._lock:
                if why is not None:
                    self.last_error[label] = why
                self.out.write(f"[{label}] {line}\n")
                self.out.flush()
            if self.on_line is not None:
                self.on_line(label, line)
        stream.close()

    def start(self) -> tuple[str, int, str] | None:
        """Start every child; if one cannot be started, stop those already running and say why."""
        for spec in self.specs:
            try:
                proc = subprocess.Popen(
                    spec.argv, env=spec.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                code = 126 if isinstance(exc, PermissionError) else 127  # the shell's codes
                return spec.label, code, f"cannot run {spec.argv[0]!r}: {exc.strerror or exc}"
            self.procs.append(proc)
            pump = threading.Thread(target=self._pump, args=(spec.label, proc.stdout), daemon=True)
            pump.start()
            self._pumps.append(pump)
        return None

    def signal_all(self, sig: int) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)

    def stop_all(self, grace_s: float | None = None) -> None:
        """SIGTERM, ``grace_s`` (default: the supervisor's) for the children to end, then SIGKILL."""
        grace = self.grace_s if grace_s is None else grace_s
        if grace > 0:
            self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(p.poll() is None for p in self.procs):
            time.sleep(0.05)
        self.signal_all(signal.SIGKILL)
        for proc in self.procs:
            proc.wait()
        # Kill the rest of each child's process group (workers it spawned that outlived it).
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def all_done(self) -> bool:
        """Whether every worker has a done file and has written it."""
        workers = [spec for spec in self.specs if spec.required]
        return bool(workers) and all(spec.done_file is not None and spec.done_file.exists()
                                     for spec in workers)

    def request_stop(self, signum: int) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum
        self.signal_all(signum)

    def run(self, poll_s: float = 0.1) -> Outcome:
        """Start the children and wait; returns when every required child ended or one failed."""
        failure: tuple[ChildSpec, int] | None = None
        start_error: str | None = None
        helper_ended: tuple[ChildSpec, float] | None = None
        done = False
        try:
            not_started = self.start()
            if not_started is not None:
                label, start_code, start_why = not_started
                spec = next(s for s in self.specs if s.label == label)
                failure, start_error = (spec, start_code), start_why
            while failure is None and self._stop_signal is None:
                required_done = True
                for spec, proc in zip(self.specs, self.procs, strict=True):
                    code = proc.poll()
                    if code is not None and code != 0 and failure is None:
                        failure = (spec, code)
                    if spec.required and code is None:
                        required_done = False
                    if not spec.required and code == 0 and helper_ended is None:
                        helper_ended = (spec, time.monotonic())
                if failure or required_done:
                    break
                if self.all_done():
                    done = True
                    log.info("every worker reported its work done: ending the processes without "
                             "MindSpore's teardown")
                    break
                if helper_ended is not None and time.monotonic() - helper_ended[1] > self.helper_grace_s:
                    start_error = (f"ended (exit code 0) {self.helper_grace_s:.0f} s ago while the workers "
                                   "still run; they cannot finish without it")
                    failure = (helper_ended[0], 1)
                    break
                time.sleep(poll_s)
        finally:
            self.stop_all(grace_s=0.0 if done else None)
            for pump in self._pumps:
                pump.join(timeout=5)
        codes: dict[str, int | None] = {spec.label: None for spec in self.specs}
        codes.update({spec.label: proc.returncode
                      for spec, proc in zip(self.specs, self.procs, strict=False)})
        if done:  # ended by us after their work was complete
            codes.update({spec.label: 0 for spec in self.specs if spec.required})
        if self._stop_signal is not None and failure is None:
            name = _signal_name(self._stop_signal)
            return Outcome(128 + self._stop_signal, f"stopped: received {name}; children stopped", codes)
        if failure:
            spec, code = failure
            others = sum(1 for s, p in zip(self.specs, self.procs, strict=False) if s is not spec)
            stopped = f"stopped {others} other process(es)"
            if start_error:
                return Outcome(code, f"{spec.title}: {start_error}; {stopped}", codes)
            shown = code if code >= 0 else f"signal {_signal_name(-code)}"
            exit_code = code if code > 0 else 128 - code
            why = self.last_error.get(spec.label)
            if code < 0:
                reason = f"killed by {_signal_name(-code)}" + (f"; last error line: {why}" if why else "")
            else:
                reason = f"last error line: {why}" if why else "it printed no error line"
            return Outcome(exit_code, f"{spec.title} failed with exit code {shown} ({reason}); {stopped}",
                           codes)
        return Outcome(0, f"all {sum(s.required for s in self.specs)} process(es) finished", codes)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def install_signal_forwarding(supervisor: Supervisor) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: supervisor.request_stop(signum))
