"""The local backend: runs the rendered Volcano Jobs as processes on this machine.

It emulates what the cluster would do with the very objects ``vitjob render`` produces:
- each replica of each task becomes one local "pod": the container's command and args run as a
  process with the container's env, ``$(VAR)`` references expanded as the kubelet does;
- Volcano's env and svc plugins: ``VC_TASK_INDEX``, ``VC_<TASK>_HOSTS``/``_NUM`` and a ``<task>.host``
  file with the svc plugin's host names (``<job>-<task>-<i>.<job>``);
- pod networking (``local_network``): as root with iproute2, each pod in its own network namespace with
  its own address, found by name and using the job's rendered ports, as on a cluster; otherwise all
  pods share this machine's network (by name through a hosts file, free ports per job). The job's log
  says which mode ran, and ``state.json`` records it with the pods' addresses;
- the downward API: ``status.podIP``/``status.hostIP`` env values get the pod's and the "node's" address;
- volumes: a ``persistentVolumeClaim`` mounted at the data or output mount path maps to ``--data`` /
  ``--output``, other claims to ``<local-root>/pvc/<claim>``; env values under a mount path are
  rewritten to the local directory;
- Ascend: a downward-API ``annotations`` file with a simulated device-plugin allocation per pod, so
  ``vitjob launch`` builds the rank table for real, then computes on the CPU
  (``VITJOB_SIMULATE_DEVICE=cpu``);
- policies: a failed pod restarts the whole job (``PodFailed → RestartJob``) up to ``maxRetry``, then the
  job is Failed with the reason; all pods succeeding completes it (``TaskCompleted → CompleteJob``).

State lives in ``<local-root>/jobs/<job>/`` (``state.json``, ``logs/<pod>.log`` and the previous run's
``logs/<pod>.previous.log``), so ``vitjob status/logs/wait/cancel/delete/list`` work from another shell.
``submit`` runs the job in the foreground and streams its output.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any, Protocol

from vitjob import constants as c
from vitjob.backends.base import Backend, JobPhase, JobStatus, PodStatus
from vitjob.backends.local_network import NETNS, JobNetwork, open_network, process_alive
from vitjob.errors import ConflictError, JobNotFoundError, UsageError, WaitTimeoutError
from vitjob.launch.ranktable import format_downward_annotations
from vitjob.logsetup import with_framework_log_env
from vitjob.progress import last_progress_in_file

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
CANCEL_FILE = "cancel"
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class LocalJobObserver(Protocol):
    """Told what a job run in the foreground does, to show it (``vitjob.cli.console``).

    Every pod's output still goes to its log file, whether or not anything observes it.
    """

    def job_started(self, name: str, stage: str, pods: list[str], log_dir: Path) -> None: ...

    def pod_line(self, name: str, pod: str, line: str) -> None: ...

    def job_finished(self, status: JobStatus, log_dir: Path) -> None: ...


def default_root() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "vitjob" / "local"


def expand_vars(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined variables are substituted, ``$$`` escapes, others stay."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR_REF.sub(sub, text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_volcano_job(objects: list[dict[str, Any]]) -> dict[str, Any]:
    jobs = [
        o for o in objects if o.get("kind") == c.VOLCANO_KIND and o.get("apiVersion") == c.VOLCANO_API_VERSION
    ]
    if len(jobs) != 1:
        raise UsageError(
            f"expected exactly one Volcano Job ({c.VOLCANO_API_VERSION}) among the objects, got {len(jobs)}"
        )
    return jobs[0]


def simulated_ascend_annotation(
    pod: str, index: int, cards: int, server_id: str = "", node_ip: str = "127.0.0.1"
) -> str:
    """What the Ascend device plugin would write for a pod (NPU addresses from documentation's 192.0.2.0/24).

    ``server_id``: the pod UID, as MindCluster's device plugin writes it (a random UUID by default, so
    the rank table's server order has nothing to do with the task index, as on a cluster).
    """
    return json.dumps(
        {
            "pod_name": pod,
            "server_id": server_id or str(uuid.uuid4()),
            "host_ip": node_ip,
            "devices": [
                {"device_id": str(d), "device_ip": f"192.0.2.{index * 8 + d + 1}"} for d in range(cards)
            ],
        }
    )


class _LocalPod:
    def __init__(self, name: str, index: int, argv: list[str], env: dict[str, str], log_file: Path) -> None:
        self.name, self.index, self.argv, self.env, self.log_file = name, index, argv, env, log_file
        self.proc: subprocess.Popen[bytes] | None = None
        self.pump: threading.Thread | None = None
        self.restarts = 0

    def start(
        self,
        out: IO[str] | None,
        prefix: bool,
        lock: threading.Lock,
        on_line: Callable[[str, str], None] | None = None,
    ) -> None:
        if self.log_file.exists():
            os.replace(self.log_file, self.log_file.with_suffix(".previous.log"))
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.pump = threading.Thread(target=self._pump, args=(out, prefix, lock, on_line), daemon=True)
        self.pump.start()

    def _pump(
        self,
        out: IO[str] | None,
        prefix: bool,
        lock: threading.Lock,
        on_line: Callable[[str, str], None] | None,
    ) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.log_file, "a") as fh:
            for raw in iter(self.proc.stdout.readline, b""):
                line = raw.decode(errors="replace")
                fh.write(line)
                fh.flush()
                if out is not None or on_line is not None:
                    with lock:
                        if out is not None:
                            out.write(f"[{self.name}] {line}" if prefix else line)
                            out.flush()
                        if on_line is not None:
                            on_line(self.name, line.rstrip("\n"))

    def kill(self, grace_s: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class LocalBackend(Backend):
    name = "local"

    def __init__(
        self,
        local_root: str | Path | None = None,
        data_dir: str | Path | None = None,
        output_dir: str | Path | None = None,
        stream: IO[str] | bool | None = True,
        poll_s: float = 0.2,
        grace_s: float = 15.0,
        observer: LocalJobObserver | None = None,
        verbose: bool = False,
    ) -> None:
        self.root = Path(local_root) if local_root else default_root()
        self.data_dir = Path(data_dir).resolve() if data_dir else None
        self.output_dir = Path(output_dir).resolve() if output_dir else None
        self.out: IO[str] | None = sys.stdout if stream is True else (stream or None)
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.observer = observer
        self.verbose = verbose  # False: MindSpore's own logging limited to errors in the pods

    # -------------------------------------------------------------------------------- state files
    def job_dir(self, name: str) -> Path:
        return self.root / "jobs" / name

    def _read_state(self, name: str) -> dict[str, Any]:
        path = self.job_dir(name) / STATE_FILE
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise JobNotFoundError(
                f"no local job {name!r} under {self.root / 'jobs'} (`vitjob list --backend local`)"
            ) from None

    def _write_state(self, name: str, state: dict[str, Any]) -> None:
        path = self.job_dir(name) / STATE_FILE
        tmp = path.with_name(".state.json.tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, path)

    @staticmethod
    def _to_status(state: dict[str, Any]) -> JobStatus:
        phase = JobPhase(state["phase"])
        reasons = list(state.get("reasons", []))
        pid = state.get("runner_pid")
        if not phase.is_terminal and pid and not process_alive(pid):
            phase = JobPhase.FAILED
            reasons.append(f"the local runner (pid {pid}) is gone: the submitting process was killed")
        return JobStatus(
            name=state["name"],
            namespace=state.get("namespace", ""),
            phase=phase,
            retry_count=state.get("retry_count", 0),
            stage=state.get("stage", ""),
            hw=state.get("hw", ""),
            cards=state.get("cards", 0),
            age_s=time.time() - state.get("created", time.time()),
            pods=[PodStatus(**p) for p in state.get("pods", [])],
            reasons=reasons,
        )

    # -------------------------------------------------------------------------------- Backend API
    def submit(self, objects: list[dict], *, replace: bool = False) -> JobStatus:
        job = find_volcano_job(objects)
        name = job["metadata"]["name"]
        jdir = self.job_dir(name)
        if (jdir / STATE_FILE).exists():
            current = self._to_status(self._read_state(name))
            if not replace:
                raise ConflictError(
                    f"local job {name} already exists ({current.phase}); pass --replace to run it again "
                    f"or `vitjob delete {name} --backend local`"
                )
            self.delete(name)
        jdir.mkdir(parents=True)
        (jdir / "job.json").write_text(json.dumps(job, indent=2))
        runner = _Runner(self, job, jdir)
        try:
            return runner.run()
        finally:
            runner.network.close()

    def status(self, name: str) -> JobStatus:
        return self._with_progress(self._to_status(self._read_state(name)))

    def _with_progress(self, status: JobStatus) -> JobStatus:
        """A running train job gets the last progress line of its first pod (rank 0's)."""
        if status.phase == JobPhase.RUNNING and status.stage == "train" and status.pods:
            log_file = self.job_dir(status.name) / "logs" / f"{status.pods[0].name}.log"
            status.progress = last_progress_in_file(log_file)
        return status

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
        if since_s is not None:
            raise UsageError("--since needs timestamps, which local logs do not have; use --tail N")
        state = self._read_state(name)
        pods = [p["name"] for p in state.get("pods", [])]
        if rank is not None:
            pods = [p for i, p in enumerate(pods) if i == rank]
        if pod is not None:
            pods = [p for p in pods if p == pod]
        if not pods:
            raise JobNotFoundError(f"job {name} has no pod matching --rank/--pod")
        suffix = ".previous.log" if previous else ".log"
        files = {p: self.job_dir(name) / "logs" / f"{p}{suffix}" for p in pods}
        offsets = dict.fromkeys(pods, 0)
        first = True
        while True:
            for p, path in files.items():
                if not path.exists():
                    continue
                with open(path) as fh:
                    fh.seek(offsets[p])
                    lines = fh.read().splitlines(keepends=True)
                    complete = [ln for ln in lines if ln.endswith("\n")]
                    offsets[p] += sum(len(ln.encode()) for ln in complete)
                if first and tail is not None:
                    complete = complete[-tail:] if tail > 0 else []
                for ln in complete:
                    yield f"[{p}] {ln.rstrip()}"
            first = False
            if not follow or self._to_status(self._read_state(name)).phase.is_terminal:
                if follow:  # one last read after the end
                    follow = False
                    continue
                return
            time.sleep(self.poll_s)

    def wait(self, name: str, timeout_s: float | None = None) -> JobStatus:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            status = self.status(name)
            if status.phase.is_terminal:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeoutError(f"job {name} is still {status.phase} after {timeout_s:g} s")
            time.sleep(self.poll_s)

    def cancel(self, name: str) -> None:
        self._read_state(name)
        (self.job_dir(name) / CANCEL_FILE).touch()

    def delete(self, name: str) -> None:
        status = self.status(name)
        if not status.phase.is_terminal:
            self.cancel(name)
            self.wait(name, timeout_s=self.grace_s + 30)
        shutil.rmtree(self.job_dir(name))

    # PipelineStore (vitjob.pipeline): delegated, so `pipeline_store(backend)` finds the methods here.
    def _pipelines(self) -> LocalPipelineStore:
        return LocalPipelineStore(self)

    def create_pipeline(self, definition: Any, *, replace: bool = False) -> JobStatus:
        return self._pipelines().create_pipeline(definition, replace=replace)

    def get_pipeline(self, name: str) -> Any:
        return self._pipelines().get_pipeline(name)

    def list_stage_jobs(self, pipeline: Any) -> dict[str, Any]:
        return self._pipelines().list_stage_jobs(pipeline)

    def create_stage(self, pipeline: Any, stage: str) -> None:
        self._pipelines().create_stage(pipeline, stage)

    def update_pipeline(self, pipeline: Any, update: Any) -> Any:
        return self._pipelines().update_pipeline(pipeline, update)

    def delete_pipeline(self, pipeline: Any) -> None:
        self._pipelines().delete_pipeline(pipeline)

    def list_jobs(self, all_namespaces: bool = False) -> list[JobStatus]:
        jobs_dir = self.root / "jobs"
        if not jobs_dir.is_dir():
            return []
        return [
            self._with_progress(self._to_status(self._read_state(d.name)))
            for d in sorted(jobs_dir.iterdir())
            if (d / STATE_FILE).is_file()
        ]


class _Runner:
    """Runs one Volcano Job to a terminal phase, honouring its policies and maxRetry."""

    def __init__(self, backend: LocalBackend, job: dict[str, Any], jdir: Path) -> None:
        self.b = backend
        self.job = job
        self.jdir = jdir
        self.name = job["metadata"]["name"]
        labels = job["metadata"].get("labels", {})
        self.hw = labels.get(c.LABEL_HW, "")
        self.max_retry = int(job["spec"].get("maxRetry", c.DEFAULT_MAX_RETRY))
        self.state: dict[str, Any] = {
            "name": self.name,
            "namespace": job["metadata"].get("namespace", ""),
            "phase": JobPhase.PENDING.value,
            "retry_count": 0,
            "stage": labels.get(c.LABEL_COMPONENT, ""),
            "hw": self.hw,
            "cards": int(labels.get(c.LABEL_CARDS, "0") or 0),
            "created": time.time(),
            "pods": [],
            "reasons": [],
            "runner_pid": os.getpid(),
        }
        self.lock = threading.Lock()
        self._saved: tuple[Any, ...] | None = None
        self.pods = self._plan_pods()

    # ---------------------------------------------------------------------------------- planning
    def _volume_dirs(self, spec: dict[str, Any], pod: str) -> dict[str, Path | None]:
        dirs: dict[str, Path | None] = {}
        for vol in spec.get("volumes", []):
            if "persistentVolumeClaim" in vol:
                dirs[vol["name"]] = self.b.root / "pvc" / vol["persistentVolumeClaim"]["claimName"]
            elif "emptyDir" in vol:
                dirs[vol["name"]] = self.jdir / "pods" / pod / "volumes" / vol["name"]
            else:  # hostPath/downwardAPI: emulated separately or not needed locally
                dirs[vol["name"]] = None
        return dirs

    def _mounts(self, spec: dict[str, Any], container: dict[str, Any], pod: str) -> dict[str, Path]:
        dirs = self._volume_dirs(spec, pod)
        mounts: dict[str, Path] = {}
        for m in container.get("volumeMounts", []):
            local = dirs.get(m["name"])
            if m["mountPath"] == c.DATA_MOUNT_PATH and self.b.data_dir is not None:
                local = self.b.data_dir
            elif m["mountPath"] == c.OUTPUT_MOUNT_PATH and self.b.output_dir is not None:
                local = self.b.output_dir
            if local is not None and m["mountPath"] != c.SHM_MOUNT_PATH:
                mounts[m["mountPath"]] = local / m.get("subPath", "")
        return mounts

    def _env(
        self,
        container: dict[str, Any],
        pod: str,
        index: int,
        task: str,
        replicas: int,
        mounts: dict[str, Path],
        ports: dict[str, int],
        hosts: list[str] | None = None,
    ) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env = with_framework_log_env(env, self.b.verbose)
        for item in container.get("env", []):
            if "value" in item:
                value = str(item["value"])
                for mount, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
                    if value == mount or value.startswith(mount + "/"):
                        value = str(local) + value[len(mount) :]
                        break
                env[item["name"]] = value
            elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
                env[item["name"]] = pod
            elif "fieldRef" in item.get("valueFrom", {}):  # status.podIP / status.hostIP
                path = item["valueFrom"]["fieldRef"].get("fieldPath")
                field_env = self.network.pod_env(pod)
                value = {c.FIELD_POD_IP: field_env[c.ENV_POD_IP], c.FIELD_HOST_IP: field_env[c.ENV_HOST_IP]}
                if path in value:
                    env[item["name"]] = value[path]
        env.update(self.network.pod_env(pod))
        if self.network.mode != NETNS:  # one shared port space: this job's own free ports
            env.update({c.ENV_SCHED_PORT: str(ports["sched"]), c.ENV_RDZV_PORT: str(ports["rdzv"])})
        key = task.upper().replace("-", "_")
        volcano_dir = self.jdir / "volcano"
        env.update(
            {
                c.ENV_VC_TASK_INDEX: str(index),
                f"VC_{key}_HOSTS": ",".join(hosts or ["127.0.0.1"] * replicas),
                f"VC_{key}_NUM": str(replicas),
                c.ENV_VOLCANO_DIR: str(volcano_dir),
                c.ENV_WORKDIR: str(self.jdir / "pods" / pod / "launch"),
                "HOSTNAME": pod,
                c.ENV_PODINFO_DIR: str(self.jdir / "pods" / pod / "podinfo"),
            }
        )
        if self.hw == "ascend" or env.get(c.ENV_HW) == "ascend":
            env[c.ENV_SIMULATE_DEVICE] = "cpu"
        return env

    def _pod_names(self) -> dict[str, list[tuple[str, str]]]:
        """Per task, its pods' (name, svc-plugin host name): ``<job>-<task>-<i>`` and ``<pod>.<job>``."""
        names = {}
        for task in self.job["spec"]["tasks"]:
            pods = [
                c.VOLCANO_POD_NAME_FORMAT.format(job=self.name, task=task["name"], index=i)
                for i in range(int(task.get("replicas", 1)))
            ]
            names[task["name"]] = [(p, f"{p}.{self.name}") for p in pods]
        return names

    def _plan_pods(self) -> list[_LocalPod]:
        names = self._pod_names()
        self.network: JobNetwork = open_network(
            [pair for pairs in names.values() for pair in pairs], self.jdir, dict(os.environ)
        )
        try:
            return self._plan_pods_on(names)
        except BaseException:
            self.network.close()
            raise

    def _plan_pods_on(self, names: dict[str, list[tuple[str, str]]]) -> list[_LocalPod]:
        ports = {"sched": free_port(), "rdzv": free_port()}
        (self.jdir / "logs").mkdir(parents=True, exist_ok=True)
        self.state["network"] = {
            "mode": self.network.mode,
            "pods": {
                p.pod: {"host": p.host, "ip": p.ip, "netns": p.netns} for p in self.network.pods.values()
            },
        }
        pods = []
        for task in self.job["spec"]["tasks"]:
            replicas = int(task.get("replicas", 1))
            tname = task["name"]
            hosts = [host for _, host in names[tname]]
            volcano_dir = self.jdir / "volcano"
            volcano_dir.mkdir(parents=True, exist_ok=True)
            (volcano_dir / f"{tname}.host").write_text("\n".join(hosts) + "\n")
            spec = task["template"]["spec"]
            container = spec["containers"][0]
            for index in range(replicas):
                pod = names[tname][index][0]
                mounts = self._mounts(spec, container, pod)
                for local in mounts.values():
                    local.mkdir(parents=True, exist_ok=True)
                env = self._env(container, pod, index, tname, replicas, mounts, ports, hosts)
                self._write_podinfo(pod, index, env)
                argv = [expand_vars(a, env) for a in container.get("command", []) + container.get("args", [])]
                if not argv:
                    raise UsageError(
                        f"task {tname}: the container has neither command nor args to run locally"
                    )
                argv = self.network.wrap(pod, argv)
                pods.append(_LocalPod(pod, index, argv, env, self.jdir / "logs" / f"{pod}.log"))
        return pods

    def _write_podinfo(self, pod: str, index: int, env: dict[str, str]) -> None:
        info = self.jdir / "pods" / pod / "podinfo"
        info.mkdir(parents=True, exist_ok=True)
        (info / c.PODINFO_NAME_FILE).write_text(pod + "\n")
        annotations: dict[str, str] = {}
        if env.get(c.ENV_SIMULATE_DEVICE):
            cards = int(env.get(c.ENV_CARDS_PER_POD, "1"))
            annotations[c.ASCEND_DEVICE_ANNOTATIONS[0]] = simulated_ascend_annotation(
                pod, index, cards, node_ip=self.network.node_ip
            )
        (info / c.PODINFO_ANNOTATIONS_FILE).write_text(format_downward_annotations(annotations))

    # ---------------------------------------------------------------------------------- running
    def _save(self, phase: JobPhase) -> None:
        """Record the job's phase and its pods' states; the file is rewritten only when they change."""
        pods = [
            asdict(
                PodStatus(
                    name=p.name,
                    phase=_pod_phase(p),
                    node="localhost",
                    restarts=p.restarts,
                    exit_code=p.proc.poll() if p.proc else None,
                )
            )
            for p in self.pods
        ]
        snapshot = (phase.value, pods, len(self.state["reasons"]))
        if snapshot == self._saved:
            return
        self._saved = snapshot
        self.state["phase"] = phase.value
        self.state["pods"] = pods
        self.b._write_state(self.name, self.state)

    def _start_all(self) -> None:
        prefix = len(self.pods) > 1
        observer = self.b.observer
        on_line = None if observer is None else (lambda pod, line: observer.pod_line(self.name, pod, line))
        for pod in self.pods:
            pod.start(self.b.out, prefix, self.lock, on_line)

    def _stop_all(self) -> None:
        for pod in self.pods:
            pod.kill(self.b.grace_s)
        for pod in self.pods:
            if pod.pump:
                pod.pump.join(timeout=5)

    def run(self) -> JobStatus:
        self._save(JobPhase.PENDING)
        if self.b.observer is not None:
            self.b.observer.job_started(
                self.name, self.state["stage"], [p.name for p in self.pods], self.jdir / "logs"
            )
        log.debug(
            "local job %s: %d pod(s), maxRetry %d, state in %s",
            self.name,
            len(self.pods),
            self.max_retry,
            self.jdir,
        )
        log.info("local job %s: %s", self.name, self.network.describe())
        self._start_all()
        self._save(JobPhase.RUNNING)
        try:
            while True:
                time.sleep(self.b.poll_s)
                if (self.jdir / CANCEL_FILE).exists():
                    self._stop_all()
                    self.state["reasons"].append("aborted by `vitjob cancel`")
                    self._save(JobPhase.ABORTED)
                    break
                codes = {p.name: p.proc.poll() if p.proc else None for p in self.pods}
                failed = [(n, code) for n, code in codes.items() if code not in (None, 0)]
                if failed:
                    pod_name, code = failed[0]
                    reason = f"pod {pod_name} failed with exit code {code}"
                    # As Volcano's controller counts: RestartJob increments the retry count, and the job
                    # fails once it reaches maxRetry (state/running.go, state/restarting.go).
                    self.state["retry_count"] += 1
                    if self.state["retry_count"] >= self.max_retry:
                        self._stop_all()
                        self.state["reasons"].append(f"{reason}; maxRetry {self.max_retry} exhausted")
                        self._save(JobPhase.FAILED)
                        break
                    self.state["reasons"].append(
                        f"{reason}: PodFailed → RestartJob "
                        f"(retry {self.state['retry_count']} of {self.max_retry})"
                    )
                    log.warning(
                        "local job %s: %s; restarting the job (retry %d of %d)",
                        self.name,
                        reason,
                        self.state["retry_count"],
                        self.max_retry,
                    )
                    self._save(JobPhase.RESTARTING)
                    self._stop_all()
                    for pod in self.pods:
                        pod.restarts += 1
                    self._start_all()
                    self._save(JobPhase.RUNNING)
                    continue
                if all(code == 0 for code in codes.values()):
                    self._save(JobPhase.COMPLETED)
                    break
                self._save(JobPhase.RUNNING)
        except KeyboardInterrupt:
            self._stop_all()
            self.state["reasons"].append("interrupted (Ctrl-C)")
            self._save(JobPhase.ABORTED)
            raise
        status = self.b._to_status(self.state)
        if self.b.observer is not None:
            self.b.observer.job_finished(status, self.jdir / "logs")
        return status


def _pod_phase(pod: _LocalPod) -> str:
    if pod.proc is None:
        return "Pending"
    code = pod.proc.poll()
    return "Running" if code is None else ("Succeeded" if code == 0 else "Failed")


class LocalPipelineStore:
    """Pipelines on the local backend (``vitjob.pipeline.PipelineStore``).

    A pipeline is ``<local-root>/pipelines/<name>.json``; its stage jobs are ordinary local jobs.
    Creating a stage runs it in the foreground, so ``run_pipeline`` advances stage by stage.
    """

    def __init__(self, backend: LocalBackend) -> None:
        self.b = backend

    def _path(self, name: str) -> Path:
        return self.b.root / "pipelines" / f"{name}.json"

    def _write(self, data: dict[str, Any]) -> None:
        path = self._path(data["name"])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)

    def _record(self, data: dict[str, Any]) -> Any:
        from vitjob.pipeline import PipelinePhase, PipelineRecord, StageState

        return PipelineRecord(
            name=data["name"],
            namespace=data.get("namespace", ""),
            part_of=data["part_of"],
            stages=tuple(data["stages"]),
            job_names=data["job_names"],
            manifests=data["manifests"],
            phase=PipelinePhase(data["phase"]),
            reason=data.get("reason", ""),
            progress={k: StageState(v) for k, v in data.get("progress", {}).items()},
            version=str(data["version"]),
            job_phases=data.get("job_phases", {}),
            submitting=data["phase"] == PipelinePhase.PENDING.value,  # create_pipeline is writing it
        )

    def create_pipeline(self, definition: Any, *, replace: bool = False) -> JobStatus:
        from vitjob.pipeline import PipelinePhase, StageState

        if self._path(definition.name).exists():
            if not replace:
                raise ConflictError(
                    f"local pipeline {definition.name} already exists; pass --replace to run it again"
                )
            for stage in definition.stages:
                if (self.b.job_dir(stage.job_name) / STATE_FILE).exists():
                    self.b.delete(stage.job_name)
            self._path(definition.name).unlink()
        data = {
            "name": definition.name,
            "namespace": definition.namespace,
            "part_of": definition.part_of,
            "stages": [s.stage for s in definition.stages],
            "job_names": {s.stage: s.job_name for s in definition.stages},
            "manifests": {s.stage: s.manifest for s in definition.stages},
            "phase": PipelinePhase.PENDING.value,
            "reason": "",
            "progress": {},
            "version": 1,
        }
        self._write(data)
        first = definition.stages[0]
        record = self._record(data)
        try:
            data.update(
                phase=PipelinePhase.RUNNING.value, progress={first.stage: StageState.CREATED.value}, version=2
            )
            self._write(data)
            return self.b.submit(record.stage_objects(first.stage))
        except Exception:
            self._path(definition.name).unlink(missing_ok=True)
            raise

    def get_pipeline(self, name: str) -> Any:
        from vitjob.errors import PipelineNotFoundError

        try:
            return self._record(json.loads(self._path(name).read_text()))
        except FileNotFoundError:
            raise PipelineNotFoundError(
                f"no local pipeline {name!r} under {self.b.root / 'pipelines'}"
            ) from None

    def list_stage_jobs(self, pipeline: Any) -> dict[str, Any]:
        from vitjob.pipeline import StageJob

        jobs = {}
        for stage in pipeline.stages:
            name = pipeline.job_names[stage]
            jdir = self.b.job_dir(name)
            if not (jdir / STATE_FILE).exists():
                continue
            status = self.b.status(name)
            labels = json.loads((jdir / "job.json").read_text())["metadata"].get("labels", {})
            jobs[stage] = StageJob(
                name, status.phase, labels.get(c.LABEL_PART_OF, ""), "; ".join(status.reasons)
            )
        return jobs

    def create_stage(self, pipeline: Any, stage: str) -> None:
        name = pipeline.job_names[stage]
        if (self.b.job_dir(name) / STATE_FILE).exists():
            return
        self.b.submit(pipeline.stage_objects(stage))

    def update_pipeline(self, pipeline: Any, update: Any) -> Any:
        data = json.loads(self._path(pipeline.name).read_text())
        if pipeline.version and str(data["version"]) != pipeline.version:
            raise ConflictError(f"local pipeline {pipeline.name} changed meanwhile")
        data["progress"].update({k: v.value for k, v in update.stages.items()})
        data.setdefault("job_phases", {}).update(update.job_phases)
        if update.phase is not None:
            data["phase"] = update.phase.value
        if update.reason is not None:
            data["reason"] = update.reason
        data["version"] = int(data["version"]) + 1
        self._write(data)
        return self._record(data)

    def delete_pipeline(self, pipeline: Any) -> None:
        """Remove the stored pipeline (its stage jobs are deleted by ``vitjob.pipeline.delete_pipeline``)."""
        self._path(pipeline.name).unlink(missing_ok=True)
