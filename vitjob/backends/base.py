"""The interface every backend implements (the job-state records it returns are ``vitjob.jobstatus``).

A backend takes the objects ``vitjob render`` produces (parsed manifests, supporting objects first,
the Volcano Job last) and runs them. The CLI only talks to this interface, so ``vitjob status``,
``logs``, ``wait``… behave the same on the local backend and on a cluster.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

from vitjob.jobstatus import JobPhase, JobStatus, PodStatus

__all__ = ["Backend", "JobPhase", "JobStatus", "PodStatus"]


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
