"""Errors of Kubernetes API requests: ``Op`` names a request, and this module owns the ONE mapping from
API answers (``api_error``) and transport failures (``transport_error``) to ``vitjob.errors`` exceptions.

``Expired`` is not a user error: a watch's resourceVersion is too old (410 Gone) and the caller re-lists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vitjob.constants import VOLCANO_GROUP, VOLCANO_PLURAL
from vitjob.errors import (
    AdmissionDeniedError,
    AuthError,
    BackendError,
    ClusterUnreachableError,
    ConflictError,
    InvalidObjectError,
    JobNotFoundError,
    ResourceNotFoundError,
    ResourceTypeNotServedError,
    VitjobError,
)

# Answers worth retrying (with backoff): throttling and server-side failures
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# A 404 for a path the API server does not serve: a plain-text "404 page not found" for an API group it
# lacks (the group of a CRD that is not installed), or a Status with this message for a resource a served
# group lacks. A missing object's 404 is a Status that names the object.
NOT_SERVED = "the server could not find the requested resource"


@dataclass(frozen=True)
class Op:
    """What a request does, in the words an error message needs (``create jobs.batch.volcano.sh``)."""

    verb: str
    plural: str
    group: str = ""
    namespace: str | None = None
    name: str | None = None

    @property
    def resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def what(self) -> str:
        target = f"{self.resource} {self.name!r}" if self.name else self.resource
        where = f" in namespace {self.namespace!r}" if self.namespace else ""
        return f"{self.verb} {target}{where}"


class Expired(Exception):
    """A watch answered 410 Gone: re-list."""


def status_body(body: Any) -> dict[str, Any]:
    """The ``metav1.Status`` of an error answer (``{"message": …}`` when it is not JSON)."""
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        return {"message": str(body)[:300]}
    return parsed if isinstance(parsed, dict) else {}


def api_error(op: Op, status: int, body: Any, server: str, attempts: int = 1) -> VitjobError:
    """The one place that turns an API answer into a vitjob error."""
    st = status_body(body)
    message = st.get("message") or f"HTTP {status}"
    reason = st.get("reason", "")
    if status == 401:
        return AuthError(
            f"the API server {server} rejected the credentials (401 Unauthorized) "
            f"while trying to {op.what()}: "
            "the token or certificate in the kubeconfig is missing or expired; log in again and check with "
            "`kubectl auth whoami`"
        )
    if "admission webhook" in message and status in (400, 403):
        # A webhook's denial: the API server raises codes below 400 to 400 and keeps a webhook's own code
        # (apiserver's admission/plugin/webhook/errors/statuserror.go); Volcano's validator sets none -> 400.
        return AdmissionDeniedError(f"the cluster refused to {op.what()}: {message}")
    if status == 403:
        role = "Role" if op.namespace else "ClusterRole"
        return AuthError(
            f"not allowed to {op.what()} (403 Forbidden: {message}); ask a cluster admin for a {role} rule "
            f'apiGroups: ["{op.group}"], resources: ["{op.plural}"], verbs: ["{op.verb}"]'
        )
    if status == 404:
        if op.group == VOLCANO_GROUP and op.plural == VOLCANO_PLURAL and op.name:
            return JobNotFoundError(
                f"job {op.name!r} not found in namespace {op.namespace!r}; "
                "`vitjob list` shows the jobs there (-A: all namespaces)"
            )
        if st.get("kind") != "Status" or (message == NOT_SERVED and not st.get("details")):
            return ResourceTypeNotServedError(
                f"cannot {op.what()}: the API server {server} serves no {op.resource} ({message.strip()})"
            )
        return ResourceNotFoundError(f"cannot {op.what()}: not found ({message})")
    if status == 409:
        if reason == "AlreadyExists":
            return ConflictError(f"cannot {op.what()}: it already exists")
        return ConflictError(
            f"cannot {op.what()}: it was changed at the same time by someone else "
            f"({message}); run the command again"
        )
    if status == 422:
        causes = (st.get("details") or {}).get("causes") or []
        fields = "; ".join(f"{c.get('field', '?')}: {c.get('message', '')}" for c in causes) or message
        return InvalidObjectError(
            f"the API server rejected {op.what()} as invalid: {fields}. Fix the spec; "
            "`vitjob submit --dry-run` validates without submitting"
        )
    if status in RETRYABLE_STATUS:
        return ClusterUnreachableError(
            f"the API server {server} kept failing to {op.what()} (HTTP {status} {reason}: {message}) "
            f"after {attempts} attempts; check the cluster's health (`kubectl get --raw /readyz`) and retry"
        )
    return BackendError(f"cannot {op.what()}: HTTP {status} {reason}: {message}")


def transport_error(op: Op, exc: Exception, server: str, attempts: int) -> VitjobError:
    """A request that got no answer (timeout, refused or dropped connection) as a vitjob error."""
    cause = getattr(exc, "reason", None) or exc
    text = str(cause)
    if "timed out" in text.lower() or "timeout" in type(cause).__name__.lower():
        return ClusterUnreachableError(
            f"the API server {server} did not answer in time while trying to {op.what()} "
            f"({attempts} attempts); "
            "check the network path to the cluster and retry"
        )
    short = text.split("Failed to establish a new connection: ")[-1].rstrip(")\"'")
    return ClusterUnreachableError(
        f"cannot reach the Kubernetes API server at {server} ({short}; {attempts} attempts); check that the "
        "cluster is up and that --kubeconfig/--context point at it (`kubectl cluster-info`)"
    )
