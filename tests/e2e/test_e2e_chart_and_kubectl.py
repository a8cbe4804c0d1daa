"""helm install/upgrade/test/uninstall of charts/vitjob, `kubectl logs`, and dry runs, on the real cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from cluster_testing import REPO, Kube, wait_for
from test_e2e_pipeline import sa_kubeconfig, start_controller

NPU = {"huawei.com/Ascend910": "8"}


def helm_binary() -> Path:
    found = sorted((REPO / ".tools" / "helm").glob("v3*/helm"))
    assert found, (
        "no helm: scripts/get-helm.sh installs the pinned helm into .tools/helm (run-tests.sh runs it)"
    )
    return found[0]


def helm(kube: Kube, tmp: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig)}
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = str(tmp / var.lower())
    return subprocess.run(
        [str(helm_binary()), *args], text=True, capture_output=True, env=env, timeout=timeout
    )


def _jobs(kube: Kube, ns: str) -> list[str]:
    return sorted(j["metadata"]["name"] for j in kube.get("vcjob", namespace=ns)["items"])


def _controller_token_kubeconfig(kube: Kube, namespace: str, manifest: str, out: Path) -> Path:
    """A kubeconfig holding a token of the ServiceAccount the chart made for its controller."""
    accounts = [
        o["metadata"]["name"]
        for o in yaml.safe_load_all(manifest)
        if o and o["kind"] == "ServiceAccount" and "controller" in o["metadata"]["name"]
    ]
    assert len(accounts) == 1, accounts
    return sa_kubeconfig(kube, namespace, out, account=accounts[0])


def _running_pods(kube: Kube, ns: str, job: str) -> list[dict]:
    return [
        p for p in kube.pods(ns, f"volcano.sh/job-name={job}") if p["status"].get("phase") == "Running"
    ]


def test_helm_install_creates_a_vitjob_that_runs_then_test_and_uninstall(kube, namespace, nodes, tmp_path):
    """`helm install vit charts/vitjob --set hw=ascend --set cards=8` stores one VitJob; the chart's
    controller (here a `vitjob controller` process holding the chart's ServiceAccount token, since
    KWOK runs no containers) runs its stages; `helm test` and `helm uninstall` (which removes the
    VitJob, so the garbage collector removes its jobs)."""
    kube.add_pvcs(namespace)
    nodes("e2e-npu-0", NPU)
    chart = str(REPO / "charts" / "vitjob")
    inst = helm(
        kube, tmp_path, "install", "vit", chart, "-n", namespace,
        "--set", "hw=ascend", "--set", "cards=8", "--set", "then={eval}",
    )
    assert inst.returncode == 0, inst.stderr
    assert _jobs(kube, namespace) == [], "the chart holds no Volcano Job: its controller creates them"
    vj = kube.get("vitjobs.vitjob.io", "vit", namespace)
    assert (vj["spec"]["hw"], vj["spec"]["cards"], vj["spec"]["then"]) == ("ascend", 8, ["eval"])
    manifest = helm(kube, tmp_path, "get", "manifest", "vit", "-n", namespace).stdout
    kc = _controller_token_kubeconfig(kube, namespace, manifest, tmp_path / "sa.kubeconfig")
    controller = start_controller(kc, namespace, "chart-controller", tmp_path / "controller.log")
    try:
        for job in ("vit-train", "vit-eval"):
            pods = wait_for(lambda j=job: _running_pods(kube, namespace, j), 120, f"{job} running")
            for p in pods:
                kube.end_pod(namespace, p["metadata"]["name"], 0)
        wait_for(
            lambda: (kube.get("vitjobs.vitjob.io", "vit", namespace).get("status") or {}).get("phase")
            == "Completed",
            90,
            f"the VitJob Completed (controller log: {tmp_path / 'controller.log'})",
        )
    finally:
        controller.terminate()
        controller.wait(15)
    assert _jobs(kube, namespace) == ["vit-eval", "vit-train"]

    tester = subprocess.Popen(
        [str(helm_binary()), "test", "vit", "-n", namespace, "--timeout", "120s"],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={
            **os.environ,
            "KUBECONFIG": str(kube.kubeconfig),
            "HELM_CACHE_HOME": str(tmp_path / "c"),
            "HELM_CONFIG_HOME": str(tmp_path / "f"),
            "HELM_DATA_HOME": str(tmp_path / "d"),
        },
    )
    pod = wait_for(
        lambda: next(
            (
                p
                for p in kube.get("pods", namespace=namespace)["items"]
                if "helm.sh/hook" in (p["metadata"].get("annotations") or {})
                and p["status"].get("phase") == "Running"
            ),
            None,
        ),
        90,
        "helm test's pod Running (scheduled by kube-scheduler)",
    )
    # KWOK runs no container: what the hook pod would run is run here, as the hook's ServiceAccount
    # (its Role allows only the reads `vitjob pipeline status` makes).
    account = pod["spec"]["serviceAccountName"]
    command = pod["spec"]["containers"][0]["command"]
    assert command[:4] == ["vitjob", "pipeline", "status", "vit"], command
    test_kc = sa_kubeconfig(kube, namespace, tmp_path / "test.kubeconfig", account=account)
    exe = Path(sys.executable).parent / "vitjob"
    shown = subprocess.run(
        [str(exe), *command[1:], "--kubeconfig", str(test_kc)],
        text=True, capture_output=True, env=kube.env(KUBECONFIG=str(test_kc)), timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "phase:    Completed" in shown.stdout and "vit-eval" in shown.stdout, shown.stdout
    kube.end_pod(namespace, pod["metadata"]["name"], 0)
    out, err = tester.communicate(timeout=150)
    assert tester.returncode == 0, (out, err)
    assert "Succeeded" in out

    un = helm(kube, tmp_path, "uninstall", "vit", "-n", namespace, "--wait")
    assert un.returncode == 0, un.stderr
    assert kube.get_or_none("vitjobs.vitjob.io", "vit", namespace) is None
    wait_for(lambda: _jobs(kube, namespace) == [], 90, "the VitJob's jobs garbage-collected")


def test_kubectl_logs_shows_every_rank(kube, namespace, nodes, vitjob, tmp_path):
    kube.add_pvcs(namespace)
    nodes("e2e-npu-0", NPU)
    nodes("e2e-npu-1", NPU)
    vitjob("submit", "--hw", "ascend", "--cards", "16", "--name", "lg", check=True)
    pods = wait_for(
        lambda: (
            len(
                r := [
                    p
                    for p in kube.pods(namespace, "volcano.sh/job-name=lg-train")
                    if p["status"].get("phase") == "Running"
                ]
            )
            == 2
            and r
        ),
        90,
        "pods Running",
    )
    for p in pods:
        rank = p["metadata"]["annotations"].get("volcano.sh/task-index") or p["metadata"]["name"][-1]
        name = p["metadata"]["name"]
        kube.serve_logs(namespace, name, tmp_path / f"{name}.log", [f"rank {rank}: hello from {name}"])
    out = wait_for(
        lambda: (
            (
                r := kube.kubectl(
                    "logs", "-n", namespace, "-l", "volcano.sh/job-name=lg-train", "--prefix", check=False
                )
            ).returncode
            == 0
            and r.stdout.count("hello from") == 2
            and r.stdout
        ),
        60,
        "kubectl logs of both pods",
    )
    assert "hello from lg-train-worker-0" in out and "hello from lg-train-worker-1" in out
    ours = vitjob("logs", "lg-train", check=True).stdout
    assert "hello from lg-train-worker-0" in ours and "hello from lg-train-worker-1" in ours


def test_dry_run_agrees_with_the_server_and_unknown_fields_are_reported(kube, namespace, vitjob, tmp_path):
    dry = vitjob(
        "submit",
        "--hw",
        "ascend",
        "--cards",
        "8",
        "--name",
        "dr",
        "-n",
        namespace,
        "--dry-run",
        check=True,
        backend=False,
    )
    objs = [o for o in yaml.safe_load_all(dry.stdout) if o]
    manifest = tmp_path / "dr.yaml"
    manifest.write_text(yaml.safe_dump_all(objs))
    server = kube.kubectl(
        "create", "--dry-run=server", "--validate=strict", "-f", str(manifest), "-o", "yaml", check=False
    )
    assert server.returncode == 0, server.stderr
    assert kube.get_or_none("vcjob", "dr-train", namespace) is None, "a server dry run stores nothing"

    job = next(o for o in objs if o["kind"] == "Job")
    job["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["bogusField"] = 1
    manifest.write_text(yaml.safe_dump_all(objs))
    ours = vitjob("submit", "--manifest", str(manifest), "--dry-run", backend=False)
    srv = kube.kubectl("create", "--dry-run=server", "--validate=strict", "-f", str(manifest), check=False)
    assert srv.returncode != 0 and "bogusField" in srv.stderr, "the real server rejects the unknown field"
    assert ours.returncode != 0 and "bogusField" in ours.stderr, ours.stderr
    sub = vitjob("submit", "--manifest", str(manifest))
    assert sub.returncode != 0 and "bogusField" in sub.stderr, (sub.stdout, sub.stderr)
    assert kube.get_or_none("vcjob", "dr-train", namespace) is None
