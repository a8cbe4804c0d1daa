"""What the development cluster itself promises (devcluster/cluster.py), checked on the real control plane."""

from __future__ import annotations

import json
import socket
import subprocess

from cluster_testing import Kube


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
    addresses = [line.split()[3].split("/")[0] for line in shown.splitlines()]
    assert addresses, f"no global IPv4 address to probe: {shown!r}"
    for address in addresses:
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((address, port)) != 0, f"kube-apiserver answers on {address}:{port}"
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex(("127.0.0.1", port)) == 0
