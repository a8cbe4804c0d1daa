"""Training progress in the VitJob status and the controller's Prometheus metrics, on the real cluster.

A pipeline (train → eval) whose train stage runs vit-tiny on the dev cluster's real node (kubelet +
containerd, the CPU image); the controller runs as a process of this test against the real API server
(`vitjob controller`, the command the chart's Deployment runs; the pod form is
test_e2e_real_node's helm test). What is checked is what the real components show: `kubectl get vitjobs`
(the API server's printer columns of the CRD), the VitJob's status, `kubectl logs` of rank 0 (the
kubelet's log) and the controller's `/metrics` over HTTP, parsed with prometheus_client's parser.
"""

from __future__ import annotations

import collections
import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cluster_testing import Kube, Vitjob, wait_for
from prometheus_client.parser import text_string_to_metric_families
from test_e2e_real_node import SMALL, host_dirs, pod_log, progress, values_file

pytestmark = pytest.mark.timeout(1500)
INTERVAL_S = 2  # the controller's --progress-interval here (default 30)
SAMPLES = Path(os.environ.get("VITJOB_E2E_SAMPLES", "/tmp/vitjob-e2e/progress-metrics-samples"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    SAMPLES.mkdir(parents=True, exist_ok=True)
    (SAMPLES / "metrics.txt").write_text(text)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def reconciles(got: dict) -> float:
    return sum(v for (name, _), v in got.items() if name == "vitjob_controller_reconciles_total")


def get_vitjobs(kube: Kube, namespace: str) -> tuple[str, dict[str, str]]:
    """`kubectl get vitjobs` as printed, and the row of pipeline pm by column name."""
    text = kube.kubectl("get", "vitjobs", "-n", namespace).stdout
    header, *rows = text.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", header)]  # kubectl aligns cells under their header
    ends = [*starts[1:], None]
    for row in rows:
        cells = {header[a:b].strip(): row[a:b].strip() for a, b in zip(starts, ends, strict=True)}
        if cells["NAME"] == "pm":
            return text, cells
    raise AssertionError(text)


def stored_progress(kube: Kube, namespace: str) -> dict[str, Any]:
    return (kube.get("vitjobs.vitjob.io", "pm", namespace).get("status") or {}).get("progress") or {}


def test_progress_columns_rise_and_end_final_and_metrics_count(
    kube: Kube, namespace: str, real_node: str, vitjob: Vitjob, digits_dir: Path, tmp_path: Path
) -> None:
    host_dirs(kube, namespace, digits_dir)
    values = values_file(tmp_path, extra_args=["--num-workers", "1", "--log-steps", "2"])
    vitjob(
        *("submit", "--hw", "cpu", "--cards", "1", "--preset", "vit-tiny", "--name", "pm"),
        *("--epochs", "3", "--batch-size", "16", *SMALL, "-f", str(values), "--then", "eval"),
        check=True,
    )
    port = free_port()
    exe = Path(sys.executable).parent / "vitjob"
    log_file = (tmp_path / "controller.log").open("w")
    controller = subprocess.Popen(
        [str(exe), "controller", "-n", namespace, "--health-host", "127.0.0.1", "--health-port", str(port),
         "--progress-interval", str(INTERVAL_S)],
        stdout=log_file, stderr=subprocess.STDOUT, env=kube.env(),
    )
    try:
        wait_for(lambda: _ready(port), 60, "the controller's /readyz")
        first = metrics(port)
        assert first[("vitjob_controller_leader", ())] == 1

        # PROGRESS rises in `kubectl get vitjobs` while training runs; status.progress.step grows.
        shown: list[float] = []
        steps: list[int] = []

        def more_progress() -> bool:
            text, row = get_vitjobs(kube, namespace)
            if row["PROGRESS"] not in ("", "<none>"):
                value = float(row["PROGRESS"])
                if not shown or value != shown[-1]:
                    shown.append(value)
                    SAMPLES.mkdir(parents=True, exist_ok=True)
                    (SAMPLES / "kubectl-get-vitjobs-running.txt").write_text(text)
            step = stored_progress(kube, namespace).get("step")
            if step is not None and (not steps or step != steps[-1]):
                steps.append(step)
            return len(shown) >= 3 and len(steps) >= 2

        wait_for(more_progress, 600, "three PROGRESS values in `kubectl get vitjobs`", every_s=0.5)
        assert shown == sorted(shown) and shown[0] < shown[-1] < 100, shown
        assert steps == sorted(steps) and steps[0] < steps[-1], steps
        running = stored_progress(kube, namespace)
        assert running["final"] is False and running["eta"], running
        assert running["step"] < running["totalSteps"], running
        during = metrics(port)
        assert reconciles(during) > reconciles(first)
        reads = during[("vitjob_controller_progress_reads_total", (("result", "found"),))]
        log_gets = sum(v for (name, labels), v in during.items()
                       if name == "vitjob_controller_api_requests_total"
                       and dict(labels)["resource"] == "pods/log")
        assert log_gets >= reads >= 2

        # The end of training: the final values, which are rank 0's last progress line in its log.
        wait_for(lambda: stored_progress(kube, namespace).get("final") is True, 900, "final", every_s=2)
        final = stored_progress(kube, namespace)
        last = progress(pod_log(kube, namespace, "pm-train-worker-0"))[-1]
        assert (final["step"], final["totalSteps"], final["epoch"], final["epochs"]) == (
            last.step, last.total_steps, last.epoch, last.epochs)
        assert final["step"] == final["totalSteps"] and final["percent"] == 100.0 and "eta" not in final
        assert final["accuracy"] == pytest.approx(last.accuracy) and final["event"] == "epoch"
        text, row = get_vitjobs(kube, namespace)
        (SAMPLES / "kubectl-get-vitjobs-final.txt").write_text(text)
        assert float(row["PROGRESS"]) == 100 and row["ETA"] == "", text  # no ETA once final

        # VitJobs by phase: what the API server holds, in every phase.
        wait_for(lambda: reconciles(metrics(port)) > reconciles(during), 60, "more reconciles")
        on_server = collections.Counter(
            (v.get("status") or {}).get("phase", "Pending")
            for v in kube.get("vitjobs.vitjob.io", namespace=namespace)["items"]
        )

        def phases_match() -> bool:
            got = metrics(port)
            gauge = {dict(k)["phase"]: v for (n, k), v in got.items()
                     if n == "vitjob_vitjobs" and dict(k)["namespace"] == namespace}
            phases = ("Pending", "Running", "Completed", "Failed", "Suspended")
            return gauge == {p: on_server.get(p, 0) for p in phases}

        wait_for(phases_match, 30, f"vitjob_vitjobs to match the server's {dict(on_server)}")
        # and `vitjob pipeline status -o json` shows the same final fields
        status = json.loads(vitjob("pipeline", "status", "pm", "-o", "json", check=True).stdout)
        assert status["progress"]["step"] == final["step"] and status["progress"]["final"] is True
    finally:
        controller.terminate()
        controller.wait(timeout=30)
        log_file.close()
        print((tmp_path / "controller.log").read_text()[-3000:])


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False
