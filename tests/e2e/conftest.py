"""The real-cluster tier: one Kubernetes + Volcano + KWOK control plane per test session (see
cluster_testing.py), every test in a namespace of its own, marked ``cluster``."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cluster_testing import (
    CLUSTER_PY,
    REAL_NODE,
    REPO,
    Kube,
    MachineSnapshot,
    Vitjob,
    start_cluster,
    wait_for,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def machine_before() -> dict[str, MachineSnapshot]:
    """The machine as it was before this session started the cluster (test_zz_cluster_down compares)."""
    return {}


@pytest.fixture(scope="session")
def kube(machine_before: dict[str, MachineSnapshot]) -> Iterator[Kube]:
    env = dict(os.environ)
    was_up = (
        subprocess.run(
            [sys.executable, str(CLUSTER_PY), "status"], capture_output=True, text=True, env=env
        ).returncode
        == 0
    )
    if not was_up:
        machine_before["before"] = MachineSnapshot.read()
    try:
        k = start_cluster()
    except subprocess.CalledProcessError:
        pytest.fail(
            "`./dev.sh cluster up` failed (its output is above); the e2e tier needs the real control plane",
            pytrace=False,
        )
    # The VitJob CRD as the chart ships it (helm leaves a CRD that exists alone).
    k.kubectl("apply", "--server-side", "-f", str(REPO / "charts" / "vitjob" / "crds"))
    # The real node takes pods only in the tests that ask for it (the `real_node` fixture): the KWOK tests
    # end their pods by annotation and must not land on a node that runs them for real.
    k.kubectl("cordon", REAL_NODE)
    try:
        yield k
    finally:
        k.delete_nodes()
        if not was_up:
            subprocess.run([sys.executable, str(CLUSTER_PY), "down"], check=False)


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    ns = f"e2e-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", ns)
    try:
        yield ns
    finally:
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        kube.kubectl("delete", "pv", "-l", "vitjob.io/e2e=true", "--wait=false", check=False)


@pytest.fixture
def nodes(kube: Kube, namespace: str) -> Iterator[Callable[[str, dict[str, str]], str]]:
    """Add KWOK nodes for one test, named ``<name>-<namespace>`` (returned) so that no pod of an earlier
    test can be bound to a node of the same name; all of them are removed after the test."""

    def add(name: str, devices: dict[str, str]) -> str:
        full = f"{name}-{namespace}"
        kube.add_node(full, devices)
        return full

    yield add
    kube.delete_nodes()


@pytest.fixture
def vitjob(kube: Kube, namespace: str) -> Vitjob:
    return Vitjob(kube, namespace)


@pytest.fixture
def real_node(kube: Kube, namespace: str) -> Iterator[str]:
    """The dev cluster's real node (kubelet + containerd), open for this test's pods; cordoned again after.
    KWOK nodes of earlier tests are gone first, so that nothing but the real node can take a pod. The
    test's namespace enforces the Pod Security Standard ``restricted``, as a careful cluster would."""
    kube.kubectl(
        "label",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=v1.35",
    )
    kube.delete_nodes()
    wait_for(
        lambda: not kube.kubectl("get", "nodes", "-l", "vitjob.io/e2e=true", "-o", "name").stdout.strip(),
        60,
        "the KWOK nodes of earlier tests deleted",
    )
    kube.kubectl("uncordon", REAL_NODE)
    try:
        yield REAL_NODE
    finally:
        kube.kubectl("cordon", REAL_NODE, check=False)
