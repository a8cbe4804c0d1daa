"""Pod security on the real API server: its PodSecurity admission, enforcing ``restricted`` on a namespace,
admits every pod vitjob renders and refuses what the Pod Security Standards forbid (hw ascend's hostPath
driver mounts), as a careful cluster runs it. The pods are created with ``--dry-run=server``, which runs
admission in full and stores nothing; one CPU job also goes through Volcano, whose controller creates
its pods."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster_testing import Kube, Vitjob, wait_for

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "v1.35",
}


def _restrict(kube: Kube, namespace: str) -> None:
    kube.kubectl("label", "namespace", namespace, *(f"{k}={v}" for k, v in RESTRICTED.items()))


def _rendered_pod(*args: str) -> dict[str, Any]:
    """The pod of the first task of `vitjob render ARGS`' Volcano Job, as a Pod object."""
    exe = Path(sys.executable).parent / "vitjob"
    cmd = [str(exe), "render", "--name", "probe", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    job = next(d for d in yaml.safe_load_all(out) if d and d.get("kind") == "Job")
    template = job["spec"]["tasks"][0]["template"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"}, "spec": template["spec"]}


def _admit(kube: Kube, namespace: str, pod: dict[str, Any]) -> subprocess.CompletedProcess:
    return kube.kubectl(
        "create", "-n", namespace, "--dry-run=server", "-f", "-", input_text=json.dumps(pod), check=False
    )


@pytest.mark.parametrize("stage", ["train", "eval", "export", "infer310"])
@pytest.mark.parametrize(
    "hw_args", [("--hw", "cpu", "--cards", "2"), ("--hw", "gpu", "--cards", "8"),
                ("--hw", "ascend", "--cards", "8", "--set", "ascend_host_mounts=false")],
    ids=["cpu", "gpu", "ascend-no-host-mounts"],
)
def test_restricted_admits_every_rendered_stage_pod(
    kube: Kube, namespace: str, stage: str, hw_args: tuple[str, ...]
) -> None:
    _restrict(kube, namespace)
    admitted = _admit(kube, namespace, _rendered_pod("--stage", stage, *hw_args, "--no-validate"))
    assert admitted.returncode == 0, admitted.stderr


def test_restricted_refuses_ascend_host_mounts_naming_hostpath(kube: Kube, namespace: str) -> None:
    _restrict(kube, namespace)
    refused = _admit(kube, namespace, _rendered_pod("--hw", "ascend", "--cards", "8", "--no-validate"))
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:v1.35"' in refused.stderr, refused.stderr
    # The two node paths hw ascend mounts, named by the server as what the profile forbids.
    expected = (
        'restricted volume types (volumes "hccn-conf", "ascend-driver" use restricted volume type "hostPath")'
    )
    assert expected in refused.stderr, refused.stderr


def test_restricted_admits_the_controller_pod(kube: Kube, namespace: str) -> None:
    _restrict(kube, namespace)
    exe = Path(sys.executable).parent / "vitjob"
    out = subprocess.run(
        [str(exe), "controller", "--render", "-n", namespace], capture_output=True, text=True, check=True
    ).stdout
    objects = [d for d in yaml.safe_load_all(out) if d]
    account = next(d for d in objects if d["kind"] == "ServiceAccount")
    kube.kubectl("create", "-n", namespace, "-f", "-", input_text=json.dumps(account))
    deployment = next(d for d in objects if d["kind"] == "Deployment")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "controller-probe"},
           "spec": deployment["spec"]["template"]["spec"]}
    admitted = _admit(kube, namespace, pod)
    assert admitted.returncode == 0, admitted.stderr


def test_volcano_creates_a_cpu_jobs_pods_in_a_restricted_namespace(
    kube: Kube, namespace: str, nodes, vitjob: Vitjob
) -> None:
    _restrict(kube, namespace)
    nodes("cpu", {})
    kube.add_pvcs(namespace)
    vitjob("submit", "--hw", "cpu", "--cards", "2", "--cards-per-pod", "1", "--name", "psa", check=True)
    pods = wait_for(lambda: len(kube.pods(namespace, "volcano.sh/job-name=psa-train")) == 2 and
                    kube.pods(namespace, "volcano.sh/job-name=psa-train"), 60, "2 pods of psa-train")
    for pod in pods:
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
