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


class PipelineNotFoundError(BackendError):
    """The named pipeline (``vitjob submit --then``) does not exist."""


class WaitTimeoutError(BackendError, TimeoutError):
    """``wait`` ran out of time (exit 2)."""

    exit_code = 2


class ClusterUnreachableError(BackendError):
    """The Kubernetes API server could not be reached, or kept failing (5xx, timeouts) after retries."""


class ClusterConfigError(BackendError):
    """No usable kubeconfig / in-cluster configuration."""


class AuthError(BackendError):
    """The API server rejected the credentials (401) or the action (403, RBAC)."""


class AdmissionDeniedError(BackendError):
    """An admission webhook (e.g. Volcano's ``validatejob.volcano.sh``) refused the object."""


class ConflictError(BackendError):
    """The object already exists (409 AlreadyExists) or was changed concurrently (409 Conflict)."""


class InvalidObjectError(BackendError):
    """The API server rejected an object as invalid (422): names the field paths."""


class PreflightError(BackendError):
    """The cluster cannot run the job as asked (Volcano missing, namespace or queue absent…)."""


class ResourceNotFoundError(BackendError):
    """An object other than the job itself was not found (404)."""


class ResourceTypeNotServedError(ResourceNotFoundError):
    """The API server serves no such resource type (404 for the path: e.g. a CRD not installed)."""


class InferenceError(VitjobError):
    """Offline (Ascend-310 style) inference failed: a missing or malformed ``.bin``/MINDIR file, or the
    inference program is missing or failed."""
