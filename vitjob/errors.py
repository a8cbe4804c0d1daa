"""Exceptions raised by vitjob.

Every error a user can cause is a ``VitjobError`` whose message says what happened and what to do.
The CLI prints the message (no traceback) and exits with ``exit_code``.
"""

from __future__ import annotations


class VitjobError(Exception):
    """Base class: an error with a user-facing message."""

    exit_code = 1


class UsageError(VitjobError):
    """Bad command-line input or spec value (exit 2, like argparse)."""

    exit_code = 2


class SpecError(UsageError, ValueError):
    """A job spec or values file is invalid."""


class DataError(VitjobError):
    """A data set is missing, has the wrong layout or is truncated."""


class CheckpointError(VitjobError):
    """A checkpoint or pretrained-weights file cannot be used."""


class RenderError(VitjobError):
    """A manifest could not be rendered or failed validation."""


class RankTableError(VitjobError):
    """The HCCL rank table could not be built or gathered."""


class BackendError(VitjobError):
    """A backend (local processes, Kubernetes API) failed."""


class JobNotFoundError(BackendError):
    """The named job does not exist."""


class WaitTimeoutError(BackendError, TimeoutError):
    """``wait`` ran out of time (exit 2)."""

    exit_code = 2
