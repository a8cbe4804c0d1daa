"""`./dev.sh cluster down` leaves the machine as it found it. Runs last in the e2e tier (file order): it
stops the session's cluster and compares the machine with the snapshot the session fixture took before
`cluster up` (processes of the node's programs, mounts, links, network namespaces, iptables chains and
rules, sysctls, top-level cgroups, the kubelet's and containerd's default host paths)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cluster_testing import CLUSTER_PY, Kube, MachineSnapshot


def test_cluster_down_leaves_the_machine_as_it_found_it(
    kube: Kube, machine_before: dict[str, MachineSnapshot]
) -> None:
    if "before" not in machine_before:
        pytest.skip("the cluster was already running before this session: nothing to compare with")
    down = subprocess.run(
        [sys.executable, str(CLUSTER_PY), "down"], capture_output=True, text=True, timeout=300
    )
    assert down.returncode == 0, down.stderr
    after = MachineSnapshot.read()
    assert machine_before["before"].differences(after) == {}
