"""What the development cluster itself promises (devcluster/cluster.py), checked on the real control plane."""

from __future__ import annotations

import json
import socket
import subprocess

from cluster_testing import REAL_NODE_IP, Kube


def test_kwok_takes_only_the_nodes_annotated_fake(kube: Kube) -> None:
    # The plain node is created first: were KWOK managing every node, it would be initialised (Ready)
    # no later than the annotated one created after it.
    plain = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "e2e-plain-node", "labels": {"vitjob.io/e2e": "true"}},
    }
    kube.kubectl("create", "-f", "-", input_text=json.dumps(plain))
    kube.add_node("e2e-fake-node", {})  # waits until KWOK made it Ready
    fake = kube.get("node", "e2e-fake-node")
    assert fake["status"]["nodeInfo"]["kubeletVersion"].startswith("kwok")
    # KWOK initialises a node it manages in one pass (conditions and nodeInfo together); the plain node,
    # older than the fake one, must still carry none of KWOK's status.
    status = kube.get("node", "e2e-plain-node").get("status", {})
    assert not status.get("conditions"), status
    assert status.get("nodeInfo", {}).get("kubeletVersion", "") == "", status


def test_api_server_listens_on_loopback_only(kube: Kube) -> None:
    server = kube.kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}").stdout
    port = int(server.rsplit(":", 1)[1])
    # Every IPv4 address of this machine outside loopback (`ip` from iproute2).
    shown = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True, check=True
    ).stdout
    # The real node's bridge (devcluster/node.py) is the cluster's own network: pods reach the API server
    # there through a relay. Every other interface is the machine's.
    addresses = [line.split()[3].split("/")[0] for line in shown.splitlines() if line.split()[1] != "vitjob0"]
    assert addresses, f"no global IPv4 address to probe: {shown!r}"
    for address in addresses:
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((address, port)) != 0, f"kube-apiserver answers on {address}:{port}"
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex(("127.0.0.1", port)) == 0


CLUSTER_PROGRAMS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "vc-controller-manager",
    "vc-scheduler",
    "vc-webhook-manager",
    "kubelet",
    "kube-proxy",
    "containerd",
    "coredns",
    "socat",
)


def test_no_cluster_process_listens_beyond_loopback_and_the_pod_network(kube: Kube) -> None:
    """Every TCP/UDP socket a process of the cluster listens on (read with `ss`, with its process) is bound
    to loopback or to the node's address on the cluster's bridge: nothing on the machine's interfaces,
    nothing on a wildcard address."""
    shown = subprocess.run(
        ["ss", "-H", "-l", "-n", "-t", "-u", "-p"], capture_output=True, text=True, check=True
    )
    allowed = {"127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", REAL_NODE_IP}
    checked = []
    for line in shown.stdout.splitlines():
        fields = line.split()
        local, users = fields[4], " ".join(fields[6:])
        names = {part.split('"')[1] for part in users.split("((")[-1].split("),(") if '"' in part}
        if not names & set(CLUSTER_PROGRAMS):
            continue
        address = local.rsplit(":", 1)[0].split("%")[0]
        checked.append((sorted(names), local))
        assert address in allowed, f"{sorted(names)} listens on {local}"
    listening = {n for names, _ in checked for n in names}
    assert {"kube-apiserver", "etcd", "kubelet", "coredns"} <= listening, checked
