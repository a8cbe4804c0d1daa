"""A Volcano Job's life after submit: cancel, suspend, resume and delete.

Cancel, suspend and resume create a Volcano bus Command (``bus.volcano.sh/v1alpha1``, rendered by
``vitjob.render.manifests.render_volcano_command``) that Volcano's job controller executes: ``AbortJob``
(the pods are deleted, the job stays, Aborted) and ``ResumeJob`` (Aborted → Restarting → a new run). A
suspension is marked with the ``vitjob.io/suspended`` annotation, so that ``resume`` (and ``vitjob
status``) know it from a cancel. Delete removes the Job and the supporting objects submit recorded in
its ``vitjob.io/supporting-objects`` annotation.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from vitjob.api.status import JobPhase
from vitjob.backends.kubernetes.status import job_phase
from vitjob.constants import (
    ANNOTATION_SUPPORTING_OBJECTS,
    ANNOTATION_SUSPENDED,
    VOLCANO_GROUP,
    VOLCANO_PLURAL,
    VOLCANO_VERSION,
)
from vitjob.errors import BackendError, ResourceNotFoundError, UsageError
from vitjob.kube.client import Api
from vitjob.kube.errors import Op
from vitjob.kube.kinds import create_object, kind_info, object_calls, read_volcano_job
from vitjob.kube.times import time_text
from vitjob.render.manifests import render_volcano_command

log = logging.getLogger(__name__)


def cancel(api: Api, ns: str, name: str) -> None:
    """Volcano's AbortJob on a job that has not ended (``BackendError`` for one that has)."""
    job = read_volcano_job(api, ns, name)
    phase = job_phase(job)
    if phase.is_terminal:
        raise BackendError(
            f"job {name!r} already finished ({phase}); nothing to cancel — "
            f"`vitjob delete {name}` removes it"
        )
    command(api, job, "AbortJob", "vitjob cancel", "aborted with `vitjob cancel`")


def suspend(api: Api, ns: str, name: str) -> None:
    """Volcano's AbortJob (its running pods are deleted; the job stays, Aborted), marked as a
    suspension (``vitjob.io/suspended``) so that ``status`` and ``resume`` know it."""
    job = read_volcano_job(api, ns, name)
    phase = job_phase(job)
    if phase.is_terminal:
        raise UsageError(f"job {name!r} already ended ({phase}); only a running job can be suspended")
    annotate(api, job, {ANNOTATION_SUSPENDED: time_text()})
    command(api, job, "AbortJob", "vitjob suspend", "suspended with `vitjob suspend`")


def resume(api: Api, ns: str, name: str) -> None:
    """Volcano's ResumeJob on a suspended job: Aborted → Restarting → a new run that resumes from
    the last checkpoint (Volcano counts it as a retry: a job at maxRetry fails instead)."""
    job = read_volcano_job(api, ns, name)
    annotations = job["metadata"].get("annotations") or {}
    phase = job_phase(job)
    if ANNOTATION_SUSPENDED not in annotations or phase not in (JobPhase.ABORTED, JobPhase.ABORTING):
        raise UsageError(
            f"job {name!r} is {phase}, not suspended: only a job `vitjob suspend` stopped can be resumed"
        )
    command(api, job, "ResumeJob", "vitjob resume", "resumed with `vitjob resume`")
    annotate(api, job, {ANNOTATION_SUSPENDED: None})


def command(api: Api, job: dict[str, Any], action: str, reason: str, message: str) -> None:
    """Create a Volcano bus Command (``action`` on ``job``); Volcano's job controller executes it."""
    create_object(api, render_volcano_command(job, action, reason, message))
    meta = job["metadata"]
    log.debug("asked Volcano to %s job %s/%s", action, meta["namespace"], meta["name"])


def annotate(api: Api, job: dict[str, Any], annotations: dict[str, str | None]) -> None:
    """Merge-patch the Volcano Job's annotations (None removes one)."""
    ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
    api.call(
        Op("patch", VOLCANO_PLURAL, VOLCANO_GROUP, ns, name),
        api.custom.patch_namespaced_custom_object,
        VOLCANO_GROUP,
        VOLCANO_VERSION,
        ns,
        VOLCANO_PLURAL,
        name,
        {"metadata": {"annotations": annotations}},
        _content_type="application/merge-patch+json",
    )


def delete_job(api: Api, job: dict[str, Any], ns: str) -> None:
    """Delete the Volcano Job (background propagation) and the supporting objects submit recorded in
    its annotation (those already gone are skipped)."""
    name = job["metadata"]["name"]
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
    api.call(
        Op("delete", VOLCANO_PLURAL, VOLCANO_GROUP, ns, name),
        api.custom.delete_namespaced_custom_object,
        VOLCANO_GROUP,
        VOLCANO_VERSION,
        ns,
        VOLCANO_PLURAL,
        name,
        body=body,
    )
    refs = json.loads((job["metadata"].get("annotations") or {}).get(ANNOTATION_SUPPORTING_OBJECTS) or "[]")
    for ref in refs:
        obj = {
            "apiVersion": ref["apiVersion"],
            "kind": ref["kind"],
            "metadata": {"name": ref["name"], "namespace": ref.get("namespace") or ns},
        }
        group, plural, _ = kind_info(obj)
        op = Op("delete", plural, group, obj["metadata"]["namespace"], ref["name"])
        try:
            api.call(op, object_calls(api, obj).delete, body=body)
        except ResourceNotFoundError:
            log.debug("%s %s was already gone", ref["kind"], ref["name"])
    log.debug("deleted job %s/%s and %d supporting object(s)", ns, name, len(refs))
