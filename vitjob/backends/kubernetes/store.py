"""Pipelines on Kubernetes: the ``vitjob.pipeline.model.PipelineStore`` protocol over VitJob resources.

A pipeline NAME is the ``VitJob`` NAME (``vitjob.io/v1alpha1``, rendered from
``manifests/vitjob.yaml.j2``; its CRD is ``charts/vitjob/crds/``). Its ``spec`` holds the run's spec
values (the keys of a values file plus ``then``); each stage's objects are rendered from it by
``vitjob.render.manifests`` when the stage starts. Progress is written only through the ``status``
subresource, with the resourceVersion read as precondition (a stale write gets 409 and is read
again): phase, reason, the current stage, each stage's job, state, job phase and times, and
conditions; the train stage's progress (``status.progress``) is written on its own
(``record_training``). Stage jobs carry a controller ownerReference to the VitJob, so deleting it
garbage-collects them; every recorded step is also an Event on the VitJob (best effort).

Every request goes through the client layer (``vitjob.kube.client.Api.call``: one error mapping,
retries); a new pipeline's first stage is submitted through the backend (``StageJobSubmitter``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from vitjob import constants as c
from vitjob.api.status import JobPhase, JobStatus, PipelinePhase, StageState
from vitjob.backends.kubernetes.lifecycle import command
from vitjob.backends.kubernetes.status import job_phase
from vitjob.errors import (
    BackendError,
    ConflictError,
    JobNotFoundError,
    PipelineNotFoundError,
    PreflightError,
    ResourceNotFoundError,
    ResourceTypeNotServedError,
    VitjobError,
)
from vitjob.kube.client import Api
from vitjob.kube.errors import Op
from vitjob.kube.kinds import create_object, get_volcano_job, is_volcano_job, list_volcano_jobs
from vitjob.kube.logs import rank0_pod
from vitjob.kube.times import time_text
from vitjob.outputs import parse as parse_outputs
from vitjob.pipeline.define import stage_objects
from vitjob.pipeline.model import (
    PipelineDefinition,
    PipelineRecord,
    StageJob,
    UpdatePipeline,
    job_name,
    stages_of,
)
from vitjob.progress import READING_FIELDS, ProgressReading
from vitjob.render.manifests import render_event, render_vitjob

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
ENDED_STATES = (StageState.COMPLETED, StageState.FAILED)


# ------------------------------------------------------------------------------------ conversions
def record_from_vitjob(obj: Mapping[str, Any]) -> PipelineRecord:
    """Parse a VitJob into a ``PipelineRecord``."""
    meta = obj["metadata"]
    spec = dict(obj.get("spec") or {})
    status = obj.get("status") or {}
    name = meta["name"]
    stages = stages_of(spec)
    progress: dict[str, StageState] = {}
    job_phases: dict[str, str] = {}
    attempts: dict[str, int] = {}
    outputs: dict[str, dict[str, Any]] = {}
    auto_retries: dict[str, int] = {}
    ended_at: dict[str, float] = {}
    history: dict[str, tuple[dict[str, Any], ...]] = {}
    for entry in status.get("stages") or ():
        stage = entry.get("name")
        if stage not in stages:
            continue
        if entry.get("state") in StageState.__members__.values():
            progress[stage] = StageState(entry["state"])
        if entry.get("phase"):
            job_phases[stage] = str(entry["phase"])
        if isinstance(entry.get("attempt"), int) and entry["attempt"] > 1:
            attempts[stage] = entry["attempt"]
        if isinstance(entry.get("outputs"), dict):
            outputs[stage] = dict(entry["outputs"])
        if isinstance(entry.get("autoRetries"), int):
            auto_retries[stage] = entry["autoRetries"]
        ended = _epoch(entry.get("completionTime"))
        if ended is not None:
            ended_at[stage] = ended
        if entry.get("earlierAttempts"):
            history[stage] = tuple(dict(e) for e in entry["earlierAttempts"] if isinstance(e, dict))
    try:
        phase = PipelinePhase(status.get("phase") or PipelinePhase.PENDING)
    except ValueError:
        phase = PipelinePhase.PENDING
    annotations = meta.get("annotations") or {}
    return PipelineRecord(
        name=name,
        namespace=meta.get("namespace", ""),
        part_of=str(spec.get("pipeline") or name),
        stages=stages,
        job_names={stage: job_name(name, stage, attempts.get(stage, 1)) for stage in stages},
        phase=phase,
        reason=str(status.get("reason") or ""),
        progress=progress,
        version=meta.get("resourceVersion", ""),
        uid=meta.get("uid", ""),
        spec=spec,
        job_phases=job_phases,
        submitting=annotations.get(c.ANNOTATION_SUBMITTING) == "true",
        stored_status=status,
        generation=int(meta.get("generation") or 0),
        training=ProgressReading.from_status(status.get("progress")),
        attempts=attempts,
        outputs=outputs,
        retries=int(status.get("retries") or 0),
        auto_retries=auto_retries,
        ended_at=ended_at,
        history=history,
    )


def _epoch(text: Any) -> float | None:
    """A status time (RFC 3339, UTC) as epoch seconds; None when absent or not one."""
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def outputs_from_pods(pods: list[dict[str, Any]], stage: str) -> dict[str, Any]:
    """What a stage job's pods reported (``vitjob.outputs``): the first pod, by name, whose container's
    termination message is an outputs line of ``stage``; {} when none is."""
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        for container in (pod.get("status") or {}).get("containerStatuses") or ():
            message = ((container.get("state") or {}).get("terminated") or {}).get("message") or ""
            found = parse_outputs(message, stage)
            if found is not None:
                return found
    return {}


def stage_job_from_object(job: dict[str, Any]) -> StageJob:
    """The fields of a Volcano Job that ``reconcile`` uses."""
    meta = job["metadata"]
    state = (job.get("status") or {}).get("state") or {}
    reason = ": ".join(x for x in (state.get("reason"), state.get("message")) if x)
    pod, container = rank0_pod(job) or ("", "")
    return StageJob(
        name=meta["name"],
        phase=job_phase(job),
        part_of=(meta.get("labels") or {}).get(c.LABEL_PART_OF, ""),
        reason=reason,
        rank0_pod=pod,
        rank0_container=container,
    )


def status_after(record: PipelineRecord, update: UpdatePipeline, now: str) -> dict[str, Any]:
    """The whole ``status`` once ``update`` is recorded (a merge patch replaces lists whole).

    Times are kept from the stored status: a stage's ``startTime`` is when it was first recorded,
    its ``completionTime`` when it was recorded Completed or Failed. A stage that starts a new attempt
    (``update.attempts``) keeps its current one, as stored, in ``earlierAttempts``.
    """
    progress = {**record.progress, **update.stages}
    job_phases = {**record.job_phases, **update.job_phases}
    outputs = {**record.outputs, **update.outputs}
    auto = {**record.auto_retries, **update.auto_retries}
    for stage in update.attempts:
        progress.pop(stage, None)
        job_phases.pop(stage, None)
        outputs.pop(stage, None)
    phase = update.phase or record.phase
    reason = record.reason if update.reason is None else update.reason
    stored = {e.get("name"): e for e in record.stored_status.get("stages") or () if isinstance(e, dict)}
    entries = []
    for stage in record.stages:
        state = progress.get(stage)
        before = stored.get(stage) or {}
        history = list(before.get("earlierAttempts") or ())
        attempt = record.attempt(stage)
        if stage in update.attempts:
            history.append({k: v for k, v in before.items() if k not in ("name", "earlierAttempts")})
            attempt, before = update.attempts[stage], {}
        if state is None and stage not in job_phases and not history:
            continue
        entry: dict[str, Any] = {
            "name": stage, "job": job_name(record.name, stage, attempt), "attempt": attempt
        }
        if state is not None:
            entry["state"] = str(state)
        if stage in job_phases:
            entry["phase"] = job_phases[stage]
        if state is not None or stage in job_phases:
            entry["startTime"] = before.get("startTime") or now
        if state in ENDED_STATES:
            entry["completionTime"] = before.get("completionTime") or now
        if state == StageState.FAILED and reason:
            entry["reason"] = before.get("reason") or reason
        if stage in outputs:
            entry["outputs"] = dict(outputs[stage])
        if auto.get(stage):
            entry["autoRetries"] = auto[stage]
        if history:
            entry["earlierAttempts"] = history
        entries.append(entry)
    current = next((s for s in record.stages if progress.get(s) != StageState.COMPLETED), record.stages[-1])
    retries = record.retries if update.retries is None else update.retries
    return {
        "phase": str(phase),
        "stage": current,
        "reason": reason,
        "observedGeneration": record.generation,
        "retries": retries,
        "stages": entries,
        "conditions": conditions(record.stored_status.get("conditions") or (), phase, reason, now),
    }


# Condition type → the pipeline phase that makes it True.
CONDITION_PHASES = {
    "Running": PipelinePhase.RUNNING,
    "Completed": PipelinePhase.COMPLETED,
    "Failed": PipelinePhase.FAILED,
    "Suspended": PipelinePhase.SUSPENDED,
}


def conditions(stored: Any, phase: PipelinePhase, reason: str, now: str) -> list[dict[str, Any]]:
    """metav1.Condition entries for ``phase``; a condition keeps its lastTransitionTime while its
    status does not change."""
    before = {x.get("type"): x for x in stored if isinstance(x, dict)}
    out = []
    for kind, when in CONDITION_PHASES.items():
        status = "True" if phase == when else "False"
        old = before.get(kind) or {}
        unchanged = old.get("status") == status
        out.append(
            {
                "type": kind,
                "status": status,
                "reason": str(phase),
                "message": reason if status == "True" else "",
                "lastTransitionTime": (old.get("lastTransitionTime") if unchanged else None) or now,
            }
        )
    return out


def event_for(record: PipelineRecord, update: UpdatePipeline) -> tuple[str, str, str] | None:
    """(type, reason, message) of the Event that tells what ``update`` records; None for a write that
    only follows job phases."""
    if update.phase == PipelinePhase.RUNNING and record.phase == PipelinePhase.FAILED:
        return "Normal", "Retry", update.reason or "retry"
    if update.phase == PipelinePhase.SUSPENDED and record.phase != PipelinePhase.SUSPENDED:
        return "Normal", "Suspended", update.reason or "suspended"
    if update.phase == PipelinePhase.RUNNING and record.phase == PipelinePhase.SUSPENDED:
        return "Normal", "Resumed", update.reason or "resumed"
    if update.attempts:
        return "Normal", "StageRetry", update.reason or "; ".join(update.attempts)
    changes = []
    for stage, state in update.stages.items():
        if record.progress.get(stage) != state:
            changes.append(f"stage {stage} {state} (job {record.job_names[stage]})")
    if update.phase == PipelinePhase.FAILED and record.phase != PipelinePhase.FAILED:
        return "Warning", "Failed", update.reason or "; ".join(changes)
    if update.phase == PipelinePhase.COMPLETED and record.phase != PipelinePhase.COMPLETED:
        return "Normal", "Completed", update.reason or "; ".join(changes)
    if not changes:
        return None
    created = any(s == StageState.CREATED for s in update.stages.values())
    return "Normal", "StageCreated" if created else "StageCompleted", "; ".join(changes)


def owner_reference(record: PipelineRecord) -> dict[str, Any]:
    return {
        "apiVersion": c.VITJOB_API_VERSION,
        "kind": c.VITJOB_KIND,
        "name": record.name,
        "uid": record.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


# ------------------------------------------------------------------------------------------- store
class StageJobSubmitter(Protocol):
    """What creating and replacing a pipeline needs besides the client: submitting its first stage's
    objects with the backend's checks, and deleting old stage jobs (``KubernetesBackend`` does it)."""

    def submit(self, objects: list[dict[str, Any]], *, replace: bool = False) -> JobStatus: ...

    def delete_job(self, job: dict[str, Any], ns: str) -> None: ...

    def wait_gone(self, name: str, ns: str) -> None: ...


class KubernetesPipelineStore:
    """``PipelineStore`` over VitJobs on a cluster, reading fresh state with each call (CLI use).

    Args:
        api: the client (one error mapping, retries).
        namespace: the pipelines' namespace.
        jobs: submits a new pipeline's first stage and deletes replaced stage jobs; without it the
            store drives existing pipelines only (the controller's case) and cannot create one.
        component: the Events' source component.
    """

    def __init__(
        self, api: Api, namespace: str, *, jobs: StageJobSubmitter | None = None, component: str = "vitjob"
    ):
        self.api = api
        self.namespace = namespace
        self.jobs = jobs
        self.component = component

    def _submitter(self) -> StageJobSubmitter:
        if self.jobs is None:
            raise BackendError("this pipeline store drives existing pipelines only; create pipelines "
                               "with `vitjob submit … --then` (vitjob.Client.submit)")
        return self.jobs

    # -------------------------------------------------------------------------------- create
    def create_pipeline(self, definition: PipelineDefinition, *, replace: bool = False) -> JobStatus:
        """Store the VitJob (marked as being submitted), submit its first stage with the backend's
        preflight checks, then record it Running. Without the VitJob CRD on the cluster this fails
        before anything is created, saying how to install it."""
        ns = definition.namespace or self.namespace
        existing = self.read_vitjob(definition.name, ns)
        if existing is not None:
            old = record_from_vitjob(existing)
            if not replace:
                raise ConflictError(
                    f"pipeline {definition.name!r} already exists in namespace {ns!r} ({old.phase}); "
                    f"`vitjob status {definition.name}` shows it, `vitjob submit … --then … --replace` "
                    "deletes it and its stage jobs and starts over, or choose another --name"
                )
            self.delete_with_jobs(old)
        body = render_vitjob(
            name=definition.name,
            namespace=ns,
            part_of=definition.part_of,
            spec=definition.spec,
            submitting=True,
        )
        api = self.api
        op = Op("create", c.VITJOB_PLURAL, c.VITJOB_GROUP, ns, definition.name)
        try:
            created = api.call(
                op, api.custom.create_namespaced_custom_object, *self._coords(ns), body
            )
        except ResourceTypeNotServedError:
            raise self._no_crd(ns) from None
        record = record_from_vitjob(created)
        first = definition.stages[0]
        objects = [self._own(obj, record) for obj in stage_objects(record, first)]
        try:
            status = self._submitter().submit(objects, replace=replace)
        except BaseException:
            self._delete_vitjob(record)
            raise
        self._mark_started(record, first, str(status.phase))
        log.debug("created pipeline %s/%s with stages %s", ns, definition.name, record.stages)
        return status

    def _mark_started(self, created: PipelineRecord, stage: str, job_phase: str) -> None:
        """Pending → Running with ``stage`` Created (its job in ``job_phase``), unless a controller has
        moved it on already."""
        update = UpdatePipeline({stage: StageState.CREATED}, PipelinePhase.RUNNING, "", {stage: job_phase})
        record = created  # the write is conditional on its resourceVersion: a stale one gets 409
        for _ in range(5):
            if record.phase != PipelinePhase.PENDING:
                return
            try:
                self.update_pipeline(record, update)
                return
            except ConflictError:
                log.debug("pipeline %s changed while recording its start; reading it again", created.name)
            obj = self.read_vitjob(created.name, created.namespace)
            if obj is None:
                return
            record = record_from_vitjob(obj)
        log.warning("pipeline %s: could not record its start; its controller will adopt it", created.name)

    def delete_with_jobs(self, record: PipelineRecord) -> None:
        """For --replace: the stage jobs (waiting until they are gone), then the VitJob."""
        for stage in record.stages:
            job = get_volcano_job(self.api, record.namespace, record.job_names[stage])
            if job is not None:
                self._submitter().delete_job(job, record.namespace)
                self._submitter().wait_gone(record.job_names[stage], record.namespace)
        self._delete_vitjob(record)

    def _delete_vitjob(self, record: PipelineRecord) -> None:
        api, ns, name = self.api, record.namespace, record.name
        op = Op("delete", c.VITJOB_PLURAL, c.VITJOB_GROUP, ns, name)
        try:
            api.call(op, api.custom.delete_namespaced_custom_object, *self._coords(ns), name)
        except ResourceNotFoundError:
            log.debug("VitJob %s/%s was already gone", ns, name)

    # ---------------------------------------------------------------------------------- read
    def get_pipeline(self, name: str) -> PipelineRecord:
        ns = self.namespace
        obj = self.read_vitjob(name, ns)
        if obj is None:
            raise PipelineNotFoundError(
                f"pipeline {name!r} not found in namespace {ns!r} (no VitJob {name}; "
                f"`kubectl get vitjobs -n {ns}` lists them); `vitjob submit … --then eval,export,infer310` "
                "creates one, `vitjob list` shows the jobs there"
            )
        return record_from_vitjob(obj)

    def list_stage_jobs(self, pipeline: PipelineRecord) -> dict[str, StageJob]:
        """One LIST by part-of label, plus a GET for the first stage not yet recorded Completed when
        the list lacks it (a same-named job without the label is reported, as foreign)."""
        api, ns = self.api, pipeline.namespace
        listed = list_volcano_jobs(api, ns, f"{c.LABEL_PART_OF}={pipeline.part_of}")
        by_name = {j["metadata"]["name"]: j for j in listed}
        jobs = {}
        for stage in pipeline.stages:
            job = by_name.get(pipeline.job_names[stage])
            if job is None and pipeline.progress.get(stage) != StageState.COMPLETED:
                job = get_volcano_job(self.api, ns, pipeline.job_names[stage])
                if job is None:
                    break  # reconcile looks no further than the first stage without a job
            if job is not None:
                jobs[stage] = self.with_outputs(pipeline, stage, stage_job_from_object(job))
        return jobs

    def with_outputs(self, pipeline: PipelineRecord, stage: str, job: StageJob) -> StageJob:
        """``job`` with what its pods reported, read when it has Completed and the pipeline has not
        recorded that yet (the one moment reconcile records outputs)."""
        if job.phase != JobPhase.COMPLETED or pipeline.progress.get(stage) == StageState.COMPLETED:
            return job
        return dataclasses.replace(job, outputs=self.read_outputs(pipeline.namespace, job.name, stage))

    def read_outputs(self, ns: str, job: str, stage: str) -> dict[str, Any]:
        """The outputs line a stage job's pod left as its termination message ({} when none did)."""
        api = self.api
        pods = api.call(
            Op("list", "pods", "", ns),
            api.core.list_namespaced_pod,
            ns,
            label_selector=f"{c.VOLCANO_JOB_NAME_LABEL}={job}",
        )["items"]
        return outputs_from_pods(pods, stage)

    # --------------------------------------------------------------------------------- write
    def create_stage(self, pipeline: PipelineRecord, stage: str) -> None:
        self.create_stage_objects(pipeline, stage)

    def create_stage_objects(self, pipeline: PipelineRecord, stage: str) -> dict[str, Any] | None:
        """Create the stage's objects (owned by the VitJob); return the created Job, or None when it
        already existed. A spec that does not make a valid job raises ``SpecError``."""
        created_job = None
        for obj in stage_objects(pipeline, stage):
            self._own(obj, pipeline)
            try:
                result = create_object(self.api, obj)
            except ConflictError:
                log.debug("%s %s exists already; counts as created", obj["kind"], obj["metadata"]["name"])
                continue
            if is_volcano_job(obj):
                created_job = result
        return created_job

    def update_pipeline(self, pipeline: PipelineRecord, update: UpdatePipeline) -> PipelineRecord:
        """Write the status (subresource) in one conditional merge patch, then tell it as an Event."""
        ns, name = pipeline.namespace, pipeline.name
        patch = {
            "metadata": {"resourceVersion": pipeline.version} if pipeline.version else {},
            "status": status_after(pipeline, update, time_text()),
        }
        stored = self._patch_status(ns, name, patch)
        event = event_for(pipeline, update)
        if event is not None:
            self.emit(pipeline, *event)
        return record_from_vitjob(stored)

    def record_training(self, pipeline: PipelineRecord, reading: ProgressReading) -> PipelineRecord:
        """Write ``status.progress`` (the train stage's progress) in one merge patch of the status
        subresource; return the record as stored. Only that key changes, so no resourceVersion
        precondition: a concurrent write of the stages cannot be lost. Keys the reading leaves out
        (unknown) are removed."""
        ns, name = pipeline.namespace, pipeline.name
        progress: dict[str, Any] = {key: None for _, _, key in READING_FIELDS}
        patch = {"status": {"progress": progress | reading.to_status()}}
        stored = self._patch_status(ns, name, patch)
        return record_from_vitjob(stored)

    def _patch_status(self, ns: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """One merge patch of the VitJob's status subresource; the object as stored."""
        stored: dict[str, Any] = self.api.call(
            Op("patch", c.VITJOB_PLURAL + "/status", c.VITJOB_GROUP, ns, name),
            self.api.custom.patch_namespaced_custom_object_status,
            *self._coords(ns),
            name,
            patch,
            _content_type=MERGE_PATCH,
        )
        return stored

    def command_stage(self, pipeline: PipelineRecord, stage: str, action: str) -> None:
        """A Volcano bus Command (AbortJob, ResumeJob) on ``stage``'s job (``spec.suspend``)."""
        ns = pipeline.namespace
        job = get_volcano_job(self.api, ns, pipeline.job_names[stage])
        if job is None:
            raise JobNotFoundError(f"stage {stage}: job {pipeline.job_names[stage]} not found in {ns}")
        reason = "vitjob suspend" if action == "AbortJob" else "vitjob resume"
        message = f"pipeline {pipeline.name}: spec.suspend is {str(action == 'AbortJob').lower()}"
        command(self.api, job, action, reason, message)

    def update_spec(self, pipeline: PipelineRecord, spec: Mapping[str, Any]) -> PipelineRecord:
        """Replace the VitJob's spec (one conditional merge patch of the keys that changed)."""
        api, ns, name = self.api, pipeline.namespace, pipeline.name
        changed: dict[str, Any] = {k: v for k, v in spec.items() if pipeline.spec.get(k) != v}
        changed.update({k: None for k in pipeline.spec if k not in spec})
        patch = {
            "metadata": {"resourceVersion": pipeline.version} if pipeline.version else {},
            "spec": changed,
        }
        stored = api.call(
            Op("patch", c.VITJOB_PLURAL, c.VITJOB_GROUP, ns, name),
            api.custom.patch_namespaced_custom_object,
            *self._coords(ns),
            name,
            patch,
            _content_type=MERGE_PATCH,
        )
        return record_from_vitjob(stored)

    def delete_pipeline(self, pipeline: PipelineRecord) -> None:
        """Delete the VitJob (the jobs it owns are garbage-collected with it)."""
        self._delete_vitjob(pipeline)

    def emit(self, record: PipelineRecord, kind: str, reason: str, message: str) -> None:
        """Record an Event on the VitJob; a failure is logged, never raised (as client-go does)."""
        ns, now = record.namespace, time_text()
        body = render_event(
            namespace=ns,
            involved={
                "apiVersion": c.VITJOB_API_VERSION,
                "kind": c.VITJOB_KIND,
                "name": record.name,
                "namespace": ns,
                "uid": record.uid,
            },
            kind=kind,
            reason=reason,
            message=message,
            component=self.component,
            now=now,
        )
        api = self.api
        try:
            api.call(Op("create", "events", "", ns), api.core.create_namespaced_event, ns, body)
        except VitjobError as exc:
            log.debug("could not record event %s on VitJob %s/%s: %s", reason, ns, record.name, exc)

    # ------------------------------------------------------------------------------- helpers
    def read_vitjob(self, name: str, ns: str) -> dict[str, Any] | None:
        api = self.api
        op = Op("get", c.VITJOB_PLURAL, c.VITJOB_GROUP, ns, name)
        try:
            found: dict[str, Any] = api.call(
                op, api.custom.get_namespaced_custom_object, *self._coords(ns), name
            )
            return found
        except ResourceTypeNotServedError:
            raise self._no_crd(ns) from None
        except ResourceNotFoundError:
            return None

    def _coords(self, ns: str) -> tuple[str, str, str, str]:
        return c.VITJOB_GROUP, c.VITJOB_VERSION, ns, c.VITJOB_PLURAL

    def _no_crd(self, ns: str) -> PreflightError:
        return PreflightError(
            f"this cluster does not serve VitJobs ({c.VITJOB_CRD_NAME}), which pipelines need: install "
            "the CRD with `vitjob controller --render | kubectl apply -f -` or `helm install` of "
            "charts/vitjob; single jobs (`vitjob submit` without --then) need no CRD"
        )

    def _own(self, obj: dict[str, Any], record: PipelineRecord) -> dict[str, Any]:
        """Make ``obj`` (freshly rendered or parsed: nobody else holds it) the VitJob's, in place."""
        meta = obj.setdefault("metadata", {})
        meta["namespace"] = record.namespace
        meta["ownerReferences"] = [owner_reference(record)]
        return obj
