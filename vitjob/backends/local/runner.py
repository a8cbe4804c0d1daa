"""Running one Volcano Job locally: the job's pods planned from its task templates (env, ``$(VAR)``
expansion, volumes mapped to local directories, Volcano's env/svc plugins, simulated Ascend device
annotations), started on the job's network, and watched to a terminal phase under the job's
policies and maxRetry (``Runner``). The state it records is ``state.py``'s file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
import threading
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any, Protocol

from vitjob import constants as c
from vitjob.api.status import JobPhase, JobStatus, PodStatus
from vitjob.backends.base import LocalJobObserver
from vitjob.backends.local.network import NETNS, JobNetwork, open_network
from vitjob.backends.local.pod import LocalPod, pod_phase
from vitjob.backends.local.state import (
    CANCEL_FILE,
    SUSPEND_FILE,
    status_from_state,
    termination_log,
    write_state,
)
from vitjob.errors import UsageError
from vitjob.launch.cpus import ENV_CPU_PIN
from vitjob.launch.ranktable import format_downward_annotations
from vitjob.logsetup import with_framework_log_env

log = logging.getLogger(__name__)

VAR_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand_vars(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined variables are substituted, ``$$`` escapes, others stay."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return VAR_REFERENCE.sub(sub, text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


class RunnerHost(Protocol):
    """The settings a run takes from its backend (``vitjob.backends.local.backend.LocalBackend``, which
    makes the runs: a protocol keeps the two modules from importing each other)."""

    root: Path
    data_dir: Path | None
    output_dir: Path | None
    out: IO[str] | None
    poll_s: float
    grace_s: float
    observer: LocalJobObserver | None
    verbose: bool


class Runner:
    """Runs one Volcano Job to a terminal phase, honouring its policies and maxRetry."""

    def __init__(
        self, backend: RunnerHost, job: dict[str, Any], jdir: Path, resumed: dict[str, Any] | None = None
    ) -> None:
        """``resumed``: the state of a job ``vitjob suspend`` stopped, which this run continues (as
        Volcano's ResumeJob: a restart, counted in the retry count)."""
        self.backend = backend
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
        if resumed is not None:
            self.state["created"] = resumed.get("created", self.state["created"])
            self.state["retry_count"] = int(resumed.get("retry_count", 0)) + 1
            self.state["reasons"] = [*resumed.get("reasons", []), "resumed by `vitjob resume`"]
        self.lock = threading.Lock()
        self._saved: tuple[Any, ...] | None = None
        self.pods = self._plan_pods()
        if resumed is not None:
            restarts = {p["name"]: int(p.get("restarts", 0)) for p in resumed.get("pods", [])}
            for pod in self.pods:
                pod.restarts = restarts.get(pod.name, 0) + 1

    # ---------------------------------------------------------------------------------- planning
    def _volume_dirs(self, spec: dict[str, Any], pod: str) -> dict[str, Path | None]:
        dirs: dict[str, Path | None] = {}
        for vol in spec.get("volumes", []):
            if "persistentVolumeClaim" in vol:
                dirs[vol["name"]] = self.backend.root / "pvc" / vol["persistentVolumeClaim"]["claimName"]
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
            if m["mountPath"] == c.DATA_MOUNT_PATH and self.backend.data_dir is not None:
                local = self.backend.data_dir
            elif m["mountPath"] == c.OUTPUT_MOUNT_PATH and self.backend.output_dir is not None:
                local = self.backend.output_dir
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
        env = with_framework_log_env(env, self.backend.verbose)
        for item in container.get("env", []):
            if "value" in item:
                value = str(item["value"])
                for mount, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
                    if value == mount or value.startswith(mount + "/"):
                        value = str(local) + value[len(mount) :]
                        break
                env[item["name"]] = value
            elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == c.FIELD_POD_NAME:
                env[item["name"]] = pod
            elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == c.FIELD_POD_NAMESPACE:
                env[item["name"]] = self.state["namespace"] or "default"
            elif "fieldRef" in item.get("valueFrom", {}):  # status.podIP / status.hostIP
                path = item["valueFrom"]["fieldRef"].get("fieldPath")
                field_env = self.network.pod_env(pod)
                field_values = {
                    c.FIELD_POD_IP: field_env[c.ENV_POD_IP], c.FIELD_HOST_IP: field_env[c.ENV_HOST_IP]
                }
                if path in field_values:
                    env[item["name"]] = field_values[path]
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
        if c.ENV_TERMINATION_LOG in env:  # the container's terminationMessagePath, as a file of the pod's
            env[c.ENV_TERMINATION_LOG] = str(termination_log(self.jdir, pod))
        if self.hw == "ascend" or env.get(c.ENV_HW) == "ascend":
            env[c.ENV_SIMULATE_DEVICE] = "cpu"
        if replicas == 1:  # the job's only pod has the machine's cores to itself: bind its processes
            env.setdefault(ENV_CPU_PIN, "1")
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

    def _plan_pods(self) -> list[LocalPod]:
        names = self._pod_names()
        self.network: JobNetwork = open_network(
            [pair for pairs in names.values() for pair in pairs], self.jdir, dict(os.environ)
        )
        try:
            return self._plan_pods_on(names)
        except BaseException:
            self.network.close()
            raise

    def _plan_pods_on(self, names: dict[str, list[tuple[str, str]]]) -> list[LocalPod]:
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
                if env.get(c.ENV_LOG_DIR):  # where `vitjob logs --attempt` finds the kept logs
                    self.state["kept_logs"] = env[c.ENV_LOG_DIR]
                self._write_podinfo(pod, index, env)
                argv = [expand_vars(a, env) for a in container.get("command", []) + container.get("args", [])]
                if not argv:
                    raise UsageError(
                        f"task {tname}: the container has neither command nor args to run locally"
                    )
                argv = self.network.wrap(pod, argv)
                pods.append(LocalPod(pod, index, argv, env, self.jdir / "logs" / f"{pod}.log"))
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
                    phase=pod_phase(p),
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
        write_state(self.jdir, self.state)

    def _start_all(self) -> None:
        prefix = len(self.pods) > 1
        observer = self.backend.observer
        on_line = None if observer is None else (lambda pod, line: observer.pod_line(self.name, pod, line))
        for pod in self.pods:
            pod.start(self.backend.out, prefix, self.lock, on_line)

    def _stop_all(self) -> None:
        for pod in self.pods:
            pod.kill(self.backend.grace_s)
        for pod in self.pods:
            if pod.pump:
                pod.pump.join(timeout=5)

    def run(self) -> JobStatus:
        self._save(JobPhase.PENDING)
        if self.backend.observer is not None:
            self.backend.observer.job_started(
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
                time.sleep(self.backend.poll_s)
                if (self.jdir / CANCEL_FILE).exists():
                    self._stop_all()
                    self.state["reasons"].append("aborted by `vitjob cancel`")
                    self._save(JobPhase.ABORTED)
                    break
                if (self.jdir / SUSPEND_FILE).exists():
                    self._stop_all()
                    (self.jdir / SUSPEND_FILE).unlink(missing_ok=True)
                    self.state["suspended"] = True
                    self.state["reasons"].append(
                        f"suspended by `vitjob suspend`: `vitjob resume {self.name} --backend local` runs it "
                        "again (training continues from its last checkpoint)"
                    )
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
        status = status_from_state(self.state)
        if self.backend.observer is not None:
            self.backend.observer.job_finished(status, self.jdir / "logs")
        return status
