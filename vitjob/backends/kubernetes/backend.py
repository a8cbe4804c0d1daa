"""The Kubernetes backend: runs rendered Volcano Jobs on a cluster through the Kubernetes API.

Built on the client layer ``vitjob.kube`` (errors, retrying client, kinds, watches, log following),
this module owns what vitjob does with a cluster:
- submit plans (``plan_submit``: the objects, checks and requests, with no request made; what
  ``--dry-run`` prints) and their execution (``execute``: preflight: Volcano installed, namespace and
  queue exist, devices fit; validation against the cluster's own CRD schema; supporting objects then
  the Job; ``replace``; a pipeline through ``store``);
- status with the reasons behind Pending/Failed (PodGroup, events, exit codes, last log lines) and
  training progress; log merging and following; wait, cancel (Volcano ``bus.volcano.sh`` Command
  ``AbortJob``), delete and list;
- operations the VitJob store builds on for new pipelines (``StageJobSubmitter``): ``submit``,
  ``delete_job``, ``wait_gone``. The conversions of Volcano Jobs and pods to status records are
  ``status``; pipelines on the cluster are ``store``.

``kubernetes`` is imported lazily so ``import vitjob`` stays fast and works without it.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vitjob.backends.base import Backend, JobPhase, JobStatus, SubmitPlan, SubmitResult
from vitjob.backends.kubernetes.keptlogs import keeps_logs, last_checkpoint, read_kept_logs
from vitjob.backends.kubernetes.status import age_s, job_phase, job_status
from vitjob.backends.kubernetes.store import KubernetesPipelineStore
from vitjob.constants import (
    APP_NAME,
    LABEL_MANAGED_BY,
    LABEL_PREFIX,
    VITJOB_CRD_NAME,
    VITJOB_KIND,
    VOLCANO_CRD_NAME,
    VOLCANO_GROUP,
    VOLCANO_JOB_NAME_LABEL,
    VOLCANO_PLURAL,
    VOLCANO_SCHEDULING_GROUP,
    VOLCANO_SCHEDULING_VERSION,
    VOLCANO_VERSION,
)
from vitjob.errors import (
    AuthError,
    BackendError,
    ConflictError,
    JobNotFoundError,
    PreflightError,
    ResourceNotFoundError,
    UsageError,
    VitjobError,
    WaitTimeoutError,
)
from vitjob.kube.client import (
    Api,
    RetryPolicy,
    connect,
)
from vitjob.kube.diagnosis import (
    fold_notes,
    image_problem,
    missing_claim_problems,
    oom_note,
    root_causes,
    selector_problem,
)
from vitjob.kube.errors import Op
from vitjob.kube.kinds import (
    container_started,
    container_status,
    create_object,
    get_volcano_job,
    is_volcano_job,
    kind_info,
    object_calls,
    pod_rank,
    quantity,
)
from vitjob.kube.logs import (
    PROGRESS_TAIL_LINES,
    FollowOptions,
    JobFollower,
    log_prefix,
    read_log,
    train_progress,
)
from vitjob.kube.times import time_text
from vitjob.kube.watch import StreamHolder, watch_named
from vitjob.pipeline.model import PipelineDefinition
from vitjob.progress import ProgressReading, TrainProgress
from vitjob.render.manifests import render_volcano_command

log = logging.getLogger(__name__)

# The annotation submit adds to the Job
SUPPORTING_ANNOTATION = LABEL_PREFIX + "supporting-objects"  # JSON list of what submit created beside the Job
SUSPENDED_ANNOTATION = LABEL_PREFIX + "suspended"  # when `vitjob suspend` aborted the job (resume clears it)
# Extended resources that count as accelerators in preflight
DEVICE_PREFIXES = ("huawei.com/", "nvidia.com/")

# Normal events that explain a wait: Volcano's capacity/proportion/overcommit plugins record a waiting
# PodGroup as Normal "Unschedulable"; "Evict" is the scheduler cache's note on a preempted PodGroup.
PENDING_EVENT_REASONS = frozenset({"Unschedulable", "FailedScheduling", "Evict"})
# Normal events that explain an end: the job controller's "ExecuteAction" ("Start to execute action
# RestartJob", "Job failed on action RestartJob for retry limit reached"); it never writes state.reason.
FAILURE_EVENT_REASONS = frozenset({"ExecuteAction", "Evict"})


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

    # ------------------------------------------------------------------------------ small requests
    def _get_job(self, name: str, ns: str) -> dict:
        op = Op("get", VOLCANO_PLURAL, VOLCANO_GROUP, ns, name)
        return self.api.call(
            op,
            self.api.custom.get_namespaced_custom_object,
            VOLCANO_GROUP,
            VOLCANO_VERSION,
            ns,
            VOLCANO_PLURAL,
            name,
        )

    def _job_pods(self, name: str, ns: str, extra_selector: str = "") -> list[dict]:
        selector = f"{VOLCANO_JOB_NAME_LABEL}={name}" + (f",{extra_selector}" if extra_selector else "")
        op = Op("list", "pods", "", ns)
        return self.api.call(op, self.api.core.list_namespaced_pod, ns, label_selector=selector)["items"]

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
        no request is made, so a dry run needs no cluster."""
        copied = copy.deepcopy(list(objects))
        job, supporting = _split_objects(copied)
        # the objects' namespace, else the one this backend was given ("": the context's, known once
        # connected; planning makes no request)
        ns = job["metadata"].get("namespace") or (pipeline.namespace if pipeline else "")
        ns = ns or self.settings.namespace or ""
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
            backend=self.name,
            job_name=name,
            namespace=ns,
            objects=tuple(copied),
            pipeline=pipeline,
            later_objects=dict(later_objects or {}),
            replace=replace,
            checks=tuple(checks),
            requests=tuple(requests),
        )

    def execute(self, plan: SubmitPlan) -> SubmitResult:
        """Create the plan's job, or store its pipeline and start the first stage (``store``)."""
        if plan.pipeline is not None:
            status = self.pipeline_store().create_pipeline(plan.pipeline, replace=plan.replace)
            name = plan.pipeline.name
            steps = (
                f"vitjob pipeline run {name} --wait   # advance it from this machine",
                f"vitjob status {name}                # each stage's job and phase",
                f"kubectl get vitjob {name}           # stage and phase (describe: its Events)",
                f"vitjob logs -f {status.name}",
            )
            return SubmitResult(plan, status, None, steps)
        status = self.create_job(list(plan.objects), replace=plan.replace)
        steps = (
            f"vitjob status {status.name}      # phase, pods, and why it waits",
            f"vitjob logs -f {status.name}     # follow all pods until the job ends",
            f"vitjob wait {status.name}        # exit 0 when Completed, 1 when it failed",
            f"kubectl logs -n {status.namespace} -l {VOLCANO_JOB_NAME_LABEL}={status.name} -f --prefix",
        )
        return SubmitResult(plan, status, None, steps)

    def pipeline_store(self) -> KubernetesPipelineStore:
        """VitJobs in this backend's namespace; new pipelines' first stages go through this backend."""
        return KubernetesPipelineStore(self.api, self.namespace, jobs=self)

    def create_job(self, objects: list[dict], *, replace: bool = False) -> JobStatus:
        """Check the cluster, then create the supporting objects and the Volcano Job (Job last)."""
        objects = copy.deepcopy(objects)
        job, supporting = _split_objects(objects)
        ns = self._ns(job["metadata"].get("namespace"))
        name = job["metadata"]["name"]
        for obj in [*supporting, job]:
            if kind_info(obj)[2]:
                obj["metadata"].setdefault("namespace", ns)
        crd = self._preflight_volcano()
        warnings = self._preflight_cluster(job, ns)
        self._validate(objects, crd)
        existing = self.get_job_or_none(ns, name)
        if existing is not None and not replace:
            raise ConflictError(
                f"job {name!r} already exists in namespace {ns!r} (phase {job_phase(existing)}, "
                f"{_fmt_age(age_s(existing['metadata']))} old); `vitjob delete {name}` removes it, "
                "`vitjob submit --replace …` deletes and recreates it, or choose another --name"
            )
        if existing is not None:
            log.debug("replacing job %s/%s", ns, name)
            self.delete_job(existing, ns)
            self.wait_gone(name, ns)
        created_refs = [self._create_supporting(obj) for obj in supporting]
        job["metadata"].setdefault("annotations", {})[SUPPORTING_ANNOTATION] = json.dumps(created_refs)
        op = Op("create", VOLCANO_PLURAL, VOLCANO_GROUP, ns, name)
        try:
            created = self.api.call(
                op,
                self.api.custom.create_namespaced_custom_object,
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

    def _preflight_volcano(self) -> dict | None:
        """The cluster's Volcano Job CRD (None when we may not read CRDs)."""
        op = Op("get", "customresourcedefinitions", "apiextensions.k8s.io", None, VOLCANO_CRD_NAME)
        try:
            return self.api.call(op, self.api.ext.read_custom_resource_definition, VOLCANO_CRD_NAME)
        except ResourceNotFoundError:
            raise PreflightError(
                f"Volcano is not installed in this cluster: the API server {self.api.server} has no "
                f"CustomResourceDefinition {VOLCANO_CRD_NAME}; install Volcano "
                "(https://volcano.sh/en/docs/installation/) "
                "or run on this machine with --backend local"
            ) from None
        except AuthError as exc:
            log.warning(
                "cannot read the Volcano Job CRD, skipping validation against the cluster's schema: %s", exc
            )
            return None

    def _preflight_cluster(self, job: dict, ns: str) -> list[str]:
        """Namespace and queue must exist; warn (with numbers) when no node can hold the devices."""
        try:
            self.api.call(Op("get", "namespaces", "", None, ns), self.api.core.read_namespace, ns)
        except ResourceNotFoundError:
            raise PreflightError(
                f"namespace {ns!r} does not exist: create it (`kubectl create namespace {ns}`) "
                "or choose another with --namespace"
            ) from None
        except AuthError:
            log.debug("may not read namespace %s; skipping the check", ns)
        queue_name = (job.get("spec") or {}).get("queue") or "default"
        try:
            q = self.api.call(
                Op("get", "queues", VOLCANO_SCHEDULING_GROUP, None, queue_name),
                self.api.custom.get_cluster_custom_object,
                VOLCANO_SCHEDULING_GROUP,
                VOLCANO_SCHEDULING_VERSION,
                "queues",
                queue_name,
            )
        except ResourceNotFoundError:
            raise PreflightError(
                f"Volcano queue {queue_name!r} does not exist: list queues with "
                "`kubectl get queues.scheduling.volcano.sh` and pick one with --queue"
            ) from None
        except AuthError:
            q = None
            log.debug("may not read queue %s; skipping the check", queue_name)
        state = ((q or {}).get("status") or {}).get("state")
        if state and state != "Open":
            raise PreflightError(
                f"Volcano queue {queue_name!r} is {state}: jobs are only accepted by Open queues; "
                "ask the cluster admin to open it or pick another --queue"
            )
        return self._placement_warnings(job, ns) + self._device_warnings(job)

    def _placement_warnings(self, job: dict, ns: str) -> list[str]:
        """Claims the pods mount that do not exist, and no node for their node selector: the job would
        wait Pending (a claim may be created after submitting, so these warn and do not fail)."""
        warnings = []
        claims = self._claim_names(ns)
        if claims is not None:
            warnings += missing_claim_problems(job, claims, ns)
        nodes = self._list_or_none(Op("list", "nodes"), self.api.core.list_node)
        if nodes is not None:
            for task in (job.get("spec") or {}).get("tasks") or []:
                problem = selector_problem((task.get("template") or {}).get("spec") or {}, nodes)
                if problem:
                    warnings.append(problem)
                    break
        return [f"{w} (the job will stay Pending until then)" for w in warnings]

    def _device_warnings(self, job: dict) -> list[str]:
        per_pod, total = _device_requests(job)
        if not total:
            return []
        try:
            nodes = self.api.call(Op("list", "nodes"), self.api.core.list_node)["items"]
        except AuthError:
            log.debug("may not list nodes; skipping the device capacity check")
            return []
        warnings = []
        for resource, want in sorted(total.items()):
            have = [
                quantity(((n.get("status") or {}).get("allocatable") or {}).get(resource, "0"))
                for n in nodes
            ]
            with_dev = [h for h in have if h > 0]
            if not with_dev:
                warnings.append(
                    f"no node advertises {resource} (0 of {len(nodes)} nodes): the job will stay "
                    "Pending until the device plugin reports it on some node"
                )
                continue
            if sum(with_dev) < want:
                warnings.append(
                    f"the job requests {_num(want)} {resource} in total but the cluster's "
                    f"{len(with_dev)} node(s) with it have {_num(sum(with_dev))} allocatable: it will stay "
                    "Pending"
                )
            if per_pod.get(resource, 0) > max(with_dev):
                warnings.append(
                    f"each pod requests {_num(per_pod[resource])} {resource} but the largest node has "
                    f"{_num(max(with_dev))} allocatable: no pod can be scheduled"
                )
        for w in warnings:
            log.debug("preflight: %s", w)
        return warnings

    def _validate(self, objects: list[dict], crd: dict | None) -> None:
        """Check the objects against the cluster's own Volcano Job CRD (raises ``ValidationError``)."""
        if crd is None:
            return
        from vitjob.render.validate import validate_objects

        validate_objects(objects, crd_source=[crd])

    def create_object(self, obj: dict) -> dict:
        """Create one object of a kind ``vitjob.kube.kinds.kind_info`` knows (in this backend's namespace
        when it names none); returns the created object. ``ConflictError`` when it exists already."""
        _group, _plural, namespaced = kind_info(obj)
        if namespaced and not obj["metadata"].get("namespace"):
            obj = {**obj, "metadata": {**obj["metadata"], "namespace": self.namespace}}
        return create_object(self.api, obj)

    def _create_supporting(self, obj: dict) -> dict:
        group, plural, _namespaced = kind_info(obj)
        meta = obj["metadata"]
        ns, name, kind = meta.get("namespace"), meta["name"], obj["kind"]
        ref = {"apiVersion": obj["apiVersion"], "kind": kind, "name": name, "namespace": ns}
        create, replace, read, _ = object_calls(self.api, obj)
        try:
            self.api.call(Op("create", plural, group, ns), create, obj)
            return ref
        except ConflictError:
            pass
        current = self.api.call(Op("get", plural, group, ns, name), read)
        if (current["metadata"].get("labels") or {}).get(LABEL_MANAGED_BY) != APP_NAME:
            raise ConflictError(
                f"{kind} {name!r} already exists in namespace {ns!r} and was not created by "
                "vitjob; rename the job or remove that object"
            ) from None
        obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        self.api.call(Op("update", plural, group, ns, name), replace, obj)
        log.debug("updated existing %s %s/%s left by an earlier submission", kind, ns, name)
        return ref

    def get_job_or_none(self, ns: str, name: str) -> dict[str, Any] | None:
        """The Volcano Job ``ns/name``, or None when it does not exist."""
        return get_volcano_job(self.api, ns, name)

    def wait_gone(self, name: str, ns: str) -> None:
        """After deleting for --replace: wait until the job and its pods are gone (Volcano issue 1241);
        ``BackendError`` after ``replace_timeout_s``."""
        deadline = time.monotonic() + self.replace_timeout_s
        while time.monotonic() < deadline:
            job = self.get_job_or_none(ns, name)
            if job is None and not self._job_pods(name, ns):
                return
            time.sleep(self.poll_s)
        raise BackendError(
            f"job {name!r} in namespace {ns!r} was deleted but it or its pods are still there after "
            f"{self.replace_timeout_s:.0f}s; retry --replace when `kubectl get pods -l "
            f"{VOLCANO_JOB_NAME_LABEL}={name}` shows none"
        )

    # --------------------------------------------------------------------------------------- status
    def status(self, name: str) -> JobStatus:
        ns = self._ns()
        job = self._get_job(name, ns)
        pods = self._job_pods(name, ns)
        st = job_status(job, pods)
        if st.phase in (JobPhase.PENDING, JobPhase.UNKNOWN) or any(p.phase == "Pending" for p in st.pods):
            reasons, notes = self._pending_reasons(job, pods, ns)
            st.reasons += reasons
            st.scheduler_notes += notes
        if st.phase in (JobPhase.FAILED, JobPhase.TERMINATED, JobPhase.ABORTED) or any(
            p.phase == "Failed" or p.exit_code not in (None, 0) for p in st.pods
        ):  # a container that exited non-zero says why even while its pod still runs or restarts
            st.reasons += self._failure_reasons(job, pods, ns)
        if st.phase == JobPhase.RUNNING and st.stage == "train":
            rank0 = next((p for p in pods if pod_rank(p) == 0 and container_started(p)), None)
            if rank0 is not None:
                st.progress = ProgressReading.now(self.train_progress(name, ns, job=job))
        st.last_checkpoint = last_checkpoint(pods)
        suspended = (job["metadata"].get("annotations") or {}).get(SUSPENDED_ANNOTATION)
        if suspended and st.phase in (JobPhase.ABORTING, JobPhase.ABORTED):
            st.reasons.insert(
                0,
                f"suspended by `vitjob suspend` at {suspended}: `vitjob resume {name}` runs it again and "
                "training continues from its last checkpoint",
            )
        if keeps_logs(job) and (
            st.retry_count or any(p.restarts or p.exit_code not in (None, 0) for p in st.pods)
        ):
            st.reasons.append(
                f"each run of each pod kept its log on the output volume: `vitjob logs {name} --attempt N` "
                "(N = 1 for the first run) prints it, also after Volcano deleted the pods"
            )
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
        job = job if job is not None else self._get_job(name, ns)
        return train_progress(self.api, job, tail_lines=tail_lines)

    def _pending_reasons(self, job: dict, pods: list[dict], ns: str) -> tuple[list[str], list[str]]:
        """Why the job waits: the root cause first (``vitjob.kube.diagnosis.root_causes``: a missing
        claim, no node for the selector, not enough cards, pods larger than the nodes), then the pods'
        waits, then the scheduler's notes with duplicates folded, then the PodGroup's phase; and, second,
        every raw note (``vitjob status -v``).

        Volcano never writes ``status.state.reason``/``message`` (job_controller_actions.go), and its
        capacity/proportion/overcommit plugins record why a PodGroup waits as *Normal* events with reason
        ``Unschedulable`` (only the scheduler cache's per-pod notes are Warnings), so both event types count;
        the PodGroup's phase and conditions say whether it was admitted to its queue at all.
        """
        notes: list[str] = []
        if not job.get("status"):
            notes.append(
                "the Volcano controller has not processed the job yet (no status): check that the "
                "volcano-controllers and volcano-scheduler pods are running"
            )
        pg_name, pg = self._podgroup(job, ns, notes)
        phase_note = []
        if pg is not None:
            pg_status = pg.get("status") or {}
            phase = pg_status.get("phase") or "Pending"
            if phase in ("Pending", "Inqueue"):
                what = ("not admitted to its queue yet" if phase == "Pending"
                        else "admitted to its queue; waiting for all its pods to fit at once (gang)")
                phase_note.append(f"PodGroup {pg_name} {phase}: {what}")
            for cond in pg_status.get("conditions") or []:
                if cond.get("status") == "True" and cond.get("type") != "Scheduled":
                    text = f"PodGroup {cond.get('type')}: {cond.get('reason', '')}: {cond.get('message', '')}"
                    notes.append(text.rstrip(": "))
        names = {job["metadata"]["name"], pg_name} | {p["metadata"]["name"] for p in pods}
        notes += self._event_reasons(ns, names, normal_reasons=PENDING_EVENT_REASONS)
        waits = []
        for pod in pods:
            waiting = (container_status(pod).get("state") or {}).get("waiting") or {}
            if waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
                text = image_problem(pod, waiting) or (
                    f"pod {pod['metadata']['name']}: {waiting['reason']}: {waiting.get('message', '')}"
                )
                waits.append(text.rstrip(": "))
        causes = root_causes(
            job,
            ns,
            nodes=self._list_or_none(Op("list", "nodes"), self.api.core.list_node),
            claims=self._claim_names(ns),
            # what the nodes' cards are used by: only for a job that asks for cards (a cluster-wide list)
            node_pods=self._list_or_none(
                Op("list", "pods"),
                self.api.core.list_pod_for_all_namespaces,
                field_selector="spec.nodeName!=",
            ) if _device_requests(job)[1] else None,
            queue=self._queue_or_none((job.get("spec") or {}).get("queue") or "default"),
            event_messages=notes,
        )
        # the PodGroup's phase last: whether the queue admitted the job at all
        return causes + waits + fold_notes(notes) + phase_note, phase_note + notes

    def _list_or_none(self, op: Op, method: Any, *args: Any, **kwargs: Any) -> list[dict] | None:
        """The items of a list request, or None when we may not list them."""
        try:
            items: list[dict] = self.api.call(op, method, *args, **kwargs)["items"]
        except AuthError:
            log.debug("may not %s %s; skipping what needs them", op.verb, op.resource)
            return None
        return items

    def _claim_names(self, ns: str) -> list[str] | None:
        claims = self._list_or_none(
            Op("list", "persistentvolumeclaims", "", ns),
            self.api.core.list_namespaced_persistent_volume_claim,
            ns,
        )
        return None if claims is None else [c["metadata"]["name"] for c in claims]

    def _queue_or_none(self, name: str) -> dict | None:
        try:
            return self.api.get_or_none(
                Op("get", "queues", VOLCANO_SCHEDULING_GROUP, None, name),
                self.api.custom.get_cluster_custom_object,
                VOLCANO_SCHEDULING_GROUP,
                VOLCANO_SCHEDULING_VERSION,
                "queues",
                name,
            )
        except AuthError:
            return None

    def _podgroup(self, job: dict, ns: str, reasons: list[str]) -> tuple[str, dict | None]:
        """The job's PodGroup (``<job>-<uid>``, or ``<job>`` for jobs from before Volcano 1.5)."""
        pg_name = f"{job['metadata']['name']}-{job['metadata']['uid']}"
        for candidate in (pg_name, job["metadata"]["name"]):
            try:
                pg = self.api.get_or_none(
                    Op("get", "podgroups", VOLCANO_SCHEDULING_GROUP, ns, candidate),
                    self.api.custom.get_namespaced_custom_object,
                    VOLCANO_SCHEDULING_GROUP,
                    VOLCANO_SCHEDULING_VERSION,
                    ns,
                    "podgroups",
                    candidate,
                )
            except AuthError:
                reasons.append("(may not read PodGroups here, so the queue/gang state is not shown; "
                               "`kubectl auth can-i get podgroups.scheduling.volcano.sh` says why)")
                return pg_name, None
            if pg is not None:
                return candidate, pg
        return pg_name, None

    def _event_reasons(self, ns: str, names: set[str], *, normal_reasons: frozenset[str]) -> list[str]:
        """Recent events about these objects, newest first, at most 5 distinct: every Warning, and the
        Normal ones whose reason is in ``normal_reasons``. Without permission to list events: a note."""
        try:
            events = self.api.call(
                Op("list", "events", "", ns), self.api.core.list_namespaced_event, ns
            )["items"]
        except AuthError:
            return ["(may not list events here, so Volcano's scheduling notes are not shown)"]
        events = [
            e for e in events
            if (e.get("involvedObject") or {}).get("name") in names
            and (e.get("type") == "Warning" or e.get("reason") in normal_reasons)
        ]
        events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "", reverse=True)
        seen: set[str] = set()
        reasons = []
        for ev in events:
            key = f"{ev.get('reason')}:{ev.get('message')}"
            if key in seen or len(seen) >= 5:
                continue
            seen.add(key)
            obj = ev["involvedObject"]
            message = ev.get("message", "").strip()
            reasons.append(f"{ev.get('reason')} ({obj.get('kind')} {obj['name']}): {message}")
        return reasons

    def _failure_reasons(self, job: dict, pods: list[dict], ns: str) -> list[str]:
        """Why the job ended or restarts: the pods' terminated containers (exit codes, as the kubelet
        reported them), the job controller's events, and the first failed pod's last log lines."""
        reasons: list[str] = []
        state = (job.get("status") or {}).get("state") or {}
        if state.get("reason") or state.get("message"):  # no Volcano controller writes these today
            reasons.append(f"job: {state.get('reason', '')}: {state.get('message', '')}".rstrip(": "))
        failed = []
        for pod in sorted(pods, key=lambda p: (pod_rank(p) or 0, p["metadata"]["name"])):
            cs = container_status(pod)
            for when, term in (
                ("", (cs.get("state") or {}).get("terminated")),
                (" (previous run)", (cs.get("lastState") or {}).get("terminated")),
            ):
                if term and term.get("exitCode", 0) != 0:
                    msg = (term.get("message") or "").strip()
                    reasons.append(
                        f"pod {pod['metadata']['name']}{when} exited with code {term['exitCode']} "
                        f"({term.get('reason', 'Error')}{oom_note(pod, term)})" + (f": {msg}" if msg else "")
                    )
                    failed.append((pod, bool(when)))
                    break
        reasons += self._event_reasons(ns, {job["metadata"]["name"]}, normal_reasons=FAILURE_EVENT_REASONS)
        if failed:
            pod, previous = failed[0]
            try:
                lines = read_log(self.api, pod, ns, previous=previous, tail=10)
            except VitjobError as exc:
                log.debug("cannot read the logs of %s: %s", pod["metadata"]["name"], exc)
                lines = []
            if lines:
                reasons.append(
                    f"last log lines of {pod['metadata']['name']}:\n"
                    + "\n".join(f"  | {line}" for _, line in lines)
                )
        return reasons

    # ---------------------------------------------------------------------------------------- logs
    def kept_logs(self, name: str, attempt: int, *, pod: str | None = None) -> Iterator[str]:
        """Attempt ``attempt`` of the logs job ``name``'s pods kept on the output volume, read by a
        short-lived pod (``vitjob.backends.kubernetes.keptlogs``); works after the pods are gone."""
        job = self._get_job(name, self._ns())
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
        ns = self._ns()
        if follow:
            follower = JobFollower(
                self.api,
                name,
                ns,
                rank=rank,
                pod=pod,
                tail=tail,
                since_s=since_s,
                options=self.follow_opts,
                pause_s=min(1.0, self.poll_s),
            )
            yield from follower.run()
            return
        self._get_job(name, ns)  # JobNotFoundError rather than "no pods"
        pods = [p for p in self._job_pods(name, ns) if _selected(p, rank, pod)]
        if not pods:
            log.info("job %s has no matching pods yet; `vitjob logs -f %s` waits for them", name, name)
        merged: list[tuple[int, int, str]] = []
        for i, p in enumerate(pods):
            if not previous and not container_started(p):
                log.info("pod %s has not started yet", p["metadata"]["name"])
                continue
            prefix = log_prefix(p["metadata"]["name"], pod_rank(p))
            merged += [
                (ts, i, prefix + line)
                for ts, line in read_log(self.api, p, ns, previous=previous, tail=tail, since_s=since_s)
            ]
        for _, _, line in sorted(merged, key=lambda t: (t[0], t[1])):
            yield line

    # --------------------------------------------------------------------------------------- watch
    def watch_job(
        self,
        name: str,
        ns: str,
        stop: threading.Event,
        holder: StreamHolder | None = None,
        deadline: float | None = None,
    ) -> Iterator[dict | None]:
        """The Volcano Job ``ns/name`` each time it changes; None when it was deleted."""
        return watch_named(
            self.api,
            Op("list", VOLCANO_PLURAL, VOLCANO_GROUP, ns),
            self.api.custom.list_namespaced_custom_object,
            (VOLCANO_GROUP, VOLCANO_VERSION, ns, VOLCANO_PLURAL),
            name,
            stop,
            holder,
            deadline,
            watch_timeout_s=self.follow_opts.watch_timeout_s,
            pause_s=min(1.0, self.poll_s),
        )

    # ---------------------------------------------------------------------------------------- wait
    def wait(self, name: str, timeout_s: float | None = None) -> JobStatus:
        ns = self._ns()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        stop = threading.Event()
        phase = JobPhase.UNKNOWN
        for job in self.watch_job(name, ns, stop, deadline=deadline):
            if job is None:
                raise JobNotFoundError(
                    f"job {name!r} not found in namespace {ns!r} (or it was deleted while "
                    "waiting); `vitjob list` shows the jobs there"
                )
            phase = job_phase(job)
            if phase.is_terminal:
                return self.status(name)
            if deadline is not None and time.monotonic() >= deadline:
                break
        raise WaitTimeoutError(
            f"job {name!r} is still {phase} after {timeout_s:g}s; it keeps running: "
            f"`vitjob status {name}` shows why, `vitjob wait {name} --timeout …` waits longer"
        )

    # ------------------------------------------------------------------------------ cancel/delete/list
    def cancel(self, name: str) -> None:
        ns = self._ns()
        job = self._get_job(name, ns)
        phase = job_phase(job)
        if phase.is_terminal:
            raise BackendError(
                f"job {name!r} already finished ({phase}); nothing to cancel — "
                f"`vitjob delete {name}` removes it"
            )
        self._command(job, "AbortJob", "vitjob cancel", "aborted with `vitjob cancel`")

    def suspend(self, name: str) -> None:
        """Volcano's AbortJob (its running pods are deleted; the job stays, Aborted), marked as a
        suspension (``vitjob.io/suspended``) so that ``status`` and ``resume`` know it."""
        ns = self._ns()
        job = self._get_job(name, ns)
        phase = job_phase(job)
        if phase.is_terminal:
            raise UsageError(f"job {name!r} already ended ({phase}); only a running job can be suspended")
        self._annotate(job, {SUSPENDED_ANNOTATION: time_text()})
        self._command(job, "AbortJob", "vitjob suspend", "suspended with `vitjob suspend`")

    def resume(self, name: str) -> JobStatus:
        """Volcano's ResumeJob on a suspended job: Aborted → Restarting → a new run that resumes from
        the last checkpoint (Volcano counts it as a retry: a job at maxRetry fails instead)."""
        ns = self._ns()
        job = self._get_job(name, ns)
        annotations = job["metadata"].get("annotations") or {}
        phase = job_phase(job)
        if SUSPENDED_ANNOTATION not in annotations or phase not in (JobPhase.ABORTED, JobPhase.ABORTING):
            raise UsageError(
                f"job {name!r} is {phase}, not suspended: only a job `vitjob suspend` stopped can be resumed"
            )
        self._command(job, "ResumeJob", "vitjob resume", "resumed with `vitjob resume`")
        self._annotate(job, {SUSPENDED_ANNOTATION: None})
        return self.status(name)

    def _command(self, job: dict, action: str, reason: str, message: str) -> None:
        """Create a Volcano bus Command (``action`` on ``job``); Volcano's job controller executes it."""
        create_object(self.api, render_volcano_command(job, action, reason, message))
        meta = job["metadata"]
        log.debug("asked Volcano to %s job %s/%s", action, meta["namespace"], meta["name"])

    def _annotate(self, job: dict, annotations: dict[str, str | None]) -> None:
        """Merge-patch the Volcano Job's annotations (None removes one)."""
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        self.api.call(
            Op("patch", VOLCANO_PLURAL, VOLCANO_GROUP, ns, name),
            self.api.custom.patch_namespaced_custom_object,
            VOLCANO_GROUP,
            VOLCANO_VERSION,
            ns,
            VOLCANO_PLURAL,
            name,
            {"metadata": {"annotations": annotations}},
            _content_type="application/merge-patch+json",
        )

    def delete(self, name: str) -> None:
        ns = self._ns()
        job = self._get_job(name, ns)
        self.delete_job(job, ns)

    def delete_job(self, job: dict, ns: str) -> None:
        """Delete the Volcano Job (background propagation) and the supporting objects submit recorded in
        its annotation (those already gone are skipped)."""
        name = job["metadata"]["name"]
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        self.api.call(
            Op("delete", VOLCANO_PLURAL, VOLCANO_GROUP, ns, name),
            self.api.custom.delete_namespaced_custom_object,
            VOLCANO_GROUP,
            VOLCANO_VERSION,
            ns,
            VOLCANO_PLURAL,
            name,
            body=body,
        )
        refs = json.loads((job["metadata"].get("annotations") or {}).get(SUPPORTING_ANNOTATION) or "[]")
        for ref in refs:
            obj = {
                "apiVersion": ref["apiVersion"],
                "kind": ref["kind"],
                "metadata": {"name": ref["name"], "namespace": ref.get("namespace") or ns},
            }
            group, plural, _ = kind_info(obj)
            op = Op("delete", plural, group, obj["metadata"]["namespace"], ref["name"])
            try:
                self.api.call(op, object_calls(self.api, obj).delete, body=body)
            except ResourceNotFoundError:
                log.debug("%s %s was already gone", ref["kind"], ref["name"])
        log.debug("deleted job %s/%s and %d supporting object(s)", ns, name, len(refs))

    def list_jobs(self, all_namespaces: bool = False) -> list[JobStatus]:
        selector = f"{LABEL_MANAGED_BY}={APP_NAME}"
        if all_namespaces:
            items = self.api.call(
                Op("list", VOLCANO_PLURAL, VOLCANO_GROUP),
                self.api.custom.list_cluster_custom_object,
                VOLCANO_GROUP,
                VOLCANO_VERSION,
                VOLCANO_PLURAL,
                label_selector=selector,
            )["items"]
        else:
            ns = self._ns()
            items = self.api.call(
                Op("list", VOLCANO_PLURAL, VOLCANO_GROUP, ns),
                self.api.custom.list_namespaced_custom_object,
                VOLCANO_GROUP,
                VOLCANO_VERSION,
                ns,
                VOLCANO_PLURAL,
                label_selector=selector,
            )["items"]
        statuses = sorted((job_status(j) for j in items), key=lambda s: (s.namespace, s.name))
        by_key = {(j["metadata"].get("namespace", ""), j["metadata"]["name"]): j for j in items}
        for st in statuses:
            if st.phase == JobPhase.RUNNING and st.stage == "train":
                job = by_key[(st.namespace, st.name)]
                st.progress = ProgressReading.now(self.train_progress(st.name, st.namespace, job=job))
        return statuses


# ------------------------------------------------------------------------------------------- helpers
def _selected(pod: dict, rank: int | None, name: str | None) -> bool:
    return (rank is None or pod_rank(pod) == rank) and (name is None or pod["metadata"]["name"] == name)


def _split_objects(objects: list[dict]) -> tuple[dict, list[dict]]:
    jobs = [o for o in objects if is_volcano_job(o)]
    if len(jobs) != 1:
        raise BackendError(
            f"expected exactly one Volcano Job ({VOLCANO_GROUP}/{VOLCANO_VERSION}) among the objects to "
            f"submit, found {len(jobs)}"
        )
    for obj in objects:
        kind_info(obj)  # fail before creating anything
    return jobs[0], [o for o in objects if o is not jobs[0]]


def _device_requests(job: dict) -> tuple[dict[str, float], dict[str, float]]:
    """Accelerators asked for: (largest per pod, total over all replicas), by resource name."""
    per_pod: dict[str, float] = {}
    total: dict[str, float] = {}
    for task in (job.get("spec") or {}).get("tasks") or []:
        pod_need: dict[str, float] = {}
        for c in ((task.get("template") or {}).get("spec") or {}).get("containers") or []:
            res = c.get("resources") or {}
            for key, value in {**(res.get("requests") or {}), **(res.get("limits") or {})}.items():
                if key.startswith(DEVICE_PREFIXES):
                    pod_need[key] = pod_need.get(key, 0) + quantity(value)
        for key, value in pod_need.items():
            per_pod[key] = max(per_pod.get(key, 0), value)
            total[key] = total.get(key, 0) + value * int(task.get("replicas") or 0)
    return per_pod, total


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _fmt_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"
