"""Helpers of the real-cluster tier (tests/e2e and bench/bench_cluster_api.py): kubectl, KWOK nodes,
PersistentVolumes, pod exits and logs on the dev cluster, and the `vitjob` CLI as a user runs it.

The e2e conftest: one Kubernetes + Volcano + KWOK control plane per test session.

The session fixture runs `devcluster/cluster.py up` (building the pinned binaries the first time), and
stops the cluster at the end unless it was already running before the session (then it is left as it
was). Tests drive the `vitjob` CLI as a user would, as real processes with ``KUBECONFIG`` set, each in a
namespace of its own; nodes and PersistentVolumes are created by the tests through ``Kube``.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CLUSTER_PY = REPO / "devcluster" / "cluster.py"
# The dev cluster's real node (devcluster/node.py): its name and its address on the pod network's bridge.
REAL_NODE = "vitjob-node"
REAL_NODE_IP = "10.240.0.1"
# Sysctls a kubelet, kube-proxy or a CNI plugin is known to set (kubelet's setupKernelTunables,
# kube-proxy's conntrack and route_localnet, the bridge plugin's forwarding).
WATCHED_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/forwarding",
    "net/ipv4/conf/all/route_localnet",
    "net/ipv6/conf/all/forwarding",
    "net/bridge/bridge-nf-call-iptables",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
)
# Host paths a kubelet, containerd or CNI writes by default.
WATCHED_PATHS = (
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/run/containerd",
    "/var/lib/cni",
    "/run/netns",
    "/etc/cni/net.d",
)
NODE_PROGRAMS = (
    "kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "coredns", "socat", "pause",
)


def _lines(*cmd: str) -> list[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True)
    return sorted(line for line in proc.stdout.splitlines() if line.strip())


@dataclass(frozen=True)
class MachineSnapshot:
    """What a real node can leave behind on this machine, read with the system's own tools (not with
    devcluster/node.py's bookkeeping): mount points, network links and namespaces, iptables chains and
    rules, sysctls, cgroups, processes of the node's programs, and the default host paths."""

    mounts: tuple[str, ...]
    links: tuple[str, ...]
    netns: tuple[str, ...]
    iptables: tuple[str, ...]
    sysctls: tuple[str, ...]
    cgroups: tuple[str, ...]
    processes: tuple[str, ...]
    paths: tuple[str, ...]

    @classmethod
    def read(cls) -> MachineSnapshot:
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        links = [line.split(":")[1].strip().split("@")[0] for line in _lines("ip", "-o", "link", "show")]
        rules = []
        for binary in ("iptables-save", "ip6tables-save"):
            table = ""
            for line in _lines(binary):
                if line.startswith("*"):
                    table = line
                elif line.startswith((":", "-A")):
                    rules.append(f"{binary} {table} {line.split(' [')[0] if line.startswith(':') else line}")
        sysctls = []
        for key in WATCHED_SYSCTLS:
            path = Path("/proc/sys") / key
            sysctls.append(f"{key}={path.read_text().strip() if path.exists() else '(absent)'}")
        cgroups = [
            str(top)
            for hierarchy in Path("/sys/fs/cgroup").iterdir()
            if hierarchy.is_dir() and not hierarchy.is_symlink()
            for top in hierarchy.iterdir()
            if top.is_dir()
        ]
        processes = []
        for proc_dir in Path("/proc").iterdir():
            if proc_dir.name.isdigit():
                try:
                    argv0 = (proc_dir / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
                except OSError:
                    continue
                if Path(argv0).name in NODE_PROGRAMS:
                    processes.append(f"{proc_dir.name} {argv0}")
        return cls(
            mounts=tuple(sorted(mounts)),
            links=tuple(sorted(links)),
            netns=tuple(_lines("ip", "netns", "list")),
            iptables=tuple(sorted(rules)),
            sysctls=tuple(sysctls),
            cgroups=tuple(sorted(cgroups)),
            processes=tuple(sorted(processes)),
            paths=tuple(p for p in WATCHED_PATHS if os.path.lexists(p)),
        )

    def differences(self, other: MachineSnapshot) -> dict[str, dict[str, list[str]]]:
        """``{field: {"added": [...], "removed": [...]}}`` for every field that differs."""
        out = {}
        for name in self.__dataclass_fields__:
            mine, theirs = set(getattr(self, name)), set(getattr(other, name))
            if mine != theirs:
                out[name] = {"added": sorted(theirs - mine), "removed": sorted(mine - theirs)}
        return out


@dataclass
class Kube:
    """kubectl (admin) against the development cluster, plus the objects tests need."""

    kubeconfig: Path
    bins: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "VITJOB_DEBUG": "", **extra}

    def kubectl(
        self,
        *args: str,
        input_text: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess:
        cmd = [str(self.bins / "kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        proc = subprocess.run(cmd, text=True, capture_output=True, input=input_text, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def apply(self, obj: dict[str, Any] | list[dict[str, Any]]) -> None:
        items = obj if isinstance(obj, list) else [obj]
        self.kubectl(
            "apply",
            "--server-side",
            "-f",
            "-",
            input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )

    def get(self, kind: str, name: str = "", namespace: str | None = None) -> dict[str, Any]:
        args = ["get", kind, *([name] if name else []), "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        return json.loads(self.kubectl(*args).stdout)

    def get_or_none(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        args = [
            "get",
            kind,
            name,
            "-o",
            "json",
            "--ignore-not-found",
            *(["-n", namespace] if namespace else []),
        ]
        out = self.kubectl(*args).stdout
        return json.loads(out) if out.strip() else None

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        out = self.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout
        return json.loads(out)["items"]

    def add_node(self, name: str, devices: dict[str, str]) -> None:
        """A KWOK-managed node with these extended resources (and room for their pods)."""
        labels = {"accelerator": "huawei-Ascend910"} if "huawei.com/Ascend910" in devices else {}
        capacity = {"cpu": "256", "memory": "2Ti", "pods": "110", "ephemeral-storage": "10Ti", **devices}
        self.kubectl(
            "create",
            "-f",
            "-",
            input_text=json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {"kwok.x-k8s.io/node": "fake"},
                        "labels": {
                            "kubernetes.io/hostname": name,
                            "type": "kwok",
                            "vitjob.io/e2e": "true",
                            **labels,
                        },
                    },
                    "spec": {},
                    "status": {"capacity": capacity, "allocatable": capacity},
                }
            ),
        )
        wait_for(lambda: _node_ready(self.get("node", name)), 60, f"node {name} Ready")

    def delete_nodes(self) -> None:
        self.kubectl("delete", "nodes", "-l", "vitjob.io/e2e=true", "--wait=false", check=False)

    def add_pvcs(self, namespace: str, names: tuple[str, ...] = ("vitjob-data", "vitjob-output")) -> None:
        """hostPath PersistentVolumes pre-bound to claims of these names (no provisioner here)."""
        objs: list[dict[str, Any]] = []
        for claim in names:
            pv = f"{namespace}-{claim}"
            objs.append(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": pv, "labels": {"vitjob.io/e2e": "true"}},
                    "spec": {
                        "capacity": {"storage": "10Gi"},
                        "accessModes": ["ReadWriteMany"],
                        "persistentVolumeReclaimPolicy": "Delete",
                        "storageClassName": "",
                        "hostPath": {"path": f"/tmp/vitjob-e2e/{pv}"},
                        "claimRef": {"namespace": namespace, "name": claim},
                    },
                }
            )
            objs.append(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": claim, "namespace": namespace},
                    "spec": {
                        "accessModes": ["ReadWriteMany"],
                        "storageClassName": "",
                        "volumeName": pv,
                        "resources": {"requests": {"storage": "10Gi"}},
                    },
                }
            )
        self.apply(objs)
        for claim in names:
            wait_for(
                lambda c=claim: self.get("pvc", c, namespace).get("status", {}).get("phase") == "Bound",
                60,
                f"PVC {claim} Bound",
            )

    def end_pod(self, namespace: str, pod: str, exit_code: int) -> None:
        """End a Running pod the way a kubelet would report its container's exit (stages/pod-exit.yaml)."""
        self.kubectl(
            "annotate", "--overwrite", "pod", pod, "-n", namespace, f"vitjob.io/exit-code={exit_code}"
        )

    def serve_logs(self, namespace: str, pod: str, path: Path, lines: list[str] = ()) -> None:
        """Serve ``path`` as the pod's container log, followed (KWOK's Logs object), starting with ``lines``.

        The file is in the CRI log format a kubelet keeps (``<RFC 3339 time> stdout F <line>``), which
        KWOK's log server parses; ``write_log`` appends to it. Re-serving a recreated pod with a new file
        gives its new container a log of its own, as on a real node.
        """
        path.write_text("")
        write_log(path, lines)
        self.apply(
            {
                "apiVersion": "kwok.x-k8s.io/v1alpha1",
                "kind": "Logs",
                "metadata": {"name": pod, "namespace": namespace},
                "spec": {"logs": [{"containers": ["vitjob"], "logsFile": str(path), "follow": True}]},
            }
        )


def write_log(path: Path, lines: list[str]) -> None:
    """Append lines to a container log file in the CRI format."""
    with path.open("a") as f:
        for line in lines:
            now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            f.write(f"{now} stdout F {line}\n")


def _node_ready(node: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )


def wait_for(cond: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.5) -> Any:
    """Poll ``cond`` until it returns something truthy; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(every_s)


def start_cluster() -> Kube:
    """`devcluster/cluster.py up` (reusing a healthy cluster): a ``Kube`` with its admin kubeconfig."""

    def last_line(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, str(CLUSTER_PY), *args], stdout=subprocess.PIPE, text=True, check=True
        ).stdout
        return out.strip().splitlines()[-1]

    kubeconfig = Path(last_line("up").removeprefix("KUBECONFIG="))
    return Kube(kubeconfig, Path(last_line("build")))


@dataclass
class Vitjob:
    """The `vitjob` CLI as a user runs it against the cluster."""

    kube: Kube
    namespace: str

    def __call__(
        self,
        *args: str,
        timeout: float = 120,
        kubeconfig: Path | None = None,
        check: bool | None = None,
        backend: bool = True,
    ) -> subprocess.CompletedProcess:
        """``vitjob ARGS`` (with ``--backend kubernetes -n NS`` unless ``backend=False``)."""
        exe = Path(sys.executable).parent / "vitjob"
        env = self.kube.env(KUBECONFIG=str(kubeconfig or self.kube.kubeconfig))
        extra = ["--backend", "kubernetes", "-n", self.namespace] if backend else []
        proc = subprocess.run(
            [str(exe), *args, *extra], text=True, capture_output=True, env=env, timeout=timeout
        )
        if check:
            assert proc.returncode == 0, f"vitjob {' '.join(args)} exited {proc.returncode}: {proc.stderr}"
        return proc

    def popen(self, *args: str) -> subprocess.Popen:
        exe = Path(sys.executable).parent / "vitjob"
        return subprocess.Popen(
            [str(exe), *args, "--backend", "kubernetes", "-n", self.namespace],
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.kube.env(),
        )
