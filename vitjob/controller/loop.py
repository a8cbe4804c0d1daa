"""The pipeline controller's loop: ``vitjob controller`` runs ``vitjob.pipeline.reconcile`` for every
pipeline. Built on the client layer (``vitjob.kube``: watches, the Lease, the work queue) and
``vitjob.pipeline``; its cache is ``cache``, its health endpoint ``health``.

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
leader, has listed everything), and ``/metrics`` its Prometheus metrics (``metrics``).

While a pipeline's train stage job runs, the controller reads rank 0's training progress (one GET of
the last lines of its log, ``vitjob.kube.logs.pod_progress``) at most once per ``progress_interval_s``,
the first time one interval after it saw the job Running (a pod that has just started has printed no
progress yet), and records it in the VitJob's ``status.progress`` when it changed (so at most one such
write per interval); when the train job ends it reads it once more and records it as final.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from vitjob import constants as c
from vitjob.api.status import JobPhase
from vitjob.backends.kubernetes.store import record_from_vitjob
from vitjob.constants import VOLCANO_GROUP, VOLCANO_PLURAL, VOLCANO_VERSION
from vitjob.controller.cache import CachedPipelineStore, PipelineCache, is_active
from vitjob.controller.health import HealthServer
from vitjob.controller.metrics import ControllerMetrics
from vitjob.errors import ConflictError, UsageError, VitjobError
from vitjob.kube.client import Api
from vitjob.kube.errors import Op
from vitjob.kube.leases import LeaseElector
from vitjob.kube.logs import pod_progress
from vitjob.kube.watch import DEFAULT_WATCH_TIMEOUT_S, StreamHolder, list_watch
from vitjob.kube.workqueue import Key, WorkQueue
from vitjob.pipeline.model import Observed, PipelineRecord, StageJob
from vitjob.pipeline.reconcile import FAILED_JOB_PHASES, reconcile
from vitjob.pipeline.runner import apply
from vitjob.progress import ProgressReading

log = logging.getLogger(__name__)

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
        watch_timeout_s: each watch request ends after this long and is made again (from the last
            resourceVersion seen).
        watch_pause_s: the pause before a watch is made again after it broke.
        progress_interval_s: a running train stage's progress is read (and, when it changed, written
            to the VitJob's status.progress) at most this often per pipeline.
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
    watch_timeout_s: float = DEFAULT_WATCH_TIMEOUT_S
    watch_pause_s: float = 0.5
    progress_interval_s: float = c.DEFAULT_PROGRESS_INTERVAL_S

    def __post_init__(self) -> None:
        if not self.progress_interval_s > 0:
            raise UsageError(
                f"the progress interval must be more than 0 s, got {self.progress_interval_s:g} s; "
                f"the default is {c.DEFAULT_PROGRESS_INTERVAL_S:g}"
            )
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


# -------------------------------------------------------------------------------------- controller
@dataclass
class ControllerStats:
    """Counters for logs, /readyz and the benchmark."""

    reconciles: int = 0
    actions: int = 0
    errors: int = 0
    progress_reads: int = 0
    progress_writes: int = 0
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
        api: the client (``vitjob.kube.client.connect`` makes one).
        namespace: the namespace of the kubeconfig context or the pod (``options.namespace`` wins).
        options: see ``ControllerOptions``.
    """

    def __init__(self, api: Api, namespace: str, options: ControllerOptions | None = None):
        self.metrics = ControllerMetrics(
            queue_depth=lambda: len(self.queue),
            is_leader=lambda: self.is_leader,
            phases=self._phases,
        )
        self.api = api.observed(self.metrics.observe_request)  # its requests are counted
        self.namespace = namespace
        self.options = options or ControllerOptions()
        self.cache = PipelineCache()
        self.queue = WorkQueue()
        self.stats = ControllerStats()
        self.role = "starting"
        self.is_leader = False
        self._ready = False
        self._heartbeat = time.monotonic()
        self._failures: dict[Key, int] = {}
        self._progress_due: dict[Key, float] = {}  # pipeline → when its progress may be read again
        self._stores: dict[str, CachedPipelineStore] = {}
        self._health: HealthServer | None = None
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

    def _phases(self) -> list[tuple[str, str]]:
        """(namespace, phase) of each VitJob in the cache (none while not leading)."""
        if not self.is_leader:
            return []
        with self.cache.lock:
            return [(ns, str(r.phase)) for (ns, _), r in self.cache.pipelines.items()]

    # --------------------------------------------------------------------------------- run
    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set: campaign for leadership (if asked), then lead."""
        opts = self.options
        ns = opts.namespace or self.namespace
        if opts.health_port is not None:
            self._health = HealthServer(
                self.healthy, self.ready, opts.health_host, opts.health_port, metrics=self.metrics.exposition
            )
            self._health.start()
        scope = "all namespaces" if opts.all_namespaces else f"namespace {ns}"
        log.info("vitjob controller %s watching %s", opts.identity, scope)
        try:
            if not opts.leader_elect:
                self._lead(stop, threading.Event())
                return
            self.elector = LeaseElector(
                self.api,
                name=opts.lease_name,
                namespace=opts.lease_namespace or self.namespace,
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
        self.cache = PipelineCache()
        self.queue = WorkQueue()
        self._failures.clear()
        self._progress_due.clear()
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
                queued = self.queue.get(timeout_s=0.2)
                if queued is not None and not lost.is_set():
                    self._process(queued)
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
        api, opts = self.api, self.options
        ns = None if opts.all_namespaces else opts.namespace or self.namespace
        if kind == "jobs":
            group, version, plural = VOLCANO_GROUP, VOLCANO_VERSION, VOLCANO_PLURAL
            selectors: dict[str, Any] = {"label_selector": JOB_SELECTOR}
        else:  # every VitJob is a pipeline
            group, version, plural = c.VITJOB_GROUP, c.VITJOB_VERSION, c.VITJOB_PLURAL
            selectors = {}
        fn: Callable[..., Any]
        args: tuple[str, ...]
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
            watch_timeout_s=opts.watch_timeout_s,
            pause_s=opts.watch_pause_s,
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
            self._progress_due.pop((meta.get("namespace", ""), meta["name"]), None)
            keys = []
        else:
            keys = [self.cache.put_pipeline(record_from_vitjob(obj))]
        for key in keys:
            self.queue.add(key)

    # ------------------------------------------------------------------------------ reconcile
    def _store(self, namespace: str) -> CachedPipelineStore:
        store = self._stores.get(namespace)
        if store is None:
            store = self._stores[namespace] = CachedPipelineStore(
                self.api, namespace, self.cache, component=c.CONTROLLER_NAME
            )
        return store

    def _process(self, key: Key) -> None:
        """One reconcile of pipeline ``key``; a failure retries it later with backoff."""
        record = self.cache.pipeline(key)
        if record is None or not is_active(record):
            return
        store = self._store(key[0])
        self.stats.reconciles += 1
        started = time.perf_counter()
        result = "error"
        try:
            jobs = store.list_stage_jobs(record) if not record.phase.is_terminal else {}
            observed = Observed(record, jobs, time.time())
            actions = reconcile(observed)
            if actions:
                self.stats.actions += len(actions)
                apply(store, record, actions)
            self._track_training(key, store, observed.jobs.get(c.STAGES[0]))
            result = "success"
        except ConflictError as exc:
            result = "conflict"
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
        finally:
            self.metrics.reconciles.labels(result).inc()
            self.metrics.reconcile_seconds.observe(time.perf_counter() - started)
        self._failures.pop(key, None)

    # ------------------------------------------------------------------------------- progress
    def _track_training(self, key: Key, store: CachedPipelineStore, job: StageJob | None) -> None:
        """Record the train stage's progress in the VitJob: while its job runs, read it at most once
        per ``progress_interval_s``, the first time one interval after the job was first seen Running
        (a wake-up is queued for the next read), and write it when it changed; once the job has
        ended, read it a last time and write it as final."""
        record = self.cache.pipeline(key)
        if record is None or job is None or job.part_of != record.part_of or not job.rank0_pod:
            return
        if record.training is not None and record.training.final:
            return
        ended = job.phase == JobPhase.COMPLETED or job.phase in FAILED_JOB_PHASES
        if not ended and job.phase != JobPhase.RUNNING:
            return
        now = time.monotonic()
        interval = self.options.progress_interval_s
        if not ended:
            due = self._progress_due.get(key)
            if due is not None and now < due:
                return  # read recently, or seen running just now; the wake-up queued then comes at ``due``
            self._progress_due[key] = now + interval
            self.queue.add_after(key, interval)
            if due is None:
                return  # first seen running: its pod has just started and printed no progress yet
        elif key in self._progress_due and self._progress_due[key] == float("inf"):
            return  # ended with nothing to record: read once already
        progress = pod_progress(self.api, key[0], job.rank0_pod, job.rank0_container)
        self.stats.progress_reads += 1
        self.metrics.progress_reads.labels("none" if progress is None else "found").inc()
        if progress is None and ended and record.training is not None:
            progress = record.training.progress  # the pod is gone: the last values recorded are final
        reading = ProgressReading.now(progress, final=ended)
        if reading is None:
            if ended:
                self._progress_due[key] = float("inf")
            return
        if _same_reading(record, reading):
            return
        self._write_training(store, record, reading)

    def _write_training(
        self, store: CachedPipelineStore, record: PipelineRecord, reading: ProgressReading
    ) -> None:
        stored = store.record_training(record, reading)
        self.cache.put_pipeline(stored)
        self.stats.progress_writes += 1
        log.debug("pipeline %s/%s: progress %s%s", record.namespace, record.name,
                  reading.to_status(), " (final)" if reading.final else "")

    def _retry(self, key: Key, refresh: Callable[[], None]) -> None:
        self.metrics.retries.inc()
        try:
            refresh()
        except VitjobError as exc:
            self._fail(key, exc)
            return
        self.queue.add(key)

    def _fail(self, key: Key, exc: Exception) -> None:
        self.metrics.retries.inc()
        count = self._failures.get(key, 0)
        self._failures[key] = count + 1
        delay = min(self.options.error_backoff_s * 2**count, self.options.max_backoff_s)
        self.stats.errors += 1
        self.stats.last_error = f"{key[0]}/{key[1]}: {exc}"
        log.error("pipeline %s/%s: %s (retrying in %.1f s)", key[0], key[1], exc, delay)
        self.queue.add_after(key, delay)


def _same_reading(record: PipelineRecord, reading: ProgressReading) -> bool:
    """Whether ``reading`` says what the VitJob records already (its time aside)."""
    if record.training is None:
        return False
    before = {**record.training.to_status(), "time": ""}
    return before == {**reading.to_status(), "time": ""}
