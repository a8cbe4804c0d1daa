"""The interface every backend implements, and the submit plan it returns (the job-state records it
returns are ``vitjob.api.status``).

A backend takes the objects ``vitjob render`` produces (parsed manifests, supporting objects first,
the Volcano Job last) and runs them. Submitting is two calls: ``plan_submit`` says what submit will
do without touching anything (the objects, the checks it runs first, the requests it makes), which
``--dry-run`` prints; ``execute`` carries that plan out. ``vitjob.client.Client`` and through it the
CLI only talk to this interface, so ``vitjob status``, ``logs``, ``wait``… behave the same on the local
backend and on a cluster.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vitjob.api.status import JobPhase, JobStatus, PodStatus
from vitjob.errors import UsageError
from vitjob.pipeline.model import PipelineDefinition, PipelineRecord, PipelineStore

__all__ = ["Backend", "JobPhase", "JobStatus", "PodStatus", "SubmitPlan", "SubmitResult"]


@dataclass(frozen=True)
class SubmitPlan:
    """What ``submit`` will do, worked out without a request to anything.

    Args:
        backend: the backend's name (``local``, ``kubernetes``).
        job_name: the (first) Volcano Job's name.
        namespace: the job's namespace; "" for the backend's own (the kubeconfig context's).
        objects: what submit creates, in order (supporting objects first, the Volcano Job last); of a
            pipeline, its first stage's.
        pipeline: the pipeline to store (``submit --then``), else None.
        later_objects: stage → the objects of each later stage of a pipeline, rendered from its spec
            for the checks and the dry run (the store renders them again when the stage starts).
        replace: an existing job (pipeline) of that name is deleted first.
        checks: what the backend checks before it creates anything, in order.
        requests: the requests (or local actions) submit makes, in order.
        foreground: submit runs the job (every stage of a pipeline) to its end in this process.
    """

    backend: str
    job_name: str
    namespace: str
    objects: tuple[dict[str, Any], ...]
    pipeline: PipelineDefinition | None = None
    later_objects: Mapping[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)
    replace: bool = False
    checks: tuple[str, ...] = ()
    requests: tuple[str, ...] = ()
    foreground: bool = False

    def documents(self) -> list[dict[str, Any]]:
        """Every object of the plan in order, later stages' too: what ``--dry-run`` prints."""
        return [*self.objects, *(o for objects in self.later_objects.values() for o in objects)]


@dataclass(frozen=True)
class SubmitResult:
    """What ``execute`` did: the (first) job's status after submission (for a ``foreground`` plan,
    after it ended), the pipeline's record when the plan ran one in the foreground, and the commands
    that follow the job from here (``next_steps``: ``command  # what it shows`` lines)."""

    plan: SubmitPlan
    status: JobStatus
    pipeline: PipelineRecord | None = None
    next_steps: tuple[str, ...] = ()


class LocalJobObserver(Protocol):
    """Told what a job run in the foreground does, to show it (``vitjob.cli.console``).

    Every pod's output still goes to its log file, whether or not anything observes it.
    """

    def job_started(self, name: str, stage: str, pods: list[str], log_dir: Path) -> None: ...

    def pod_line(self, name: str, pod: str, line: str) -> None: ...

    def job_finished(self, status: JobStatus, log_dir: Path) -> None: ...


class Backend(ABC):
    """Runs and observes vitjob jobs. Every method raises ``VitjobError`` subclasses on failure."""

    name: str

    @abstractmethod
    def plan_submit(
        self,
        objects: Sequence[dict[str, Any]],
        *,
        pipeline: PipelineDefinition | None = None,
        later_objects: Mapping[str, tuple[dict[str, Any], ...]] | None = None,
        replace: bool = False,
    ) -> SubmitPlan:
        """What submitting ``objects`` (the first stage of ``pipeline``, when given) would do; makes
        no request. Raises ``UsageError``/``BackendError`` for objects it cannot submit at all."""

    @abstractmethod
    def execute(self, plan: SubmitPlan) -> SubmitResult:
        """Carry out ``plan`` (from this backend's ``plan_submit``): run its checks, then create."""

    def submit(self, objects: list[dict[str, Any]], *, replace: bool = False) -> JobStatus:
        """Plan and execute the submission of one job's objects; return the job's status."""
        return self.execute(self.plan_submit(objects, replace=replace)).status

    def pipeline_store(self) -> PipelineStore | None:
        """The store that keeps this backend's pipelines; None when it cannot run pipelines."""
        return None

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

    def suspend(self, name: str) -> None:
        """Stop the running job's pods so that ``resume`` can run it again (no pods left meanwhile)."""
        raise UsageError(f"the {self.name} backend cannot suspend jobs")

    def resume(self, name: str) -> JobStatus:
        """Run a job ``suspend`` stopped again; training continues from its last checkpoint."""
        raise UsageError(f"the {self.name} backend cannot resume jobs")

    def kept_logs(self, name: str, attempt: int, *, pod: str | None = None) -> Iterator[str]:
        """Yield the lines of attempt ``attempt`` (1 = each pod's first run) that the job's pods kept on the
        output volume (``vitjob.keptlogs``), prefixed with the pod; they outlive the pods."""
        raise UsageError(f"the {self.name} backend keeps no logs of earlier attempts")

    @abstractmethod
    def wait(self, name: str, timeout_s: float | None = None) -> JobStatus:
        """Block until the job reaches a terminal phase; raise ``WaitTimeoutError`` on timeout."""

    @abstractmethod
    def cancel(self, name: str) -> None: ...

    @abstractmethod
    def delete(self, name: str) -> None: ...

    @abstractmethod
    def list_jobs(self, all_namespaces: bool = False) -> list[JobStatus]: ...
