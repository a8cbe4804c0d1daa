#!/usr/bin/env python3
"""A real Kubernetes + Volcano cluster on this machine: `./dev.sh cluster up|down|status`.

Owns the life cycle of the development cluster that the e2e tests and users try vitjob against: etcd,
kube-apiserver (RBAC on, ServiceAccount tokens), kube-controller-manager and kube-scheduler (for pods
that do not ask for Volcano, as in a real cluster: Deployments, helm test pods) of Kubernetes v1.35.3,
Volcano v1.15.1's controller-manager, scheduler and admission webhook, all listening on 127.0.0.1, and
**a real node** (node.py: containerd, kubelet, kube-proxy, CoreDNS on a bridge network of its own, the
vitjob CPU image loaded) beside KWOK v0.8.0, which simulates only the nodes annotated
``kwok.x-k8s.io/node: fake`` (for scale and fault tests). kwokctl's binary runtime starts and stops the
control plane's processes, Volcano's included (as kwokctl components); this module writes its
configuration, makes the webhook's certificate, waits until the cluster accepts a Volcano Job through the
webhook, then starts the node and waits until it is Ready.

Standard library only, so it runs before any virtual environment exists. The binaries come from
`devcluster/build.sh` (pinned Go modules, built here, cached outside the repository).

Pods on KWOK nodes become Running and stay Running until a test annotates them
`vitjob.io/exit-code: "<n>"` (stages/pod-exit.yaml). Log lines for a pod are served through the real
pod-log API from a file named by a `Logs` object (kwok.x-k8s.io/v1alpha1) in the pod's namespace.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import node as realnode

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HELM = REPO / ".tools" / "helm" / "v3.18.0" / "helm"
CLUSTER = "vitjob"
# The annotation that hands a Node to KWOK (the e2e fixtures' fake nodes carry it; a real node does not).
KWOK_NODE_SELECTOR = "kwok.x-k8s.io/node=fake"
VOLCANO_COMPONENTS = ("vc-webhook-manager", "vc-controller-manager", "vc-scheduler")


class ClusterError(RuntimeError):
    """The control plane could not be built, started or reached; the message says what to do."""


@dataclass(frozen=True)
class Layout:
    """Where the cluster keeps its state (all of it under one folder that `down` removes)."""

    home: Path

    @property
    def kwok_workdir(self) -> Path:
        return self.home / "kwok"

    @property
    def cluster_dir(self) -> Path:
        return self.kwok_workdir / "clusters" / CLUSTER

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (client certificate of kwokctl's PKI, group system:masters)."""
        return self.home / "kubeconfig"

    @property
    def component_kubeconfig(self) -> Path:
        return self.cluster_dir / "kubeconfig.yaml"

    @property
    def certs(self) -> Path:
        return self.home / "webhook-certs"

    @property
    def config(self) -> Path:
        return self.home / "kwokctl.yaml"

    @property
    def node(self) -> realnode.NodePaths:
        return realnode.NodePaths(self.home / "node")


def default_layout() -> Layout:
    home = os.environ.get("VITJOB_CLUSTER_HOME") or str(Path.home() / ".cache" / "vitjob" / "cluster")
    return Layout(Path(home))


def log(msg: str) -> None:
    print(f"cluster: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ build
def build_binaries() -> Path:
    """Run build.sh (a no-op when the cache holds this pin set) and return the binaries' folder."""
    proc = subprocess.run(["bash", str(HERE / "build.sh")], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise ClusterError("building the control-plane binaries failed (see the go output above)")
    return Path(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------ certs
def make_webhook_certs(out: Path) -> dict[str, Path]:
    """A CA and a serving certificate for 127.0.0.1, for Volcano's admission webhook (openssl)."""
    paths = {"ca": out / "ca.crt", "cert": out / "tls.crt", "key": out / "tls.key"}
    if all(p.is_file() for p in paths.values()):
        return paths
    if shutil.which("openssl") is None:
        raise ClusterError("openssl is required to make the webhook certificate: apt-get install openssl")
    out.mkdir(parents=True, exist_ok=True)
    ext = out / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "3650",
        "-subj",
        "/CN=vitjob-dev-ca",
        "-keyout",
        str(out / "ca.key"),
        "-out",
        str(paths["ca"]),
    )
    ssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        str(paths["key"]),
        "-out",
        str(out / "tls.csr"),
    )
    ssl(
        "x509",
        "-req",
        "-in",
        str(out / "tls.csr"),
        "-CA",
        str(paths["ca"]),
        "-CAkey",
        str(out / "ca.key"),
        "-CAcreateserial",
        "-days",
        "3650",
        "-extfile",
        str(ext),
        "-out",
        str(paths["cert"]),
    )
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------------ config
def kwokctl_config(
    bins: Path,
    lay: Layout,
    certs: dict[str, Path],
    ports: dict[str, int],
    admissions: list[str],
    with_node: bool = True,
) -> str:
    """The kwokctl configuration: binaries, RBAC, KWOK's CRDs for logs, Volcano as components, stages."""
    kubeconfig = str(lay.component_kubeconfig)
    workdir = str(lay.cluster_dir)

    def component(name: str, args: list[str]) -> dict:
        return {
            "name": name,
            "binary": str(bins / name),
            "links": ["kube-apiserver"],
            "workDir": workdir,
            "args": [f"--kubeconfig={kubeconfig}", "--logtostderr=true", "-v=2", *args],
        }

    webhook = component(
        "vc-webhook-manager",
        [
            f"--tls-cert-file={certs['cert']}",
            f"--tls-private-key-file={certs['key']}",
            f"--ca-cert-file={certs['ca']}",
            "--listen-address=127.0.0.1",
            f"--port={ports['webhook']}",
            f"--webhook-url=https://127.0.0.1:{ports['webhook']}",
            f"--admission-conf={bins / 'volcano-admission.conf'}",
            f"--enabled-admission={','.join(admissions)}",
            "--enable-healthz=true",
            f"--healthz-address=127.0.0.1:{ports['webhook_health']}",
        ],
    )
    controllers = component(
        "vc-controller-manager",
        [
            "--leader-elect=false",
            "--enable-healthz=true",
            f"--healthz-address=127.0.0.1:{ports['controller_health']}",
            f"--listen-address=127.0.0.1:{ports['controller_metrics']}",
        ],
    )
    scheduler = component(
        "vc-scheduler",
        [
            "--leader-elect=false",
            f"--scheduler-conf={bins / 'volcano-scheduler.conf'}",
            "--enable-healthz=true",
            f"--healthz-address=127.0.0.1:{ports['scheduler_health']}",
            f"--listen-address=127.0.0.1:{ports['scheduler_metrics']}",
            "--cache-dumper=false",
        ],
    )
    # Volcano's CRDs, applied by kwokctl once the API server is up (its components wait for them).
    crds = [p.read_text() for p in sorted((bins / "volcano-crds").glob("*.yaml"))]
    controllers["manifestContents"] = crds
    conf = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": {
            "runtime": "binary",
            "etcdBinary": str(bins / "etcd"),
            "kubeApiserverBinary": str(bins / "kube-apiserver"),
            "kubeControllerManagerBinary": str(bins / "kube-controller-manager"),
            "kubeSchedulerBinary": str(bins / "kube-scheduler"),
            "kwokControllerBinary": str(bins / "kwok"),
            "kubectlBinary": str(bins / "kubectl"),
            "kubeAuthorization": True,
            "securePort": True,
            "enableCRDs": ["Logs", "ClusterLogs"],
            "quietPull": True,
            # kwokctl's default is 0.0.0.0 (every interface, the machine's external address included):
            # kube-apiserver, etcd and kwok-controller listen on loopback only.
            "bindAddress": "127.0.0.1",
        },
        "components": [webhook, controllers, scheduler],
        # KWOK takes only the nodes annotated kwok.x-k8s.io/node=fake (kwokctl's binary runtime passes
        # --manage-all-nodes=true, which would take over a real kubelet's node and its pods).
        "componentsPatches": [
            {
                "name": "kwok-controller",
                "extraArgs": [
                    {"key": "manage-all-nodes", "value": "false", "override": True},
                    {"key": "manage-nodes-with-annotation-selector", "value": KWOK_NODE_SELECTOR},
                ],
            }
        ],
    }
    if with_node:
        # Pods on the real node reach the API server through the `kubernetes` Service: its endpoint is
        # the node's bridge address (not the machine's external one, kube-apiserver's default pick),
        # relayed to 127.0.0.1; the serving certificate names the Service's ClusterIP and that address.
        conf["options"]["kubeApiserverCertSANs"] = [realnode.KUBERNETES_SERVICE_IP, realnode.NODE_IP]
        conf["componentsPatches"].append(
            {
                "name": "kube-apiserver",
                "extraArgs": [
                    {"key": "advertise-address", "value": realnode.NODE_IP},
                    {"key": "service-cluster-ip-range", "value": realnode.SERVICE_CIDR},
                    # Logs and exec reach the kubelet at the node's InternalIP (its host name is no DNS name).
                    {"key": "kubelet-preferred-address-types", "value": "InternalIP,Hostname"},
                ],
            }
        )
    # Node stages and the pod ready/delete stages are KWOK's defaults (copied from its module by
    # build.sh); the pod end is ours: stages/pod-exit.yaml replaces KWOK's pod-complete.
    stages = [p.read_text() for p in sorted((bins / "kwok-stages").glob("*.yaml"))]
    stages.append((HERE / "stages" / "pod-exit.yaml").read_text())
    return "\n---\n".join([json.dumps(conf, indent=1), *stages])


# ------------------------------------------------------------------------------------------------ webhooks
def release_webhooks(bins: Path) -> str:
    """The webhook configurations of Volcano's release chart (templates/webhooks.yaml, default values).

    In a cluster the chart creates them pointing at the admission Service and the webhook-manager only
    fills in the CA bundle (cmd/webhook-manager/app/util.go waits for them); here they are rendered with
    the pinned helm and pointed at the manager's URL on 127.0.0.1 instead (see ``point_at``).
    """
    if not HELM.is_file():
        subprocess.run(
            ["bash", str(REPO / "scripts" / "get-helm.sh"), "3"], check=True, stdout=subprocess.DEVNULL
        )
    proc = subprocess.run(
        [
            str(HELM),
            "template",
            "volcano",
            str(bins / "volcano-chart"),
            "-n",
            "volcano-system",
            "--show-only",
            "templates/webhooks.yaml",
        ],
        capture_output=True,
        text=True,
        env=dict(
            os.environ,
            HELM_CACHE_HOME="/tmp/vitjob-helm-cache",
            HELM_CONFIG_HOME="/tmp/vitjob-helm-config",
            HELM_DATA_HOME="/tmp/vitjob-helm-data",
        ),
    )
    if proc.returncode != 0:
        raise ClusterError(f"helm could not render Volcano's webhook configurations: {proc.stderr.strip()}")
    return proc.stdout


def json_stream(text: str) -> list[dict]:
    """The JSON objects kubectl prints one after another for a multi-document input."""
    decoder, objs, pos = json.JSONDecoder(), [], 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        obj, pos = decoder.raw_decode(text, pos)
        objs.extend(obj.get("items", [obj]) if obj.get("kind") == "List" else [obj])
    return objs


def point_at(configs: list[dict], url: str, ca_file: Path) -> tuple[list[dict], list[str]]:
    """Each webhook's clientConfig -> ``url + path`` with our CA; also return the admission paths."""
    ca = base64.b64encode(ca_file.read_bytes()).decode()
    paths = []
    for cfg in configs:
        for hook in cfg.get("webhooks") or []:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": url + path, "caBundle": ca}
            paths.append(path)
    return configs, paths


# ------------------------------------------------------------------------------------------------ run
class Cluster:
    """kwokctl and kubectl against the development cluster in one layout."""

    def __init__(self, lay: Layout, bins: Path | None):
        self.lay = lay
        self.bins = bins

    def env(self) -> dict[str, str]:
        env = dict(os.environ, KWOK_WORKDIR=str(self.lay.kwok_workdir), KUBECONFIG=str(self.lay.kubeconfig))
        if self.bins is not None:
            env["PATH"] = f"{self.bins}{os.pathsep}{env.get('PATH', '')}"
        return env

    def kwokctl(self, *args: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess:
        exe = str(self.bins / "kwokctl") if self.bins else "kwokctl"
        out = subprocess.PIPE if quiet else None
        proc = subprocess.run(
            [exe, "--name", CLUSTER, *args], env=self.env(), text=True, stdout=out, stderr=out
        )
        if check and proc.returncode != 0:
            raise ClusterError(
                f"kwokctl {' '.join(args)} failed (exit {proc.returncode}); logs in "
                f"{self.lay.cluster_dir / 'logs'}"
            )
        return proc

    def kubectl(
        self, *args: str, input_text: str | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess:
        exe = str(self.bins / "kubectl") if self.bins else "kubectl"
        return subprocess.run(
            [exe, f"--kubeconfig={self.lay.kubeconfig}", *args],
            env=self.env(),
            text=True,
            capture_output=True,
            input=input_text,
            timeout=timeout,
        )

    def healthy(self) -> bool:
        """Every piece answers: API server, Volcano's three components (and the webhook admits)."""
        if not self.lay.kubeconfig.is_file():
            return False
        try:
            if self.kubectl("get", "--raw", "/readyz", timeout=10).returncode != 0:
                return False
            return not self.problems()
        except subprocess.TimeoutExpired:
            return False

    def problems(self) -> list[str]:
        """What is not ready yet (empty when the cluster takes a Volcano Job through the webhook)."""
        found = []
        crds = self.kubectl("get", "crd", "-o", "name")
        for crd in (
            "jobs.batch.volcano.sh",
            "podgroups.scheduling.volcano.sh",
            "queues.scheduling.volcano.sh",
            "commands.bus.volcano.sh",
            "logs.kwok.x-k8s.io",
        ):
            if f"customresourcedefinition.apiextensions.k8s.io/{crd}" not in crds.stdout:
                found.append(f"CRD {crd} not installed")
        if found:
            return found
        q = self.kubectl("get", "queues.scheduling.volcano.sh", "default", "-o", "jsonpath={.status.state}")
        if q.returncode != 0 or q.stdout != "Open":
            found.append("Volcano's default queue is not Open yet (vc-scheduler and vc-controller-manager)")
        hooks = self.kubectl("get", "mutatingwebhookconfigurations", "-o", "name")
        if "jobs-mutate" not in hooks.stdout:
            found.append("Volcano's admission webhooks are not registered yet (vc-webhook-manager)")
            return found
        probe = {
            "apiVersion": "batch.volcano.sh/v1alpha1",
            "kind": "Job",
            "metadata": {"name": "readiness-probe", "namespace": "default"},
            "spec": {
                "minAvailable": 1,
                "tasks": [
                    {
                        "name": "t",
                        "replicas": 1,
                        "template": {
                            "spec": {
                                "containers": [{"name": "c", "image": "busybox"}],
                                "restartPolicy": "Never",
                            }
                        },
                    }
                ],
            },
        }
        dry = self.kubectl(
            "create", "--dry-run=server", "-o", "json", "-f", "-", input_text=json.dumps(probe)
        )
        if dry.returncode != 0:
            found.append(f"the webhook does not admit a Volcano Job yet: {dry.stderr.strip()[:200]}")
        elif json.loads(dry.stdout)["spec"].get("queue") != "default":
            found.append("Volcano's mutating webhook did not default the job's queue")
        return found

    def wait_ready(self, timeout_s: float, revive: Callable[[], object] | None = None) -> None:
        """Poll ``problems`` until none is left; call ``revive`` at once and then every 10 s meanwhile."""
        deadline = time.monotonic() + timeout_s
        last: list[str] = []
        next_revive = time.monotonic()
        while time.monotonic() < deadline:
            if revive is not None and time.monotonic() >= next_revive:
                revive()
                next_revive = time.monotonic() + 10
            try:
                ok = self.kubectl("get", "--raw", "/readyz", timeout=10).returncode == 0
                last = self.problems() if ok else ["kube-apiserver is not ready"]
            except subprocess.TimeoutExpired:
                last = ["kube-apiserver does not answer"]
            if not last:
                return
            time.sleep(1)
        raise ClusterError(
            f"the cluster is not ready after {timeout_s:.0f}s: {'; '.join(last)}; component logs are in "
            f"{self.lay.cluster_dir / 'logs'}"
        )


def build_addons() -> Path:
    """addons/build.sh (CoreDNS, the test device plugin): a no-op when cached; returns their folder."""
    proc = subprocess.run(["bash", str(HERE / "addons" / "build.sh")], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise ClusterError("building the node add-ons failed (see the go output above)")
    return Path(proc.stdout.strip().splitlines()[-1])


def build_cpu_image() -> Path:
    """images/build.sh --kind cpu --oci-archive (cached by the hash of its inputs): the archive's path."""
    log("building the vitjob CPU image (cached by its inputs; about 15 minutes the first time)")
    proc = subprocess.run(
        ["bash", str(REPO / "images" / "build.sh"), "--kind", "cpu", "--oci-archive"],
        stdout=subprocess.PIPE,
        text=True,
    )
    if proc.returncode != 0:
        raise ClusterError("building the vitjob CPU image failed (images/build.sh's output is above)")
    return Path(proc.stdout.strip().splitlines()[-1])


def apiserver_port(kubeconfig: Path) -> int:
    """The port of the admin kubeconfig's server (https://127.0.0.1:PORT, written by kwokctl)."""
    for line in kubeconfig.read_text().splitlines():
        line = line.strip()
        if line.startswith("server:") and "127.0.0.1:" in line:
            return int(line.rsplit(":", 1)[1].strip().strip('"'))
    raise ClusterError(f"no https://127.0.0.1:PORT server in {kubeconfig}")


def node_problems(cl: Cluster) -> list[str]:
    """Why the real node is not usable yet (empty when it is Ready)."""
    got = cl.kubectl("get", "node", realnode.NODE_NAME, "-o", "json")
    if got.returncode != 0:
        return [f"node {realnode.NODE_NAME} is not registered (kubelet: {cl.lay.node.logs / 'kubelet.log'})"]
    conditions = json.loads(got.stdout).get("status", {}).get("conditions") or []
    if not any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
        return [f"node {realnode.NODE_NAME} is not Ready (kubelet: {cl.lay.node.logs / 'kubelet.log'})"]
    return []


def up(lay: Layout, timeout_s: float, with_node: bool = True) -> Path:
    bins = build_binaries()
    cl = Cluster(lay, bins)
    node_there = lay.node.before.is_file()
    reusable = lay.cluster_dir.is_dir() and cl.healthy() and node_there == with_node
    if reusable and not (with_node and node_problems(cl)):
        log("reusing the running cluster")
        if with_node:  # the CPU image of the checkout as it is now (a no-op when it is the loaded one)
            realnode.load_images(lay.node, [build_cpu_image()])
        return lay.kubeconfig
    if lay.cluster_dir.is_dir() or node_there:
        log("a previous cluster is there but not healthy (or of the other kind): removing it")
        down(lay)
    addons = build_addons() if with_node else None
    image = build_cpu_image() if with_node else None
    if with_node:
        realnode.prepare(lay.node)
    lay.home.mkdir(parents=True, exist_ok=True)
    certs = make_webhook_certs(lay.certs)
    ports = {
        k: free_port()
        for k in (
            "webhook",
            "webhook_health",
            "controller_health",
            "controller_metrics",
            "scheduler_health",
            "scheduler_metrics",
        )
    }
    webhooks_yaml = release_webhooks(bins)
    admissions = sorted(
        {
            line.split("path:", 1)[1].strip()
            for line in webhooks_yaml.splitlines()
            if line.strip().startswith("path: /")
        }
    )
    lay.config.write_text(kwokctl_config(bins, lay, certs, ports, admissions, with_node=with_node))
    start = time.monotonic()
    log("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok and Volcano (kwokctl)")
    cl.kwokctl(
        "create",
        "cluster",
        f"--config={lay.config}",
        "--runtime=binary",
        f"--kubeconfig={lay.kubeconfig}",
        "--wait=2m",
        quiet=True,
    )
    # The webhook configurations the release chart would create, pointed at the manager on 127.0.0.1.
    as_json = cl.kubectl("create", "--dry-run=client", "-o", "json", "-f", "-", input_text=webhooks_yaml)
    if as_json.returncode != 0:
        raise ClusterError(f"cannot read Volcano's webhook configurations: {as_json.stderr.strip()}")
    configs, _ = point_at(json_stream(as_json.stdout), f"https://127.0.0.1:{ports['webhook']}", certs["ca"])
    applied = cl.kubectl(
        "apply",
        "--server-side",
        "-f",
        "-",
        input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": configs}),
    )
    if applied.returncode != 0:
        raise ClusterError(f"cannot create Volcano's webhook configurations: {applied.stderr.strip()}")
    # Volcano's components may have exited while the API server was still starting: start them again
    # (kwokctl starts only those that are not running).
    cl.wait_ready(timeout_s, revive=lambda: cl.kwokctl("start", "cluster", quiet=True, check=False))
    log(f"control plane ready in {time.monotonic() - start:.1f}s")
    if with_node:
        assert addons is not None and image is not None
        inputs = realnode.NodeInputs(
            bins=bins,
            addons=addons,
            kubeconfig=lay.kubeconfig,
            apiserver_port=apiserver_port(lay.kubeconfig),
            images=(image,),
        )
        try:
            realnode.up(lay.node, inputs, timeout_s)
        except realnode.NodeError as exc:
            raise ClusterError(str(exc)) from exc
        deadline = time.monotonic() + timeout_s
        while problems := node_problems(cl):
            if time.monotonic() > deadline:
                raise ClusterError("; ".join(problems))
            time.sleep(0.5)
        took = time.monotonic() - start
        log(f"node {realnode.NODE_NAME} Ready at {realnode.NODE_IP}; all up in {took:.1f}s")
    return lay.kubeconfig


def down(lay: Layout) -> None:
    """Stop every process of the cluster and remove its state. A healthy cluster is deleted by kwokctl;
    one whose processes died (a reboot, a session's end) is not: kwokctl would signal its recorded pids,
    which may belong to other processes by now, so only verified leftovers are killed."""
    bins = build_binaries() if lay.cluster_dir.is_dir() or lay.node.before.is_file() else None
    try:
        realnode.down(lay.node, bins)
    except realnode.NodeError as exc:
        raise ClusterError(f"tearing the node down: {exc}") from exc
    if lay.cluster_dir.is_dir():
        cl = Cluster(lay, bins)
        if cl.healthy():
            cl.kwokctl("delete", "cluster", f"--kubeconfig={lay.kubeconfig}", check=False, quiet=True)
    _kill_leftovers(lay)
    shutil.rmtree(lay.home, ignore_errors=True)


def _kill_leftovers(lay: Layout) -> None:
    """Stop any process kwokctl recorded that is still alive (a half-created cluster, a crash). A pid
    is killed only if its command line names this cluster's files: after a reboot the number may
    belong to someone else."""
    pids = lay.cluster_dir / "pids"
    for pidfile in pids.glob("*.pid") if pids.is_dir() else []:
        with contextlib.suppress(ValueError, OSError):
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            if str(lay.home) in cmdline or "/.cache/vitjob/devcluster/" in cmdline:
                os.kill(pid, 9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev.sh cluster", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="build (once) and start the cluster; last line: KUBECONFIG=<path>")
    p_up.add_argument(
        "--timeout", type=float, default=180, help="seconds to wait for readiness (default 180)"
    )
    p_up.add_argument(
        "--no-node",
        action="store_true",
        help="no real node (kubelet, containerd, the CPU image): the control plane with KWOK nodes only",
    )
    sub.add_parser("down", help="stop every process of the cluster and remove its state")
    sub.add_parser("status", help="say whether the cluster is up and healthy")
    sub.add_parser("build", help="only build the binaries; print their folder")
    sub.add_parser(
        "install", help="only install the real node's Debian packages (containerd, runc, CNI plugins, …)"
    )
    args = parser.parse_args(argv)
    lay = default_layout()
    try:
        if args.cmd == "up":
            print(f"KUBECONFIG={up(lay, args.timeout, with_node=not args.no_node)}", flush=True)
        elif args.cmd == "down":
            down(lay)
            log(f"stopped; removed {lay.home}")
        elif args.cmd == "build":
            print(build_binaries())
        elif args.cmd == "install":
            realnode.check_can_run()
            realnode.ensure_packages()
        else:
            cl = Cluster(lay, build_binaries())
            if lay.cluster_dir.is_dir() and cl.healthy():
                for problem in node_problems(cl) if lay.node.before.is_file() else []:
                    log(problem)
                print(f"KUBECONFIG={lay.kubeconfig}")
            else:
                log("not running (`./dev.sh cluster up` starts it)")
                return 1
    except (ClusterError, realnode.NodeError) as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
