"""The Kubernetes backend: ``KubernetesBackend``, the ``Backend`` that runs rendered Volcano Jobs on a
cluster through the Kubernetes API.

The class connects (``vitjob.kube.client.connect``, lazily, once) and composes the modules of this
package, each of which takes the ``Api`` and namespace it needs:

- ``submit``: the submit plan (``--dry-run``) and its execution, with ``preflight``'s checks;
- ``why``: why a job waits or failed, from Volcano's records (``vitjob status``);
- ``reads``: the reads the others share (a job's pods, vitjob's jobs, a wait until the job ends);
- ``logs`` and ``keptlogs``: the pods' logs, followed or not, and those kept on the output volume;
- ``lifecycle``: cancel, suspend, resume (Volcano bus Commands) and delete;
- ``status``: Volcano Jobs and pods as status records; ``store``: pipelines as VitJob resources.

It is also what the VitJob store submits a new pipeline's first stage through (``StageJobSubmitter``:
``submit``, ``delete_job``, ``wait_gone``).

``kubernetes`` is imported lazily so ``import vitjob`` stays fast and works without it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vitjob.backends.base import Backend, JobPhase, JobStatus, SubmitPlan, SubmitResult
from vitjob.backends.kubernetes import lifecycle, reads, submit
from vitjob.backends.kubernetes.keptlogs import last_checkpoint, read_kept_logs
from vitjob.backends.kubernetes.logs import job_logs
from vitjob.backends.kubernetes.status import job_status
from vitjob.backends.kubernetes.store import KubernetesPipelineStore
from vitjob.backends.kubernetes.why import explain
from vitjob.kube.client import Api, RetryPolicy, connect
from vitjob.kube.kinds import (
    container_started,
    create_object,
    get_volcano_job,
    kind_info,
    pod_rank,
    read_volcano_job,
)
from vitjob.kube.logs import PROGRESS_TAIL_LINES, FollowOptions, train_progress
from vitjob.kube.watch import StreamHolder, watch_volcano_job
from vitjob.pipeline.model import PipelineDefinition
from vitjob.progress import ProgressReading, TrainProgress

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------- backend
DEFAULT_RETRY = RetryPolicy()
DEFAULT_FOLLOW = FollowOptions()


@dataclass
class _KubeSettings:
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None


class KubernetesBackend(Backend):
    """Runs vitjob jobs as Volcano Jobs through the Kubernetes API."""

    name = "kubernetes"

    def __init__(
        self,
        kubeconfig: str | os.PathLike[str] | None = None,
        context: str | None = None,
        namespace: str | None = None,
        *,
        api_client: Any = None,
        server: str | None = None,
        retry: RetryPolicy | None = None,
        request_timeout_s: float = 30.0,
        follow: FollowOptions | None = None,
        poll_s: float = 0.5,
        replace_timeout_s: float = 120.0,
        **unused: Any,
    ):
        if unused:
            log.debug("kubernetes backend ignores options %s", sorted(unused))
        self.settings = _KubeSettings(str(kubeconfig) if kubeconfig else None, context, namespace)
        self.retry = retry or DEFAULT_RETRY
        self.follow_opts = follow or DEFAULT_FOLLOW
        self.request_timeout_s = request_timeout_s
        self.poll_s = poll_s
        self.replace_timeout_s = replace_timeout_s
        self._api: Api | None = None
        self._given_client = api_client
        self._server = server or ""
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------ configuration
    @property
    def api(self) -> Api:
        with self._lock:
            if self._api is None:
                self._api = self._connect()
            return self._api

    @property
    def namespace(self) -> str:
        _ = self.api
        return self.settings.namespace or "default"

    def _connect(self) -> Api:
        if self._given_client is not None:
            return Api(
                self._given_client,
                self._server or self._given_client.configuration.host,
                self.retry,
                self.request_timeout_s,
            )
        s = self.settings
        api, s.namespace = connect(s.kubeconfig, s.context, s.namespace, self.retry, self.request_timeout_s)
        return api

    def _ns(self, namespace: str | None = None) -> str:
        return namespace or self.namespace

    @property
    def _pause_s(self) -> float:
        """The pause between a watch's reconnects (at most 1 s)."""
        return min(1.0, self.poll_s)

    # --------------------------------------------------------------------------------------- submit
    def plan_submit(
        self,
        objects: Sequence[dict[str, Any]],
        *,
        pipeline: PipelineDefinition | None = None,
        later_objects: Mapping[str, tuple[dict[str, Any], ...]] | None = None,
        replace: bool = False,
    ) -> SubmitPlan:
        """The checks and requests of submitting ``objects`` (a pipeline's first stage, when given);
        no request is made, so a dry run needs no cluster (``submit.plan``)."""
        return submit.plan(self.name, objects, self.settings.namespace or "", pipeline=pipeline,
                           later_objects=later_objects, replace=replace)

    def execute(self, plan: SubmitPlan) -> SubmitResult:
        """Create the plan's job, or store its pipeline and start the first stage (``store``)."""
        if plan.pipeline is not None:
            status = self.pipeline_store().create_pipeline(plan.pipeline, replace=plan.replace)
            return SubmitResult(plan, status, None, submit.next_steps(status, plan.pipeline))
        status = self.create_job(list(plan.objects), replace=plan.replace)
        return SubmitResult(plan, status, None, submit.next_steps(status))

    def pipeline_store(self) -> KubernetesPipelineStore:
        """VitJobs in this backend's namespace; new pipelines' first stages go through this backend."""
        return KubernetesPipelineStore(self.api, self.namespace, jobs=self)

    def create_job(self, objects: list[dict], *, replace: bool = False) -> JobStatus:
        """Check the cluster, then create the supporting objects and the Volcano Job (Job last)."""
        return submit.create_job(self.api, objects, self.namespace, replace=replace,
                                 replace_timeout_s=self.replace_timeout_s, poll_s=self.poll_s)

    def create_object(self, obj: dict) -> dict:
        """Create one object of a kind ``vitjob.kube.kinds.kind_info`` knows (in this backend's namespace
        when it names none); returns the created object. ``ConflictError`` when it exists already."""
        _group, _plural, namespaced = kind_info(obj)
        if namespaced and not obj["metadata"].get("namespace"):
            obj = {**obj, "metadata": {**obj["metadata"], "namespace": self.namespace}}
        return create_object(self.api, obj)

    def get_job_or_none(self, ns: str, name: str) -> dict[str, Any] | None:
        """The Volcano Job ``ns/name``, or None when it does not exist."""
        return get_volcano_job(self.api, ns, name)

    def wait_gone(self, name: str, ns: str) -> None:
        """After deleting for --replace: wait until the job and its pods are gone (Volcano issue 1241);
        ``BackendError`` after ``replace_timeout_s``."""
        submit.wait_gone(self.api, name, ns, timeout_s=self.replace_timeout_s, poll_s=self.poll_s)

    # --------------------------------------------------------------------------------------- status
    def status(self, name: str) -> JobStatus:
        ns = self._ns()
        job = read_volcano_job(self.api, ns, name)
        pods = reads.job_pods(self.api, ns, name)
        st = job_status(job, pods)
        explain(self.api, st, job, pods, ns)
        if st.phase == JobPhase.RUNNING and st.stage == "train":
            rank0 = next((p for p in pods if pod_rank(p) == 0 and container_started(p)), None)
            if rank0 is not None:
                st.progress = ProgressReading.now(self.train_progress(name, ns, job=job))
        st.last_checkpoint = last_checkpoint(pods)
        return st

    def train_progress(
        self,
        name: str,
        namespace: str | None = None,
        *,
        job: dict | None = None,
        tail_lines: int = PROGRESS_TAIL_LINES,
    ) -> TrainProgress | None:
        """The last progress line (``vitjob.progress``) that rank 0 of train job ``name`` wrote
        (``vitjob.kube.logs.train_progress``: one request). Pass the Volcano Job object as ``job`` to
        save reading it first."""
        ns = self._ns(namespace)
        job = job if job is not None else read_volcano_job(self.api, ns, name)
        return train_progress(self.api, job, tail_lines=tail_lines)

    # ---------------------------------------------------------------------------------------- logs
    def kept_logs(self, name: str, attempt: int, *, pod: str | None = None) -> Iterator[str]:
        """Attempt ``attempt`` of the logs job ``name``'s pods kept on the output volume, read by a
        short-lived pod (``vitjob.backends.kubernetes.keptlogs``); works after the pods are gone."""
        job = read_volcano_job(self.api, self._ns(), name)
        yield from read_kept_logs(self.api, job, attempt, pod=pod, poll_s=self.poll_s)

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
        yield from job_logs(self.api, self._ns(), name, follow=follow, rank=rank, pod=pod,
                            previous=previous, tail=tail, since_s=since_s, follow_options=self.follow_opts,
                            pause_s=self._pause_s)

    # ---------------------------------------------------------------------------------- watch, wait
    def watch_job(
        self,
        name: str,
        ns: str,
        stop: threading.Event,
        holder: StreamHolder | None = None,
        deadline: float | None = None,
    ) -> Iterator[dict | None]:
        """The Volcano Job ``ns/name`` each time it changes; None when it was deleted."""
        return watch_volcano_job(self.api, ns, name, stop, holder, deadline,
                                 watch_timeout_s=self.follow_opts.watch_timeout_s, pause_s=self._pause_s)

    def wait(self, name: str, timeout_s: float | None = None) -> JobStatus:
        reads.wait_ended(self.api, self._ns(), name, timeout_s,
                         watch_timeout_s=self.follow_opts.watch_timeout_s, pause_s=self._pause_s)
        return self.status(name)

    # --------------------------------------------------------------------- cancel/suspend/delete/list
    def cancel(self, name: str) -> None:
        lifecycle.cancel(self.api, self._ns(), name)

    def suspend(self, name: str) -> None:
        """Volcano's AbortJob, marked as a suspension (``lifecycle.suspend``)."""
        lifecycle.suspend(self.api, self._ns(), name)

    def resume(self, name: str) -> JobStatus:
        """Volcano's ResumeJob on a suspended job (``lifecycle.resume``); its status after."""
        lifecycle.resume(self.api, self._ns(), name)
        return self.status(name)

    def delete(self, name: str) -> None:
        ns = self._ns()
        self.delete_job(read_volcano_job(self.api, ns, name), ns)

    def delete_job(self, job: dict, ns: str) -> None:
        """Delete the Volcano Job and the supporting objects submit recorded (``lifecycle.delete_job``)."""
        lifecycle.delete_job(self.api, job, ns)

    def list_jobs(self, all_namespaces: bool = False) -> list[JobStatus]:
        items = reads.list_jobs(self.api, None if all_namespaces else self._ns())
        statuses = sorted((job_status(j) for j in items), key=lambda s: (s.namespace, s.name))
        by_key = {(j["metadata"].get("namespace", ""), j["metadata"]["name"]): j for j in items}
        for st in statuses:
            if st.phase == JobPhase.RUNNING and st.stage == "train":
                job = by_key[(st.namespace, st.name)]
                st.progress = ProgressReading.now(self.train_progress(st.name, st.namespace, job=job))
        return statuses
