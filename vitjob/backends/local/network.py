"""Pod networking of the local backend: pods that find each other as on a cluster.

Every local pod gets Volcano's svc-plugin host name (``<job>-<task>-<i>.<job>``) and is found by it. Two
modes, chosen by ``VITJOB_LOCAL_NETWORK`` (``auto`` by default):

- ``netns`` (``auto`` picks it when running as root with iproute2): per job, a *hub* network namespace
  holding a bridge, and per pod a namespace with ``lo`` and ``eth0`` (a veth to the bridge) at
  ``10.244.<N>.<i+2>/24``, ``N`` a /24 of ``LOCAL_POD_NETWORK`` leased for the job. No namespace is
  connected to the host's network, so nothing is routed off the machine. ``/etc/netns/<ns>/hosts`` maps
  every pod name to its address: ``ip netns exec`` bind-mounts it over ``/etc/hosts`` for the pod's
  process (the ``ip-netns(8)`` convention). Each pod has its own port space, so every pod uses the
  job's rendered ports, like pods on a cluster. The bridge's address ``10.244.<N>.1`` plays the node's.
- ``shared-host`` (without root or iproute2): all pods on this machine's network at 127.0.0.1, still
  by name, through a hosts file the launcher is given (``VITJOB_HOSTS_FILE``); the pods share one port
  space, so each job gets free ports of its own.

A lease file ``/run/vitjob/netns/<N>`` (created exclusively, holding the runner's pid) keeps two jobs
off the same /24; a lease whose runner is gone is reclaimed and its leftovers removed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from vitjob import constants as c
from vitjob.errors import UsageError

log = logging.getLogger(__name__)

NETNS = "netns"
SHARED_HOST = "shared-host"
LEASE_DIR = Path("/run/vitjob/netns")
NETNS_ETC = Path("/etc/netns")
# Namespace names: vj<N>-hub and vj<N>-<i>; hub-side veth ends vj<N>h<i> (interface names <= 15 chars).
_PREFIX = "vj"
_MAX_PODS = 250


@dataclass(frozen=True)
class PodAddress:
    pod: str  # <job>-<task>-<i>
    host: str  # the svc plugin's name, <pod>.<job>
    ip: str
    netns: str = ""  # "" in shared-host mode


@dataclass
class JobNetwork:
    """The network of one local job's pods; ``close()`` removes whatever it created."""

    mode: str
    why: str
    node_ip: str  # what the pods get as status.hostIP
    pods: dict[str, PodAddress] = field(default_factory=dict)
    hosts_file: Path | None = None  # shared-host: the file the launcher resolves names in
    subnet: int | None = None
    _ip: str = ""

    def hosts_text(self) -> str:
        lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
        lines += [f"{p.ip} {p.host} {p.pod}" for p in self.pods.values()]
        return "\n".join(lines) + "\n"

    def wrap(self, pod: str, argv: list[str]) -> list[str]:
        """The command that runs ``argv`` as pod ``pod``: inside its namespace in netns mode."""
        ns = self.pods[pod].netns
        return [self._ip, "netns", "exec", ns, *argv] if ns else argv

    def pod_env(self, pod: str) -> dict[str, str]:
        """What the downward API gives the pod (status.podIP, status.hostIP), plus the hosts file."""
        env = {c.ENV_POD_IP: self.pods[pod].ip, c.ENV_HOST_IP: self.node_ip}
        if self.hosts_file is not None:
            env[c.ENV_HOSTS_FILE] = str(self.hosts_file)
        return env

    def describe(self) -> str:
        if self.mode == NETNS:
            return (
                f"pods in their own network namespaces on 10.244.{self.subnet}.0/24, found by name "
                f"({self.why})"
            )
        return f"pods share this machine's network at 127.0.0.1, found by name ({self.why})"

    def close(self) -> None:
        if self.mode == NETNS and self.subnet is not None:
            _remove_namespaces(self._ip, self.subnet)
            with contextlib.suppress(FileNotFoundError):
                (LEASE_DIR / str(self.subnet)).unlink()
            self.subnet = None


def choose_mode(env: dict[str, str]) -> tuple[str, str]:
    """(mode, why) from ``VITJOB_LOCAL_NETWORK`` and what this machine allows."""
    wanted = env.get(c.ENV_LOCAL_NETWORK, "auto").strip() or "auto"
    if wanted not in c.LOCAL_NETWORK_MODES:
        raise UsageError(f"{c.ENV_LOCAL_NETWORK}={wanted!r}: use one of {', '.join(c.LOCAL_NETWORK_MODES)}")
    if wanted == SHARED_HOST:
        return SHARED_HOST, f"{c.ENV_LOCAL_NETWORK}={SHARED_HOST}"
    missing = _netns_missing()
    if missing is None:
        return NETNS, "running as root with iproute2"
    if wanted == NETNS:
        raise UsageError(
            f"{c.ENV_LOCAL_NETWORK}=netns needs root and iproute2: {missing}; "
            f"use {c.ENV_LOCAL_NETWORK}=shared-host (or auto) here"
        )
    return SHARED_HOST, f"network namespaces need root and iproute2: {missing}"


def _netns_missing() -> str | None:
    if os.geteuid() != 0:
        return "not running as root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2) on PATH"
    return None


def open_network(pods: list[tuple[str, str]], jdir: Path, env: dict[str, str]) -> JobNetwork:
    """The network for ``pods`` ((pod name, svc host name) in task order), set up and ready."""
    if len(pods) > _MAX_PODS:
        raise UsageError(f"{len(pods)} pods: the local backend runs at most {_MAX_PODS} pods per job")
    mode, why = choose_mode(env)
    if mode == SHARED_HOST:
        net = JobNetwork(
            SHARED_HOST, why, "127.0.0.1", {p: PodAddress(p, h, "127.0.0.1") for p, h in pods}, jdir / "hosts"
        )
        assert net.hosts_file is not None
        net.hosts_file.write_text(net.hosts_text())
        return net
    ip = shutil.which("ip")
    assert ip is not None
    subnet = _lease_subnet(ip)
    base = f"10.244.{subnet}"
    net = JobNetwork(NETNS, why, f"{base}.1", subnet=subnet, _ip=ip)
    net.pods = {
        p: PodAddress(p, h, f"{base}.{i + 2}", f"{_PREFIX}{subnet}-{i}") for i, (p, h) in enumerate(pods)
    }
    try:
        _create_namespaces(net)
    except BaseException:
        net.close()
        raise
    return net


def _run(ip: str, *args: str) -> None:
    proc = subprocess.run([ip, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UsageError(
            f"setting up the local pods' network failed: `ip {' '.join(args)}`: "
            f"{proc.stderr.strip() or proc.returncode}; set {c.ENV_LOCAL_NETWORK}=shared-host "
            "to run without network namespaces"
        )


def _create_namespaces(net: JobNetwork) -> None:
    ip, subnet = net._ip, net.subnet
    assert subnet is not None
    _remove_namespaces(ip, subnet)  # leftovers of this /24 whose lease file is gone (the lease is ours now)
    hub = f"{_PREFIX}{subnet}-hub"
    _run(ip, "netns", "add", hub)
    _run(ip, "-n", hub, "link", "set", "lo", "up")
    _run(ip, "-n", hub, "link", "add", "br0", "type", "bridge")
    _run(ip, "-n", hub, "addr", "add", f"{net.node_ip}/24", "dev", "br0")
    _run(ip, "-n", hub, "link", "set", "br0", "up")
    hosts = net.hosts_text()
    for i, pod in enumerate(net.pods.values()):
        peer = f"{_PREFIX}{subnet}h{i}"
        _run(ip, "netns", "add", pod.netns)
        _run(
            ip, "link", "add", "eth0", "netns", pod.netns, "type", "veth", "peer", "name", peer, "netns", hub
        )
        _run(ip, "-n", hub, "link", "set", peer, "master", "br0", "up")
        _run(ip, "-n", pod.netns, "addr", "add", f"{pod.ip}/24", "dev", "eth0")
        _run(ip, "-n", pod.netns, "link", "set", "eth0", "up")
        _run(ip, "-n", pod.netns, "link", "set", "lo", "up")
        etc = NETNS_ETC / pod.netns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(hosts)
    log.debug(
        "local pod network 10.244.%d.0/24: %s",
        subnet,
        ", ".join(f"{p.pod}={p.ip}" for p in net.pods.values()),
    )


def _namespaces(ip: str) -> list[str]:
    out = subprocess.run([ip, "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _remove_namespaces(ip: str, subnet: int) -> None:
    """Every namespace (and its /etc/netns entry) of lease ``subnet``; processes still inside are killed."""
    prefix = f"{_PREFIX}{subnet}-"
    for ns in _namespaces(ip):
        if not ns.startswith(prefix):
            continue
        pids = subprocess.run([ip, "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                os.kill(int(pid), 9)
        subprocess.run([ip, "netns", "del", ns], capture_output=True)
        shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lease_subnet(ip: str) -> int:
    """A /24 (third octet of 10.244.0.0/16) no live job holds; stale leases are reclaimed."""
    network = ipaddress.ip_network(c.LOCAL_POD_NETWORK)
    assert network.prefixlen == 16
    LEASE_DIR.mkdir(parents=True, exist_ok=True)
    for subnet in range(1, 255):
        lease = LEASE_DIR / str(subnet)
        for _ in range(2):
            try:
                fd = os.open(lease, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = int(lease.read_text().strip() or 0)
                except (OSError, ValueError):
                    holder = 0
                if holder and process_alive(holder):
                    break
                _remove_namespaces(ip, subnet)  # a runner that died without cleaning up
                with contextlib.suppress(FileNotFoundError):
                    lease.unlink()
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{os.getpid()}\n")
            return subnet
    raise UsageError(
        f"all 254 local pod networks in {c.LOCAL_POD_NETWORK} are in use by running local jobs "
        f"(leases in {LEASE_DIR}); wait for one to finish"
    )
