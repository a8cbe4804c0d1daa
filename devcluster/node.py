"""The dev cluster's real node: containerd, a CNI bridge network, the kubelet, kube-proxy and CoreDNS.

Owns everything `./dev.sh cluster up` starts on this machine beyond the control plane, and its exact
undoing in `cluster down`:

- **network**: a bridge (``vitjob0``, 10.240.0.1/24; the local backend's pods use 10.244.0.0/16) made
  before the control plane starts. Its address is the node's IP: the kubelet serves on it,
  kube-apiserver advertises it for the ``kubernetes`` Service (a ``socat`` relay forwards it to the API
  server on 127.0.0.1, where kwokctl's clients reach it), and CoreDNS answers on it as the pods' cluster
  DNS. Pods get per-pod IPs from the CNI bridge plugin
  (host-local IPAM); kube-proxy (iptables mode) maps ClusterIPs. No address of the machine's own
  interfaces is used, nothing is masqueraded or forwarded off the machine.
- **containerd** 1.6 + runc + the CNI plugins from Debian (installed with apt-get when missing), with
  private root, state and socket; the sandbox image is ``pause`` from the Kubernetes module (build.sh)
  packed here as an OCI archive; the vitjob CPU image (images/build.sh) is imported under the name
  ``vitjob render --hw cpu`` writes.
- **kubelet and kube-proxy** v1.35.3 (build.sh), configured for this machine (cgroup v1, no
  ``oom_score_adj`` below 0, see ../shared/reference/real-node.md).

What ``up`` changes on the machine is recorded first (``MachineState``: sysctls, iptables rules and
chains, network namespaces, cgroups, the fixed paths the kubelet and containerd use); ``down`` stops
every process by its recorded pid, kills what is left in the node's cgroups, unmounts, and puts each
recorded item back. Standard library only, like cluster.py.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

NODE_NAME = "vitjob-node"
BRIDGE = "vitjob0"
POD_CIDR = "10.240.0.0/24"
NODE_IP = "10.240.0.1"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
CLUSTER_DOMAIN = "cluster.local"
SANDBOX_IMAGE = "registry.k8s.io/pause:3.10-vitjob"
KUBELET_PORT = 10250
# The kubelet's device-plugin directory does not follow --root-dir (a fixed path in the kubelet).
DEVICE_PLUGIN_DIR = Path("/var/lib/kubelet/device-plugins")
# command -> Debian package that provides it.
PACKAGES = {
    "containerd": "containerd",
    "runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "socat": "socat",
    "conntrack": "conntrack",
    "iptables": "iptables",
}
# Sysctls the kubelet, kube-proxy and the CNI bridge plugin may set (real-node.md), restored by `down`.
SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
)
# Fixed host paths the kubelet, containerd's shims and CNI write outside our folder; removed by `down`
# when `up` found them absent.
FIXED_PATHS = (
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/run/containerd",
    "/var/lib/cni",
    "/run/netns",
    "/etc/cni",
)
IPTABLES_TABLES = ("filter", "nat", "mangle")
CGROUP_ROOT = Path("/sys/fs/cgroup")
# The top-level cgroups the node makes in every hierarchy: the kubelet's (cgroupfs driver) and containerd's
# default for containers made outside the CRI. `down` touches no other cgroup.
NODE_CGROUPS = ("kubepods", "k8s.io")
# Processes in start order; `down` stops them in reverse.
PROCESSES = ("containerd", "api-relay", "coredns", "kubelet", "kube-proxy")


class NodeError(RuntimeError):
    """The real node could not be set up or torn down; the message says what to do."""


def log(msg: str) -> None:
    print(f"cluster: node: {msg}", file=sys.stderr, flush=True)


def run(*args: str, check: bool = True, quiet: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), text=True, capture_output=quiet, **kw)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip() if quiet else ""
        raise NodeError(f"`{shlex.join(args)}` failed (exit {proc.returncode}): {detail[:400]}")
    return proc


# ------------------------------------------------------------------------------------------ layout
@dataclass(frozen=True)
class NodePaths:
    """Where the node keeps its state: all under ``<cluster home>/node`` except DEVICE_PLUGIN_DIR."""

    root: Path

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def before(self) -> Path:
        """The machine's state before `up` changed it (MachineState as JSON)."""
        return self.root / "machine-before.json"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def cni_conf(self) -> Path:
        return self.root / "cni" / "net.d"


# ------------------------------------------------------------------------------------------ machine state
@dataclass
class MachineState:
    """What `up` may change on the machine, as found before it did."""

    sysctls: dict[str, str] = field(default_factory=dict)
    iptables: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # binary -> table -> save lines
    netns: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # FIXED_PATHS that existed

    @classmethod
    def read(cls) -> MachineState:
        return cls(
            sysctls={k: v for k in SYSCTLS if (v := read_sysctl(k)) is not None},
            iptables={b: {t: iptables_lines(b, t) for t in IPTABLES_TABLES} for b in iptables_binaries()},
            netns=list_netns(),
            cgroups=sorted(str(p) for p in cgroup_dirs()),
            paths=[p for p in FIXED_PATHS if os.path.lexists(p)],
        )


def read_sysctl(key: str) -> str | None:
    path = Path("/proc/sys") / key.replace(".", "/")
    try:
        return path.read_text().strip()
    except OSError:
        return None


def write_sysctl(key: str, value: str) -> None:
    path = Path("/proc/sys") / key.replace(".", "/")
    with contextlib.suppress(OSError):
        if path.read_text().strip() != value:
            path.write_text(value)


def iptables_binaries() -> list[str]:
    return [b for b in ("iptables", "ip6tables") if shutil.which(b)]


def iptables_lines(binary: str, table: str) -> list[str]:
    """The table's chains (``:NAME``) and rules (``-A …``) as iptables-save writes them."""
    proc = run(f"{binary}-save", "-t", table, check=False)
    lines = []
    for line in proc.stdout.splitlines():
        if line.startswith(":"):
            lines.append(line.split()[0])  # without the counters
        elif line.startswith("-A "):
            lines.append(line)
    return lines


def list_netns() -> list[str]:
    proc = run("ip", "netns", "list", check=False)
    return sorted(line.split()[0] for line in proc.stdout.splitlines() if line.strip())


def cgroup_dirs() -> Iterable[Path]:
    """The top two levels of every cgroup v1 hierarchy (the kubelet makes /kubepods/{burstable,…})."""
    if not CGROUP_ROOT.is_dir():
        return
    for hierarchy in CGROUP_ROOT.iterdir():
        if not hierarchy.is_dir() or hierarchy.is_symlink():
            continue
        for top in _subdirs(hierarchy):
            yield top
            yield from _subdirs(top)


def _subdirs(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


# ------------------------------------------------------------------------------------------ packages
def ensure_packages() -> None:
    """apt-get install the Debian packages of whatever is missing (root on Debian)."""

    def present(cmd: str) -> bool:
        return Path(cmd).exists() if "/" in cmd else shutil.which(cmd) is not None

    missing = sorted({pkg for cmd, pkg in PACKAGES.items() if not present(cmd)})
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise NodeError(
            f"the real node needs {', '.join(missing)}: run as root on Debian, or "
            f"apt-get install {' '.join(missing)}; `cluster up --no-node` starts the control plane alone"
        )
    log(f"installing {', '.join(missing)} (apt-get, Debian's versions)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run("apt-get", "update", "-qq", env=env)
    run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, env=env)


def check_can_run() -> None:
    if os.geteuid() != 0:
        raise NodeError(
            "the real node (kubelet, containerd, a bridge network) needs root; run `./dev.sh cluster up` "
            "as root, or `./dev.sh cluster up --no-node` for the control plane with KWOK nodes only"
        )
    if not CGROUP_ROOT.is_dir():
        raise NodeError("no /sys/fs/cgroup: the kubelet needs cgroups")


# ------------------------------------------------------------------------------------------ network
def make_bridge() -> None:
    """The pod network's bridge with the node's address (idempotent)."""
    if run("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        run("ip", "link", "add", BRIDGE, "type", "bridge")
    addrs = run("ip", "-4", "-o", "addr", "show", "dev", BRIDGE).stdout
    if f" {NODE_IP}/" not in addrs:
        run("ip", "addr", "add", f"{NODE_IP}/{POD_CIDR.split('/')[1]}", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")


def cni_config(paths: NodePaths) -> dict:
    """The bridge network every pod joins: an address of POD_CIDR, the bridge as gateway, no NAT."""
    return {
        "cniVersion": "1.0.0",
        "name": "vitjob",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(paths.root / "cni" / "ipam"),
                },
            }
        ],
    }


# ------------------------------------------------------------------------------------------ images
def oci_archive(binary: Path, name: str, out: Path) -> Path:
    """A one-layer OCI image archive holding ``binary`` as ``/pause`` (its entrypoint), named ``name``."""
    layer_raw = io.BytesIO()
    with tarfile.open(fileobj=layer_raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tar.gettarinfo(str(binary), arcname="pause")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        with binary.open("rb") as f:
            tar.addfile(info, f)
    raw = layer_raw.getvalue()
    layer = gzip.compress(raw, mtime=0)
    blobs: dict[str, bytes] = {}

    def blob(data: bytes, media_type: str) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": blob(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json"),
        "layers": [blob(layer, "application/vnd.oci.image.layer.v1.tar+gzip")],
    }
    desc = blob(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    desc["annotations"] = {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name}
    index = {"schemaVersion": 2, "manifests": [desc]}
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w") as tar:
        for arcname, data in [
            ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
            ("index.json", json.dumps(index).encode()),
            *((f"blobs/sha256/{d.split(':', 1)[1]}", b) for d, b in blobs.items()),
        ]:
            info = tarfile.TarInfo(arcname)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def import_image(paths: NodePaths, archive: Path) -> None:
    run(
        "ctr",
        "--address",
        str(paths.containerd_socket),
        "-n",
        "k8s.io",
        "images",
        "import",
        str(archive),
    )


def archive_image(archive: Path) -> tuple[str, str]:
    """(image name, manifest digest) of an OCI archive's first manifest ("" when it names none)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        index = json.load(member) if member else {}
    manifests = index.get("manifests") or [{}]
    name = (manifests[0].get("annotations") or {}).get("org.opencontainers.image.ref.name", "")
    return name, manifests[0].get("digest", "")


def node_image_digest(paths: NodePaths, name: str) -> str:
    """The digest containerd holds under ``name`` now ("" when none)."""
    out = run(
        "ctr", "--address", str(paths.containerd_socket), "-n", "k8s.io", "images", "ls", f"name=={name}",
        check=False,
    ).stdout
    rows = [line.split() for line in out.splitlines()[1:] if line.split()]
    return next((row[2] for row in rows if row[0] == name and len(row) > 2), "")


def load_images(paths: NodePaths, archives: Iterable[Path]) -> None:
    """Import each OCI archive whose image containerd does not hold under its name now. Every checkout's
    CPU image has the same name, so an archive imported earlier may have been replaced by another one
    since: the digest under the name decides, not whether this archive was imported once."""
    for archive in archives:
        name, digest = archive_image(archive)
        if name and digest and node_image_digest(paths, name) == digest:
            continue
        t = time.monotonic()
        import_image(paths, archive)
        log(f"imported {archive.name} into the node's containerd in {time.monotonic() - t:.1f}s")


# ------------------------------------------------------------------------------------------ configs
def containerd_config(paths: NodePaths) -> str:
    root = paths.root / "containerd"
    return f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
oom_score = 0

[grpc]
  address = "{paths.containerd_socket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{SANDBOX_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{paths.cni_conf}"
"""


def kubelet_config(paths: NodePaths, healthz_port: int) -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # This machine has cgroup v1 (real-node.md); kubelet 1.35 refuses it unless told otherwise.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        # oom_score_adj below 0 is refused here (no CAP_SYS_RESOURCE).
        "oomScoreAdj": 0,
        "address": NODE_IP,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        # The API server reaches the kubelet (logs, exec) without a client certificate (kwokctl gives it
        # none): the kubelet listens on the node's bridge address only.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "clusterDNS": [NODE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(paths.root / "resolv.conf"),
        "podLogsDir": str(paths.pod_logs),
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "imageServiceEndpoint": f"unix://{paths.containerd_socket}",
        "failSwapOn": False,
        # Images are imported, never pulled: no garbage collection may remove them, and a nearly full
        # disk must not evict the job (the e2e tests are about jobs, not the disk of the machine).
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "serializeImagePulls": False,
        "maxPods": 50,
        "fileCheckFrequency": "5s",
        "syncFrequency": "5s",
        "nodeStatusUpdateFrequency": "5s",
        "protectKernelDefaults": False,
        "makeIPTablesUtilChains": True,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "shutdownGracePeriod": "0s",
        "logging": {"format": "text"},
    }


def kube_proxy_config(kubeconfig: Path, healthz_port: int, metrics_port: int) -> dict:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "nodePortAddresses": [f"{NODE_IP}/32"],
        # Leave the machine's conntrack sysctls and route_localnet as they are.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
    }


def corefile(template: Path, kubeconfig: Path, health_port: int, ready_port: int) -> str:
    from string import Template

    return Template(template.read_text()).substitute(
        DNS_IP=NODE_IP,
        DNS_PORT="53",
        KUBECONFIG=str(kubeconfig),
        HEALTH_PORT=str(health_port),
        READY_PORT=str(ready_port),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------ processes
def start_process(paths: NodePaths, name: str, argv: list[str]) -> int:
    """Start ``argv`` detached (its own session), log to logs/<name>.log, record its pid."""
    paths.pids.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    with (paths.logs / f"{name}.log").open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=paths.root,
        )
    (paths.pids / f"{name}.pid").write_text(f"{proc.pid}\n{shlex.join(argv)}\n")
    return proc.pid


def recorded_pid(paths: NodePaths, name: str) -> int | None:
    """The recorded pid of ``name`` if that process still runs the recorded command (not a reused pid)."""
    try:
        pid_text, argv_text = (paths.pids / f"{name}.pid").read_text().split("\n", 1)
        pid = int(pid_text)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    recorded = shlex.split(argv_text.strip())
    return pid if recorded and cmdline and cmdline[0].decode(errors="replace") == recorded[0] else None


def stop_process(paths: NodePaths, name: str, timeout_s: float = 10) -> None:
    pid = recorded_pid(paths, name)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        _reap(pid)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_for(what: str, ready, timeout_s: float, log_name: str, paths: NodePaths) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.3)
    raise NodeError(f"{what} not ready after {timeout_s:.0f}s; see {paths.logs / (log_name + '.log')}")


# ------------------------------------------------------------------------------------------ up
@dataclass(frozen=True)
class NodeInputs:
    """What the node is made from: the built binaries and the cluster it joins."""

    bins: Path  # build.sh's folder: kubelet, kube-proxy, pause
    addons: Path  # addons/build.sh's folder: coredns, Corefile.tmpl
    kubeconfig: Path  # admin kubeconfig (https://127.0.0.1:PORT)
    apiserver_port: int
    images: tuple[Path, ...] = ()  # OCI archives to import


def up(paths: NodePaths, inputs: NodeInputs, timeout_s: float = 120) -> None:
    """Start containerd, the API relay, CoreDNS, the kubelet and kube-proxy; wait for the node Ready."""
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.cni_conf.mkdir(parents=True, exist_ok=True)
    (paths.cni_conf / "10-vitjob.conflist").write_text(json.dumps(cni_config(paths), indent=1))
    # Pods resolve only cluster names (kubelet adds the search path); nothing upstream.
    (paths.root / "resolv.conf").write_text("")
    start = time.monotonic()

    config = paths.root / "containerd.toml"
    config.write_text(containerd_config(paths))
    start_process(paths, "containerd", ["containerd", "--config", str(config)])
    wait_for(
        "containerd",
        lambda: run("ctr", "--address", str(paths.containerd_socket), "version").returncode == 0,
        30,
        "containerd",
        paths,
    )
    pause = oci_archive(inputs.bins / "pause", SANDBOX_IMAGE, paths.root / "pause.oci.tar")
    load_images(paths, (pause, *inputs.images))

    start_process(
        paths,
        "api-relay",
        [
            "socat",
            f"TCP-LISTEN:{inputs.apiserver_port},bind={NODE_IP},reuseaddr,fork",
            f"TCP:127.0.0.1:{inputs.apiserver_port}",
        ],
    )

    dns_health, dns_ready = free_port(), free_port()
    (paths.root / "Corefile").write_text(
        corefile(inputs.addons / "Corefile.tmpl", inputs.kubeconfig, dns_health, dns_ready)
    )
    start_process(paths, "coredns", [str(inputs.addons / "coredns"), "-conf", str(paths.root / "Corefile")])

    kubelet_health = free_port()
    (paths.root / "kubelet.json").write_text(json.dumps(kubelet_config(paths, kubelet_health), indent=1))
    start_process(
        paths,
        "kubelet",
        [
            str(inputs.bins / "kubelet"),
            f"--config={paths.root / 'kubelet.json'}",
            f"--kubeconfig={inputs.kubeconfig}",
            f"--root-dir={paths.kubelet_root}",
            f"--cert-dir={paths.root / 'kubelet-pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            "--v=1",
        ],
    )
    proxy_health, proxy_metrics = free_port(), free_port()
    (paths.root / "kube-proxy.json").write_text(
        json.dumps(kube_proxy_config(inputs.kubeconfig, proxy_health, proxy_metrics), indent=1)
    )
    start_process(
        paths,
        "kube-proxy",
        [str(inputs.bins / "kube-proxy"), f"--config={paths.root / 'kube-proxy.json'}", "--v=1"],
    )
    wait_for("CoreDNS", lambda: _http_ok(dns_ready, "/ready"), timeout_s, "coredns", paths)
    wait_for("the kubelet", lambda: _http_ok(kubelet_health, "/healthz"), timeout_s, "kubelet", paths)
    wait_for("kube-proxy", lambda: _http_ok(proxy_health, "/healthz"), timeout_s, "kube-proxy", paths)
    log(f"containerd, CoreDNS, kubelet and kube-proxy up in {time.monotonic() - start:.1f}s")


def _http_ok(port: int, path: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
        return resp.status == 200


def prepare(paths: NodePaths) -> None:
    """Before the control plane starts: check, install, record the machine's state, make the bridge."""
    check_can_run()
    ensure_packages()
    paths.root.mkdir(parents=True, exist_ok=True)
    if not paths.before.is_file():
        paths.before.write_text(json.dumps(asdict(MachineState.read()), indent=1))
    make_bridge()


# ------------------------------------------------------------------------------------------ down
def down(paths: NodePaths, bins: Path | None) -> None:
    """Undo `prepare` and `up`: processes, containers, mounts, network, iptables, cgroups, sysctls, files."""
    if not paths.before.is_file():
        return
    before = MachineState(**json.loads(paths.before.read_text()))
    for name in reversed(PROCESSES):
        stop_process(paths, name)
    if bins is not None and (bins / "kube-proxy").is_file():
        run(str(bins / "kube-proxy"), "--cleanup", check=False)
    kill_node_cgroups(before)
    stop_shims(paths)
    unmount_under([paths.root, *(Path(p) for p in FIXED_PATHS if p not in before.paths)])
    for ns in sorted(set(list_netns()) - set(before.netns)):
        run("ip", "netns", "delete", ns, check=False)
    run("ip", "link", "delete", BRIDGE, check=False)
    restore_iptables(before.iptables)
    remove_cgroups(before)
    for key, value in before.sysctls.items():
        write_sysctl(key, value)
    for path in FIXED_PATHS:
        if path not in before.paths:
            shutil.rmtree(path, ignore_errors=True)
    if DEVICE_PLUGIN_DIR.is_dir() and "/var/lib/kubelet" in before.paths:
        shutil.rmtree(DEVICE_PLUGIN_DIR, ignore_errors=True)
    paths.before.unlink()


def node_cgroups(before: MachineState) -> list[Path]:
    """Cgroups the node made (kubepods and every cgroup below it), deepest first."""
    known = set(before.cgroups)
    found: list[Path] = []
    for top in cgroup_dirs():
        if str(top) in known or top.parent.parent != CGROUP_ROOT or top.name not in NODE_CGROUPS:
            continue
        found.extend(p for p in top.rglob("*") if p.is_dir())
        found.append(top)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def kill_node_cgroups(before: MachineState) -> None:
    """SIGKILL every process left in the node's cgroups (containers whose shim or kubelet is gone)."""
    for _ in range(20):
        pids = set()
        for cg in node_cgroups(before):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in (cg / "cgroup.procs").read_text().split())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def stop_shims(paths: NodePaths) -> None:
    """containerd's shims outlive containerd: stop those of our containerd (their command line names it)."""
    marker = str(paths.containerd_socket)
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc_dir / "cmdline").read_bytes().decode(errors="replace")
            if "containerd-shim" in cmdline and marker in cmdline:
                os.kill(int(proc_dir.name), signal.SIGKILL)


def unmount_under(roots: list[Path]) -> None:
    """Unmount every mount point at or below ``roots``, deepest first (lazily when busy)."""
    for _ in range(3):
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].encode().decode("unicode_escape")
            if any(point == str(r) or point.startswith(str(r).rstrip("/") + "/") for r in roots):
                points.append(point)
        if not points:
            return
        for point in sorted(set(points), key=lambda p: p.count("/"), reverse=True):
            if run("umount", point, check=False).returncode != 0:
                run("umount", "-l", point, check=False)


def restore_iptables(before: dict[str, dict[str, list[str]]]) -> None:
    """Delete the rules and chains that were not there before (kubelet's KUBE-FIREWALL and the like)."""
    for binary in iptables_binaries():
        for table in IPTABLES_TABLES:
            old = set(before.get(binary, {}).get(table, []))
            now = iptables_lines(binary, table)
            for line in reversed([x for x in now if x.startswith("-A ") and x not in old]):
                run(binary, "-t", table, "-D", *shlex.split(line)[1:], check=False)
            new_chains = [x[1:] for x in now if x.startswith(":") and x not in old]
            for chain in new_chains:
                run(binary, "-t", table, "-F", chain, check=False)
            for chain in new_chains:
                run(binary, "-t", table, "-X", chain, check=False)


def remove_cgroups(before: MachineState) -> None:
    for cg in node_cgroups(before):
        with contextlib.suppress(OSError):
            cg.rmdir()
