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
