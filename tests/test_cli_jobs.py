"""``vitjob submit/status/logs/wait/cancel/delete/list`` end to end against the FAKE API server.

Each test calls ``vitjob.cli.main([...])`` like a user would, drives the cluster's state through
the fake's handle, and checks both what the user sees (stdout/stderr, exit code, no traceback) and
what the client sent (paths, verbs, bodies).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kube_testing import fake_cluster, volcano_job

from vitjob.cli import main
from vitjob.progress import TrainProgress, format_line

pytestmark = pytest.mark.timeout(60)

JOBS = "/apis/batch.volcano.sh/v1alpha1/namespaces/default/jobs"
PODS = "/api/v1/namespaces/default/pods"


@pytest.fixture
def fake(tmp_path, monkeypatch):
    with fake_cluster(tmp_path, monkeypatch) as api:
        yield api


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def write_manifest(tmp_path: Path, *objects: dict) -> str:
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    return str(path)


def test_wait_times_out_with_exit_2(fake, capsys, tmp_path):
    run(capsys, "submit", "--manifest", write_manifest(tmp_path, volcano_job("slow")))
    fake.set_job_phase("default", "slow", "Running")
    code, _out, err = run(capsys, "wait", "slow", "--timeout", "1")
    assert code == 2
    assert "still Running after 1s" in err


# ------------------------------------------------------------------------------------------- errors
def test_existing_job_conflict_then_replace(fake, capsys, tmp_path):
    manifest = write_manifest(tmp_path, volcano_job("dup"))
    assert run(capsys, "submit", "--manifest", manifest)[0] == 0
    uid = fake.get("batch.volcano.sh", "jobs", "dup", "default")["metadata"]["uid"]
    code, _, err = run(capsys, "submit", "--manifest", manifest)
    assert code == 1
    assert "job 'dup' already exists in namespace 'default'" in err and "--replace" in err
    assert len(fake.requests_matching("POST", JOBS + "$")) == 1
    code, _, err = run(capsys, "submit", "--manifest", manifest, "--replace")
    assert code == 0, err
    assert fake.requests_matching("DELETE", JOBS + "/dup$")
    assert fake.get("batch.volcano.sh", "jobs", "dup", "default")["metadata"]["uid"] != uid


def test_unreachable_server_names_the_url(tmp_path, monkeypatch, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "x", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "x", "user": "u"}}],
            }
        )
    )
    import vitjob.backends.kubernetes.backend as kube
    from vitjob.kube.client import RetryPolicy

    monkeypatch.setattr(kube, "DEFAULT_RETRY", RetryPolicy(attempts=2, backoff_s=0.01))
    code, _, err = run(capsys, "status", "x", "--kubeconfig", str(kubeconfig))
    assert code == 1
    assert f"cannot reach the Kubernetes API server at http://127.0.0.1:{port}" in err
    assert "Connection refused" in err and len(err.strip().splitlines()) == 1


def test_bad_token_is_401_with_next_step(fake, capsys, tmp_path):
    kubeconfig = fake.write_kubeconfig(tmp_path / "stale", token="expired")
    code, _, err = run(capsys, "list", "--kubeconfig", str(kubeconfig))
    assert code == 1
    assert f"the API server {fake.url} rejected the credentials (401 Unauthorized)" in err
    assert "kubectl auth whoami" in err


def test_rbac_denial_names_verb_resource_namespace_and_rule(fake, capsys, tmp_path):
    fake.deny("create", "jobs", "default")
    code, _, err = run(capsys, "submit", "--manifest", write_manifest(tmp_path, volcano_job("r1")))
    assert code == 1
    assert "not allowed to create jobs.batch.volcano.sh 'r1' in namespace 'default'" in err
    assert 'apiGroups: ["batch.volcano.sh"], resources: ["jobs"], verbs: ["create"]' in err


def test_schema_rejection_by_server_names_field_path(fake, capsys, tmp_path):
    fake.deny("get", "customresourcedefinitions")  # no CRD access: only the server can validate
    job = volcano_job("bad-spec")
    job["spec"]["tasks"][0]["replicas"] = -1
    code, _, err = run(capsys, "submit", "--manifest", write_manifest(tmp_path, job))
    assert code == 1
    assert "rejected create jobs.batch.volcano.sh 'bad-spec' in namespace 'default' as invalid" in err
    assert "spec.tasks[0].replicas: Invalid value: -1" in err
    assert fake.requests_matching("POST", JOBS + "$")[0].body["spec"]["tasks"][0]["replicas"] == -1


def test_schema_rejection_before_submit_with_cluster_crd(fake, capsys, tmp_path):
    job = volcano_job("bad-spec")
    job["spec"]["tasks"][0]["replicas"] = -1
    code, _, err = run(capsys, "submit", "--manifest", write_manifest(tmp_path, job))
    assert code != 0
    assert "spec.tasks[0].replicas" in err
    assert not fake.requests_matching("POST")  # validated against the cluster's CRD: nothing created


def test_server_errors_are_retried_then_reported(fake, capsys, tmp_path):
    run(capsys, "submit", "--manifest", write_manifest(tmp_path, volcano_job("s1")))
    fake.clear_requests()
    fake.fail("GET", JOBS + "/s1$", 503, times=2)
    code, out, _ = run(capsys, "status", "s1")
    assert code == 0 and "s1" in out
    assert len(fake.requests_matching("GET", JOBS + "/s1$")) == 3
    fake.fail("GET", JOBS + "/s1$", 500, times=10)
    code, _, err = run(capsys, "status", "s1")
    assert code == 1
    assert "kept failing to get jobs.batch.volcano.sh 's1'" in err and "HTTP 500" in err
    assert "after 3 attempts" in err


def test_volcano_not_installed(tmp_path, monkeypatch, capsys):
    with fake_cluster(tmp_path, monkeypatch, volcano_installed=False) as fake:
        code, _, err = run(capsys, "submit", "--manifest", write_manifest(tmp_path, volcano_job("v1")))
        assert code == 1
        assert err.startswith("vitjob submit: error: Volcano is not installed in this cluster:")
        assert not fake.requests_matching("POST")


def test_preflight_missing_queue_and_namespace(fake, capsys, tmp_path):
    code, _, err = run(
        capsys, "submit", "--manifest", write_manifest(tmp_path, volcano_job("q1", queue="gpu"))
    )
    assert code == 1 and "Volcano queue 'gpu' does not exist" in err
    code, _, err = run(
        capsys, "submit", "--manifest", write_manifest(tmp_path, volcano_job("q2", namespace="nowhere"))
    )
    assert code == 1 and "namespace 'nowhere' does not exist" in err
    assert not fake.requests_matching("POST")


def test_preflight_warns_when_devices_do_not_fit(tmp_path, monkeypatch, capsys):
    with fake_cluster(tmp_path, monkeypatch, nodes=1) as fake:
        code, _, err = run(capsys, "submit", "--manifest", write_manifest(tmp_path, volcano_job("big")))
        assert code == 0  # a warning, not an error: nodes may be added
        assert (
            "warning: the job requests 16 huawei.com/Ascend910 in total but the cluster's 1 node(s) with it "
            "have 8 allocatable"
        ) in err
        assert fake.requests_matching("POST", JOBS + "$")


def test_logs_merge_by_time_rank_filter_and_tail(fake, capsys, tmp_path):
    run(capsys, "submit", "--manifest", write_manifest(tmp_path, volcano_job("m1")))
    for i in range(2):
        fake.add_pod("default", "m1", i)
        fake.set_pod_running("default", f"m1-worker-{i}")
    fake.append_log("default", "m1-worker-1", ["b1"])
    fake.append_log("default", "m1-worker-0", ["a1"])
    fake.append_log("default", "m1-worker-1", ["b2"])
    code, out, _ = run(capsys, "logs", "m1")
    assert out.splitlines() == [
        "[rank 1 m1-worker-1] b1",
        "[rank 0 m1-worker-0] a1",
        "[rank 1 m1-worker-1] b2",
    ]
    code, out, _ = run(capsys, "logs", "m1", "--rank", "1", "--tail", "1")
    assert out.splitlines() == ["[rank 1 m1-worker-1] b2"]
    assert fake.requests_matching("GET", "m1-worker-1/log$")[-1].query["tailLines"] == "1"
    fake.restart_pod("default", "m1-worker-0")
    code, out, _ = run(capsys, "logs", "m1", "--pod", "m1-worker-0", "--previous")
    assert out.splitlines() == ["[rank 0 m1-worker-0] a1"]
    code, _, err = run(capsys, "logs", "m1", "-f", "--previous")
    assert code == 2 and "--previous" in err


def test_follow_of_missing_job_is_404_not_a_hang(fake, capsys):
    code, out, err = run(capsys, "logs", "-f", "ghost")
    assert (code, out) == (1, "")
    assert "job 'ghost' not found in namespace 'default'" in err
    code, _, err = run(capsys, "status", "ghost")
    assert code == 1 and "`vitjob list` shows the jobs there" in err


# ----------------------------------------------------------------------------- training progress
def _running_train_job(fake, capsys, tmp_path, name: str = "t1") -> None:
    code, _, err = run(capsys, "submit", "--manifest", write_manifest(tmp_path, volcano_job(name)))
    assert code == 0, err
    fake.set_job_phase("default", name, "Running")
    for i in range(2):
        fake.add_pod("default", name, i)
        fake.set_pod_running("default", f"{name}-worker-{i}")


def test_status_of_a_running_train_job_reads_rank_0s_last_progress_line(fake, capsys, tmp_path):
    _running_train_job(fake, capsys, tmp_path)
    older = TrainProgress(2, 10, 40, 230, 0.61, 0.9, 130.0, 300.0, "step")
    last = TrainProgress(2, 10, 46, 230, 0.55, 0.9, 128.5, 290.0, "step")
    fake.append_log(
        "default",
        "t1-worker-0",
        [
            f"[rank 0] {format_line(older)}",
            "[rank 0] a log line",
            f"[rank 0] {format_line(last)}",
            "[rank 1] x",
        ],
    )
    fake.append_log("default", "t1-worker-1", [f"[rank 8] {format_line(TrainProgress(9, 10, 200, 230))}"])
    fake.clear_requests()
    code, out, _ = run(capsys, "status", "t1")
    assert code == 0
    assert "progress: epoch 2/10  step 46/230  loss 0.5500  val acc 90.00%  128 img/s  ETA 4m50s" in out
    # one request for the progress: the last lines of rank 0's pod, not a stream
    [log_req] = fake.requests_matching("GET", r"/log$")
    assert log_req.path == PODS + "/t1-worker-0/log"
    assert log_req.query["tailLines"] == "40" and log_req.query["container"] == "vitjob"
    assert "follow" not in log_req.query
    assert [(r.method, r.path) for r in fake.requests] == [
        ("GET", JOBS + "/t1"),
        ("GET", PODS),
        ("GET", PODS + "/t1-worker-0/log"),
    ]

    code, out, _ = run(capsys, "status", "t1", "-o", "json")
    shown = json.loads(out)["progress"]
    read_at = shown.pop("time")  # when it was read: a UTC time, now
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", read_at), read_at
    assert shown == {
        "epoch": 2, "epochs": 10, "step": 46, "total_steps": 230, "percent": 20.0, "loss": 0.55,
        "accuracy": 0.9, "img_s": 128.5, "eta_s": 290.0, "eta": "4m50s", "event": "step", "final": False,
    }

    code, out, _ = run(capsys, "list")
    header, row = out.splitlines()
    assert header.split() == ["NAME", "STAGE", "HW", "CARDS", "PHASE", "AGE", "PROGRESS"]
    assert row.startswith("t1") and row.endswith("epoch 2/10  step 46/230  loss 0.5500  val acc 90.00%  "
                                                 "128 img/s  ETA 4m50s")
    code, out, _ = run(capsys, "list", "-o", "json")
    assert json.loads(out)[0]["progress"]["step"] == 46


def test_no_progress_request_unless_a_train_job_runs_with_rank_0_started(fake, capsys, tmp_path):
    run(capsys, "submit", "--manifest", write_manifest(tmp_path, volcano_job("t2")))
    fake.add_pod("default", "t2", 0)  # container still being created
    fake.set_job_phase("default", "t2", "Running")
    run(capsys, "submit", "--manifest", write_manifest(tmp_path, volcano_job("e1", stage="eval", replicas=1)))
    fake.set_job_phase("default", "e1", "Running")
    fake.add_pod("default", "e1", 0)
    fake.set_pod_running("default", "e1-worker-0")
    fake.append_log("default", "e1-worker-0", [format_line(TrainProgress(1, 1, 1, 1))])
    fake.clear_requests()
    for name in ("t2", "e1"):
        code, out, _ = run(capsys, "status", name)
        assert code == 0 and "progress:" not in out
    assert not fake.requests_matching("GET", r"/log$")
    code, out, _ = run(capsys, "status", "e1", "-o", "json")
    assert json.loads(out)["progress"] is None


def test_a_train_job_without_progress_lines_yet_shows_none(fake, capsys, tmp_path):
    _running_train_job(fake, capsys, tmp_path, "t3")
    fake.append_log("default", "t3-worker-0", ["[rank 0] compiling the graph"])
    code, out, err = run(capsys, "status", "t3")
    assert code == 0 and "progress:" not in out and err == ""


# -------------------------------------------------------------------- what the terminal shows
def _closed_port_kubeconfig(tmp_path: Path) -> Path:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "x", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "x", "user": "u"}}],
            }
        )
    )
    return path


def _vitjob(*argv: str) -> subprocess.CompletedProcess[str]:
    """``vitjob ARGV`` in a fresh process, as a user runs it (its own logging set-up, no capture)."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "VITJOB_CRD", "VITJOB_DEBUG")}
    return subprocess.run(
        [sys.executable, "-m", "vitjob", *argv], capture_output=True, text=True, env=env, timeout=120
    )


def test_unreachable_cluster_is_one_line_and_retries_are_debug_output(tmp_path):
    kubeconfig = str(_closed_port_kubeconfig(tmp_path))
    proc = _vitjob("status", "x", "--kubeconfig", kubeconfig)
    assert proc.returncode == 1 and proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("vitjob status: error: cannot reach the Kubernetes API server at http://127.0.0.1:")
    assert "4 attempts" in lines[0]  # it did retry, quietly
    verbose = _vitjob("-v", "status", "x", "--kubeconfig", kubeconfig)
    assert verbose.stderr.count("retrying in") == 3


def test_log_lines_are_plain_sentences_without_logger_names(tmp_path):
    proc = _vitjob("render", "--hw", "cpu", "--cards", "1", "--name", "x", "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith("warning: batch.volcano.sh/v1alpha1 Job was not checked against its CRD")
    assert "vitjob.render.validate" not in line and "WARNING" not in line
