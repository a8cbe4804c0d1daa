"""Volcano Jobs and their pods as vitjob's status records (``vitjob.api.status``): pure conversions of
the objects the API returns, shared by the backend (``vitjob status``/``list``), the VitJob store and
the controller's cache."""

from __future__ import annotations

import time
from typing import Any

from vitjob.api.status import JobPhase, JobStatus, PodStatus
from vitjob.constants import LABEL_CARDS, LABEL_COMPONENT, LABEL_HW, VOLCANO_TASK_SPEC_LABEL
from vitjob.kube.kinds import container_status, pod_rank, volcano_phase
from vitjob.kube.logs import parse_ts


def age_s(meta: dict[str, Any]) -> float:
    """Seconds since the object's creationTimestamp (0 without one)."""
    created = meta.get("creationTimestamp")
    if not created:
        return 0.0
    return max(0.0, time.time() - parse_ts(created) / 1e9)


def job_phase(job: dict[str, Any]) -> JobPhase:
    """The Volcano Job's phase (``Unknown`` for a phase this version does not know)."""
    try:
        return JobPhase(volcano_phase(job))
    except ValueError:
        return JobPhase.UNKNOWN


def pod_status(pod: dict[str, Any]) -> PodStatus:
    """A pod as ``vitjob status`` shows it."""
    cs = container_status(pod)
    state = cs.get("state") or {}
    term = state.get("terminated") or (cs.get("lastState") or {}).get("terminated") or {}
    waiting = state.get("waiting") or {}
    return PodStatus(
        name=pod["metadata"]["name"],
        phase=(pod.get("status") or {}).get("phase", "Unknown"),
        node=pod["spec"].get("nodeName") or "",
        restarts=int(cs.get("restartCount") or 0),
        exit_code=term.get("exitCode"),
        reason=waiting.get("reason") or term.get("reason", ""),
        message=waiting.get("message") or term.get("message", ""),
        rank=pod_rank(pod),
        task=(pod["metadata"].get("labels") or {}).get(VOLCANO_TASK_SPEC_LABEL, ""),
    )


def job_status(job: dict[str, Any], pods: list[dict[str, Any]] | None = None) -> JobStatus:
    """A Volcano Job (and its pods) as ``vitjob status``/``list`` show it."""
    meta, status = job["metadata"], job.get("status") or {}
    labels = meta.get("labels") or {}
    cards = labels.get(LABEL_CARDS, "")
    tasks = {
        t: {p: int(n) for p, n in (c.get("phase") or {}).items()}
        for t, c in (status.get("taskStatusCount") or {}).items()
    }
    pod_list = sorted((pod_status(p) for p in pods or []), key=lambda p: (p.task, p.rank or 0, p.name))
    return JobStatus(
        name=meta["name"],
        namespace=meta.get("namespace", ""),
        phase=job_phase(job),
        retry_count=int(status.get("retryCount") or 0),
        stage=labels.get(LABEL_COMPONENT, ""),
        hw=labels.get(LABEL_HW, ""),
        cards=int(cards) if cards.isdigit() else 0,
        age_s=age_s(meta),
        pods=pod_list,
        queue=(job.get("spec") or {}).get("queue", ""),
        tasks=tasks,
    )
