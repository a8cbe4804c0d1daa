"""The Kubernetes backend: runs rendered Volcano Jobs on a cluster through the Kubernetes API.

This module owns:
- loading the client configuration (``--kubeconfig``/``--context``, the context's namespace, or the
  in-cluster service account);
- the ONE mapping from ``ApiException``/urllib3 errors to vitjob errors (``_to_error``), with
  retries and backoff for 5xx answers, timeouts and dropped connections (``_Api.call``);
- list+watch loops that resume from their ``resourceVersion`` and re-list on ``410 Gone``;
- submit (preflight, validation against the cluster's own CRD schema, supporting objects then the
  Job, ``replace``), status with the reasons behind Pending/Failed, log merging and following,
  wait, cancel (Volcano ``bus.volcano.sh`` Command ``AbortJob``), delete and list.

``kubernetes`` is imported lazily so ``import vitjob`` stays fast and works without it.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitjob.backends.base import Backend, JobPhase, JobStatus, PodStatus
from vitjob.constants import (
    APP_NAME,
    LABEL_CARDS,
    LABEL_COMPONENT,
    LABEL_HW,
    LABEL_MANAGED_BY,
    LABEL_PREFIX,
    VOLCANO_CRD_NAME,
    VOLCANO_GROUP,
    VOLCANO_JOB_NAME_LABEL,
    VOLCANO_PLURAL,
    VOLCANO_POD_NAME_FORMAT,
    VOLCANO_TASK_INDEX_LABEL,
    VOLCANO_VERSION,
)
from vitjob.errors import (
    AdmissionDeniedError,
    AuthError,
    BackendError,
    ClusterConfigError,
    ClusterUnreachableError,
    ConflictError,
    InvalidObjectError,
    JobNotFoundError,
    PreflightError,
    ResourceNotFoundError,
    VitjobError,
    WaitTimeoutError,
)
from vitjob.progress import TrainProgress, last_progress

log = logging.getLogger(__name__)

# Volcano API coordinates and labels (vitjob.constants owns the literals)
VC_GROUP, VC_VERSION, VC_JOBS = VOLCANO_GROUP, VOLCANO_VERSION, VOLCANO_PLURAL
VC_JOB_CRD = VOLCANO_CRD_NAME
BUS_GROUP, BUS_VERSION, BUS_COMMANDS = "bus.volcano.sh", "v1alpha1", "commands"
SCHED_GROUP, SCHED_VERSION = "scheduling.volcano.sh", "v1beta1"
# Labels Volcano's job controller puts on the pods it creates
POD_JOB_LABEL = VOLCANO_JOB_NAME_LABEL
POD_TASK_LABEL = "volcano.sh/task-spec"
POD_INDEX_LABEL = VOLCANO_TASK_INDEX_LABEL
# vitjob's labels (rendered by vitjob.render) and the annotation submit adds to the Job
MANAGED_BY_LABEL, MANAGED_BY_VALUE = LABEL_MANAGED_BY, APP_NAME
STAGE_LABEL, HW_LABEL, CARDS_LABEL = LABEL_COMPONENT, LABEL_HW, LABEL_CARDS
SUPPORTING_ANNOTATION = LABEL_PREFIX + "supporting-objects"  # JSON list of what submit created beside the Job
# Extended resources that count as accelerators in preflight
DEVICE_PREFIXES = ("huawei.com/", "nvidia.com/")
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# Lines of rank 0's log that `vitjob status` reads for training progress (a line comes every few steps)
PROGRESS_TAIL_LINES = 40
# Normal events that explain a wait: Volcano's capacity/proportion/overcommit plugins record a waiting
# PodGroup as Normal "Unschedulable"; "Evict" is the scheduler cache's note on a preempted PodGroup.
PENDING_EVENT_REASONS = frozenset({"Unschedulable", "FailedScheduling", "Evict"})
# Normal events that explain an end: the job controller's "ExecuteAction" ("Start to execute action
# RestartJob", "Job failed on action RestartJob for retry limit reached"); it never writes state.reason.
FAILURE_EVENT_REASONS = frozenset({"ExecuteAction", "Evict"})
FINISHED_POD_PHASES = frozenset({"Succeeded", "Failed"})

# Core kinds submit can create beside the Job: kind → CoreV1Api method suffix
CORE_KINDS = {
    "ConfigMap": "config_map",
    "Secret": "secret",
    "Service": "service",
    "ServiceAccount": "service_account",
    "PersistentVolumeClaim": "persistent_volume_claim",
}
CUSTOM_PLURALS = {("batch.volcano.sh", "Job"): "jobs", ("scheduling.volcano.sh", "PodGroup"): "podgroups"}


# --------------------------------------------------------------------------------------------- errors
@dataclass(frozen=True)
class Op:
    """What a request does, in the words an error message needs (``create jobs.batch.volcano.sh``)."""

    verb: str
    plural: str
    group: str = ""
    namespace: str | None = None
    name: str | None = None

    @property
    def resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def what(self) -> str:
        target = f"{self.resource} {self.name!r}" if self.name else self.resource
        where = f" in namespace {self.namespace!r}" if self.namespace else ""
        return f"{self.verb} {target}{where}"


def _status_body(body: Any) -> dict:
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        return {"message": str(body)[:300]}
    return parsed if isinstance(parsed, dict) else {}


def _to_error(op: Op, status: int, body: Any, server: str, attempts: int = 1) -> VitjobError:
    """The one place that turns an API answer into a vitjob error."""
    st = _status_body(body)
    message = st.get("message") or f"HTTP {status}"
    reason = st.get("reason", "")
    if status == 401:
        return AuthError(
            f"the API server {server} rejected the credentials (401 Unauthorized) "
            f"while trying to {op.what()}: "
            "the token or certificate in the kubeconfig is missing or expired; log in again and check with "
            "`kubectl auth whoami`"
        )
    if "admission webhook" in message and status in (400, 403):
        # A webhook's denial: the API server raises codes below 400 to 400 and keeps a webhook's own code
        # (apiserver's admission/plugin/webhook/errors/statuserror.go); Volcano's validator sets none -> 400.
        return AdmissionDeniedError(f"the cluster refused to {op.what()}: {message}")
    if status == 403:
        role = "Role" if op.namespace else "ClusterRole"
        return AuthError(
            f"not allowed to {op.what()} (403 Forbidden: {message}); ask a cluster admin for a {role} rule "
            f'apiGroups: ["{op.group}"], resources: ["{op.plural}"], verbs: ["{op.verb}"]'
        )
    if status == 404:
        if op.group == VC_GROUP and op.plural == VC_JOBS and op.name:
            return JobNotFoundError(
                f"job {op.name!r} not found in namespace {op.namespace!r}; "
                "`vitjob list` shows the jobs there (-A: all namespaces)"
            )
        return ResourceNotFoundError(f"cannot {op.what()}: not found ({message})")
    if status == 409:
        if reason == "AlreadyExists":
            return ConflictError(f"cannot {op.what()}: it already exists")
        return ConflictError(
            f"cannot {op.what()}: it was changed at the same time by someone else "
            f"({message}); run the command again"
        )
    if status == 422:
        causes = (st.get("details") or {}).get("causes") or []
        fields = "; ".join(f"{c.get('field', '?')}: {c.get('message', '')}" for c in causes) or message
        return InvalidObjectError(
            f"the API server rejected {op.what()} as invalid: {fields}. Fix the spec; "
            "`vitjob submit --dry-run` validates without submitting"
        )
    if status in RETRYABLE_STATUS:
        return ClusterUnreachableError(
            f"the API server {server} kept failing to {op.what()} (HTTP {status} {reason}: {message}) "
            f"after {attempts} attempts; check the cluster's health (`kubectl get --raw /readyz`) and retry"
        )
    return BackendError(f"cannot {op.what()}: HTTP {status} {reason}: {message}")


def _transport_error(op: Op, exc: Exception, server: str, attempts: int) -> VitjobError:
    cause = getattr(exc, "reason", None) or exc
    text = str(cause)
    if "timed out" in text.lower() or "timeout" in type(cause).__name__.lower():
        return ClusterUnreachableError(
            f"the API server {server} did not answer in time while trying to {op.what()} "
            f"({attempts} attempts); "
            "check the network path to the cluster and retry"
        )
    short = text.split("Failed to establish a new connection: ")[-1].rstrip(")\"'")
    return ClusterUnreachableError(
        f"cannot reach the Kubernetes API server at {server} ({short}; {attempts} attempts); check that the "
        "cluster is up and that --kubeconfig/--context point at it (`kubectl cluster-info`)"
    )


class _Expired(Exception):
    """A watch answered 410 Gone: re-list."""


# ------------------------------------------------------------------------------------------- API access
@dataclass
class RetryPolicy:
    attempts: int = 4  # total tries for 5xx / timeouts / connection errors
    backoff_s: float = 0.5  # first delay; doubles each retry
    max_backoff_s: float = 8.0


class _Api:
    """The kubernetes client objects plus ``call``: every request goes through it."""

    def __init__(self, api_client: Any, server: str, retry: RetryPolicy, timeout_s: float):
        from kubernetes import client

        self.client = api_client
        self.server = server
        self.retry = retry
        self.timeout = (min(10.0, timeout_s), timeout_s)  # (connect, read)
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.ext = client.ApiextensionsV1Api(api_client)

    def call(
        self,
        op: Op,
        fn: Callable[..., Any],
        *args: Any,
        stream: bool = False,
        read_timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``fn`` with retries; return parsed JSON (or the open response when ``stream``)."""
        import urllib3
        from kubernetes.client.exceptions import ApiException

        kwargs["_preload_content"] = False
        kwargs.setdefault("_request_timeout", (self.timeout[0], read_timeout or self.timeout[1]))
        delay = self.retry.backoff_s
        for attempt in range(1, self.retry.attempts + 1):
            try:
                resp = fn(*args, **kwargs)
                if stream:
                    return resp
                try:
                    data = resp.data
                finally:
                    resp.release_conn()
                return json.loads(data) if data else {}
            except ApiException as exc:
                if exc.status == 410 and kwargs.get("watch"):
                    # The watch request itself refused as Gone (resourceVersion older than the API
                    # server's watch cache): the caller re-lists, as after an ERROR 410 event.
                    raise _Expired() from None
                if exc.status not in RETRYABLE_STATUS or attempt == self.retry.attempts:
                    raise _to_error(op, exc.status or 0, exc.body, self.server, attempt) from None
                log.debug("%s: HTTP %s, retrying in %.1fs", op.what(), exc.status, delay)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if attempt == self.retry.attempts:
                    raise _transport_error(op, exc, self.server, attempt) from None
                log.debug("%s: %s, retrying in %.1fs", op.what(), type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, self.retry.max_backoff_s)
        raise AssertionError("unreachable")  # pragma: no cover

    def pod_log(
        self,
        op: Op,
        name: str,
        namespace: str,
        *,
        container: str,
        follow: bool = False,
        previous: bool = False,
        tail_lines: int | None = None,
        since_seconds: int | None = None,
        since_time: str | None = None,
        read_timeout: float | None = None,
    ) -> Any:
        """Open ``GET …/pods/NAME/log?timestamps=true``; returns the raw urllib3 response.

        ``CoreV1Api.read_namespaced_pod_log`` has no ``sinceTime`` parameter, which reconnecting
        without losing lines needs, so the request is built with the client's own serializer.
        """
        from kubernetes.client.exceptions import ApiException

        query: list[tuple[str, Any]] = [("container", container), ("timestamps", True)]
        if follow:
            query.append(("follow", True))
        if previous:
            query.append(("previous", True))
        if tail_lines is not None:
            query.append(("tailLines", tail_lines))
        if since_time is not None:
            query.append(("sinceTime", since_time))
        elif since_seconds is not None:
            query.append(("sinceSeconds", since_seconds))

        def request(_preload_content: bool = False, _request_timeout: Any = None) -> Any:
            req = self.client.param_serialize(
                method="GET",
                resource_path="/api/v1/namespaces/{namespace}/pods/{name}/log",
                path_params={"namespace": namespace, "name": name},
                query_params=query,
                # What kubectl sends: the API server answers a bare text/plain with 406 NotAcceptable
                # (it negotiates the log subresource like any other), then streams plain text anyway.
                header_params={"Accept": "application/json, */*"},
                auth_settings=["BearerToken"],
            )
            resp = self.client.call_api(*req, _request_timeout=_request_timeout)
            if not 200 <= resp.status <= 299:
                resp.read()
                raise ApiException.from_response(http_resp=resp, body=None, data=None)
            return resp.response

        return self.call(op, request, stream=True, read_timeout=read_timeout)


def _iter_lines(resp: Any) -> Iterator[str]:
    """Lines of a streamed response as they arrive (a partial last line is kept until complete)."""
    buf = b""
    try:
        for chunk in resp.stream(65536, decode_content=False):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                yield line.decode(errors="replace")
        if buf:
            yield buf.decode(errors="replace")
    finally:
        resp.close()
        resp.release_conn()


# ----------------------------------------------------------------------------------------- time helpers
def _parse_ts(text: str) -> int:
    """RFC 3339 (nano) timestamp → ns since the epoch."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    base = dt.datetime.fromisoformat(m.group(1) + m.group(3).replace("Z", "+00:00"))
    return int(base.timestamp()) * 1_000_000_000 + int((m.group(2) or "0").ljust(9, "0")[:9])


def _since_time(ns: int) -> str:
    """``sinceTime`` for a reconnect: the second of the last line seen (the server works in seconds)."""
    return dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _age_s(meta: dict) -> float:
    created = meta.get("creationTimestamp")
    if not created:
        return 0.0
    return max(0.0, time.time() - _parse_ts(created) / 1e9)


# --------------------------------------------------------------------------------------- status records
def _phase(job: dict) -> JobPhase:
    text = ((job.get("status") or {}).get("state") or {}).get("phase") or "Pending"
    try:
        return JobPhase(text)
    except ValueError:
        return JobPhase.UNKNOWN


def _rank(pod: dict) -> int | None:
    value = (pod["metadata"].get("labels") or {}).get(POD_INDEX_LABEL)
    return int(value) if value and value.isdigit() else None


def _container_status(pod: dict) -> dict:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    main = pod["spec"]["containers"][0]["name"]
    return next((c for c in statuses if c.get("name") == main), {})


def _pod_status(pod: dict) -> PodStatus:
    cs = _container_status(pod)
    state = cs.get("state") or {}
    term = state.get("terminated") or (cs.get("lastState") or {}).get("terminated") or {}
    waiting = state.get("waiting") or {}
    return PodStatus(
        name=pod["metadata"]["name"],
        phase=(pod.get("status") or {}).get("phase", "Unknown"),
        node=pod["spec"].get("nodeName") or "",
        restarts=int(cs.get("restartCount") or 0),
        exit_code=term.get("exitCode"),
        reason=waiting.get("reason") or term.get("reason", ""),
        message=waiting.get("message") or term.get("message", ""),
        rank=_rank(pod),
        task=(pod["metadata"].get("labels") or {}).get(POD_TASK_LABEL, ""),
    )


def _job_status(job: dict, pods: list[dict] | None = None) -> JobStatus:
    meta, status = job["metadata"], job.get("status") or {}
    labels = meta.get("labels") or {}
    cards = labels.get(CARDS_LABEL, "")
    tasks = {
        t: {p: int(n) for p, n in (c.get("phase") or {}).items()}
        for t, c in (status.get("taskStatusCount") or {}).items()
    }
    pod_list = sorted((_pod_status(p) for p in pods or []), key=lambda p: (p.task, p.rank or 0, p.name))
    return JobStatus(
        name=meta["name"],
        namespace=meta.get("namespace", ""),
        phase=_phase(job),
        retry_count=int(status.get("retryCount") or 0),
        stage=labels.get(STAGE_LABEL, ""),
        hw=labels.get(HW_LABEL, ""),
        cards=int(cards) if cards.isdigit() else 0,
        age_s=_age_s(meta),
        pods=pod_list,
        queue=(job.get("spec") or {}).get("queue", ""),
        tasks=tasks,
    )


def _prefix(pod_name: str, rank: int | None) -> str:
    return f"[rank {rank} {pod_name}] " if rank is not None else f"[{pod_name}] "


# ------------------------------------------------------------------------------------------- backend
@dataclass
class FollowOptions:
    """Tuning for ``logs(follow=True)`` and watches (tests shorten them)."""

    watch_timeout_s: int = 300  # server-side timeoutSeconds of a watch before it is renewed
    log_read_timeout_s: float = 120.0  # a quiet log stream is reopened (sinceTime) after this long
    end_grace_s: float = 10.0  # after the job finished, how long to wait for pods still running
    pod_recheck_s: float = 5.0  # a waiting pod is re-read this often even without watch events


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
        self._api: _Api | None = None
        self._given_client = api_client
        self._server = server or ""
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------ configuration
    @property
    def api(self) -> _Api:
        with self._lock:
            if self._api is None:
                self._api = self._connect()
            return self._api

    @property
    def namespace(self) -> str:
        _ = self.api
        return self.settings.namespace or "default"

    def _connect(self) -> _Api:
        from kubernetes import client, config

        if self._given_client is not None:
            return _Api(
                self._given_client,
                self._server or self._given_client.configuration.host,
                self.retry,
                self.request_timeout_s,
            )
        cfg = client.Configuration()
        # $KUBECONFIG is read now: the client reads it once, at import time.
        path = self.settings.kubeconfig or os.environ.get("KUBECONFIG") or None
        if path or kubeconfig_available():
            try:
                config.load_kube_config(
                    config_file=path,
                    context=self.settings.context,
                    client_configuration=cfg,
                    persist_config=False,
                )
                contexts, active = config.list_kube_config_contexts(config_file=path)
            except (config.ConfigException, OSError, ValueError) as exc:
                raise ClusterConfigError(
                    f"cannot use the kubeconfig {path or os.environ.get('KUBECONFIG') or '~/.kube/config'}"
                    f": {exc}; check --kubeconfig/--context (`kubectl config get-contexts`)"
                ) from None
            chosen = next((c for c in contexts if c["name"] == self.settings.context), active)
            if not self.settings.namespace:
                self.settings.namespace = (chosen.get("context") or {}).get("namespace") or "default"
        elif in_cluster_available():
            config.load_incluster_config(client_configuration=cfg)
            if not self.settings.namespace:
                ns_file = SA_DIR / "namespace"
                self.settings.namespace = ns_file.read_text().strip() if ns_file.exists() else "default"
        else:
            raise ClusterConfigError(
                "no Kubernetes configuration found: no kubeconfig "
                "(--kubeconfig, $KUBECONFIG, ~/.kube/config) "
                "and not running in a pod; pass --kubeconfig, or use --backend local"
            )
        cfg.retries = 0  # retries are ours (_Api.call), with backoff and a clear final message
        cfg.connection_pool_maxsize = 64  # many concurrent watches/log streams when following jobs
        log.debug("using API server %s, namespace %s", cfg.host, self.settings.namespace)
        return _Api(client.ApiClient(cfg), cfg.host, self.retry, self.request_timeout_s)

    def _ns(self, namespace: str | None = None) -> str:
        return namespace or self.namespace

    # ------------------------------------------------------------------------------ small requests
    def _get_job(self, name: str, ns: str) -> dict:
        op = Op("get", VC_JOBS, VC_GROUP, ns, name)
        return self.api.call(
            op, self.api.custom.get_namespaced_custom_object, VC_GROUP, VC_VERSION, ns, VC_JOBS, name
        )

    def _job_pods(self, name: str, ns: str, extra_selector: str = "") -> list[dict]:
        selector = f"{POD_JOB_LABEL}={name}" + (f",{extra_selector}" if extra_selector else "")
        op = Op("list", "pods", "", ns)
        return self.api.call(op, self.api.core.list_namespaced_pod, ns, label_selector=selector)["items"]

    def _get_or_none(self, op: Op, fn: Callable[..., Any], *args: Any) -> dict | None:
        try:
            return self.api.call(op, fn, *args)
        except (ResourceNotFoundError, JobNotFoundError):
            return None

    # --------------------------------------------------------------------------------------- submit
    def submit(self, objects: list[dict], *, replace: bool = False) -> JobStatus:
        objects = copy.deepcopy(objects)
        job, supporting = _split_objects(objects)
        ns = self._ns(job["metadata"].get("namespace"))
        name = job["metadata"]["name"]
        for obj in [*supporting, job]:
            if _kind_info(obj)[2]:
                obj["metadata"].setdefault("namespace", ns)
        crd = self._preflight_volcano()
        warnings = self._preflight_cluster(job, ns)
        self._validate(objects, crd)
        existing = self._get_job_or_none(ns, name)
        if existing is not None and not replace:
            raise ConflictError(
                f"job {name!r} already exists in namespace {ns!r} (phase {_phase(existing)}, "
                f"{_fmt_age(_age_s(existing['metadata']))} old); `vitjob delete {name}` removes it, "
                "`vitjob submit --replace …` deletes and recreates it, or choose another --name"
            )
        if existing is not None:
            log.debug("replacing job %s/%s", ns, name)
            self._delete_job(existing, ns)
            self._wait_gone(name, ns)
        created_refs = [self._create_supporting(obj) for obj in supporting]
        job["metadata"].setdefault("annotations", {})[SUPPORTING_ANNOTATION] = json.dumps(created_refs)
        op = Op("create", VC_JOBS, VC_GROUP, ns, name)
        try:
            created = self.api.call(
                op, self.api.custom.create_namespaced_custom_object, VC_GROUP, VC_VERSION, ns, VC_JOBS, job
            )
        except ConflictError:
            raise ConflictError(
                f"job {name!r} was created in namespace {ns!r} by someone else meanwhile; "
                "use --replace or another --name"
            ) from None
        status = _job_status(created)
        status.warnings = warnings
        log.debug("submitted job %s/%s", ns, name)
        return status

    def _preflight_volcano(self) -> dict | None:
        """The cluster's Volcano Job CRD (None when we may not read CRDs)."""
        op = Op("get", "customresourcedefinitions", "apiextensions.k8s.io", None, VC_JOB_CRD)
        try:
            return self.api.call(op, self.api.ext.read_custom_resource_definition, VC_JOB_CRD)
        except ResourceNotFoundError:
            raise PreflightError(
                f"Volcano is not installed in this cluster: the API server {self.api.server} has no "
                f"CustomResourceDefinition {VC_JOB_CRD}; install Volcano "
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
                Op("get", "queues", SCHED_GROUP, None, queue_name),
                self.api.custom.get_cluster_custom_object,
                SCHED_GROUP,
                SCHED_VERSION,
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
        return self._device_warnings(job)

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
                _quantity(((n.get("status") or {}).get("allocatable") or {}).get(resource, "0"))
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
        from vitjob.validate import validate_objects

        validate_objects(objects, crd_source=[crd])

    def _create_supporting(self, obj: dict) -> dict:
        group, plural, _namespaced = _kind_info(obj)
        meta = obj["metadata"]
        ns, name, kind = meta.get("namespace"), meta["name"], obj["kind"]
        ref = {"apiVersion": obj["apiVersion"], "kind": kind, "name": name, "namespace": ns}
        create, replace, read = self._crud(obj)
        try:
            self.api.call(Op("create", plural, group, ns), create, obj)
            return ref
        except ConflictError:
            pass
        current = self.api.call(Op("get", plural, group, ns, name), read)
        if (current["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE:
            raise ConflictError(
                f"{kind} {name!r} already exists in namespace {ns!r} and was not created by "
                "vitjob; rename the job or remove that object"
            ) from None
        obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        self.api.call(Op("update", plural, group, ns, name), replace, obj)
        log.debug("updated existing %s %s/%s left by an earlier submission", kind, ns, name)
        return ref

    def _crud(self, obj: dict) -> tuple[Callable[[dict], Any], Callable[[dict], Any], Callable[[], Any]]:
        """(create(body), replace(body), read()) for one object."""
        group, plural, _ = _kind_info(obj)
        ns, name = obj["metadata"].get("namespace"), obj["metadata"]["name"]
        if not group:
            suffix = CORE_KINDS[obj["kind"]]
            core = self.api.core
            return (
                lambda body, **kw: getattr(core, f"create_namespaced_{suffix}")(ns, body, **kw),
                lambda body, **kw: getattr(core, f"replace_namespaced_{suffix}")(name, ns, body, **kw),
                lambda **kw: getattr(core, f"read_namespaced_{suffix}")(name, ns, **kw),
            )
        version = obj["apiVersion"].split("/", 1)[1]
        custom = self.api.custom
        return (
            lambda body, **kw: custom.create_namespaced_custom_object(group, version, ns, plural, body, **kw),
            lambda body, **kw: custom.replace_namespaced_custom_object(
                group, version, ns, plural, name, body, **kw
            ),
            lambda **kw: custom.get_namespaced_custom_object(group, version, ns, plural, name, **kw),
        )

    def _get_job_or_none(self, ns: str, name: str) -> dict[str, Any] | None:
        """The Volcano Job ``ns/name``, or None when it does not exist."""
        return self._get_or_none(
            Op("get", VC_JOBS, VC_GROUP, ns, name),
            self.api.custom.get_namespaced_custom_object,
            VC_GROUP,
            VC_VERSION,
            ns,
            VC_JOBS,
            name,
        )

    def _wait_gone(self, name: str, ns: str) -> None:
        """After deleting for --replace: wait until the job and its pods are gone (Volcano issue 1241)."""
        deadline = time.monotonic() + self.replace_timeout_s
        while time.monotonic() < deadline:
            job = self._get_job_or_none(ns, name)
            if job is None and not self._job_pods(name, ns):
                return
            time.sleep(self.poll_s)
        raise BackendError(
            f"job {name!r} in namespace {ns!r} was deleted but it or its pods are still there after "
            f"{self.replace_timeout_s:.0f}s; retry --replace when `kubectl get pods -l "
            f"{POD_JOB_LABEL}={name}` shows none"
        )

    # --------------------------------------------------------------------------------------- status
    def status(self, name: str) -> JobStatus:
        ns = self._ns()
        job = self._get_job(name, ns)
        pods = self._job_pods(name, ns)
        st = _job_status(job, pods)
        if st.phase in (JobPhase.PENDING, JobPhase.UNKNOWN) or any(p.phase == "Pending" for p in st.pods):
            st.reasons += self._pending_reasons(job, pods, ns)
        if st.phase in (JobPhase.FAILED, JobPhase.TERMINATED, JobPhase.ABORTED) or any(
            p.phase == "Failed" for p in st.pods
        ):
            st.reasons += self._failure_reasons(job, pods, ns)
        if st.phase == JobPhase.RUNNING and st.stage == "train":
            rank0 = next((p for p in pods if _rank(p) == 0 and _container_started(p)), None)
            if rank0 is not None:
                st.progress = self.train_progress(name, ns, job=job)
        return st

    def train_progress(
        self,
        name: str,
        namespace: str | None = None,
        *,
        job: dict | None = None,
        tail_lines: int = PROGRESS_TAIL_LINES,
    ) -> TrainProgress | None:
        """The last progress line (``vitjob.progress``) that rank 0 of train job ``name`` wrote.

        One request: ``GET pods/<job>-<task>-0/log?tailLines=N`` (rank 0 is index 0 of the first
        task; Volcano names pods ``<job>-<task>-<index>``), not a stream. Pass the Volcano Job object
        as ``job`` to save reading it first. None when the pod has no progress line in those lines,
        does not exist or has not started (the API's 400/404 are not errors here).
        """
        ns = self._ns(namespace)
        job = job if job is not None else self._get_job(name, ns)
        try:
            task = job["spec"]["tasks"][0]
            container = task["template"]["spec"]["containers"][0]["name"]
        except (KeyError, IndexError, TypeError):
            return None  # not a job vitjob rendered
        pod = VOLCANO_POD_NAME_FORMAT.format(job=name, task=task["name"], index=0)
        try:
            resp = self.api.pod_log(
                Op("get", "pods/log", "", ns, pod), pod, ns, container=container, tail_lines=tail_lines
            )
            return last_progress(_split_ts(raw)[1] for raw in _iter_lines(resp))
        except VitjobError as exc:
            log.debug("no training progress from %s: %s", pod, exc)
            return None

    def _pending_reasons(self, job: dict, pods: list[dict], ns: str) -> list[str]:
        """Why the job waits, from what Volcano really records.

        Volcano never writes ``status.state.reason``/``message`` (job_controller_actions.go), and its
        capacity/proportion/overcommit plugins record why a PodGroup waits as *Normal* events with reason
        ``Unschedulable`` (only the scheduler cache's per-pod notes are Warnings), so both event types count;
        the PodGroup's phase and conditions say whether it was admitted to its queue at all.
        """
        reasons: list[str] = []
        if not job.get("status"):
            reasons.append(
                "the Volcano controller has not processed the job yet (no status): check that the "
                "volcano-controllers and volcano-scheduler pods are running"
            )
        pg_name, pg = self._podgroup(job, ns, reasons)
        if pg is not None:
            pg_status = pg.get("status") or {}
            phase = pg_status.get("phase") or "Pending"
            if phase in ("Pending", "Inqueue"):
                what = ("not admitted to its queue yet" if phase == "Pending"
                        else "admitted to its queue; waiting for all its pods to fit at once (gang)")
                reasons.append(f"PodGroup {pg_name} {phase}: {what}")
            for cond in pg_status.get("conditions") or []:
                if cond.get("status") == "True" and cond.get("type") != "Scheduled":
                    text = f"PodGroup {cond.get('type')}: {cond.get('reason', '')}: {cond.get('message', '')}"
                    reasons.append(text.rstrip(": "))
        names = {job["metadata"]["name"], pg_name} | {p["metadata"]["name"] for p in pods}
        reasons += self._event_reasons(ns, names, normal_reasons=PENDING_EVENT_REASONS)
        for pod in pods:
            waiting = (_container_status(pod).get("state") or {}).get("waiting") or {}
            if waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
                text = f"pod {pod['metadata']['name']}: {waiting['reason']}: {waiting.get('message', '')}"
                reasons.append(text.rstrip(": "))
        return reasons

    def _podgroup(self, job: dict, ns: str, reasons: list[str]) -> tuple[str, dict | None]:
        """The job's PodGroup (``<job>-<uid>``, or ``<job>`` for jobs from before Volcano 1.5)."""
        pg_name = f"{job['metadata']['name']}-{job['metadata']['uid']}"
        for candidate in (pg_name, job["metadata"]["name"]):
            try:
                pg = self._get_or_none(
                    Op("get", "podgroups", SCHED_GROUP, ns, candidate),
                    self.api.custom.get_namespaced_custom_object,
                    SCHED_GROUP,
                    SCHED_VERSION,
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
        for pod in sorted(pods, key=lambda p: (_rank(p) or 0, p["metadata"]["name"])):
            cs = _container_status(pod)
            for when, term in (
                ("", (cs.get("state") or {}).get("terminated")),
                (" (previous run)", (cs.get("lastState") or {}).get("terminated")),
            ):
                if term and term.get("exitCode", 0) != 0:
                    msg = (term.get("message") or "").strip()
                    reasons.append(
                        f"pod {pod['metadata']['name']}{when} exited with code {term['exitCode']} "
                        f"({term.get('reason', 'Error')})" + (f": {msg}" if msg else "")
                    )
                    failed.append((pod, bool(when)))
                    break
        reasons += self._event_reasons(ns, {job["metadata"]["name"]}, normal_reasons=FAILURE_EVENT_REASONS)
        if failed:
            pod, previous = failed[0]
            try:
                lines = self._read_log(pod, ns, previous=previous, tail=10)
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
    def _read_log(
        self,
        pod: dict,
        ns: str,
        *,
        previous: bool = False,
        tail: int | None = None,
        since_s: int | None = None,
    ) -> list[tuple[int, str]]:
        name = pod["metadata"]["name"]
        resp = self.api.pod_log(
            Op("get", "pods/log", "", ns, name),
            name,
            ns,
            container=pod["spec"]["containers"][0]["name"],
            previous=previous,
            tail_lines=tail,
            since_seconds=since_s,
        )
        out = []
        for raw in _iter_lines(resp):
            ts, line = _split_ts(raw)
            out.append((ts, line))
        return out

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
            follower = _JobFollower(self, name, ns, rank=rank, pod=pod, tail=tail, since_s=since_s)
            yield from follower.run()
            return
        self._get_job(name, ns)  # JobNotFoundError rather than "no pods"
        pods = [p for p in self._job_pods(name, ns) if _selected(p, rank, pod)]
        if not pods:
            log.info("job %s has no matching pods yet; `vitjob logs -f %s` waits for them", name, name)
        merged: list[tuple[int, int, str]] = []
        for i, p in enumerate(pods):
            if not previous and not _container_started(p):
                log.info("pod %s has not started yet", p["metadata"]["name"])
                continue
            prefix = _prefix(p["metadata"]["name"], _rank(p))
            merged += [
                (ts, i, prefix + line)
                for ts, line in self._read_log(p, ns, previous=previous, tail=tail, since_s=since_s)
            ]
        for _, _, line in sorted(merged, key=lambda t: (t[0], t[1])):
            yield line

    # --------------------------------------------------------------------------------------- watch
    def _list_watch(
        self,
        op: Op,
        list_fn: Callable[..., Any],
        args: tuple,
        stop: threading.Event,
        holder: _StreamHolder | None = None,
        deadline: float | None = None,
        **selectors: str,
    ) -> Iterator[tuple[str, Any]]:
        """("SYNC", items) after every (re)list, then watch events; re-lists on 410 Gone."""
        rv: str | None = None
        watch_op = Op("watch", op.plural, op.group, op.namespace)
        while not stop.is_set():
            if rv is None:
                listed = self.api.call(op, list_fn, *args, **selectors)
                rv = listed["metadata"]["resourceVersion"]
                yield "SYNC", listed["items"]
            timeout = self.follow_opts.watch_timeout_s
            if deadline is not None:
                timeout = max(1, min(timeout, int(deadline - time.monotonic()) + 1))
            try:
                resp = self.api.call(
                    watch_op,
                    list_fn,
                    *args,
                    stream=True,
                    read_timeout=timeout + 30.0,
                    watch=True,
                    resource_version=rv,
                    timeout_seconds=timeout,
                    allow_watch_bookmarks=True,
                    **selectors,
                )
            except _Expired:
                log.debug("%s: HTTP 410 for resourceVersion %s; re-listing", watch_op.what(), rv)
                rv = None
                continue
            if holder is not None:
                holder.set(resp)
                if stop.is_set():  # stopped while the watch was opening: close() missed this stream
                    _close_quietly(resp)
                    return
            try:
                for line in _iter_lines(resp):
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        if obj.get("code") == 410:
                            raise _Expired()
                        raise _to_error(watch_op, obj.get("code") or 500, json.dumps(obj), self.api.server)
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    if event.get("type") != "BOOKMARK":
                        yield event["type"], obj
                    if stop.is_set():
                        return
            except _Expired:
                log.debug("%s: resourceVersion %s expired (410 Gone); re-listing", watch_op.what(), rv)
                rv = None
            except (OSError, ValueError, _urllib3_errors()) as exc:
                if stop.is_set():
                    return
                log.debug("%s: stream interrupted (%s); resuming from %s", watch_op.what(), exc, rv)
                time.sleep(min(1.0, self.poll_s))
            if deadline is not None and time.monotonic() >= deadline:
                return

    def _watch_job(
        self,
        name: str,
        ns: str,
        stop: threading.Event,
        holder: _StreamHolder | None = None,
        deadline: float | None = None,
    ) -> Iterator[dict | None]:
        """The job object each time it changes; None when it was deleted."""
        op = Op("list", VC_JOBS, VC_GROUP, ns)
        for kind, obj in self._list_watch(
            op,
            self.api.custom.list_namespaced_custom_object,
            (VC_GROUP, VC_VERSION, ns, VC_JOBS),
            stop,
            holder,
            deadline,
            field_selector=f"metadata.name={name}",
        ):
            if kind == "SYNC":
                yield obj[0] if obj else None
            elif kind == "DELETED":
                yield None
            else:
                yield obj

    # ---------------------------------------------------------------------------------------- wait
    def wait(self, name: str, timeout_s: float | None = None) -> JobStatus:
        ns = self._ns()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        stop = threading.Event()
        phase = JobPhase.UNKNOWN
        for job in self._watch_job(name, ns, stop, deadline=deadline):
            if job is None:
                raise JobNotFoundError(
                    f"job {name!r} not found in namespace {ns!r} (or it was deleted while "
                    "waiting); `vitjob list` shows the jobs there"
                )
            phase = _phase(job)
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
        phase = _phase(job)
        if phase.is_terminal:
            raise BackendError(
                f"job {name!r} already finished ({phase}); nothing to cancel — "
                f"`vitjob delete {name}` removes it"
            )
        owner = {
            "apiVersion": f"{VC_GROUP}/{VC_VERSION}",
            "kind": "Job",
            "name": name,
            "uid": job["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
        command = {
            "apiVersion": f"{BUS_GROUP}/{BUS_VERSION}",
            "kind": "Command",
            "metadata": {"generateName": f"{name}-abortjob-", "namespace": ns, "ownerReferences": [owner]},
            "action": "AbortJob",
            "target": owner,
            "reason": "vitjob cancel",
            "message": "aborted with `vitjob cancel`",
        }
        self.api.call(
            Op("create", BUS_COMMANDS, BUS_GROUP, ns),
            self.api.custom.create_namespaced_custom_object,
            BUS_GROUP,
            BUS_VERSION,
            ns,
            BUS_COMMANDS,
            command,
        )
        log.debug("asked Volcano to abort job %s/%s", ns, name)

    def delete(self, name: str) -> None:
        ns = self._ns()
        job = self._get_job(name, ns)
        self._delete_job(job, ns)

    def _delete_job(self, job: dict, ns: str) -> None:
        name = job["metadata"]["name"]
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        self.api.call(
            Op("delete", VC_JOBS, VC_GROUP, ns, name),
            self.api.custom.delete_namespaced_custom_object,
            VC_GROUP,
            VC_VERSION,
            ns,
            VC_JOBS,
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
            group, plural, _ = _kind_info(obj)
            op = Op("delete", plural, group, obj["metadata"]["namespace"], ref["name"])
            try:
                self.api.call(op, self._delete_fn(obj), body=body)
            except ResourceNotFoundError:
                log.debug("%s %s was already gone", ref["kind"], ref["name"])
        log.debug("deleted job %s/%s and %d supporting object(s)", ns, name, len(refs))

    def _delete_fn(self, obj: dict) -> Callable[..., Any]:
        group, plural, _ = _kind_info(obj)
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        if not group:
            fn = getattr(self.api.core, f"delete_namespaced_{CORE_KINDS[obj['kind']]}")
            return lambda **kw: fn(name, ns, **kw)
        version = obj["apiVersion"].split("/", 1)[1]
        return lambda **kw: self.api.custom.delete_namespaced_custom_object(
            group, version, ns, plural, name, **kw
        )

    def list_jobs(self, all_namespaces: bool = False) -> list[JobStatus]:
        selector = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
        if all_namespaces:
            items = self.api.call(
                Op("list", VC_JOBS, VC_GROUP),
                self.api.custom.list_cluster_custom_object,
                VC_GROUP,
                VC_VERSION,
                VC_JOBS,
                label_selector=selector,
            )["items"]
        else:
            ns = self._ns()
            items = self.api.call(
                Op("list", VC_JOBS, VC_GROUP, ns),
                self.api.custom.list_namespaced_custom_object,
                VC_GROUP,
                VC_VERSION,
                ns,
                VC_JOBS,
                label_selector=selector,
            )["items"]
        statuses = sorted((_job_status(j) for j in items), key=lambda s: (s.namespace, s.name))
        by_key = {(j["metadata"].get("namespace", ""), j["metadata"]["name"]): j for j in items}
        for st in statuses:
            if st.phase == JobPhase.RUNNING and st.stage == "train":
                st.progress = self.train_progress(st.name, st.namespace, job=by_key[(st.namespace, st.name)])
        return statuses


# ----------------------------------------------------------------------------------------- following
class _StreamHolder:
    """Keeps the open response of a watch so another thread can close it to stop the watch."""

    def __init__(self) -> None:
        self.resp: Any = None

    def set(self, resp: Any) -> None:
        self.resp = resp

    def close(self) -> None:
        if self.resp is not None:
            _close_quietly(self.resp)


def _close_quietly(resp: Any) -> None:
    """Unblock a thread reading ``resp`` (urllib3 ≥ 2.3 ``shutdown``), then close it."""
    try:
        if hasattr(resp, "shutdown"):
            resp.shutdown()
        resp.close()
    except Exception:  # closing a stream another thread reads may raise anything; it is ending anyway
        log.debug("closing a stream raised", exc_info=True)


_DONE = object()


@dataclass
class _PodTrack:
    """Where a pod's log stream stands: no line is lost or repeated across reconnects and restarts."""

    uid: str
    name: str
    rank: int | None
    container: str
    last_ns: int = 0  # timestamp of the newest line emitted
    at_last: int = 0  # how many lines with exactly ``last_ns`` were emitted
    run: int | None = None  # restartCount of the container run being read
    opened: bool = False
    pod: dict = field(default_factory=dict)  # latest object from the pod watch
    deleted: bool = False


class _JobFollower:
    """``logs -f``: watches the job and its pods, one log-reading thread per pod (keyed by UID)."""

    def __init__(
        self,
        backend: KubernetesBackend,
        name: str,
        ns: str,
        *,
        rank: int | None,
        pod: str | None,
        tail: int | None,
        since_s: int | None,
    ):
        self.b, self.name, self.ns = backend, name, ns
        self.rank, self.pod_name, self.tail, self.since_s = rank, pod, tail, since_s
        self.out: queue.Queue[Any] = queue.Queue()
        self.stop = threading.Event()
        self.cond = threading.Condition()
        self.tracks: dict[str, _PodTrack] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.job_done_at: float | None = None
        self.holders = [_StreamHolder(), _StreamHolder()]
        self.log_streams: set[Any] = set()  # open log responses, closed when following ends
        self.pods_synced = False
        self.error: BaseException | None = None

    # the generator the caller iterates
    def run(self) -> Iterator[str]:
        watchers = [
            threading.Thread(target=self._guard(self._watch_job), daemon=True, name=f"job-{self.name}"),
            threading.Thread(target=self._guard(self._watch_pods), daemon=True, name=f"pods-{self.name}"),
        ]
        for t in watchers:
            t.start()
        try:
            while True:
                try:
                    item = self.out.get(timeout=0.2)
                except queue.Empty:
                    item = None
                if isinstance(item, str):
                    yield item
                    continue
                if self.error is not None:
                    raise self.error
                if self._finished():
                    while not self.out.empty():
                        item = self.out.get_nowait()
                        if isinstance(item, str):
                            yield item
                    return
        finally:
            self.stop.set()
            with self.cond:
                self.cond.notify_all()
            for h in self.holders:
                h.close()
            with self.cond:
                streams = list(self.log_streams)
            for resp in streams:
                _close_quietly(resp)

    def _finished(self) -> bool:
        with self.cond:
            if self.job_done_at is None or not self.pods_synced:
                return False
            alive = [t for t in self.threads.values() if t.is_alive()]
            if not alive:
                return True
            if time.monotonic() - self.job_done_at > self.b.follow_opts.end_grace_s:
                log.info("job %s finished; stopping %d log stream(s) still open", self.name, len(alive))
                return True
            return False

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except VitjobError as exc:
                if not self.stop.is_set():
                    self.error = exc
            except Exception as exc:  # a bug must end the follow with a message, not hang it
                if not self.stop.is_set():
                    log.debug("log follower crashed", exc_info=True)
                    self.error = BackendError(f"following the logs of {self.name!r} failed: {exc!r}")

        return run

    def _watch_job(self) -> None:
        first = True
        for job in self.b._watch_job(self.name, self.ns, self.stop, self.holders[0]):
            if first and job is None:
                raise JobNotFoundError(
                    f"job {self.name!r} not found in namespace {self.ns!r}; "
                    "`vitjob list` shows the jobs there (-A: all namespaces)"
                )
            first = False
            with self.cond:
                if (job is None or _phase(job).is_terminal) and self.job_done_at is None:
                    self.job_done_at = time.monotonic()
                self.cond.notify_all()
            if job is None:
                return

    def _watch_pods(self) -> None:
        selector = f"{POD_JOB_LABEL}={self.name}"
        if self.rank is not None:
            selector += f",{POD_INDEX_LABEL}={self.rank}"
        op = Op("list", "pods", "", self.ns)
        for kind, obj in self.b._list_watch(
            op,
            self.b.api.core.list_namespaced_pod,
            (self.ns,),
            self.stop,
            self.holders[1],
            label_selector=selector,
        ):
            with self.cond:
                if kind == "SYNC":
                    self.pods_synced = True
                    current = {p["metadata"]["uid"]: p for p in obj}
                    for uid, track in self.tracks.items():
                        track.deleted = uid not in current
                        track.pod = current.get(uid, track.pod)
                    for p in obj:
                        self._track(p)
                elif kind == "DELETED":
                    if obj["metadata"]["uid"] in self.tracks:
                        self.tracks[obj["metadata"]["uid"]].deleted = True
                else:
                    self._track(obj)
                self.cond.notify_all()

    def _track(self, pod: dict) -> None:
        if self.pod_name and pod["metadata"]["name"] != self.pod_name:
            return
        uid = pod["metadata"]["uid"]
        if uid in self.tracks:
            self.tracks[uid].pod = pod
            return
        track = _PodTrack(
            uid, pod["metadata"]["name"], _rank(pod), pod["spec"]["containers"][0]["name"], pod=pod
        )
        self.tracks[uid] = track
        thread = threading.Thread(
            target=self._guard(lambda: self._follow_pod(track)), daemon=True, name=f"log-{track.name}"
        )
        self.threads[uid] = thread
        thread.start()

    # one pod
    def _follow_pod(self, track: _PodTrack) -> None:
        prefix = _prefix(track.name, track.rank)
        backoff = 0.1
        while not self.stop.is_set():
            if not self._wait_started(track):
                return
            pod = self.b._get_or_none(
                Op("get", "pods", "", self.ns, track.name),
                self.b.api.core.read_namespaced_pod,
                track.name,
                self.ns,
            )
            if pod is None or pod["metadata"]["uid"] != track.uid:
                return  # deleted (e.g. the job was retried: its replacement has its own follower)
            cs = _container_status(pod)
            restarts = int(cs.get("restartCount") or 0)
            if track.run is not None and restarts > track.run:
                # The container restarted since we last read: collect the rest of the run we were reading.
                self._read(track, prefix, previous=True, follow=False)
                if restarts > track.run + 1:
                    log.warning(
                        "pod %s restarted %d times while its log stream was down; the kubelet keeps "
                        "only the previous run's log",
                        track.name,
                        restarts - track.run,
                    )
            track.run = restarts
            state = cs.get("state") or {}
            finished = pod.get("status", {}).get("phase") in FINISHED_POD_PHASES
            if "waiting" in state and not finished:
                self._wait_change(track, pod)
                continue
            got = self._read(track, prefix, previous=False, follow=not finished and "terminated" not in state)
            if finished:
                return
            if "terminated" in state:
                self._wait_change(track, pod)  # between runs: wait for the restart or the pod's end
            elif not got:
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.1

    def _wait_started(self, track: _PodTrack) -> bool:
        """Block until the pod's container has started (or the pod is gone / we stop)."""
        deadline = time.monotonic() + self.b.follow_opts.pod_recheck_s
        with self.cond:
            while not self.stop.is_set():
                if track.deleted:
                    return False
                if _container_started(track.pod) or time.monotonic() >= deadline:
                    return True
                self.cond.wait(timeout=0.5)
        return False

    def _wait_change(self, track: _PodTrack, seen: dict) -> None:
        version = seen["metadata"].get("resourceVersion")
        deadline = time.monotonic() + self.b.follow_opts.pod_recheck_s
        with self.cond:
            while not self.stop.is_set() and not track.deleted and time.monotonic() < deadline:
                if track.pod["metadata"].get("resourceVersion") != version and int(
                    track.pod["metadata"].get("resourceVersion") or 0
                ) > int(version or 0):
                    return
                self.cond.wait(timeout=0.5)

    def _read(self, track: _PodTrack, prefix: str, *, previous: bool, follow: bool) -> int:
        """Read one log response, emitting only lines newer than the last one emitted; returns how many."""
        first = not track.opened
        since_time = _since_time(track.last_ns) if track.last_ns else None
        try:
            resp = self.b.api.pod_log(
                Op("get", "pods/log", "", self.ns, track.name),
                track.name,
                self.ns,
                container=track.container,
                follow=follow,
                previous=previous,
                since_time=since_time,
                tail_lines=self.tail if first and not since_time else None,
                since_seconds=self.since_s if first and not since_time else None,
                read_timeout=self.b.follow_opts.log_read_timeout_s if follow else None,
            )
        except (ResourceNotFoundError, BackendError) as exc:
            if isinstance(exc, (AuthError, ClusterUnreachableError)):
                raise
            log.debug("log of %s not available now: %s", track.name, exc)
            return 0
        track.opened = True
        emitted = same = 0
        with self.cond:
            self.log_streams.add(resp)
        try:
            for raw in _iter_lines(resp):
                ts, line = _split_ts(raw)
                if ts < track.last_ns:
                    continue
                if ts == track.last_ns:
                    same += 1
                    if same <= track.at_last:
                        continue
                    track.at_last += 1
                else:
                    track.last_ns, track.at_last, same = ts, 1, 1
                self.out.put(prefix + line)
                emitted += 1
                if self.stop.is_set():
                    break
        except (OSError, ValueError, _urllib3_errors()) as exc:
            log.debug("log stream of %s interrupted (%s); reconnecting", track.name, exc)
        finally:
            with self.cond:
                self.log_streams.discard(resp)
        return emitted


# ------------------------------------------------------------------------------------------- helpers
def _urllib3_errors() -> type[Exception]:
    import urllib3

    return urllib3.exceptions.HTTPError


def _split_ts(raw: str) -> tuple[int, str]:
    stamp, _, line = raw.partition(" ")
    try:
        return _parse_ts(stamp), line
    except ValueError:
        return 0, raw


def _container_started(pod: dict) -> bool:
    cs = _container_status(pod)
    state = cs.get("state") or {}
    return "running" in state or "terminated" in state or int(cs.get("restartCount") or 0) > 0


def _selected(pod: dict, rank: int | None, name: str | None) -> bool:
    return (rank is None or _rank(pod) == rank) and (name is None or pod["metadata"]["name"] == name)


def _split_objects(objects: list[dict]) -> tuple[dict, list[dict]]:
    jobs = [
        o for o in objects if o.get("kind") == "Job" and o.get("apiVersion") == f"{VC_GROUP}/{VC_VERSION}"
    ]
    if len(jobs) != 1:
        raise BackendError(
            f"expected exactly one Volcano Job ({VC_GROUP}/{VC_VERSION}) among the objects to "
            f"submit, found {len(jobs)}"
        )
    for obj in objects:
        _kind_info(obj)  # fail before creating anything
    return jobs[0], [o for o in objects if o is not jobs[0]]


def _kind_info(obj: dict) -> tuple[str, str, bool]:
    """(group, plural, namespaced) for an object submit knows how to create."""
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    if not group and kind in CORE_KINDS:
        return "", CORE_KINDS[kind].replace("_", "") + "s", True
    if (group, kind) in CUSTOM_PLURALS:
        return group, CUSTOM_PLURALS[(group, kind)], True
    known = ", ".join([*CORE_KINDS, "Volcano Job", "PodGroup"])
    raise BackendError(f"cannot submit a {api_version} {kind}: vitjob creates only {known}")


def _quantity(text: str | int) -> float:
    units = {"k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "m": 1e-3}
    m = re.match(r"^([0-9.]+)([a-zA-Z]*)$", str(text))
    if not m:
        return 0.0
    return float(m.group(1)) * units.get(m.group(2), 1.0)


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
                    pod_need[key] = pod_need.get(key, 0) + _quantity(value)
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


def kubeconfig_available() -> bool:
    """A kubeconfig file exists ($KUBECONFIG entries or ~/.kube/config)."""
    env = os.environ.get("KUBECONFIG")
    paths = env.split(os.pathsep) if env else [os.path.expanduser("~/.kube/config")]
    return any(p and Path(p).expanduser().is_file() for p in paths)


def in_cluster_available() -> bool:
    """Running in a pod with a service-account token."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (SA_DIR / "token").is_file()
