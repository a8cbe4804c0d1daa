"""`vitjob pipeline retry` on the real control plane: a stage whose pod exits 1 fails the VitJob; the
retry, carried out by a `vitjob controller` holding only the chart's RBAC, reruns that stage as a new
Volcano Job (`<name>-<stage>-r2`) and goes on with the chain; earlier stages are not rerun and the
VitJob's status keeps both attempts. The API server refuses a gate that is not STAGE.OUTPUT OP NUMBER
(the CRD's pattern)."""

from __future__ import annotations

import json
import subprocess

from cluster_testing import Kube, Vitjob, wait_for
from test_e2e_pipeline import controller_setup, start_controller


def _phase(kube: Kube, namespace: str, job: str) -> str | None:
    obj = kube.get_or_none("vcjob", job, namespace)
    return ((obj or {}).get("status") or {}).get("state", {}).get("phase")


def _vitjob_status_once(kube: Kube, namespace: str, name: str, phase: str) -> dict:
    """The VitJob's status once its phase is ``phase`` (waits up to 60 s)."""
    return wait_for(
        lambda: (
            (s := kube.get("vitjobs.vitjob.io", name, namespace).get("status") or {}).get("phase") == phase
            and s
        ),
        60,
        f"the VitJob {name} {phase}",
    )


def _run_stage_pod(kube: Kube, namespace: str, job: str, exit_code: int, logs: str) -> None:
    """Wait for ``job``'s pod to run, end it with ``exit_code`` and wait for the job to end."""
    pods = wait_for(
        lambda: [
            p
            for p in kube.pods(namespace, f"volcano.sh/job-name={job}")
            if p["status"].get("phase") == "Running"
        ],
        120,
        f"{job}'s pod Running (controller log: {logs})",
    )
    for p in pods:
        kube.end_pod(namespace, p["metadata"]["name"], exit_code)
    want = "Completed" if exit_code == 0 else "Failed"
    wait_for(lambda: _phase(kube, namespace, job) == want, 120, f"{job} {want}")


def test_retry_reruns_the_failed_stage_as_a_new_job_and_keeps_both_attempts(
    kube, namespace, nodes, vitjob: Vitjob, tmp_path
):
    kc = controller_setup(kube, namespace, nodes, vitjob, tmp_path)
    # maxRetry 1: the first exit fails the Volcano Job (no in-place restart by Volcano)
    vitjob(
        "submit",
        "--hw",
        "cpu",
        "--cards",
        "1",
        "--name",
        "rt",
        "--then",
        "eval,export",
        "--max-retry",
        "1",
        check=True,
    )
    log = tmp_path / "controller.log"
    controller = start_controller(kc, namespace, "c0", log)
    try:
        _run_stage_pod(kube, namespace, "rt-train", 0, str(log))
        _run_stage_pod(kube, namespace, "rt-eval", 1, str(log))
        failed = _vitjob_status_once(kube, namespace, "rt", "Failed")
        assert failed["reason"].startswith("stage eval failed: job rt-eval ended Failed"), failed
        assert kube.get_or_none("vcjob", "rt-export", namespace) is None

        retried = vitjob("pipeline", "retry", "rt", check=True)
        assert "retry 1 asked for" in retried.stdout, retried.stdout
        again = vitjob("pipeline", "retry", "rt")  # asked already, not carried out or running now
        assert again.returncode == 2, (again.stdout, again.stderr)
        assert kube.get("vitjobs.vitjob.io", "rt", namespace)["spec"]["retry"] == 1

        _run_stage_pod(kube, namespace, "rt-eval-r2", 0, str(log))
        _run_stage_pod(kube, namespace, "rt-export", 0, str(log))
        status = _vitjob_status_once(kube, namespace, "rt", "Completed")
        jobs = sorted(j["metadata"]["name"] for j in kube.get("vcjob", namespace=namespace)["items"])
        assert jobs == ["rt-eval", "rt-eval-r2", "rt-export", "rt-train"], "train is not rerun"
        stages = {e["name"]: e for e in status["stages"]}
        assert [(e["name"], e["job"], e["attempt"], e["state"]) for e in status["stages"]] == [
            ("train", "rt-train", 1, "Completed"),
            ("eval", "rt-eval-r2", 2, "Completed"),
            ("export", "rt-export", 1, "Completed"),
        ]
        (first,) = stages["eval"]["earlierAttempts"]
        assert (first["job"], first["attempt"], first["state"], first["phase"]) == (
            "rt-eval",
            1,
            "Failed",
            "Failed",
        )
        assert first["reason"].startswith("stage eval failed: job rt-eval ended Failed")
        assert first["startTime"] <= first["completionTime"] <= stages["eval"]["startTime"]
        assert "earlierAttempts" not in stages["train"]
        assert status["retries"] == 1
        # KWOK's pods write no termination message: each stage recorded that it reported nothing
        assert all(e["outputs"] == {} for e in status["stages"]), status["stages"]

        shown = json.loads(vitjob("pipeline", "status", "rt", "-o", "json", check=True).stdout)
        assert [(s["stage"], s["job"], s["attempt"]) for s in shown["stages"]] == [
            ("train", "rt-train", 1),
            ("eval", "rt-eval-r2", 2),
            ("export", "rt-export", 1),
        ]
        assert [a["job"] for a in shown["stages"][1]["earlier_attempts"]] == ["rt-eval"]
        table = vitjob("pipeline", "status", "rt", check=True).stdout
        assert "earlier attempts:" in table and "rt-eval " in table, table
        events = kube.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "-o",
            "json",
            "--field-selector",
            "involvedObject.kind=VitJob,involvedObject.name=rt",
        ).stdout
        assert "Retry" in [e["reason"] for e in json.loads(events)["items"]]
        assert "forbidden" not in log.read_text().lower(), log.read_text()[-2000:]

        # The CRD's pattern: the API server refuses a gate that is not STAGE.OUTPUT OP NUMBER.
        bad = kube.kubectl(
            "patch",
            "vitjob",
            "rt",
            "-n",
            namespace,
            "--type",
            "merge",
            "-p",
            json.dumps({"spec": {"gates": ["eval.accuracy=>0.9"]}}),
            check=False,
        )
        assert bad.returncode != 0 and "spec.gates[0]" in bad.stderr, bad.stderr
    finally:
        controller.terminate()
        try:
            controller.wait(10)
        except subprocess.TimeoutExpired:
            controller.kill()
