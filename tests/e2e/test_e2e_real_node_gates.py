"""Stage outputs and gates on the dev cluster's real node (kubelet + containerd, the CPU image built from
this checkout): each stage's pod writes its outputs line to /dev/termination-log, the kubelet puts it in
the pod's status, `vitjob pipeline run` records it in the VitJob's status. A gate that holds lets export
run; a gate that does not hold ends the pipeline with the measured value. Every output is compared
with what the stage wrote on the PV itself (train's state.json and metrics.jsonl, eval's metrics.json,
the MINDIR file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cluster_testing import Kube, Vitjob
from test_e2e_real_node import SMALL, host_dirs

from vitjob import constants as c

pytestmark = pytest.mark.timeout(1500)


def test_outputs_reach_the_vitjob_status_and_gates_decide(
    kube: Kube, namespace: str, real_node: str, vitjob: Vitjob, digits_dir: Path
) -> None:
    _, output = host_dirs(kube, namespace, digits_dir)
    vitjob(
        *("submit", "--hw", "cpu", "--cards", "1", "--preset", "vit-tiny", "--epochs", "1", *SMALL),
        *("--name", "gt", "--then", "eval,export", "--max-retry", "1"),
        *("--gate", "eval.accuracy>=0.01", "--gate", "export.mindir_bytes>1e12"),
        check=True,
    )
    run = vitjob("pipeline", "run", "gt", "--wait", "--poll", "2", "--timeout", "1200", timeout=1300)
    status = kube.get("vitjobs.vitjob.io", "gt", namespace)["status"]
    assert run.returncode == 1, (run.stdout, run.stderr, status)
    stages = {e["name"]: e for e in status["stages"]}
    pods = {
        job: [p["status"].get("containerStatuses") for p in kube.pods(namespace, f"volcano.sh/job-name={job}")]  # noqa: E501
        for job in ("gt-train", "gt-eval")
    }
    shown = {"reason": status["reason"], "stages": status["stages"], "pods": pods}
    assert [(e["name"], e["state"]) for e in status["stages"]] == [
        ("train", "Completed"), ("eval", "Completed"), ("export", "Completed"),
    ], json.dumps(shown, indent=1)  # fmt: skip
    mindir = output / "gt" / "export" / "vit_base.mindir"
    size = mindir.stat().st_size
    assert status["phase"] == "Failed"
    assert status["reason"].startswith(f"gate export.mindir_bytes>1e12 not met: {size:g};"), status["reason"]

    train_dir = output / "gt" / "train"
    state = json.loads((train_dir / "state.json").read_text())
    metrics = [json.loads(line) for line in (train_dir / "metrics.jsonl").read_text().splitlines()]
    train = stages["train"]["outputs"]
    in_pod = f"{c.OUTPUT_MOUNT_PATH}/gt"
    assert train["best_checkpoint"] == f"{in_pod}/train/{state['best']['file']}"
    assert train["best_step"] == state["best"]["step"] and train["steps"] == state["step"]
    assert train["val_accuracy"] == [m["val_accuracy"] for m in metrics if "val_accuracy" in m][-1]
    assert train["test_accuracy"] == [m["test_accuracy"] for m in metrics if "test_accuracy" in m][-1]
    measured = json.loads((train_dir / "metrics.json").read_text())  # eval's --json-out
    evaluation = stages["eval"]["outputs"]
    assert {k: evaluation[k] for k in ("accuracy", "top1_correct", "samples")} == {
        k: measured[k] for k in ("accuracy", "top1_correct", "samples")
    }
    assert stages["export"]["outputs"] == {"mindir": f"{in_pod}/export/vit_base.mindir", "mindir_bytes": size}

    # the same line is the pod's termination message, as the kubelet reported it
    pods = kube.pods(namespace, "volcano.sh/job-name=gt-eval")
    message = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    assert json.loads(message) == {"stage": "eval", "outputs": evaluation}
    shown = vitjob("pipeline", "status", "gt", check=True).stdout
    assert f"accuracy={evaluation['accuracy']:.4g}" in shown, shown
