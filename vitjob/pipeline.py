"""Pipelines: train → eval → export → infer310 as a chain of stage jobs, driven by a reconcile loop.

``vitjob submit … --then eval,export,infer310`` stores a pipeline (every stage's rendered objects,
with the progress recorded beside them) and starts its first stage. From then on the pipeline
advances by itself through ``reconcile``, run either by the in-cluster controller
(``vitjob.controller``) or by ``vitjob pipeline run NAME --wait``; both are the same code.

The design follows an operator's discipline:

- ``reconcile(observed)`` is a pure function of what the backend shows now (the stored pipeline
  record plus the stage jobs that exist) and returns the actions to take. No memory carries over
  between calls, so a restart at any moment neither duplicates nor skips a stage.
- Stage S of pipeline NAME is always the job ``NAME-S``: an existing job counts as created (the
  backend answers "already exists" and that is success), so two runners racing cannot create two.
- Progress is recorded on the pipeline (``StageState`` per stage, the pipeline's phase and reason),
  one write per cycle. A stage recorded as created whose job is gone was deleted behind the
  pipeline's back: the pipeline is marked Failed and says so; the job is never recreated silently.
- A Completed stage creates the next one; a Failed/Aborted/Terminated stage marks the pipeline
  Failed with the job's reason and stops; all stages Completed marks it Completed.

Backends take part through the small ``PipelineStore`` protocol below; ``vitjob.backends.pipeline_store``
picks a backend's store (the Kubernetes one, over VitJob resources, is
``vitjob.backends.kubernetes_pipeline``; the local backend implements the protocol itself). This
module imports no backend.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from vitjob import constants as c
from vitjob.errors import (
    AdmissionDeniedError,
    BackendError,
    ConflictError,
    InvalidObjectError,
    SpecError,
    UsageError,
    WaitTimeoutError,
)
from vitjob.jobstatus import JobPhase, JobStatus, PipelinePhase, StageState

if TYPE_CHECKING:
    from vitjob.spec import JobSpec

log = logging.getLogger(__name__)

# Job phases that end a stage unsuccessfully (Aborted: `vitjob cancel`; Volcano could resume it, a
# pipeline does not wait for that).
FAILED_JOB_PHASES = frozenset({JobPhase.FAILED, JobPhase.ABORTED, JobPhase.TERMINATED})
# Errors that retrying cannot fix: the stage is marked Failed with the error's message.
PERMANENT_ERRORS: tuple[type[Exception], ...] = (AdmissionDeniedError, InvalidObjectError, SpecError)


# ------------------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class StageDefinition:
    """One stage of a new pipeline: its job name and rendered objects (supporting objects, Job last)."""

    stage: str
    job_name: str
    manifest: str  # multi-document YAML, as `vitjob render` prints it


@dataclass(frozen=True)
class PipelineDefinition:
    """A pipeline to create: ``name`` (jobs are ``<name>-<stage>``), namespace, stages in order."""

    name: str
    namespace: str
    part_of: str  # the app.kubernetes.io/part-of label of every stage job
    stages: tuple[StageDefinition, ...]
    spec: Mapping[str, Any] = field(default_factory=dict)  # the VitJob spec (``resource_spec``)


@dataclass(frozen=True)
class PipelineRecord:
    """A stored pipeline as a store reads it back.

    Args:
        name: the pipeline name; stage jobs are ``job_names[stage]`` (``<name>-<stage>``).
        namespace: where the pipeline and its jobs live ("" for backends without namespaces).
        part_of: the part-of label the stage jobs carry; a same-named job without it is foreign.
        stages: the stage names in order.
        job_names: stage → job name.
        manifests: stage → rendered objects (multi-document YAML).
        phase, reason: the recorded phase and why (a sentence for Failed/Completed).
        progress: stage → recorded ``StageState`` (absent: not created yet).
        version: opaque token for optimistic concurrency (Kubernetes: the resourceVersion); "" if none.
        uid: the stored object's identity (Kubernetes: metadata.uid; owner of the stage jobs).
        spec: the run's spec values (a VitJob's ``spec``: spec keys plus ``then``); stages without a
            stored manifest are rendered from it (``stage_spec``).
        job_phases: stage → the stage job's phase as last recorded (the status shows it).
        submitting: ``vitjob submit`` is creating the first stage itself; nobody else does meanwhile.
        stored_status: the backend's stored status as read (a store merges its times into writes).
        generation: the spec's generation (Kubernetes: metadata.generation; 0 if none).
    """

    name: str
    namespace: str
    part_of: str
    stages: tuple[str, ...]
    job_names: Mapping[str, str]
    manifests: Mapping[str, str] = field(default_factory=dict, repr=False)
    phase: PipelinePhase = PipelinePhase.PENDING
    reason: str = ""
    progress: Mapping[str, StageState] = field(default_factory=dict)
    version: str = ""
    uid: str = ""
    spec: Mapping[str, Any] = field(default_factory=dict, repr=False)
    job_phases: Mapping[str, str] = field(default_factory=dict)
    submitting: bool = False
    stored_status: Mapping[str, Any] = field(default_factory=dict, repr=False)
    generation: int = 0

    def stage_objects(self, stage: str) -> list[dict[str, Any]]:
        """The objects of ``stage`` (supporting objects first, the Job last): the stored manifest,
        else rendered from ``spec`` by ``vitjob.render`` (raises ``SpecError`` for a bad spec)."""
        if stage not in self.manifests:
            from vitjob.render import render_objects

            return render_objects(stage_spec(self.spec, self.name, self.namespace, stage))
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 20x faster when present
        return [d for d in yaml.load_all(self.manifests[stage], Loader=loader) if d]


@dataclass(frozen=True)
class StageJob:
    """A stage job as observed: its phase, its part-of label and Volcano's reason/message."""

    name: str
    phase: JobPhase
    part_of: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Observed:
    """Everything ``reconcile`` decides from: the pipeline record and the stage jobs that exist."""

    pipeline: PipelineRecord
    jobs: Mapping[str, StageJob]  # stage → job; a stage without a job is absent


# ------------------------------------------------------------------------------------------ actions
@dataclass(frozen=True)
class CreateStage:
    """Create the stored objects of ``stage``; an existing job of that name counts as created."""

    stage: str
    job_name: str


@dataclass(frozen=True)
class UpdatePipeline:
    """Record progress in one write: stage states to set, and the new phase/reason (None: keep)."""

    stages: Mapping[str, StageState] = field(default_factory=dict)
    phase: PipelinePhase | None = None
    reason: str | None = None
    job_phases: Mapping[str, str] = field(default_factory=dict)  # stage → its job's phase now


Action = CreateStage | UpdatePipeline


# ---------------------------------------------------------------------------------------- protocol
@runtime_checkable
class PipelineStore(Protocol):
    """What a backend provides so that ``reconcile`` can drive pipelines on it.

    Every method raises ``VitjobError`` subclasses; ``ConflictError`` from ``update_pipeline``
    means "your record is stale: read it again" and is retried by the loop.
    """

    def create_pipeline(self, definition: PipelineDefinition, *, replace: bool = False) -> JobStatus:
        """Store the pipeline (phase Pending), submit its first stage's objects as ``submit`` does,
        then record phase Running and the first stage as Created. Return the first job's status.

        An existing pipeline of that name raises ``ConflictError`` unless ``replace``, which deletes
        it and its stage jobs first. If submitting the first stage fails, the stored pipeline is
        removed again and the error raised.
        """
        ...

    def get_pipeline(self, name: str) -> PipelineRecord:
        """The stored pipeline ``name``; ``PipelineNotFoundError`` if there is none."""
        ...

    def list_stage_jobs(self, pipeline: PipelineRecord) -> dict[str, StageJob]:
        """stage → the job named ``pipeline.job_names[stage]`` for each one that exists now, including
        a same-named job that is not part of the pipeline (its ``part_of`` tells). Absence must be
        authoritative: a job recorded as Created and reported absent is reported as deleted."""
        ...

    def create_stage(self, pipeline: PipelineRecord, stage: str) -> None:
        """Create ``pipeline.stage_objects(stage)``. If a job of that name already exists, return
        normally (it counts as created). Never creates anything under another name."""
        ...

    def update_pipeline(self, pipeline: PipelineRecord, update: UpdatePipeline) -> PipelineRecord:
        """Apply ``update`` to the stored record in one write, only if it still is at
        ``pipeline.version`` (else ``ConflictError``); return the record as stored afterwards."""
        ...


class JobControl(Protocol):
    """What ``cancel_pipeline`` and ``delete_pipeline`` need of a backend (a ``Backend`` does it)."""

    name: str

    def status(self, name: str) -> JobStatus: ...

    def cancel(self, name: str) -> None: ...

    def delete(self, name: str) -> None: ...


# -------------------------------------------------------------------------------------- definition
def parse_then(text: str, first_stage: str) -> tuple[str, ...]:
    """``--then eval,export`` → the stages after ``first_stage``, checked for order and names."""
    later = tuple(s.strip() for s in text.split(",") if s.strip())
    order = {stage: i for i, stage in enumerate(c.STAGES)}
    unknown = [s for s in later if s not in order]
    if unknown or not later:
        raise UsageError(
            f"--then {text!r}: expected stages from {', '.join(c.STAGES[1:])} separated by commas, "
            f"e.g. --then eval,export,infer310" + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    if not in_order((first_stage, *later)):
        raise UsageError(
            f"--then {text!r}: stages must follow --stage {first_stage} in the order "
            f"{' → '.join(c.STAGES)}, each once (e.g. --then eval,export,infer310)"
        )
    return later


def in_order(stages: Sequence[str]) -> bool:
    """Whether ``stages`` follow train → eval → export → infer310, each once (unknown ones: no)."""
    order = {stage: i for i, stage in enumerate(c.STAGES)}
    if any(s not in order for s in stages):
        return False
    return all(order[a] < order[b] for a, b in itertools.pairwise(stages))


def define_pipeline(spec: JobSpec, then: Sequence[str]) -> PipelineDefinition:
    """Render ``spec`` (the first stage) and one job per stage of ``then`` from the same spec."""
    import dataclasses

    from vitjob.render import render_yaml

    stages = []
    for stage in (spec.stage, *then):
        stage_spec = dataclasses.replace(spec, stage=stage)  # re-validates
        stages.append(StageDefinition(stage, stage_spec.job_name, render_yaml(stage_spec)))
    return PipelineDefinition(
        spec.name, spec.namespace, spec.pipeline_name, tuple(stages), resource_spec(spec, then)
    )


def resource_spec(spec: JobSpec, then: Sequence[str]) -> dict[str, Any]:
    """The VitJob ``spec`` of a run: every spec key but name and namespace, plus ``then``."""
    import dataclasses

    from vitjob.spec import METADATA_KEYS

    values = {k: v for k, v in dataclasses.asdict(spec).items() if k not in METADATA_KEYS}
    values["then"] = list(then)
    return values


def stages_of(values: Mapping[str, Any]) -> tuple[str, ...]:
    """A VitJob spec's stages in order: its ``stage`` (default train), then its ``then``."""
    return (str(values.get("stage") or c.STAGES[0]), *(str(s) for s in values.get("then") or ()))


def stage_spec(values: Mapping[str, Any], name: str, namespace: str, stage: str) -> JobSpec:
    """The ``JobSpec`` of ``stage`` of the run ``name`` whose VitJob spec is ``values``.

    Raises:
        SpecError: the values do not make a valid job (every problem listed).
    """
    from vitjob.spec import METADATA_KEYS, SPEC_KEYS, JobSpec, spec_error

    unknown = sorted(set(values) - set(SPEC_KEYS) - {"then"})
    if unknown:
        raise spec_error([f"unknown key {k!r}" for k in unknown])
    stages = stages_of(values)
    if not in_order(stages):
        raise spec_error(
            [f"then: stages {' → '.join(stages)} must follow the order {' → '.join(c.STAGES)}, each once"]
        )
    fields = {k: v for k, v in values.items() if k not in ("then", "stage", *METADATA_KEYS)}
    return JobSpec(**fields, name=name, namespace=namespace, stage=stage)


# --------------------------------------------------------------------------------------- reconcile
def reconcile(observed: Observed) -> list[Action]:
    """The actions that move the pipeline one step on, from the observed state alone (pure).

    Besides stage states and the phase, the update records each stage job's phase when it differs
    from the recorded one (Pending when none is), so the stored status follows the jobs.
    """
    record = observed.pipeline
    if record.phase.is_terminal:
        return []
    recorded: dict[str, StageState] = {}
    seen: dict[str, str] = {}
    phase = None
    if record.phase == PipelinePhase.PENDING:
        if record.stages[0] not in observed.jobs and record.submitting:
            return []  # submit is still creating the first stage (or gave up and removes the record)
        phase = PipelinePhase.RUNNING
    for stage in record.stages:
        job = observed.jobs.get(stage)
        # a job's phase is Pending until recorded otherwise: a new job costs no write of its own
        if job is not None and record.job_phases.get(stage, str(JobPhase.PENDING)) != str(job.phase):
            seen[stage] = str(job.phase)
        state = recorded.get(stage) or record.progress.get(stage)
        if state == StageState.COMPLETED:
            continue
        job_name = record.job_names[stage]
        if job is None:
            if state is not None:
                return [_fail(recorded, stage, _deleted_reason(record, stage), seen)]
            update = UpdatePipeline(recorded | {stage: StageState.CREATED}, phase, job_phases=seen)
            return [CreateStage(stage, job_name), update]
        if job.part_of != record.part_of:
            seen.pop(stage, None)  # not our job: its phase is not the stage's
            return [_fail(recorded, stage, _foreign_reason(record, stage, job), seen)]
        if job.phase == JobPhase.COMPLETED:
            recorded[stage] = StageState.COMPLETED
            continue
        if job.phase in FAILED_JOB_PHASES:
            return [_fail(recorded, stage, _failed_reason(record, stage, job), seen)]
        if state is None:
            recorded[stage] = StageState.CREATED
        return [UpdatePipeline(recorded, phase, job_phases=seen)] if recorded or phase or seen else []
    reason = f"all {len(record.stages)} stages completed ({', '.join(record.stages)})"
    return [UpdatePipeline(recorded, PipelinePhase.COMPLETED, reason, job_phases=seen)]


def _fail(recorded: dict[str, StageState], stage: str, reason: str, seen: dict[str, str]) -> UpdatePipeline:
    return UpdatePipeline(recorded | {stage: StageState.FAILED}, PipelinePhase.FAILED, reason, seen)


def _failed_reason(record: PipelineRecord, stage: str, job: StageJob) -> str:
    why = f" ({job.reason})" if job.reason else ""
    return (
        f"stage {stage} failed: job {job.name} ended {job.phase}{why}; later stages were not started. "
        f"`vitjob status {job.name}` shows why"
    )


def _deleted_reason(record: PipelineRecord, stage: str) -> str:
    job = record.job_names[stage]
    return (
        f"stage {stage}: job {job} was deleted while the pipeline was running (by hand, or by its "
        f"ttlSecondsAfterFinished before the pipeline saw it end); vitjob does not recreate it. "
        f"Start over with `vitjob submit … --then … --replace`"
    )


def _foreign_reason(record: PipelineRecord, stage: str, job: StageJob) -> str:
    owner = f"pipeline {job.part_of}" if job.part_of else "no vitjob pipeline"
    return (
        f"stage {stage}: job {job.name} exists but belongs to {owner}, not {record.part_of}; "
        f"delete it (`vitjob delete {job.name}`) or submit the pipeline under another --name"
    )


# ------------------------------------------------------------------------------------------- apply
def apply(store: PipelineStore, record: PipelineRecord, actions: Sequence[Action]) -> PipelineRecord:
    """Carry out ``actions`` in order; stop at the first error (the next cycle starts over).

    A ``CreateStage`` that fails with a permanent error (the cluster refused the object) marks the
    stage and the pipeline Failed with the error's message instead of raising.
    """
    for action in actions:
        if isinstance(action, CreateStage):
            try:
                store.create_stage(record, action.stage)
            except PERMANENT_ERRORS as exc:
                reason = f"stage {action.stage}: job {action.job_name} could not be created: {exc}"
                log.error("pipeline %s: %s", record.name, reason)
                update = UpdatePipeline({action.stage: StageState.FAILED}, PipelinePhase.FAILED, reason)
                return store.update_pipeline(record, update)
            log.info("pipeline %s: created stage %s (job %s)", record.name, action.stage, action.job_name)
        else:
            record = store.update_pipeline(record, action)
            if action.phase is not None:
                log.info("pipeline %s: %s %s", record.name, action.phase, action.reason or "")
    return record


def observe(store: PipelineStore, name: str, *, finished_too: bool = False) -> Observed:
    """The pipeline and its stage jobs as they are now; a finished pipeline's jobs are read only with
    ``finished_too`` (to show them: reconcile needs none)."""
    record = store.get_pipeline(name)
    jobs = store.list_stage_jobs(record) if finished_too or not record.phase.is_terminal else {}
    return Observed(record, jobs)


def step(store: PipelineStore, name: str) -> PipelineRecord:
    """One observe → reconcile → apply cycle; a stale record (``ConflictError``) is read again."""
    observed = observe(store, name)
    actions = reconcile(observed)
    if not actions:
        return observed.pipeline
    try:
        return apply(store, observed.pipeline, actions)
    except ConflictError as exc:
        log.debug("pipeline %s changed meanwhile (%s); observing again", name, exc)
        return store.get_pipeline(name)


def run_pipeline(
    store: PipelineStore,
    name: str,
    *,
    wait: bool = True,
    poll_s: float = c.DEFAULT_PIPELINE_POLL_S,
    timeout_s: float | None = None,
    on_step: Callable[[PipelineRecord], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> PipelineRecord:
    """Reconcile ``name`` until it ends (``wait``) or once; return the last record.

    Raises:
        WaitTimeoutError: still running after ``timeout_s``; the pipeline itself goes on.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        record = step(store, name)
        if on_step is not None:
            on_step(record)
        if record.phase.is_terminal or not wait:
            return record
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeoutError(
                f"pipeline {name!r} is still {record.phase} after {timeout_s:g}s; it goes on where a "
                f"controller runs it: `vitjob pipeline status {name}` shows it, "
                f"`vitjob pipeline run {name} --wait` continues"
            )
        sleep(poll_s)


# --------------------------------------------------------------------------------- cancel and delete
CANCELLED_REASON = "cancelled with `vitjob pipeline cancel`; later stages will not start"


@runtime_checkable
class RemovablePipelineStore(PipelineStore, Protocol):
    """A ``PipelineStore`` that can also remove a stored pipeline (``vitjob pipeline delete``)."""

    def delete_pipeline(self, pipeline: PipelineRecord) -> None:
        """Remove the stored record of ``pipeline`` (not its jobs); absent already is fine."""
        ...


def cancel_pipeline(store: PipelineStore, backend: JobControl, name: str, attempts: int = 5) -> list[str]:
    """Stop pipeline ``name``: record it Failed (cancelled) so that no further stage starts, then abort
    every stage job of it that is still running. Returns the names of the jobs asked to abort.

    The record is written first, so a controller that races with this cannot start another stage
    afterwards; a stage it started just before is in the job list read afterwards and is aborted too.
    """
    for _ in range(attempts):
        record = store.get_pipeline(name)
        if record.phase.is_terminal:
            break
        try:
            record = store.update_pipeline(
                record, UpdatePipeline(phase=PipelinePhase.FAILED, reason=CANCELLED_REASON)
            )
            break
        except ConflictError as exc:
            log.debug("pipeline %s changed while cancelling it (%s); reading it again", name, exc)
    else:
        raise ConflictError(f"pipeline {name!r} kept changing while it was being cancelled; run it again")
    aborted = []
    for job in store.list_stage_jobs(record).values():
        if job.part_of != record.part_of or job.phase.is_terminal:
            continue
        try:
            backend.cancel(job.name)
        except BackendError:
            if not backend.status(job.name).phase.is_terminal:
                raise
            log.debug("job %s ended before it could be aborted", job.name)
            continue
        aborted.append(job.name)
    return aborted


def delete_pipeline(store: PipelineStore, backend: JobControl, name: str) -> list[str]:
    """Cancel pipeline ``name``, delete each of its stage jobs (with what submit created for them),
    then its stored record. Returns the names of the deleted jobs. Jobs that only share a stage
    job's name (another pipeline's, or none) are left alone."""
    if not isinstance(store, RemovablePipelineStore):
        raise BackendError(
            f"the {backend.name} backend cannot delete pipelines; delete their jobs with `vitjob delete`"
        )
    cancel_pipeline(store, backend, name)
    record = store.get_pipeline(name)
    deleted = []
    for job in store.list_stage_jobs(record).values():
        if job.part_of == record.part_of:
            backend.delete(job.name)
            deleted.append(job.name)
    store.delete_pipeline(record)
    return deleted


# ------------------------------------------------------------------------------------------ display
def stage_rows(observed: Observed) -> list[list[str]]:
    """STAGE, JOB, PHASE rows: the job's live phase, else what the pipeline recorded, else ``-``."""
    record = observed.pipeline
    rows = []
    for stage in record.stages:
        job = observed.jobs.get(stage)
        recorded = record.progress.get(stage)
        if job is not None:
            phase = str(job.phase)
        elif recorded is not None:
            phase = f"{recorded} (job gone)"
        else:
            phase = "not started"
        rows.append([stage, record.job_names[stage], phase])
    return rows


def pipeline_dict(observed: Observed) -> dict[str, Any]:
    """A JSON-able view of the pipeline for ``--output json/yaml``."""
    record = observed.pipeline
    return {
        "name": record.name,
        "namespace": record.namespace,
        "phase": str(record.phase),
        "reason": record.reason,
        "stages": [
            {"stage": stage, "job": job, "phase": phase} for stage, job, phase in stage_rows(observed)
        ],
    }


def encode_stages(stages: Sequence[str]) -> str:
    return json.dumps(list(stages))
