"""Job-state records: a Volcano job's phase, its pods and what a backend reports about it; a
pipeline's phase and what it recorded of each stage (``vitjob.pipeline``, the VitJob status).

Core types (no backend imports them the other way round): backends return them, the pipeline logic
and the CLI read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from vitjob.progress import ProgressReading


class JobPhase(StrEnum):
    """Volcano job phases (``status.state.phase``) plus ``Unknown``."""

    PENDING = "Pending"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    COMPLETING = "Completing"
    COMPLETED = "Completed"
    ABORTING = "Aborting"
    ABORTED = "Aborted"
    TERMINATING = "Terminating"
    TERMINATED = "Terminated"
    FAILED = "Failed"
    UNKNOWN = "Unknown"

    @property
    def is_terminal(self) -> bool:
        return self in (JobPhase.COMPLETED, JobPhase.ABORTED, JobPhase.TERMINATED, JobPhase.FAILED)


@dataclass
class PodStatus:
    name: str
    phase: str
    node: str = ""
    restarts: int = 0
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    rank: int | None = None  # the pod's index in its task (Volcano's volcano.sh/task-index)
    task: str = ""


@dataclass
class JobStatus:
    name: str
    namespace: str
    phase: JobPhase
    retry_count: int = 0
    stage: str = ""
    hw: str = ""
    cards: int = 0
    age_s: float = 0.0
    pods: list[PodStatus] = field(default_factory=list)
    # Human-readable explanations: why Pending, why Failed (scheduling events, termination messages…)
    reasons: list[str] = field(default_factory=list)
    # A Pending job's raw scheduler notes (PodGroup phase and conditions, events), before folding
    scheduler_notes: list[str] = field(default_factory=list)
    queue: str = ""
    # Volcano's status.taskStatusCount: task name → {pod phase: count}
    tasks: dict[str, dict[str, int]] = field(default_factory=dict)
    # Things the user should know that did not stop the action (e.g. preflight capacity warnings)
    warnings: list[str] = field(default_factory=list)
    # A running train stage: the last progress line of rank 0 (``vitjob.progress``) and when it was
    # read; None otherwise
    progress: ProgressReading | None = None
    # A train job with publish_checkpoints: rank 0's pod's vitjob.io/last-checkpoint (step, epoch, time)
    last_checkpoint: dict[str, Any] | None = None


class PipelinePhase(StrEnum):
    """Where a pipeline stands. ``Pending``: submit stored it and is creating the first stage.
    ``Suspended``: ``spec.suspend`` stopped its running stage's job (no pods); not an end."""

    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    SUSPENDED = "Suspended"

    @property
    def is_terminal(self) -> bool:
        return self in (PipelinePhase.COMPLETED, PipelinePhase.FAILED)


class StageState(StrEnum):
    """What the pipeline recorded about a stage: its job was created, Completed, or Failed."""

    CREATED = "Created"
    COMPLETED = "Completed"
    FAILED = "Failed"
