"""Logs kept on the output volume: every run of every pod of a job, one file each, so that the log that
explains a restart outlives the pod that wrote it (Volcano deletes a failed job's pods when it restarts
the job, and the kubelet keeps only one previous run of a container).

Layout, under the directory the pod's ``VITJOB_LOG_DIR`` names (``/output/<pipeline>/logs`` as rendered,
on the output PVC)::

    <log dir>/<job>/<pod>/attempt-<N>.log

``N`` counts the runs of that pod, from 1: a pod Volcano recreated after a job restart and a container
the kubelet restarted in place each start a new attempt. ``vitjob launch`` opens the next attempt file
when it starts (``open_attempt``, an exclusive create, so two runs never share a number) and writes every
line it prints there too, flushed line by line — what a crash leaves is on disk.

Readers: ``attempts`` lists the attempt numbers kept for a job, ``attempt_files`` the files of one
attempt, and ``main`` (``python -m vitjob.keptlogs LOG_DIR JOB --attempt N``) prints them prefixed with
the pod's name: the command of the short-lived pod that ``vitjob logs --attempt`` starts on a cluster
to read the volume, which only pods can mount.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TextIO

from vitjob import constants as c

log = logging.getLogger(__name__)

_ATTEMPT_FILE = re.compile(r"^attempt-(\d+)\.log$")
# Attempt numbers tried before giving up when other runs of the same pod race for the next one.
_MAX_CLAIMS = 1000


def attempt_path(log_dir: Path, job: str, pod: str, attempt: int) -> Path:
    """Where attempt ``attempt`` of pod ``pod`` of job ``job`` is kept."""
    return log_dir / job / pod / f"attempt-{attempt}.log"


def pod_attempts(pod_dir: Path) -> list[int]:
    """The attempt numbers kept in one pod's directory, ascending."""
    if not pod_dir.is_dir():
        return []
    found = (_ATTEMPT_FILE.match(p.name) for p in pod_dir.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def attempts(log_dir: Path, job: str) -> list[int]:
    """Every attempt number any pod of ``job`` has a file for, ascending."""
    job_dir = log_dir / job
    if not job_dir.is_dir():
        return []
    return sorted({n for pod in job_dir.iterdir() for n in pod_attempts(pod)})


def attempt_files(log_dir: Path, job: str, attempt: int, pod: str | None = None) -> list[tuple[str, Path]]:
    """(pod, file) of attempt ``attempt`` of every pod of ``job`` (or only ``pod``), by pod name."""
    job_dir = log_dir / job
    pods = sorted(p.name for p in job_dir.iterdir() if p.is_dir()) if job_dir.is_dir() else []
    if pod is not None:
        pods = [p for p in pods if p == pod]
    files = [(p, attempt_path(log_dir, job, p, attempt)) for p in pods]
    return [(p, f) for p, f in files if f.is_file()]


def read_lines(files: list[tuple[str, Path]]) -> Iterator[str]:
    """The lines of ``files``, each prefixed with its pod's name as ``vitjob logs`` prints them."""
    for pod, path in files:
        with open(path, errors="replace") as fh:
            for line in fh:
                yield f"[{pod}] {line.rstrip(chr(10))}"


class KeptLog:
    """One attempt's file, open for appending; ``write`` is whole lines, flushed at once."""

    def __init__(self, path: Path, attempt: int, fh: TextIO) -> None:
        self.path = path
        self.attempt = attempt
        self._fh = fh
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            try:
                self._fh.write(text)
                self._fh.flush()
            except OSError as exc:  # a full or vanished volume must not stop the training it records
                log.debug("cannot write the kept log %s: %s", self.path, exc)

    def close(self) -> None:
        with self._lock, contextlib.suppress(OSError):
            self._fh.close()


def open_attempt(log_dir: Path, job: str, pod: str) -> KeptLog:
    """Create the next attempt file of ``pod`` (exclusively: a number is never taken twice)."""
    pod_dir = log_dir / job / pod
    pod_dir.mkdir(parents=True, exist_ok=True)
    start = (pod_attempts(pod_dir) or [0])[-1] + 1
    for attempt in range(start, start + _MAX_CLAIMS):
        path = attempt_path(log_dir, job, pod, attempt)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        return KeptLog(path, attempt, os.fdopen(fd, "w", encoding="utf-8", errors="replace"))
    raise OSError(f"no free attempt number under {pod_dir} after {_MAX_CLAIMS} tries")


@dataclass(frozen=True)
class PodLogTarget:
    """Where a pod keeps its logs, from its environment (``VITJOB_LOG_DIR``, job and pod names)."""

    log_dir: Path
    job: str
    pod: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PodLogTarget | None:
        """None unless the pod was rendered to keep logs (all three variables set)."""
        log_dir, job, pod = env.get(c.ENV_LOG_DIR), env.get(c.ENV_JOB_NAME), env.get(c.ENV_POD_NAME)
        if not (log_dir and job and pod):
            return None
        return cls(Path(log_dir), job, pod)


class Tee:
    """A text stream that writes to ``out`` and to a kept log (the log's failures never reach ``out``)."""

    def __init__(self, out: IO[str], kept: KeptLog) -> None:
        self.out = out
        self.kept = kept

    def write(self, text: str) -> int:
        self.out.write(text)
        self.kept.write(text)
        return len(text)

    def flush(self) -> None:
        self.out.flush()


class KeptLogHandler(logging.Handler):
    """Copies log records (``vitjob launch``'s own lines) into a kept log, formatted like stderr's."""

    def __init__(self, kept: KeptLog, formatter: logging.Formatter | None = None) -> None:
        super().__init__()
        self.kept = kept
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.kept.write(self.format(record) + "\n")
        except Exception:  # logging must never raise into the caller
            self.handleError(record)


def main(argv: list[str] | None = None) -> int:
    """Print the kept logs of one attempt of a job (the reader pod's command)."""
    parser = argparse.ArgumentParser(
        prog="python -m vitjob.keptlogs", description="Print the kept logs of one attempt of a job."
    )
    parser.add_argument("log_dir", type=Path)
    parser.add_argument("job")
    parser.add_argument("--attempt", type=int, required=True)
    parser.add_argument("--pod", default=None)
    args = parser.parse_args(argv)
    files = attempt_files(args.log_dir, args.job, args.attempt, args.pod)
    if not files:
        kept = attempts(args.log_dir, args.job)
        have = f"attempts kept: {', '.join(map(str, kept))}" if kept else "no attempts kept"
        print(f"error: no logs of attempt {args.attempt} of job {args.job} in {args.log_dir} ({have})",
              file=sys.stderr)
        return 1
    for line in read_lines(files):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
