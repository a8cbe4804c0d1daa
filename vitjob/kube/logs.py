"""Pod logs: the kubelet's timestamps (``parse_ts``, ``split_ts``, ``since_time_param``), ``read_log``
(one pod's lines, not followed), ``train_progress`` (the last progress line of a train job's rank 0:
one request, shared by ``vitjob status`` and the controller), and ``JobFollower`` (``logs -f``: every
pod of a Volcano Job, merged as the lines arrive, with nothing lost or repeated across reconnects,
container restarts and job retries).

``FollowOptions`` tunes following and its watches (tests shorten them).
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from vitjob.constants import (
    VOLCANO_JOB_NAME_LABEL,
    VOLCANO_POD_NAME_FORMAT,
    VOLCANO_TASK_INDEX_LABEL,
)
from vitjob.errors import (
    AuthError,
    BackendError,
    ClusterUnreachableError,
    JobNotFoundError,
    ResourceNotFoundError,
    VitjobError,
)
from vitjob.kube.client import Api, close_quietly, iter_lines, stream_errors
from vitjob.kube.errors import Op
from vitjob.kube.kinds import (
    FINISHED_POD_PHASES,
    TERMINAL_JOB_PHASES,
    container_started,
    container_status,
    pod_rank,
    volcano_phase,
)
from vitjob.kube.times import time_text
from vitjob.kube.watch import DEFAULT_WATCH_TIMEOUT_S, StreamHolder, list_watch, watch_volcano_job
from vitjob.progress import TrainProgress, last_progress

log = logging.getLogger(__name__)

# How many of the last lines of rank 0's log ``train_progress`` reads (progress lines come every few steps).
PROGRESS_TAIL_LINES = 40


@dataclass
class FollowOptions:
    """Tuning for ``logs(follow=True)`` and watches (tests shorten them)."""

    watch_timeout_s: int = DEFAULT_WATCH_TIMEOUT_S  # server-side timeoutSeconds of a watch before renewal
    log_read_timeout_s: float = 120.0  # a quiet log stream is reopened (sinceTime) after this long
    end_grace_s: float = 10.0  # after the job finished, how long to wait for pods still running
    pod_recheck_s: float = 5.0  # a waiting pod is re-read this often even without watch events


# ------------------------------------------------------------------------------------- timestamps
def parse_ts(text: str) -> int:
    """RFC 3339 (nano) timestamp → ns since the epoch."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    base = dt.datetime.fromisoformat(m.group(1) + m.group(3).replace("Z", "+00:00"))
    return int(base.timestamp()) * 1_000_000_000 + int((m.group(2) or "0").ljust(9, "0")[:9])


def since_time_param(ns: int) -> str:
    """``sinceTime`` for a reconnect: the second of the last line seen (the server works in seconds)."""
    return time_text(dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC))


def split_ts(raw: str) -> tuple[int, str]:
    """A ``timestamps=true`` log line → (ns since the epoch, the line); 0 when it has no timestamp."""
    stamp, _, line = raw.partition(" ")
    try:
        return parse_ts(stamp), line
    except ValueError:
        return 0, raw


def log_prefix(pod_name: str, rank: int | None) -> str:
    """What each line of a pod starts with when several pods' logs are merged."""
    return f"[rank {rank} {pod_name}] " if rank is not None else f"[{pod_name}] "


# ----------------------------------------------------------------------------------------- reading
def read_log(
    api: Api,
    pod: dict[str, Any],
    ns: str,
    *,
    previous: bool = False,
    tail: int | None = None,
    since_s: int | None = None,
) -> list[tuple[int, str]]:
    """The log of the pod's main container as (timestamp ns, line), not followed."""
    name = pod["metadata"]["name"]
    resp = api.pod_log(
        Op("get", "pods/log", "", ns, name),
        name,
        ns,
        container=pod["spec"]["containers"][0]["name"],
        previous=previous,
        tail_lines=tail,
        since_seconds=since_s,
    )
    return [split_ts(raw) for raw in iter_lines(resp)]


def rank0_pod(job: dict[str, Any]) -> tuple[str, str] | None:
    """(pod, container) of rank 0 of the Volcano Job ``job``: index 0 of its first task (Volcano names
    pods ``<job>-<task>-<index>``); None when ``job`` is not one vitjob rendered."""
    try:
        task = job["spec"]["tasks"][0]
        container = task["template"]["spec"]["containers"][0]["name"]
        name = job["metadata"]["name"]
        return VOLCANO_POD_NAME_FORMAT.format(job=name, task=task["name"], index=0), str(container)
    except (KeyError, IndexError, TypeError):
        return None


def pod_progress(
    api: Api, namespace: str, pod: str, container: str, *, tail_lines: int = PROGRESS_TAIL_LINES
) -> TrainProgress | None:
    """The last progress line (``vitjob.progress``) among the last ``tail_lines`` lines of ``pod``.

    One request: ``GET pods/<pod>/log?tailLines=N``, not a stream. None when there is no progress
    line in those lines, or the pod does not exist or has not started (the API's 400/404 are not
    errors here).
    """
    try:
        op = Op("get", "pods/log", "", namespace, pod)
        resp = api.pod_log(op, pod, namespace, container=container, tail_lines=tail_lines)
        return last_progress(split_ts(raw)[1] for raw in iter_lines(resp))
    except VitjobError as exc:
        log.debug("no training progress from %s: %s", pod, exc)
        return None


def train_progress(
    api: Api, job: dict[str, Any], *, tail_lines: int = PROGRESS_TAIL_LINES
) -> TrainProgress | None:
    """The last progress line that rank 0 of the Volcano Job ``job`` wrote (``pod_progress`` of
    ``rank0_pod``: one request)."""
    where = rank0_pod(job)
    if where is None:
        return None
    namespace = (job.get("metadata") or {}).get("namespace", "")
    return pod_progress(api, namespace, *where, tail_lines=tail_lines)


# --------------------------------------------------------------------------------------- following
@dataclass
class PodTrack:
    """Where a pod's log stream stands: no line is lost or repeated across reconnects and restarts."""

    uid: str
    name: str
    rank: int | None
    container: str
    last_ns: int = 0  # timestamp of the newest line emitted
    at_last: int = 0  # how many lines with exactly ``last_ns`` were emitted
    run: int | None = None  # restartCount of the container run being read
    opened: bool = False
    pod: dict[str, Any] = field(default_factory=dict)  # latest object from the pod watch
    deleted: bool = False


class JobFollower:
    """``logs -f``: watches the job and its pods, one log-reading thread per pod (keyed by UID)."""

    def __init__(
        self,
        api: Api,
        name: str,
        ns: str,
        *,
        rank: int | None = None,
        pod: str | None = None,
        tail: int | None = None,
        since_s: int | None = None,
        options: FollowOptions | None = None,
        pause_s: float = 0.5,
    ):
        self.api, self.name, self.ns = api, name, ns
        self.rank, self.pod_name, self.tail, self.since_s = rank, pod, tail, since_s
        self.opts = options or FollowOptions()
        self.pause_s = pause_s
        self.out: queue.Queue[Any] = queue.Queue()
        self.stop = threading.Event()
        self.cond = threading.Condition()
        self.tracks: dict[str, PodTrack] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.job_done_at: float | None = None
        self.holders = [StreamHolder(), StreamHolder()]
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
                close_quietly(resp)

    def _finished(self) -> bool:
        with self.cond:
            if self.job_done_at is None or not self.pods_synced:
                return False
            alive = [t for t in self.threads.values() if t.is_alive()]
            if not alive:
                return True
            if time.monotonic() - self.job_done_at > self.opts.end_grace_s:
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
        for job in watch_volcano_job(
            self.api,
            self.ns,
            self.name,
            self.stop,
            self.holders[0],
            watch_timeout_s=self.opts.watch_timeout_s,
            pause_s=self.pause_s,
        ):
            if first and job is None:
                raise JobNotFoundError(
                    f"job {self.name!r} not found in namespace {self.ns!r}; "
                    "`vitjob list` shows the jobs there (-A: all namespaces)"
                )
            first = False
            with self.cond:
                if (job is None or volcano_phase(job) in TERMINAL_JOB_PHASES) and self.job_done_at is None:
                    self.job_done_at = time.monotonic()
                self.cond.notify_all()
            if job is None:
                return

    def _watch_pods(self) -> None:
        selector = f"{VOLCANO_JOB_NAME_LABEL}={self.name}"
        if self.rank is not None:
            selector += f",{VOLCANO_TASK_INDEX_LABEL}={self.rank}"
        op = Op("list", "pods", "", self.ns)
        for kind, obj in list_watch(
            self.api,
            op,
            self.api.core.list_namespaced_pod,
            (self.ns,),
            self.stop,
            self.holders[1],
            watch_timeout_s=self.opts.watch_timeout_s,
            pause_s=self.pause_s,
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

    def _track(self, pod: dict[str, Any]) -> None:
        if self.pod_name and pod["metadata"]["name"] != self.pod_name:
            return
        uid = pod["metadata"]["uid"]
        if uid in self.tracks:
            self.tracks[uid].pod = pod
            return
        track = PodTrack(
            uid, pod["metadata"]["name"], pod_rank(pod), pod["spec"]["containers"][0]["name"], pod=pod
        )
        self.tracks[uid] = track
        thread = threading.Thread(
            target=self._guard(lambda: self._follow_pod(track)), daemon=True, name=f"log-{track.name}"
        )
        self.threads[uid] = thread
        thread.start()

    # one pod
    def _follow_pod(self, track: PodTrack) -> None:
        prefix = log_prefix(track.name, track.rank)
        backoff = 0.1
        while not self.stop.is_set():
            if not self._wait_started(track):
                return
            pod = self.api.get_or_none(
                Op("get", "pods", "", self.ns, track.name),
                self.api.core.read_namespaced_pod,
                track.name,
                self.ns,
            )
            if pod is None or pod["metadata"]["uid"] != track.uid:
                return  # deleted (e.g. the job was retried: its replacement has its own follower)
            cs = container_status(pod)
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

    def _wait_started(self, track: PodTrack) -> bool:
        """Block until the pod's container has started (or the pod is gone / we stop)."""
        deadline = time.monotonic() + self.opts.pod_recheck_s
        with self.cond:
            while not self.stop.is_set():
                if track.deleted:
                    return False
                if container_started(track.pod) or time.monotonic() >= deadline:
                    return True
                self.cond.wait(timeout=0.5)
        return False

    def _wait_change(self, track: PodTrack, seen: dict[str, Any]) -> None:
        version = seen["metadata"].get("resourceVersion")
        deadline = time.monotonic() + self.opts.pod_recheck_s
        with self.cond:
            while not self.stop.is_set() and not track.deleted and time.monotonic() < deadline:
                if track.pod["metadata"].get("resourceVersion") != version and int(
                    track.pod["metadata"].get("resourceVersion") or 0
                ) > int(version or 0):
                    return
                self.cond.wait(timeout=0.5)

    def _read(self, track: PodTrack, prefix: str, *, previous: bool, follow: bool) -> int:
        """Read one log response, emitting only lines newer than the last one emitted; returns how many."""
        first = not track.opened
        since_time = since_time_param(track.last_ns) if track.last_ns else None
        try:
            resp = self.api.pod_log(
                Op("get", "pods/log", "", self.ns, track.name),
                track.name,
                self.ns,
                container=track.container,
                follow=follow,
                previous=previous,
                since_time=since_time,
                tail_lines=self.tail if first and not since_time else None,
                since_seconds=self.since_s if first and not since_time else None,
                read_timeout=self.opts.log_read_timeout_s if follow else None,
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
            for raw in iter_lines(resp):
                ts, line = split_ts(raw)
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
        except stream_errors() as exc:
            log.debug("log stream of %s interrupted (%s); reconnecting", track.name, exc)
        finally:
            with self.cond:
                self.log_streams.discard(resp)
        return emitted
