"""What vitjob's own log lines look like, and how quiet MindSpore's are, in the processes vitjob runs.

- ``configure_logging(verbose)`` (called once by the CLI): vitjob's log records go to stderr as plain
  sentences (``warning: …`` and ``error: …`` for those levels, INFO bare, DEBUG hidden); with
  ``verbose`` they are DEBUG and up, with time, level and logger name.
- ``framework_log_env(verbose)``: the environment that limits MindSpore's C++ and Python logging to
  errors (``GLOG_v=3``; ``GLOG_logtostderr=1`` keeps what remains in the process's output, hence in
  the job's logs). With ``verbose`` it is empty: MindSpore's own defaults apply (warnings and up).
  ``with_framework_log_env`` adds it to an environment without overriding what the user set, so
  ``GLOG_v=1 vitjob demo`` or a spec's ``env.GLOG_v`` still win. MindSpore 2.10 also reads
  ``MS_SUBMODULE_LOG_v`` (per-module levels) and ``VLOG_v`` (verbose levels, off by default): they are
  left to the user.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping

ROOT_LOGGER = "vitjob"
# MindSpore: 0 DEBUG, 1 INFO, 2 WARNING (its default), 3 ERROR, 4 CRITICAL.
QUIET_FRAMEWORK_ENV: Mapping[str, str] = {"GLOG_v": "3", "GLOG_logtostderr": "1", "GLOG_stderrthreshold": "3"}


def framework_log_env(verbose: bool) -> dict[str, str]:
    """The variables that set MindSpore's log level for a process vitjob starts (empty if ``verbose``)."""
    return {} if verbose else dict(QUIET_FRAMEWORK_ENV)


def with_framework_log_env(env: Mapping[str, str], verbose: bool) -> dict[str, str]:
    """``env`` plus ``framework_log_env(verbose)`` for every variable ``env`` does not set already."""
    return {**framework_log_env(verbose), **env}


@contextlib.contextmanager
def framework_log_environment(verbose: bool) -> Iterator[None]:
    """Within the block, ``os.environ`` holds the framework log variables it lacked (children started
    there inherit them); they are removed again afterwards."""
    added = {k: v for k, v in framework_log_env(verbose).items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


class _PlainFormatter(logging.Formatter):
    """INFO as the bare message; other levels prefixed with their name in lower case."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno == logging.INFO else f"{record.levelname.lower()}: {message}"


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (a progress bar that redirects
    stderr, or a test's capture, then sees the line)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


@contextlib.contextmanager
def quieted(logger_name: str, level: int = logging.WARNING) -> Iterator[None]:
    """Within the block, logger ``logger_name`` passes only records of ``level`` and up (for what the
    terminal already shows another way); its level is restored afterwards."""
    logger = logging.getLogger(logger_name)
    before = logger.level
    logger.setLevel(max(level, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        logger.setLevel(before)


def configure_logging(verbose: bool) -> None:
    """Route the ``vitjob`` loggers to stderr: plain lines from INFO up, or everything with ``verbose``.

    Idempotent: a handler installed by an earlier call is replaced, not doubled.
    """
    logger = logging.getLogger(ROOT_LOGGER)
    for old in [h for h in logger.handlers if isinstance(h, StderrHandler)]:
        logger.removeHandler(old)
    handler = StderrHandler()
    if verbose:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
        )
    else:
        handler.setFormatter(_PlainFormatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
