"""The reads the Kubernetes backend's modules share, each one request through ``vitjob.kube.client.Api``:

- a Volcano Job's pods (``job_pods``), the jobs vitjob created (``list_jobs``), one job watched until
  it ends (``wait_ended``); one job by name is ``vitjob.kube.kinds.read_volcano_job``
  (``JobNotFoundError`` when absent), its changes ``vitjob.kube.watch.watch_volcano_job``;
- what the preflight checks and the diagnosis of a waiting job read around it: the nodes, the
  namespace's claims, a Volcano queue (``get_queue``) — ``None`` where RBAC forbids the read
  (``list_or_none``, ``queue_or_none``), so the caller skips what needs it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from vitjob.api.status import JobPhase
from vitjob.backends.kubernetes.status import job_phase
from vitjob.constants import (
    APP_NAME,
    LABEL_MANAGED_BY,
    VOLCANO_JOB_NAME_LABEL,
    VOLCANO_SCHEDULING_GROUP,
    VOLCANO_SCHEDULING_VERSION,
)
from vitjob.errors import AuthError, JobNotFoundError, ResourceNotFoundError, WaitTimeoutError
from vitjob.kube.client import Api
from vitjob.kube.errors import Op
from vitjob.kube.kinds import list_volcano_jobs
from vitjob.kube.watch import watch_volcano_job

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ Volcano Jobs
def job_pods(api: Api, ns: str, name: str) -> list[dict[str, Any]]:
    """The pods of Volcano Job ``ns/name`` (by its job-name label)."""
    selector = f"{VOLCANO_JOB_NAME_LABEL}={name}"
    pods: list[dict[str, Any]] = api.call(
        Op("list", "pods", "", ns), api.core.list_namespaced_pod, ns, label_selector=selector
    )["items"]
    return pods


def list_jobs(api: Api, ns: str | None) -> list[dict[str, Any]]:
    """The Volcano Jobs vitjob created (its managed-by label) in ``ns``; in every namespace for None."""
    return list_volcano_jobs(api, ns, f"{LABEL_MANAGED_BY}={APP_NAME}")


def wait_ended(
    api: Api, ns: str, name: str, timeout_s: float | None, *, watch_timeout_s: float, pause_s: float
) -> None:
    """Return once Volcano Job ``ns/name`` is in a terminal phase (watched, not polled);
    ``JobNotFoundError`` when it is gone, ``WaitTimeoutError`` after ``timeout_s``."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    stop = threading.Event()
    phase = JobPhase.UNKNOWN
    for job in watch_volcano_job(api, ns, name, stop, deadline=deadline, watch_timeout_s=watch_timeout_s,
                                 pause_s=pause_s):
        if job is None:
            raise JobNotFoundError(
                f"job {name!r} not found in namespace {ns!r} (or it was deleted while "
                "waiting); `vitjob list` shows the jobs there"
            )
        phase = job_phase(job)
        if phase.is_terminal:
            return
        if deadline is not None and time.monotonic() >= deadline:
            break
    raise WaitTimeoutError(
        f"job {name!r} is still {phase} after {timeout_s:g}s; it keeps running: "
        f"`vitjob status {name}` shows why, `vitjob wait {name} --timeout …` waits longer"
    )


# ------------------------------------------------------------------- what the checks read around it
def list_or_none(api: Api, op: Op, method: Any, *args: Any, **kwargs: Any) -> list[dict[str, Any]] | None:
    """The items of a list request, or None when we may not list them."""
    try:
        items: list[dict[str, Any]] = api.call(op, method, *args, **kwargs)["items"]
    except AuthError:
        log.debug("may not %s %s; skipping what needs them", op.verb, op.resource)
        return None
    return items


def nodes_or_none(api: Api) -> list[dict[str, Any]] | None:
    """The cluster's nodes, or None when we may not list them."""
    return list_or_none(api, Op("list", "nodes"), api.core.list_node)


def claim_names(api: Api, ns: str) -> list[str] | None:
    """The names of the PersistentVolumeClaims in ``ns``, or None when we may not list them."""
    claims = list_or_none(
        api,
        Op("list", "persistentvolumeclaims", "", ns),
        api.core.list_namespaced_persistent_volume_claim,
        ns,
    )
    return None if claims is None else [c["metadata"]["name"] for c in claims]


def get_queue(api: Api, name: str) -> dict[str, Any]:
    """Volcano queue ``name`` (``ResourceNotFoundError`` when it does not exist)."""
    queue: dict[str, Any] = api.call(
        Op("get", "queues", VOLCANO_SCHEDULING_GROUP, None, name),
        api.custom.get_cluster_custom_object,
        VOLCANO_SCHEDULING_GROUP,
        VOLCANO_SCHEDULING_VERSION,
        "queues",
        name,
    )
    return queue


def queue_or_none(api: Api, name: str) -> dict[str, Any] | None:
    """Volcano queue ``name``, or None when it does not exist or we may not read it."""
    try:
        return get_queue(api, name)
    except (ResourceNotFoundError, AuthError):
        return None
