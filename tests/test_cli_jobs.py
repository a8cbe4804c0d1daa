"""``vitjob submit/status/logs/wait/cancel/delete/list`` end to end against the FAKE API server.

Each test calls ``vitjob.cli.main([...])`` like a user would, drives the cluster's state through
the fake's handle, and checks both what the user sees (stdout/stderr, exit code, no traceback) and
what the client sent (paths, verbs, bodies).
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest
import yaml
from kube_testing import fake_cluster, volcano_job

from vitjob.cli import main

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


# ------------------------------------------------------------------------------------------ full flow
def test_full_flow_submit_status_follow_restart_complete_wait(fake, capsys):
    code, out, err = run(capsys, "submit", "--hw", "ascend", "--cards", "16", "--name", "vit")
    assert code == 0, err
    assert "submitted job vit-train in namespace default" in out
    assert "vitjob logs -f vit-train" in out and "vitjob wait vit-train" in out
    # preflight before create, then exactly one create with the rendered, labelled job
    paths = [(r.method, r.path) for r in fake.requests]
    create = paths.index(("POST", JOBS))
    assert (
        paths.index(("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/jobs.batch.volcano.sh"))
        < create
    )
    assert ("GET", "/apis/scheduling.volcano.sh/v1beta1/queues/default") in paths[:create]
    assert ("GET", "/api/v1/namespaces/default") in paths[:create]
    body = fake.requests_matching("POST", JOBS + "$")[0].body
    assert body["metadata"]["name"] == "vit-train"
    assert body["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "vitjob"
    assert body["spec"]["tasks"][0]["replicas"] == 2
    assert "warning" not in err  # 16 cards fit the two 8-card nodes

    # Pending: the scheduler says why
    fake.set_job_phase("default", "vit-train", "Pending")
    for i in range(2):
        fake.add_pod("default", "vit-train", i)
    fake.set_podgroup(
        "default",
        "vit-train",
        "Pending",
        [
            {
                "type": "Unschedulable",
                "status": "True",
                "reason": "NotEnoughResources",
                "message": "2/2 tasks in gang unschedulable: pod group is not ready, "
                "2 Pending, 2 minAvailable",
            }
        ],
    )
    fake.add_event(
        "default",
        "Pod",
        "vit-train-worker-0",
        "FailedScheduling",
        "0/12 nodes are available: 12 Insufficient huawei.com/Ascend910.",
    )
    fake.add_event("default", "Pod", "someone-elses-pod", "FailedScheduling", "not about our job")
    code, out, _ = run(capsys, "status", "vit-train")
    assert code == 0
    assert "Pending" in out and "vit-train-worker-1" in out
    assert "0/12 nodes are available: 12 Insufficient huawei.com/Ascend910." in out
    assert "NotEnoughResources" in out and "not about our job" not in out

    code, out, _ = run(capsys, "status", "vit-train", "-o", "json")
    data = json.loads(out)
    assert data["phase"] == "Pending" and [p["rank"] for p in data["pods"]] == [0, 1]

    # logs -f in the background: it waits for the pods, then follows a restart and a dropped stream
    result: dict[str, int] = {}
    follower = threading.Thread(target=lambda: result.update(code=main(["logs", "-f", "vit-train"])))
    follower.start()
    fake.wait_for(lambda: len(fake.requests_matching("GET", PODS + "$", verb="watch")) == 1, what="pod watch")
    fake.set_job_phase("default", "vit-train", "Running")
    for i in range(2):
        fake.set_pod_running("default", f"vit-train-worker-{i}")
    fake.append_log("default", "vit-train-worker-0", ["epoch 1 loss 2.30", "epoch 2 loss 1.90"])
    fake.append_log("default", "vit-train-worker-1", ["rank 1 ready"])
    fake.wait_for(lambda: fake.following("vit-train-worker-0"), what="follow of worker-0")
    fake.restart_pod("default", "vit-train-worker-0", exit_code=137, reason="OOMKilled")
    fake.append_log("default", "vit-train-worker-0", ["resumed from checkpoint epoch 2"])
    fake.wait_for(lambda: fake.following("vit-train-worker-0"), what="follow after restart")
    fake.drop_log_streams()
    fake.append_log("default", "vit-train-worker-0", ["epoch 3 loss 1.50"])
    fake.append_log("default", "vit-train-worker-1", ["rank 1 done"])
    fake.finish_pod("default", "vit-train-worker-0")
    fake.finish_pod("default", "vit-train-worker-1")
    fake.set_job_phase("default", "vit-train", "Completed")
    follower.join(20)
    assert not follower.is_alive() and result["code"] == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [x for x in lines if "worker-0" in x] == [
        "[rank 0 vit-train-worker-0] epoch 1 loss 2.30",
        "[rank 0 vit-train-worker-0] epoch 2 loss 1.90",
        "[rank 0 vit-train-worker-0] resumed from checkpoint epoch 2",
        "[rank 0 vit-train-worker-0] epoch 3 loss 1.50",
    ]
    assert [x for x in lines if "worker-1" in x] == [
        "[rank 1 vit-train-worker-1] rank 1 ready",
        "[rank 1 vit-train-worker-1] rank 1 done",
    ]
    # reconnects asked only for what was not seen yet
    assert any("sinceTime" in r.query for r in fake.requests_matching("GET", "/log$"))

    code, out, _ = run(capsys, "wait", "vit-train", "--timeout", "10")
    assert (code, out.strip()) == (0, "job vit-train Completed")


def test_wait_failed_job_exits_1_with_reason(fake, capsys, tmp_path):
    code, _, err = run(capsys, "submit", "--manifest", write_manifest(tmp_path, volcano_job("bad")))
    assert code == 0, err
    fake.add_pod("default", "bad", 0)
    fake.set_pod_running("default", "bad-worker-0")
    fake.append_log("default", "bad-worker-0", ["loading rank table", "RuntimeError: HCCL init failed"])
    fake.finish_pod("default", "bad-worker-0", 1, message="HCCL timeout waiting for rank 1")
    fake.set_job_phase(
        "default", "bad", "Failed", reason="PodFailed", message="retries exhausted", retry_count=3
    )
    code, out, err = run(capsys, "wait", "bad", "--timeout", "10")
    assert code == 1 and out == ""
    assert "job bad Failed" in err
    assert "PodFailed: retries exhausted" in err
    assert "bad-worker-0 exited with code 1 (Error): HCCL timeout waiting for rank 1" in err
    assert "| RuntimeError: HCCL init failed" in err


def test_wait_times_out_with_exit_2(fake, capsys, tmp_path):
    run(capsys, "submit", "--manifest", write_manifest(tmp_path, volcano_job("slow")))
    fake.set_job_phase("default", "slow", "Running")
    code, _out, err = run(capsys, "wait", "slow", "--timeout", "1")
    assert code == 2
    assert "still Running after 1s" in err


# ---------------------------------------------------------------------------- cancel / delete / list
def test_cancel_creates_abortjob_command_owned_by_the_job(fake, capsys, tmp_path):
    run(capsys, "submit", "--manifest", write_manifest(tmp_path, volcano_job("c1")))
    fake.set_job_phase("default", "c1", "Running")
    code, out, _ = run(capsys, "cancel", "c1")
    assert code == 0 and "abort" in out
    uid = fake.get("batch.volcano.sh", "jobs", "c1", "default")["metadata"]["uid"]
    [req] = fake.requests_matching("POST", "/apis/bus.volcano.sh/v1alpha1/namespaces/default/commands$")
    assert req.body["action"] == "AbortJob"
    assert req.body["target"]["name"] == "c1" and req.body["target"]["uid"] == uid
    assert req.body["metadata"]["ownerReferences"][0]["uid"] == uid
    assert fake.get("batch.volcano.sh", "jobs", "c1", "default") is not None  # the job and history stay
    fake.set_job_phase("default", "c1", "Aborted")
    code, _, err = run(capsys, "cancel", "c1")
    assert code == 1 and "already finished (Aborted)" in err


def test_delete_removes_job_and_supporting_objects(fake, capsys, tmp_path):
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "d1-ranktable", "labels": {"app.kubernetes.io/managed-by": "vitjob"}},
        "data": {"hccl.json": '{"status": "initializing"}'},
    }
    code, _, err = run(capsys, "submit", "--manifest", write_manifest(tmp_path, cm, volcano_job("d1")))
    assert code == 0, err
    creates = [r.path for r in fake.requests_matching("POST")]
    assert creates == ["/api/v1/namespaces/default/configmaps", JOBS]  # supporting objects first
    fake.add_pod("default", "d1", 0)
    code, out, _ = run(capsys, "delete", "d1")
    assert code == 0 and "deleted job d1" in out
    [delete_job] = fake.requests_matching("DELETE", JOBS + "/d1$")
    assert delete_job.body["propagationPolicy"] == "Background"
    assert fake.requests_matching("DELETE", "/api/v1/namespaces/default/configmaps/d1-ranktable$")
    assert fake.get("batch.volcano.sh", "jobs", "d1", "default") is None
    assert fake.get("", "configmaps", "d1-ranktable", "default") is None
    code, _, err = run(capsys, "delete", "d1")
    assert code == 1 and "job 'd1' not found in namespace 'default'" in err


def test_list_shows_managed_jobs_only(fake, capsys, tmp_path):
    fake.add_namespace("team-b")
    run(capsys, "submit", "--manifest", write_manifest(tmp_path, volcano_job("l1", stage="train")))
    run(
        capsys,
        "submit",
        "--manifest",
        write_manifest(tmp_path, volcano_job("l2", namespace="team-b", stage="eval", replicas=1)),
    )
    fake.create(
        "batch.volcano.sh", "jobs", {"metadata": {"name": "not-ours"}, "spec": {"tasks": []}}, "default"
    )
    fake.set_job_phase("default", "l1", "Running")
    code, out, _ = run(capsys, "list")
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["NAME", "STAGE", "HW", "CARDS", "PHASE", "AGE"]
    assert [r[:5] for r in rows[1:]] == [["l1", "train", "ascend", "16", "Running"]]
    [req] = fake.requests_matching("GET", JOBS + "$")[-1:]
    assert req.query["labelSelector"] == "app.kubernetes.io/managed-by=vitjob"
    code, out, _ = run(capsys, "list", "-A")
    names = [line.split()[:2] for line in out.splitlines()[1:]]
    assert names == [["default", "l1"], ["team-b", "l2"]]
    assert fake.requests_matching("GET", "^/apis/batch.volcano.sh/v1alpha1/jobs$")


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
    import vitjob.backends.kubernetes as kube

    monkeypatch.setattr(kube, "DEFAULT_RETRY", kube.RetryPolicy(attempts=2, backoff_s=0.01))
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
