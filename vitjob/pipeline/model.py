"""The pipeline's data: the records a store reads and writes, what ``reconcile`` observes, the actions
it returns, and the ``PipelineStore`` protocol a backend implements. Plain frozen dataclasses; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from vitjob import constants as c
from vitjob.api.status import JobPhase, JobStatus, PipelinePhase, StageState
from vitjob.progress import ProgressReading


def job_name(pipeline: str, stage: str, attempt: int = 1) -> str:
    """Attempt 1 of stage ``stage`` of pipeline ``pipeline`` is the job ``<pipeline>-<stage>``; attempt
    n > 1 (``vitjob pipeline retry``, ``stage_retries``) is ``<pipeline>-<stage>-r<n>``."""
    return f"{pipeline}-{stage}" + (f"-r{attempt}" if attempt > 1 else "")


def stages_of(values: Mapping[str, Any]) -> tuple[str, ...]:
    """A VitJob spec's stages in order: its ``stage`` (default train), then its ``then``."""
    return (str(values.get("stage") or c.STAGES[0]), *(str(s) for s in values.get("then") or ()))


# The VitJob spec keys that are about the run as a whole, not about its stage jobs.
RUN_KEYS: tuple[str, ...] = ("then", "gates", "retry", "stage_retries", "stage_retry_backoff_s", "suspend")


def suspend_requested(values: Mapping[str, Any]) -> bool:
    """Whether the spec asks the run to be suspended (``spec.suspend: true``, the Kubernetes convention
    of Jobs and Kubeflow TrainJobs; ``vitjob suspend NAME`` sets it)."""
    return values.get("suspend") is True


def requested_retries(values: Mapping[str, Any]) -> int:
    """How many retries of a failed pipeline its spec asks for (``spec.retry``, a counter: each increase
    by one asks for one retry; ``vitjob pipeline retry`` increases it)."""
    value = values.get("retry") or 0
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# ------------------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class PipelineDefinition:
    """A pipeline to create: ``name`` (its stage jobs are ``<name>-<stage>``), namespace ("" for the
    backend's), the part-of label of every stage job, and the run's VitJob ``spec`` (spec keys plus
    ``then``; ``vitjob.pipeline.define.resource_spec``). No stage is rendered here: a store renders
    each stage from ``spec`` when the stage starts (``vitjob.pipeline.define.stage_objects``)."""

    name: str
    namespace: str
    part_of: str
    spec: Mapping[str, Any] = field(default_factory=dict)

    @property
    def stages(self) -> tuple[str, ...]:
        """The stage names in order: the spec's ``stage`` (default train), then its ``then``."""
        return stages_of(self.spec)

    def job_name(self, stage: str) -> str:
        """The job of ``stage``: ``<name>-<stage>``."""
        return job_name(self.name, stage)


@dataclass(frozen=True)
class PipelineRecord:
    """A stored pipeline as a store reads it back.

    Args:
        name: the pipeline name; stage jobs are ``job_names[stage]`` (``<name>-<stage>``).
        namespace: where the pipeline and its jobs live ("" for backends without namespaces).
        part_of: the part-of label the stage jobs carry; a same-named job without it is foreign.
        stages: the stage names in order.
        job_names: stage → job name.
        phase, reason: the recorded phase and why (a sentence for Failed/Completed).
        progress: stage → recorded ``StageState`` (absent: not created yet).
        version: opaque token for optimistic concurrency (Kubernetes: the resourceVersion); "" if none.
        uid: the stored object's identity (Kubernetes: metadata.uid; owner of the stage jobs).
        spec: the run's spec values (a VitJob's ``spec``: spec keys plus ``then``); every stage is
            rendered from it when it starts (``vitjob.pipeline.define.stage_objects``).
        job_phases: stage → the stage job's phase as last recorded (the status shows it).
        submitting: ``vitjob submit`` is creating the first stage itself; nobody else does meanwhile.
        stored_status: the backend's stored status as read (a store merges its times into writes).
        generation: the spec's generation (Kubernetes: metadata.generation; 0 if none).
        training: the train stage's progress as last recorded (Kubernetes: ``status.progress``, which
            the controller writes); None when none was.
        attempts: stage → the attempt its job is (absent: 1; ``job_names`` follows it).
        outputs: stage → what its current attempt reported it produced (``vitjob.outputs``), recorded
            when it completed ({} when it reported nothing).
        retries: how many retry requests (``spec.retry``) were carried out already.
        auto_retries: stage → automatic retries (``stage_retries``) since its last manual one.
        ended_at: stage → when its current attempt was recorded Completed/Failed (epoch seconds).
        history: stage → its earlier attempts, oldest first, each as stored: ``attempt``, ``job``,
            ``state``, ``phase``, ``reason``, ``startTime``, ``completionTime``, ``outputs``.
    """

    name: str
    namespace: str
    part_of: str
    stages: tuple[str, ...]
    job_names: Mapping[str, str]
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
    training: ProgressReading | None = None
    attempts: Mapping[str, int] = field(default_factory=dict)
    outputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    retries: int = 0
    auto_retries: Mapping[str, int] = field(default_factory=dict)
    ended_at: Mapping[str, float] = field(default_factory=dict)
    history: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)

    def attempt(self, stage: str) -> int:
        """The attempt of ``stage``'s current job (1 unless retried)."""
        return self.attempts.get(stage, 1)


@dataclass(frozen=True)
class StageJob:
    """A stage job as observed: its phase, its part-of label and Volcano's reason/message, for a
    Completed job what it reported it produced (None: not read; {}: it reported nothing), and where
    rank 0 writes its log (pod and container; "" when unknown)."""

    name: str
    phase: JobPhase
    part_of: str = ""
    reason: str = ""
    outputs: Mapping[str, Any] | None = None
    rank0_pod: str = ""
    rank0_container: str = ""


@dataclass(frozen=True)
class Observed:
    """Everything ``reconcile`` decides from: the pipeline record, the stage jobs that exist, and the
    time now (epoch seconds; only automatic retries' backoff reads it)."""

    pipeline: PipelineRecord
    jobs: Mapping[str, StageJob]  # stage → job; a stage without a job is absent
    now: float = 0.0


# ------------------------------------------------------------------------------------------ actions
@dataclass(frozen=True)
class CreateStage:
    """Create the stored objects of ``stage``; an existing job of that name counts as created."""

    stage: str
    job_name: str


@dataclass(frozen=True)
class CommandStage:
    """Send Volcano's ``action`` (``AbortJob``: suspend; ``ResumeJob``: resume) to ``stage``'s job."""

    stage: str
    job_name: str
    action: str


@dataclass(frozen=True)
class UpdatePipeline:
    """Record progress in one write: stage states to set, and the new phase/reason (None: keep)."""

    stages: Mapping[str, StageState] = field(default_factory=dict)
    phase: PipelinePhase | None = None
    reason: str | None = None
    job_phases: Mapping[str, str] = field(default_factory=dict)  # stage → its job's phase now
    outputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # stage → its outputs
    # stage → a new attempt: the stage's current attempt moves to its history, its state is cleared
    attempts: Mapping[str, int] = field(default_factory=dict)
    retries: int | None = None  # retry requests carried out (None: keep)
    auto_retries: Mapping[str, int] = field(default_factory=dict)  # stage → automatic retries so far


Action = CreateStage | CommandStage | UpdatePipeline


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
        """Create the objects of ``stage``, rendered from ``pipeline.spec`` now
        (``vitjob.pipeline.define.stage_objects``). If a job of that name already exists, return
        normally (it counts as created). Never creates anything under another name."""
        ...

    def update_pipeline(self, pipeline: PipelineRecord, update: UpdatePipeline) -> PipelineRecord:
        """Apply ``update`` to the stored record in one write, only if it still is at
        ``pipeline.version`` (else ``ConflictError``); return the record as stored afterwards.
        A stage in ``update.attempts`` starts a new attempt: the store keeps its current one (job,
        state, job phase, reason, times, outputs) in the stage's history and clears them."""
        ...

    def update_spec(self, pipeline: PipelineRecord, spec: Mapping[str, Any]) -> PipelineRecord:
        """Replace the stored spec with ``spec`` (``vitjob pipeline retry``), only if the record still
        is at ``pipeline.version`` (else ``ConflictError``); return the record as stored afterwards."""
        ...

    def command_stage(self, pipeline: PipelineRecord, stage: str, action: str) -> None:
        """Send ``action`` (``AbortJob`` or ``ResumeJob``) to ``stage``'s job (Kubernetes: a Volcano bus
        Command). ``UsageError`` where the store cannot suspend a stage."""
        ...


class JobControl(Protocol):
    """What ``cancel_pipeline`` and ``delete_pipeline`` need of a backend (a ``Backend`` does it)."""

    name: str

    def status(self, name: str) -> JobStatus: ...

    def cancel(self, name: str) -> None: ...

    def delete(self, name: str) -> None: ...


@runtime_checkable
class RemovablePipelineStore(PipelineStore, Protocol):
    """A ``PipelineStore`` that can also remove a stored pipeline (``vitjob pipeline delete``)."""

    def delete_pipeline(self, pipeline: PipelineRecord) -> None:
        """Remove the stored record of ``pipeline`` (not its jobs); absent already is fine."""
        ...
