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


def job_name(pipeline: str, stage: str) -> str:
    """Stage ``stage`` of pipeline ``pipeline`` is always the job ``<pipeline>-<stage>``."""
    return f"{pipeline}-{stage}"


def stages_of(values: Mapping[str, Any]) -> tuple[str, ...]:
    """A VitJob spec's stages in order: its ``stage`` (default train), then its ``then``."""
    return (str(values.get("stage") or c.STAGES[0]), *(str(s) for s in values.get("then") or ()))


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


@dataclass(frozen=True)
class StageJob:
    """A stage job as observed: its phase, its part-of label and Volcano's reason/message, and where
    rank 0 writes its log (pod and container; "" when unknown)."""

    name: str
    phase: JobPhase
    part_of: str = ""
    reason: str = ""
    rank0_pod: str = ""
    rank0_container: str = ""


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
        """Create the objects of ``stage``, rendered from ``pipeline.spec`` now
        (``vitjob.pipeline.define.stage_objects``). If a job of that name already exists, return
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


@runtime_checkable
class RemovablePipelineStore(PipelineStore, Protocol):
    """A ``PipelineStore`` that can also remove a stored pipeline (``vitjob pipeline delete``)."""

    def delete_pipeline(self, pipeline: PipelineRecord) -> None:
        """Remove the stored record of ``pipeline`` (not its jobs); absent already is fine."""
        ...
