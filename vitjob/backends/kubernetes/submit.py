"""Submitting a job's objects to a cluster: the plan, and its execution.

``plan`` lists the checks and requests of a submission without making one (what ``--dry-run``
prints; a pipeline's plan names its VitJob too). ``create_job`` carries a job's part out: the
``preflight`` checks, validation against the cluster's Volcano Job CRD, ``--replace`` (delete the old
job, then ``wait_gone``), the supporting objects (created, or updated when an earlier submission left
them), then the Volcano Job last, annotated with what was created beside it (``vitjob delete``
removes those too). ``next_steps`` are the commands the CLI suggests after a submission.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from vitjob.api.status import JobStatus
from vitjob.backends.base import SubmitPlan
from vitjob.backends.kubernetes.lifecycle import delete_job
from vitjob.backends.kubernetes.preflight import check_cluster, validate, volcano_crd
from vitjob.backends.kubernetes.reads import job_pods
from vitjob.backends.kubernetes.status import age_s, job_phase, job_status
from vitjob.constants import (
    ANNOTATION_SUPPORTING_OBJECTS,
    APP_NAME,
    LABEL_MANAGED_BY,
    VITJOB_CRD_NAME,
    VITJOB_KIND,
    VOLCANO_CRD_NAME,
    VOLCANO_GROUP,
    VOLCANO_JOB_NAME_LABEL,
    VOLCANO_PLURAL,
    VOLCANO_VERSION,
)
from vitjob.errors import BackendError, ConflictError
from vitjob.kube.client import Api
from vitjob.kube.errors import Op
from vitjob.kube.kinds import get_volcano_job, is_volcano_job, kind_info, object_calls
from vitjob.pipeline.model import PipelineDefinition

log = logging.getLogger(__name__)


def plan(
    backend: str,
    objects: Sequence[dict[str, Any]],
    namespace: str,
    *,
    pipeline: PipelineDefinition | None = None,
    later_objects: Mapping[str, tuple[dict[str, Any], ...]] | None = None,
    replace: bool = False,
) -> SubmitPlan:
    """The checks and requests of submitting ``objects`` (a pipeline's first stage, when given) in
    the objects' namespace, else the pipeline's, else ``namespace`` (``""``: the context's, known once
    connected). No request is made, so a dry run needs no cluster."""
    copied = copy.deepcopy(list(objects))
    job, supporting = split_objects(copied)
    ns = job["metadata"].get("namespace") or (pipeline.namespace if pipeline else "")
    ns = ns or namespace
    name = job["metadata"]["name"]
    where = ns or "the context's namespace"
    checks = [
        f"the cluster serves Volcano Jobs (GET CustomResourceDefinition {VOLCANO_CRD_NAME}); the objects "
        "are validated against that CRD",
        "the cluster's nodes and queues can hold the job (device, CPU and memory requests)",
        f"no job {name} exists in {where}" + (" (--replace deletes it and waits until it is gone)"
                                               if replace else ""),
    ]
    requests = []
    if pipeline is not None:
        checks.insert(0, f"the cluster serves VitJobs ({VITJOB_CRD_NAME}), which pipelines need")
        requests.append(f"create {VITJOB_KIND} {pipeline.name} in {where} (the pipeline: its spec, "
                        f"stages {' → '.join(pipeline.stages)})")
    for obj in [*supporting, job]:
        requests.append(f"create {obj['kind']} {obj['metadata']['name']} in {where}")
    if pipeline is not None:
        requests.append(f"patch {VITJOB_KIND} {pipeline.name} status: Running, stage "
                        f"{pipeline.stages[0]} Created")
    return SubmitPlan(
        backend=backend,
        job_name=name,
        namespace=ns,
        objects=tuple(copied),
        pipeline=pipeline,
        later_objects=dict(later_objects or {}),
        replace=replace,
        checks=tuple(checks),
        requests=tuple(requests),
    )


def next_steps(status: JobStatus, pipeline: PipelineDefinition | None = None) -> tuple[str, ...]:
    """The commands a user runs next, after submitting a job (or ``pipeline``, whose first stage's job
    is ``status``)."""
    if pipeline is not None:
        name = pipeline.name
        return (
            f"vitjob pipeline run {name} --wait   # advance it from this machine",
            f"vitjob status {name}                # each stage's job and phase",
            f"kubectl get vitjob {name}           # stage and phase (describe: its Events)",
            f"vitjob logs -f {status.name}",
        )
    return (
        f"vitjob status {status.name}      # phase, pods, and why it waits",
        f"vitjob logs -f {status.name}     # follow all pods until the job ends",
        f"vitjob wait {status.name}        # exit 0 when Completed, 1 when it failed",
        f"kubectl logs -n {status.namespace} -l {VOLCANO_JOB_NAME_LABEL}={status.name} -f --prefix",
    )


def create_job(
    api: Api,
    objects: list[dict[str, Any]],
    default_ns: str,
    *,
    replace: bool = False,
    replace_timeout_s: float,
    poll_s: float,
) -> JobStatus:
    """Check the cluster, then create the supporting objects and the Volcano Job (Job last), in the
    objects' namespace or ``default_ns``; the created job's status with the preflight warnings."""
    objects = copy.deepcopy(objects)
    job, supporting = split_objects(objects)
    ns = job["metadata"].get("namespace") or default_ns
    name = job["metadata"]["name"]
    for obj in [*supporting, job]:
        if kind_info(obj)[2]:
            obj["metadata"].setdefault("namespace", ns)
    crd = volcano_crd(api)
    warnings = check_cluster(api, job, ns)
    validate(objects, crd)
    existing = get_volcano_job(api, ns, name)
    if existing is not None and not replace:
        raise ConflictError(
            f"job {name!r} already exists in namespace {ns!r} (phase {job_phase(existing)}, "
            f"{_fmt_age(age_s(existing['metadata']))} old); `vitjob delete {name}` removes it, "
            "`vitjob submit --replace …` deletes and recreates it, or choose another --name"
        )
    if existing is not None:
        log.debug("replacing job %s/%s", ns, name)
        delete_job(api, existing, ns)
        wait_gone(api, name, ns, timeout_s=replace_timeout_s, poll_s=poll_s)
    created_refs = [create_supporting(api, obj) for obj in supporting]
    job["metadata"].setdefault("annotations", {})[ANNOTATION_SUPPORTING_OBJECTS] = json.dumps(created_refs)
    op = Op("create", VOLCANO_PLURAL, VOLCANO_GROUP, ns, name)
    try:
        created = api.call(
            op,
            api.custom.create_namespaced_custom_object,
            VOLCANO_GROUP,
            VOLCANO_VERSION,
            ns,
            VOLCANO_PLURAL,
            job,
        )
    except ConflictError:
        raise ConflictError(
            f"job {name!r} was created in namespace {ns!r} by someone else meanwhile; "
            "use --replace or another --name"
        ) from None
    status = job_status(created)
    status.warnings = warnings
    log.debug("submitted job %s/%s", ns, name)
    return status


def create_supporting(api: Api, obj: dict[str, Any]) -> dict[str, Any]:
    """Create one object beside the Job (or update the one an earlier submission left; ``ConflictError``
    for one vitjob did not create); its reference for the Job's annotation."""
    group, plural, _namespaced = kind_info(obj)
    meta = obj["metadata"]
    ns, name, kind = meta.get("namespace"), meta["name"], obj["kind"]
    ref = {"apiVersion": obj["apiVersion"], "kind": kind, "name": name, "namespace": ns}
    create, replace, read, _ = object_calls(api, obj)
    try:
        api.call(Op("create", plural, group, ns), create, obj)
        return ref
    except ConflictError:
        pass
    current = api.call(Op("get", plural, group, ns, name), read)
    if (current["metadata"].get("labels") or {}).get(LABEL_MANAGED_BY) != APP_NAME:
        raise ConflictError(
            f"{kind} {name!r} already exists in namespace {ns!r} and was not created by "
            "vitjob; rename the job or remove that object"
        ) from None
    obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    api.call(Op("update", plural, group, ns, name), replace, obj)
    log.debug("updated existing %s %s/%s left by an earlier submission", kind, ns, name)
    return ref


def wait_gone(api: Api, name: str, ns: str, *, timeout_s: float, poll_s: float) -> None:
    """After deleting for --replace: wait until the job and its pods are gone (Volcano issue 1241);
    ``BackendError`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = get_volcano_job(api, ns, name)
        if job is None and not job_pods(api, ns, name):
            return
        time.sleep(poll_s)
    raise BackendError(
        f"job {name!r} in namespace {ns!r} was deleted but it or its pods are still there after "
        f"{timeout_s:.0f}s; retry --replace when `kubectl get pods -l "
        f"{VOLCANO_JOB_NAME_LABEL}={name}` shows none"
    )


def split_objects(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The one Volcano Job among ``objects`` and the rest (``BackendError`` unless exactly one; every
    kind must be one ``vitjob.kube.kinds`` knows, checked before anything is created)."""
    jobs = [o for o in objects if is_volcano_job(o)]
    if len(jobs) != 1:
        raise BackendError(
            f"expected exactly one Volcano Job ({VOLCANO_GROUP}/{VOLCANO_VERSION}) among the objects to "
            f"submit, found {len(jobs)}"
        )
    for obj in objects:
        kind_info(obj)  # fail before creating anything
    return jobs[0], [o for o in objects if o is not jobs[0]]


def _fmt_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"
