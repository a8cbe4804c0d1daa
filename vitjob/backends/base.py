"""The interface every backend implements, and the job-state records they return.

A backend takes the objects ``vitjob render`` produces (parsed manifests, supporting objects first,
the Volcano Job last) and runs them. The CLI only talks to this interface, so ``vitjob status``,
``logs``, ``wait``… behave the same on the local backend and on a cluster.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from vitjob.progress import TrainProgress


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
    queue: str = ""
    # Volcano's status.taskStatusCount: task name → {pod phase: count}
    tasks: dict[str, dict[str, int]] = field(default_factory=dict)
    # Things the user should know that did not stop the action (e.g. preflight capacity warnings)
    warnings: list[str] = field(default_factory=list)
    # A running train stage: the last progress line of rank 0 (``vitjob.progress``); None otherwise
    progress: TrainProgress | None = None


class Backend(ABC):
    """Runs and observes vitjob jobs. Every method raises ``VitjobError`` subclasses on failure."""

    name: str

    @abstractmethod
    def submit(self, objects: list[dict], *, replace: bool = False) -> JobStatus:
        """Create the objects (Volcano Job last) and return the job's status after submission."""

    @abstractmethod
    def status(self, name: str) -> JobStatus: ...

    @abstractmethod
    def logs(
        self,
        name: str,
        *,
        follow: bool = False,
        rank: int | None = None,
        pod: str | None = None,
        previous: bool = False,
        tail: int | None = None,
        since_s: int | None = None,
    ) -> Iterator[str]:
        """Yield log lines of the job's pods, each prefixed with its pod/rank."""

    @abstractmethod
    def wait(self, name: str, timeout_s: float | None = None) -> JobStatus:
        """Block until the job reaches a terminal phase; raise ``WaitTimeoutError`` on timeout."""

    @abstractmethod
    def cancel(self, name: str) -> None: ...

    @abstractmethod
    def delete(self, name: str) -> None: ...

    @abstractmethod
    def list_jobs(self, all_namespaces: bool = False) -> list[JobStatus]: ...
