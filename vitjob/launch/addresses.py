"""IP addresses for the pods of a job: what MindSpore, the rank-table rendezvous and HCCL are given.

MindSpore's dynamic cluster accepts only an IP literal in ``MS_SCHED_HOST`` (``dynamic_cluster.md``:
"Legal IP address"; ``socket_operation.cc`` ``GetSockAddr`` parses it with ``inet_pton``, and
``MS_SCHED_HOST=localhost`` fails with ``Parse ip failed``), while Volcano's svc plugin gives the pods
only host names (``<job>-<task>-<i>.<job>``). This module turns names into addresses:

- ``own_ip``: the pod's own IP, from the downward API (``status.podIP`` in ``VITJOB_POD_IP``), else by
  resolving the pod's own host name (kubelet maps it to the pod IP in the pod's ``/etc/hosts``);
- ``resolve``: a peer's name, retried until a deadline (a headless Service publishes a pod's record
  only once the pod exists), with an error that names the host if it never resolves;
- ``resolve_reachable``: pod 0's name, resolved again until the address accepts a TCP connection on the
  port pod 0 serves. After Volcano restarts a job every pod has a new IP, but cluster DNS may still
  answer with the previous attempt's for up to its TTL (kubeadm's CoreDNS: ``ttl 30`` and ``cache 30``):
  a MindSpore worker handed that address waits for a scheduler that is gone until ``MS_TOPO_TIMEOUT``.

Names resolve through the system resolver (``/etc/hosts``, then DNS), or through the hosts file named by
``VITJOB_HOSTS_FILE`` when one is set (the local backend's shared-host mode, where a process cannot
have a private ``/etc/hosts``).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path

from vitjob import constants as c
from vitjob.errors import UsageError, VitjobError

log = logging.getLogger(__name__)


class ResolveError(VitjobError):
    """A host name did not resolve to an address in time (exit 1: the cluster, not the input, is at fault)."""


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_hosts(text: str) -> dict[str, str]:
    """``/etc/hosts`` format: ``IP name [alias ...]`` per line, ``#`` comments; the first entry wins."""
    names: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or not is_ip(fields[0]):
            continue
        for name in fields[1:]:
            names.setdefault(name.lower(), fields[0])
    return names


def _lookup(host: str, hosts_file: Path | None) -> str:
    """One attempt: the hosts file if given, else the system resolver (IPv4 first). Raises OSError."""
    if hosts_file is not None:
        try:
            table = parse_hosts(hosts_file.read_text())
        except OSError as exc:
            raise OSError(f"cannot read the hosts file {hosts_file}: {exc.strerror or exc}") from exc
        if host.lower() in table:
            return table[host.lower()]
        raise OSError(f"{host} is not in {hosts_file}")
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # MindSpore wants IPv4 off Ascend
    return str(infos[0][4][0])


def hosts_file(env: dict[str, str]) -> Path | None:
    value = env.get(c.ENV_HOSTS_FILE, "").strip()
    return Path(value) if value else None


def resolve(host: str, timeout_s: float, env: dict[str, str], what: str = "",
            sleep: Callable[[float], None] = time.sleep) -> str:
    """The IP address of ``host`` (returned as is if it already is one), retried until ``timeout_s``."""
    if is_ip(host):
        return host
    names = hosts_file(env)
    deadline = time.monotonic() + timeout_s
    attempts = 0
    while True:
        attempts += 1
        try:
            ip = _lookup(host, names)
        except OSError as exc:
            last = str(exc.strerror if isinstance(exc, socket.gaierror) else exc)
        else:
            log.info("%s%s resolves to %s", f"{what}: " if what else "", host, ip)
            return ip
        left = deadline - time.monotonic()
        if left <= 0:
            raise ResolveError(
                f"{what + ': ' if what else ''}the host name {host!r} did not resolve to an address within "
                f"{timeout_s:.0f} s ({attempts} attempts; last: {last}). On Kubernetes this is Volcano's svc "
                "plugin record of the pod: check that the job's headless Service exists "
                "(`kubectl get svc <job>`) and that the pod is scheduled, or raise --rdzv-timeout."
            )
        sleep(min(1.0, left))


def accepts(ip: str, port: int, timeout_s: float = 1.0) -> bool:
    """Whether ``ip:port`` accepts a TCP connection now (the connection is closed at once)."""
    try:
        with socket.create_connection((ip, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def resolve_reachable(host: str, port: int, timeout_s: float, env: dict[str, str], what: str = "",
                      sleep: Callable[[float], None] = time.sleep,
                      probe: Callable[[str, int], bool] = accepts) -> str:
    """``host``'s address once ``probe(address, port)`` succeeds, resolving the name again after each
    failed probe (a stale record gives way to the current one); fails after ``timeout_s`` naming both."""
    deadline = time.monotonic() + timeout_s
    ip = resolve(host, timeout_s, env, what=what, sleep=sleep)
    first = ip
    while not probe(ip, port):
        left = deadline - time.monotonic()
        if left <= 0:
            raise ResolveError(
                f"{what + ': ' if what else ''}{host} resolves to {ip}, but nothing accepted a connection on "
                f"port {port} there within {timeout_s:.0f} s. Check that pod 0 runs (`kubectl get pods`) "
                "and serves that port, or raise --rdzv-timeout."
            )
        sleep(min(1.0, left))
        try:
            latest = _lookup(host, hosts_file(env))
        except OSError:
            latest = ip  # the name does not resolve right now: keep trying the address it had
        if latest != ip:
            log.info("%s%s now resolves to %s (%s did not answer on port %d: a record of an earlier pod)",
                     f"{what}: " if what else "", host, latest, ip, port)
            ip = latest
    if ip != first:
        log.info("%s%s reached at %s:%d", f"{what}: " if what else "", host, ip, port)
    return ip


def own_ip(env: dict[str, str], own_host: str, timeout_s: float) -> str:
    """This pod's IP: ``VITJOB_POD_IP`` (downward API ``status.podIP``), else its own host name resolved."""
    value = env.get(c.ENV_POD_IP, "").strip()
    if value:
        if not is_ip(value):
            raise UsageError(f"{c.ENV_POD_IP}={value!r} is not an IP address (the pod template sets it "
                             "from the downward API's status.podIP)")
        return value
    return resolve(own_host, timeout_s, env, what="this pod's own address")
