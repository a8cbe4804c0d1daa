"""`spec.suspend` of a VitJob on the real control plane: `vitjob suspend NAME` sets it, and a `vitjob
controller` holding only the chart's RBAC sends Volcano's AbortJob to the running stage's job (Volcano's
job controller deletes its pods; the job stays, Aborted), records phase Suspended with a condition and an
Event, and starts no further stage; `vitjob resume NAME` clears it, the controller sends ResumeJob,
Volcano restarts the same job (retryCount 1) and the chain goes on to Completed. Pods are KWOK's; the
resumed training on a real node is test_e2e_real_node's suspended-job test."""

from __future__ import annotations

import json

from cluster_testing import Kube, Vitjob, wait_for
from test_e2e_pipeline import controller_setup, start_controller
from test_e2e_pipeline_retry import _phase, _run_stage_pod


def _vitjob_status(kube: Kube, namespace: str) -> dict:
    return kube.get("vitjobs.vitjob.io", "sp", namespace).get("status") or {}


def test_suspend_aborts_the_running_stage_and_resume_restarts_the_same_job(
    kube, namespace, nodes, vitjob: Vitjob, tmp_path
):
    kc = controller_setup(kube, namespace, nodes, vitjob, tmp_path)
    vitjob("submit", "--hw", "cpu", "--cards", "1", "--name", "sp", "--then", "eval", check=True)
    log = tmp_path / "controller.log"
    controller = start_controller(kc, namespace, "c0", log)
    try:
        wait_for(lambda: _phase(kube, namespace, "sp-train") == "Running", 120, f"sp-train Running ({log})")
        vitjob("suspend", "sp", check=True)
        assert kube.get("vitjobs.vitjob.io", "sp", namespace)["spec"]["suspend"] is True
        status = wait_for(
            lambda: (s := _vitjob_status(kube, namespace)).get("phase") == "Suspended" and s,
            60,
            f"the VitJob Suspended ({log})",
        )
        said = "suspended (spec.suspend): stage train: job sp-train aborted, its pods deleted"
        assert status["reason"] == said, status
        conditions = {x["type"]: x["status"] for x in status["conditions"]}
        assert conditions == {
            "Running": "False", "Completed": "False", "Failed": "False", "Suspended": "True"
        }
        # Volcano aborted the job: it stays, Aborted, and no pod of it is left.
        wait_for(lambda: _phase(kube, namespace, "sp-train") == "Aborted", 60, "sp-train Aborted")
        wait_for(lambda: not kube.pods(namespace, "volcano.sh/job-name=sp-train"), 60, "sp-train's pods gone")
        assert _vitjob_status(kube, namespace)["phase"] == "Suspended"  # an abort asked for is no failure
        assert kube.get_or_none("vcjob", "sp-eval", namespace) is None

        vitjob("resume", "sp", check=True)
        running = lambda: _vitjob_status(kube, namespace).get("phase") == "Running"  # noqa: E731
        wait_for(running, 90, f"Running again ({log})")
        _run_stage_pod(kube, namespace, "sp-train", 0, str(log))  # the same job, restarted by Volcano
        assert kube.get("vcjob", "sp-train", namespace)["status"].get("retryCount") == 1
        _run_stage_pod(kube, namespace, "sp-eval", 0, str(log))
        wait_for(lambda: _vitjob_status(kube, namespace).get("phase") == "Completed", 60, "Completed")
        jobs = sorted(j["metadata"]["name"] for j in kube.get("vcjob", namespace=namespace)["items"])
        assert jobs == ["sp-eval", "sp-train"]
        events = kube.kubectl(
            "get", "events", "-n", namespace, "-o", "json",
            "--field-selector", "involvedObject.kind=VitJob,involvedObject.name=sp",
        ).stdout
        reasons = [e["reason"] for e in json.loads(events)["items"]]
        assert reasons.count("Suspended") == 1 and reasons.count("Resumed") == 1, reasons
    finally:
        controller.terminate()
        controller.wait(timeout=30)
        print(log.read_text()[-3000:])
