"""The pipeline controller: ``vitjob controller`` runs ``vitjob.pipeline.reconcile`` for every pipeline.

It watches the VitJobs and the vitjob Volcano Jobs of one namespace (or all), keeps
what it saw in a cache, and reconciles a pipeline whenever one of its objects changes, plus every
``resync_s`` (level-based: a missed event only delays a step). All state is on the cluster; the
cache is only a copy of it, rebuilt from a fresh list at every start, so the process can be killed
at any moment: the next one neither duplicates a stage (deterministic job names; "already exists"
counts as created) nor skips one.

Guards against a stale cache: writes go back into the cache at once; progress is recorded with the
VitJob's resourceVersion as precondition (a stale record gets 409 and is read again); and a job
recorded as created but missing from the cache is read from the API server before the pipeline is
reported as broken.

With ``leader_elect`` several replicas may run: a ``coordination.k8s.io/v1`` Lease elects one, the
only one that watches and acts. A leader that cannot renew the Lease for ``renew_deadline_s`` stops
acting (before ``lease_duration_s`` lets another take over) and stands by again. A health endpoint
answers ``/healthz`` (its loops are alive) and ``/readyz`` (it reached the API server and, as
leader, has listed everything).
"""

from __future__ import annotations

import heapq
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from vitjob import constants as c
from vitjob.api.status import StageState
from vitjob.backends.kubernetes.backend import KubernetesBackend
from vitjob.backends.kubernetes.store import (
    KubernetesPipelineStore,
    record_from_vitjob,
    stage_job_from_object,
)
from vitjob.constants import VOLCANO_GROUP, VOLCANO_PLURAL, VOLCANO_VERSION
from vitjob.errors import (
    ConflictError,
    PipelineNotFoundError,
    ResourceNotFoundError,
    UsageError,
    VitjobError,
)
from vitjob.kube.errors import Op
from vitjob.kube.times import micro_time_text
from vitjob.kube.watch import StreamHolder, list_watch
from vitjob.pipeline.model import Observed, PipelineRecord, StageJob, UpdatePipeline
from vitjob.pipeline.reconcile import reconcile
from vitjob.pipeline.runner import apply

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
JOB_SELECTOR = f"{c.LABEL_MANAGED_BY}={c.APP_NAME}"
LEASES = "leases"


@dataclass
class ControllerOptions:
    """How the controller runs.

    Args:
        namespace: the namespace watched (None: the backend's, i.e. the context's or the pod's).
        all_namespaces: watch every namespace (needs the ClusterRole variant of the RBAC).
        leader_elect: elect one active replica through a Lease in ``lease_namespace``.
        identity: this replica's name in the Lease ("": $VITJOB_CONTROLLER_ID, else host + random).
        lease_name, lease_namespace: the Lease (namespace None: the backend's namespace).
        lease_duration_s, renew_deadline_s, retry_period_s: leader-election timings (client-go's
            meaning); tests shorten them.
        resync_s: every pipeline is reconciled at least this often.
        health_host, health_port: the health endpoint (port 0: any free port; None: no endpoint).
        health_stale_s: /healthz fails when the main loop has not ticked for this long.
        error_backoff_s, max_backoff_s: a pipeline whose step failed is retried after this delay,
            doubled at each failure up to the maximum.
    """

    namespace: str | None = None
    all_namespaces: bool = False
    leader_elect: bool = False
    identity: str = ""
    lease_name: str = c.CONTROLLER_NAME
    lease_namespace: str | None = None
    lease_duration_s: float = c.DEFAULT_LEASE_DURATION_S
    renew_deadline_s: float = c.DEFAULT_RENEW_DEADLINE_S
    retry_period_s: float = c.DEFAULT_RETRY_PERIOD_S
    resync_s: float = c.DEFAULT_RESYNC_S
    health_host: str = "0.0.0.0"
    health_port: int | None = c.DEFAULT_HEALTH_PORT
    health_stale_s: float = 60.0
    error_backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period_s < self.renew_deadline_s < self.lease_duration_s:
            raise UsageError(
                "leader election needs 0 < retry period < renew deadline < lease duration, got "
                f"{self.retry_period_s:g} s, {self.renew_deadline_s:g} s, {self.lease_duration_s:g} s; "
                f"the defaults are {c.DEFAULT_RETRY_PERIOD_S:g}, {c.DEFAULT_RENEW_DEADLINE_S:g}, "
                f"{c.DEFAULT_LEASE_DURATION_S:g}"
            )
        if self.namespace and self.all_namespaces:
            raise UsageError("pass either --namespace or --all-namespaces, not both")
        if not self.identity:
            self.identity = os.environ.get(c.ENV_CONTROLLER_ID) or (
                f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
            )


# ------------------------------------------------------------------------------------------- cache
def _rv(meta: dict[str, Any] | str) -> int | None:
    text = meta if isinstance(meta, str) else meta.get("resourceVersion", "")
    return int(text) if text.isdigit() else None


def _newer(new: int | None, old: int | None) -> bool:
    """Whether an object at ``new`` replaces the cached one at ``old`` (opaque versions: always)."""
    return new is None or old is None or new >= old


class _Cache:
    """What the watches saw: pipeline records and stage jobs, keyed by (namespace, name)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pipelines: dict[Key, PipelineRecord] = {}
        self.jobs: dict[Key, tuple[int | None, StageJob]] = {}
        self.job_owner: dict[Key, Key] = {}  # stage job → its pipeline

    # pipelines
    def sync_pipelines(self, vitjobs: list[dict[str, Any]]) -> list[Key]:
        with self.lock:
            self.pipelines.clear()
            self.job_owner.clear()
        for obj in vitjobs:
            self.put_pipeline(record_from_vitjob(obj))
        with self.lock:
            return list(self.pipelines)

    def put_pipeline(self, record: PipelineRecord) -> Key:
        key = (record.namespace, record.name)
        with self.lock:
            old = self.pipelines.get(key)
            if (
                old is not None
                and old.uid == record.uid
                and not _newer(_rv(record.version), _rv(old.version))
            ):
                return key
            self.pipelines[key] = record
            for job in record.job_names.values():
                self.job_owner[(record.namespace, job)] = key
        return key

    def drop_pipeline(self, namespace: str, name: str) -> None:
        with self.lock:
            record = self.pipelines.pop((namespace, name), None)
            for job in record.job_names.values() if record else ():
                self.job_owner.pop((namespace, job), None)

    def pipeline(self, key: Key) -> PipelineRecord | None:
        with self.lock:
            return self.pipelines.get(key)

    def pipeline_keys(self, *, active_only: bool = False) -> list[Key]:
        with self.lock:
            return [k for k, r in self.pipelines.items() if not (active_only and r.phase.is_terminal)]

    # jobs
    def sync_jobs(self, jobs: list[dict[str, Any]]) -> None:
        with self.lock:
            self.jobs.clear()
        for job in jobs:
            self.put_job(job)

    def put_job(self, job: dict[str, Any]) -> Key | None:
        """Cache ``job``; return the key of the pipeline it belongs to, if any."""
        meta = job["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        rv = _rv(meta)
        with self.lock:
            old = self.jobs.get(key)
            if old is None or _newer(rv, old[0]):
                self.jobs[key] = (rv, stage_job_from_object(job))
            return self.job_owner.get(key)

    def drop_job(self, job: dict[str, Any]) -> Key | None:
        meta = job["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        with self.lock:
            self.jobs.pop(key, None)
            return self.job_owner.get(key)

    def job(self, key: Key) -> StageJob | None:
        with self.lock:
            entry = self.jobs.get(key)
            return entry[1] if entry else None


class _CachedStore(KubernetesPipelineStore):
    """The Kubernetes ``PipelineStore`` reading from the controller's cache and writing through it."""

    def __init__(self, backend: KubernetesBackend, namespace: str, cache: _Cache, component: str):
        super().__init__(backend, namespace, component)
        self.cache = cache

    def get_pipeline(self, name: str) -> PipelineRecord:
        record = self.cache.pipeline((self.namespace, name))
        if record is None:
            raise PipelineNotFoundError(f"pipeline {self.namespace}/{name} is gone")
        return record

    def list_stage_jobs(self, pipeline: PipelineRecord) -> dict[str, StageJob]:
        jobs = {}
        for stage in pipeline.stages:
            job = self.cache.job((pipeline.namespace, pipeline.job_names[stage]))
            if job is None and pipeline.progress.get(stage) == StageState.CREATED:
                # Recorded as created but not in the cache: ask the API server before calling it deleted.
                obj = self.backend.get_job_or_none(pipeline.namespace, pipeline.job_names[stage])
                if obj is not None:
                    self.cache.put_job(obj)
                    job = stage_job_from_object(obj)
            if job is not None:
                jobs[stage] = job
        return jobs

    def create_stage(self, pipeline: PipelineRecord, stage: str) -> None:
        created = self.create_stage_objects(pipeline, stage)
        if created is not None:
            self.cache.put_job(created)

    def update_pipeline(self, pipeline: PipelineRecord, update: UpdatePipeline) -> PipelineRecord:
        record = super().update_pipeline(pipeline, update)
        self.cache.put_pipeline(record)
        return record

    def refresh(self, name: str) -> None:
        """Read the pipeline again from the API server (after a 409 on a stale record)."""
        obj = self.read_vitjob(name, self.namespace)
        if obj is None:
            self.cache.drop_pipeline(self.namespace, name)
        else:
            self.cache.put_pipeline(record_from_vitjob(obj))


# -------------------------------------------------------------------------------------- work queue
class _WorkQueue:
    """Pipeline keys to reconcile, each at most once in the queue; delayed retries."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._ready: dict[Key, None] = {}  # insertion-ordered set
        self._delayed: list[tuple[float, Key]] = []

    def add(self, key: Key) -> None:
        with self._cond:
            self._ready[key] = None
            self._cond.notify()

    def add_after(self, key: Key, delay_s: float) -> None:
        with self._cond:
            heapq.heappush(self._delayed, (time.monotonic() + delay_s, key))
            self._cond.notify()

    def get(self, timeout_s: float) -> Key | None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    self._ready[heapq.heappop(self._delayed)[1]] = None
                if self._ready:
                    key = next(iter(self._ready))
                    del self._ready[key]
                    return key
                wake = min([deadline, *(d for d, _ in self._delayed[:1])])
                if now >= deadline:
                    return None
                self._cond.wait(max(0.0, wake - now))

    def __len__(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._delayed)


# --------------------------------------------------------------------------------- leader election
class LeaseElector:
    """Leader election through a ``coordination.k8s.io/v1`` Lease, as client-go does it.

    The holder renews ``spec.renewTime`` every ``retry_period_s``. Another candidate takes over only
    when it has seen the Lease unchanged for ``lease_duration_s`` by its own clock (no clock-skew
    trust), writing with the Lease's resourceVersion so that only one of several candidates wins.
    """

    def __init__(
        self,
        backend: KubernetesBackend,
        *,
        name: str,
        namespace: str,
        identity: str,
        lease_duration_s: float,
        renew_deadline_s: float,
        retry_period_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.backend, self.name, self.namespace, self.identity = backend, name, namespace, identity
        self.lease_duration_s, self.renew_deadline_s = lease_duration_s, renew_deadline_s
        self.retry_period_s, self.clock = retry_period_s, clock
        self._seen_version: str | None = None
        self._seen_at = 0.0
        self.transitions = 0

    # one attempt
    def try_acquire_or_renew(self) -> bool:
        """Take or renew the Lease once; True when this replica holds it afterwards."""
        lease = self._read()
        now = self.clock()
        if lease is None:
            return self._create()
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        version = lease["metadata"].get("resourceVersion")
        if version != self._seen_version:
            self._seen_version, self._seen_at = version, now
        if holder and holder != self.identity and now - self._seen_at < self.lease_duration_s:
            return False  # another replica holds a live lease
        mine = holder == self.identity
        lease["spec"] = {
            **spec,
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration_s)),
            "renewTime": micro_time_text(),
            "acquireTime": spec.get("acquireTime") if mine else micro_time_text(),
            "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (0 if mine else 1),
        }
        if not mine:
            log.info("taking over Lease %s/%s from %r", self.namespace, self.name, holder or "nobody")
        return self._replace(lease)

    def campaign(self, stop: threading.Event, tick: Callable[[], None] = lambda: None) -> bool:
        """Try every ``retry_period_s`` until this replica leads (True) or ``stop`` is set (False)."""
        while not stop.is_set():
            tick()
            try:
                if self.try_acquire_or_renew():
                    log.info(
                        "became leader (Lease %s/%s, identity %s)", self.namespace, self.name, self.identity
                    )
                    return True
            except VitjobError as exc:
                log.warning("leader election: %s", exc)
            stop.wait(self.retry_period_s)
        return False

    def hold(self, stop: threading.Event, lost: threading.Event) -> None:
        """Renew until ``stop``; set ``lost`` when no renewal succeeded for ``renew_deadline_s``."""
        last_ok = self.clock()
        while not stop.wait(self.retry_period_s):
            try:
                ok = self.try_acquire_or_renew()
            except VitjobError as exc:
                log.warning("renewing the Lease failed: %s", exc)
                ok = False
            if ok:
                last_ok = self.clock()
            elif self.clock() - last_ok >= self.renew_deadline_s:
                log.error(
                    "could not renew Lease %s/%s for %.1f s: stopping all work and standing by",
                    self.namespace,
                    self.name,
                    self.renew_deadline_s,
                )
                lost.set()
                return

    def release(self) -> None:
        """Give the Lease up (holder "") so another replica takes over without waiting."""
        try:
            lease = self._read()
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"] = {
                **lease["spec"],
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "renewTime": micro_time_text(),
            }
            self._replace(lease)
            log.info("released Lease %s/%s", self.namespace, self.name)
        except VitjobError as exc:
            log.warning("could not release the Lease (the others take over when it expires): %s", exc)

    # requests
    def _read(self) -> dict[str, Any] | None:
        api = self.backend.api
        coord = _coordination(api.client)
        op = Op("get", LEASES, c.LEASE_GROUP, self.namespace, self.name)
        try:
            return api.call(op, coord.read_namespaced_lease, self.name, self.namespace)
        except ResourceNotFoundError:
            return None

    def _create(self) -> bool:
        api = self.backend.api
        now = micro_time_text()
        body = {
            "apiVersion": f"{c.LEASE_GROUP}/{c.LEASE_VERSION}",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {c.LABEL_MANAGED_BY: c.APP_NAME, c.LABEL_COMPONENT: c.CONTROLLER_COMPONENT},
            },
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": max(1, round(self.lease_duration_s)),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
        try:
            api.call(
                Op("create", LEASES, c.LEASE_GROUP, self.namespace),
                _coordination(api.client).create_namespaced_lease,
                self.namespace,
                body,
            )
            return True
        except ConflictError:
            return False

    def _replace(self, lease: dict[str, Any]) -> bool:
        api = self.backend.api
        try:
            api.call(
                Op("update", LEASES, c.LEASE_GROUP, self.namespace, self.name),
                _coordination(api.client).replace_namespaced_lease,
                self.name,
                self.namespace,
                lease,
            )
        except ConflictError:
            return False  # another replica wrote first
        self._seen_version = None
        return True


def _coordination(api_client: Any) -> Any:
    from kubernetes import client

    return client.CoordinationV1Api(api_client)


# ------------------------------------------------------------------------------------------ health
class _HealthServer:
    """``/healthz`` and ``/readyz`` on ``host:port``; answers from ``Controller.health``."""

    def __init__(self, controller: Controller, host: str, port: int):
        ctl = controller

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                checks = {"/healthz": ctl.healthy, "/readyz": ctl.ready}
                check = checks.get(self.path.split("?")[0])
                if check is None:
                    self._answer(404, "not found: use /healthz or /readyz\n")
                    return
                ok, text = check()
                self._answer(200 if ok else 503, text + "\n")

            def _answer(self, code: int, text: str) -> None:
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("health: " + format, *args)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="health")

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.thread.start()
        log.info("health endpoint on http://%s:%d/healthz and /readyz", *self.address)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -------------------------------------------------------------------------------------- controller
@dataclass
class ControllerStats:
    """Counters for logs, /readyz and the benchmark."""

    reconciles: int = 0
    actions: int = 0
    errors: int = 0
    leader_sessions: int = 0
    last_error: str = ""


@dataclass
class _Session:
    """One period of leadership: its stop signal, watch streams and what has been listed."""

    stop: threading.Event = field(default_factory=threading.Event)
    holders: dict[str, StreamHolder] = field(default_factory=dict)
    synced: set[str] = field(default_factory=set)
    threads: list[threading.Thread] = field(default_factory=list)


class Controller:
    """Reconciles every pipeline of a namespace (or all) on a Kubernetes cluster.

    Args:
        backend: the ``KubernetesBackend`` whose client and namespace it uses.
        options: see ``ControllerOptions``.
    """

    def __init__(self, backend: KubernetesBackend, options: ControllerOptions | None = None):
        self.backend = backend
        self.options = options or ControllerOptions()
        self.cache = _Cache()
        self.queue = _WorkQueue()
        self.stats = ControllerStats()
        self.role = "starting"
        self.is_leader = False
        self._ready = False
        self._heartbeat = time.monotonic()
        self._failures: dict[Key, int] = {}
        self._stores: dict[str, _CachedStore] = {}
        self._health: _HealthServer | None = None
        self.elector: LeaseElector | None = None

    # ------------------------------------------------------------------------------ health
    def healthy(self) -> tuple[bool, str]:
        age = time.monotonic() - self._heartbeat
        ok = age < self.options.health_stale_s
        return ok, f"{'ok' if ok else 'stuck'}: main loop ticked {age:.1f}s ago ({self.role})"

    def ready(self) -> tuple[bool, str]:
        s = self.stats
        text = (
            f"{self.role}; {len(self.cache.pipelines)} pipelines tracked, {s.reconciles} reconciles, "
            f"{s.actions} actions, {s.errors} errors"
            + (f"; last error: {s.last_error}" if s.last_error else "")
        )
        return self._ready, ("ready: " if self._ready else "not ready: ") + text

    @property
    def health_address(self) -> tuple[str, int] | None:
        return self._health.address if self._health else None

    def _tick(self) -> None:
        self._heartbeat = time.monotonic()

    # --------------------------------------------------------------------------------- run
    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set: campaign for leadership (if asked), then lead."""
        opts = self.options
        ns = opts.namespace or self.backend.namespace
        if opts.health_port is not None:
            self._health = _HealthServer(self, opts.health_host, opts.health_port)
            self._health.start()
        scope = "all namespaces" if opts.all_namespaces else f"namespace {ns}"
        log.info("vitjob controller %s watching %s", opts.identity, scope)
        try:
            if not opts.leader_elect:
                self._lead(stop, threading.Event())
                return
            self.elector = LeaseElector(
                self.backend,
                name=opts.lease_name,
                namespace=opts.lease_namespace or self.backend.namespace,
                identity=opts.identity,
                lease_duration_s=opts.lease_duration_s,
                renew_deadline_s=opts.renew_deadline_s,
                retry_period_s=opts.retry_period_s,
            )
            while not stop.is_set():
                self.role, self._ready = "standby", True
                if not self.elector.campaign(stop, tick=self._tick):
                    return
                lost = threading.Event()
                renewer = threading.Thread(
                    target=self.elector.hold, args=(stop, lost), daemon=True, name="lease-renew"
                )
                renewer.start()
                self._lead(stop, lost)
                if not lost.is_set():
                    renewer.join()  # no renewal may land after the release
                    self.elector.release()
                    return
        finally:
            self.is_leader, self._ready, self.role = False, False, "stopped"
            if self._health is not None:
                self._health.stop()

    def _lead(self, stop: threading.Event, lost: threading.Event) -> None:
        """Watch and reconcile until ``stop`` or ``lost``; state is rebuilt from a fresh list."""
        self.cache = _Cache()
        self.queue = _WorkQueue()
        self._failures.clear()
        self._stores.clear()
        self.is_leader, self.role, self._ready = True, "leader (syncing)", False
        self.stats.leader_sessions += 1
        session = _Session()
        for kind in ("jobs", "pipelines"):
            session.holders[kind] = StreamHolder()
            t = threading.Thread(target=self._watch, args=(kind, session), daemon=True, name=f"watch-{kind}")
            session.threads.append(t)
            t.start()
        next_resync = 0.0
        try:
            while not (stop.is_set() or lost.is_set()):
                self._tick()
                if len(session.synced) < 2:
                    stop.wait(0.05)
                    continue
                if not self._ready:
                    self.role, self._ready = "leader", True
                    log.info(
                        "caches synced: %d pipelines, %d jobs",
                        len(self.cache.pipelines),
                        len(self.cache.jobs),
                    )
                if time.monotonic() >= next_resync:
                    for key in self.cache.pipeline_keys(active_only=True):
                        self.queue.add(key)
                    next_resync = time.monotonic() + self.options.resync_s
                key = self.queue.get(timeout_s=0.2)
                if key is not None and not lost.is_set():
                    self._process(key)
        finally:
            self.is_leader = False
            session.stop.set()
            for holder in session.holders.values():
                holder.close()
            for t in session.threads:
                t.join(timeout=5)

    # ------------------------------------------------------------------------------- watches
    def _watch(self, kind: str, session: _Session) -> None:
        backoff = self.options.error_backoff_s
        while not session.stop.is_set():
            try:
                for event, obj in self._stream(kind, session):
                    self._on_event(kind, event, obj, session)
                    backoff = self.options.error_backoff_s
            except Exception as exc:  # closing the stream to stop may raise anything from urllib3
                if session.stop.is_set():
                    return
                if not isinstance(exc, VitjobError):
                    log.debug("watch of %s broke", kind, exc_info=True)
                self.stats.errors += 1
                self.stats.last_error = str(exc)
                log.error("watching %s failed (retrying in %.1f s): %s", kind, backoff, exc)
                session.synced.discard(kind)
                session.stop.wait(backoff)
                backoff = min(backoff * 2, self.options.max_backoff_s)

    def _stream(self, kind: str, session: _Session) -> Iterator[tuple[str, Any]]:
        api, opts = self.backend.api, self.options
        ns = None if opts.all_namespaces else opts.namespace or self.backend.namespace
        if kind == "jobs":
            group, version, plural = VOLCANO_GROUP, VOLCANO_VERSION, VOLCANO_PLURAL
            selectors = {"label_selector": JOB_SELECTOR}
        else:  # every VitJob is a pipeline
            group, version, plural = c.VITJOB_GROUP, c.VITJOB_VERSION, c.VITJOB_PLURAL
            selectors = {}
        if ns is None:
            fn, args = api.custom.list_cluster_custom_object, (group, version, plural)
        else:
            fn, args = api.custom.list_namespaced_custom_object, (group, version, ns, plural)
        return list_watch(
            api,
            Op("list", plural, group, ns),
            fn,
            args,
            session.stop,
            session.holders[kind],
            watch_timeout_s=self.backend.follow_opts.watch_timeout_s,
            pause_s=min(1.0, self.backend.poll_s),
            **selectors,
        )

    def _on_event(self, kind: str, event: str, obj: Any, session: _Session) -> None:
        if kind == "jobs":
            if event == "SYNC":
                self.cache.sync_jobs(obj)
                session.synced.add(kind)
                keys = self.cache.pipeline_keys(active_only=True)
            else:
                owner = self.cache.drop_job(obj) if event == "DELETED" else self.cache.put_job(obj)
                keys = [owner] if owner else []
        elif event == "SYNC":
            keys = self.cache.sync_pipelines(obj)
            session.synced.add(kind)
        elif event == "DELETED":
            meta = obj["metadata"]
            self.cache.drop_pipeline(meta.get("namespace", ""), meta["name"])
            keys = []
        else:
            keys = [self.cache.put_pipeline(record_from_vitjob(obj))]
        for key in keys:
            self.queue.add(key)

    # ------------------------------------------------------------------------------ reconcile
    def _store(self, namespace: str) -> _CachedStore:
        store = self._stores.get(namespace)
        if store is None:
            store = self._stores[namespace] = _CachedStore(
                self.backend, namespace, self.cache, component=c.CONTROLLER_NAME
            )
        return store

    def _process(self, key: Key) -> None:
        """One reconcile of pipeline ``key``; a failure retries it later with backoff."""
        record = self.cache.pipeline(key)
        if record is None or record.phase.is_terminal:
            return
        store = self._store(key[0])
        self.stats.reconciles += 1
        try:
            observed = Observed(record, store.list_stage_jobs(record))
            actions = reconcile(observed)
            if actions:
                self.stats.actions += len(actions)
                apply(store, record, actions)
        except ConflictError as exc:
            log.debug("pipeline %s/%s: stale (%s); reading it again", *key, exc)
            self._retry(key, lambda: store.refresh(key[1]))
            return
        except VitjobError as exc:
            self._fail(key, exc)
            return
        except Exception as exc:  # a bug must not stop the other pipelines
            log.exception("pipeline %s/%s: unexpected error", *key)
            self._fail(key, exc)
            return
        self._failures.pop(key, None)

    def _retry(self, key: Key, refresh: Callable[[], None]) -> None:
        try:
            refresh()
        except VitjobError as exc:
            self._fail(key, exc)
            return
        self.queue.add(key)

    def _fail(self, key: Key, exc: Exception) -> None:
        count = self._failures.get(key, 0)
        self._failures[key] = count + 1
        delay = min(self.options.error_backoff_s * 2**count, self.options.max_backoff_s)
        self.stats.errors += 1
        self.stats.last_error = f"{key[0]}/{key[1]}: {exc}"
        log.error("pipeline %s/%s: %s (retrying in %.1f s)", key[0], key[1], exc, delay)
        self.queue.add_after(key, delay)
