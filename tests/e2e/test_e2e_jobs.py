"""vitjob's job commands against the real API server, Volcano's controllers, scheduler and webhook.

Pods run on KWOK nodes and end only when a test annotates them with an exit code, so every phase
change below is Volcano's own reaction to what a kubelet would report.
"""

from __future__ import annotations

import json
import queue
import threading

from cluster_testing import Kube, Vitjob, wait_for

NPU = {"huawei.com/Ascend910": "8"}


def _pods(kube: Kube, ns: str, job: str) -> list[dict]:
    return kube.pods(ns, f"volcano.sh/job-name={job}")


def _running(kube: Kube, ns: str, job: str, n: int) -> list[dict] | None:
    pods = [
        p
        for p in _pods(kube, ns, job)
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]
    return pods if len(pods) == n else None


def _status(vitjob: Vitjob, job: str) -> dict:
    proc = vitjob("status", job, "-o", "json", check=True)
    return json.loads(proc.stdout)


def test_gang_of_16_cards_waits_for_a_second_node_and_says_why(kube, namespace, nodes, vitjob):
    kube.add_pvcs(namespace)
    first = nodes("e2e-npu-0", NPU)
    sub = vitjob("submit", "--hw", "ascend", "--cards", "16", "--name", "gang", check=True)
    assert "submitted job gang-train" in sub.stdout

    # Real Volcano: the enqueue action keeps the PodGroup Pending (the overcommit plugin says why, as a
    # *Normal* event), and the controller creates no pod until the PodGroup is Inqueue.
    def explained() -> dict | None:
        st = _status(vitjob, "gang-train")
        text = "\n".join(st["reasons"])
        return st if "Pending: not admitted to its queue" in text and "overused" in text else None

    st = wait_for(explained, 60, "`vitjob status` to explain the wait from Volcano's records")
    assert st["phase"] == "Pending", st
    assert any("huawei.com/Ascend910" in r and r.startswith("Unschedulable (PodGroup") for r in st["reasons"])
    assert not [p for p in _pods(kube, namespace, "gang-train") if p["spec"].get("nodeName")], (
        "gang: none bound"
    )
    table = vitjob("status", "gang-train", check=True).stdout
    assert "Pending" in table and "overused" in table

    second = nodes("e2e-npu-1", NPU)
    running = wait_for(lambda: _running(kube, namespace, "gang-train", 2), 90, "both pods Running")
    assert sorted(p["spec"]["nodeName"] for p in running) == [first, second]
    st = wait_for(lambda: (s := _status(vitjob, "gang-train"))["phase"] == "Running" and s, 60, "job Running")
    assert not any("overused" in r for r in st["reasons"]), st["reasons"]


def test_exit_137_restarts_the_job_then_max_retry_fails_it(kube, namespace, nodes, vitjob, tmp_path):
    kube.add_pvcs(namespace)
    nodes("e2e-npu-0", NPU)
    vitjob("submit", "--hw", "ascend", "--cards", "8", "--name", "crash", "--max-retry", "2", check=True)
    job = "crash-train"
    pod = "crash-train-worker-0"
    wait_for(lambda: _running(kube, namespace, job, 1), 90, "the pod Running")
    kube.serve_logs(namespace, pod, tmp_path / "run1.log", [f"first run line {i}" for i in range(3)])

    follower = vitjob.popen("logs", "-f", job)
    # Every line the follower prints, as it prints it: the test waits for lines, not for fixed times.
    printed: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [printed.put(ln) for ln in follower.stdout], daemon=True)
    reader.start()
    seen: list[str] = []

    def printed_line(text: str) -> None:
        while not any(text in ln for ln in seen):
            seen.append(printed.get(timeout=60))

    printed_line("first run line 2")  # the follower has the first run's whole log before the pod ends
    uid_before = _pods(kube, namespace, job)[0]["metadata"]["uid"]
    kube.end_pod(namespace, pod, 137)
    # the recreated pod (same name) gets a container log of its own, as on a real node
    kube.serve_logs(namespace, pod, tmp_path / "run2.log", ["second run line 0"])

    def restarted() -> dict | None:
        pods = _running(kube, namespace, job, 1)
        return pods[0] if pods and pods[0]["metadata"]["uid"] != uid_before else None

    wait_for(restarted, 120, "Volcano to restart the job (PodFailed -> RestartJob)")
    st = wait_for(lambda: (s := _status(vitjob, job))["retry_count"] >= 1 and s, 60, "retry count 1")
    assert st["retry_count"] == kube.get("vcjob", job, namespace)["status"]["retryCount"] == 1
    table = vitjob("status", job, check=True).stdout
    assert "   retries: 1   " in table, table

    # the second failure exhausts maxRetry 2 (Volcano: the job fails when the retry count reaches it)
    printed_line("second run line 0")  # the follower is on the new pod's log
    kube.end_pod(namespace, pod, 3)
    waited = vitjob("wait", job, "--timeout", "120", timeout=150)
    assert waited.returncode == 1, (waited.stdout, waited.stderr)
    assert "Failed" in waited.stderr
    assert "exited with code 3" in waited.stderr
    follower.wait(timeout=60)
    reader.join(timeout=10)
    err = follower.stderr.read()
    seen += [printed.get_nowait() for _ in range(printed.qsize())]
    out = "".join(seen)
    lines = [line for line in out.splitlines() if "run line" in line]
    assert [line.split("] ", 1)[-1] for line in lines] == [
        "first run line 0",
        "first run line 1",
        "first run line 2",
        "second run line 0",
    ], (out, err)


def test_all_pods_exit_0_completes_and_wait_exits_0(kube, namespace, nodes, vitjob):
    kube.add_pvcs(namespace)
    nodes("e2e-npu-0", NPU)
    nodes("e2e-npu-1", NPU)
    vitjob("submit", "--hw", "ascend", "--cards", "16", "--name", "ok", check=True)
    pods = wait_for(lambda: _running(kube, namespace, "ok-train", 2), 90, "both pods Running")
    waiter = vitjob.popen("wait", "ok-train", "--timeout", "120")
    for p in pods:
        kube.end_pod(namespace, p["metadata"]["name"], 0)
    out, err = waiter.communicate(timeout=150)
    assert waiter.returncode == 0, (out, err)
    assert "Completed" in out
    assert _status(vitjob, "ok-train")["phase"] == "Completed"


def test_cancel_delete_list_and_duplicate_submit(kube, namespace, nodes, vitjob):
    kube.add_pvcs(namespace)
    nodes("e2e-npu-0", NPU)
    vitjob("submit", "--hw", "ascend", "--cards", "8", "--name", "ab", check=True)
    wait_for(lambda: _running(kube, namespace, "ab-train", 1), 90, "the pod Running")

    dup = vitjob("submit", "--hw", "ascend", "--cards", "8", "--name", "ab")
    assert dup.returncode != 0
    assert len([line for line in dup.stderr.splitlines() if line.strip()]) <= 2, dup.stderr
    assert "already exists" in dup.stderr

    listed = vitjob("list", "-o", "json", check=True)
    assert [j["name"] for j in json.loads(listed.stdout)] == ["ab-train"]

    vitjob("cancel", "ab-train", check=True)
    wait_for(lambda: _status(vitjob, "ab-train")["phase"] == "Aborted", 60, "the real controller to abort")
    waited = vitjob("wait", "ab-train", "--timeout", "30")
    assert waited.returncode == 1 and "Aborted" in waited.stderr
    assert kube.get("vcjob", "ab-train", namespace)["status"]["state"]["phase"] == "Aborted"

    vitjob("delete", "ab-train", check=True)
    wait_for(lambda: kube.get_or_none("vcjob", "ab-train", namespace) is None, 60, "the job gone")
    gone = vitjob("status", "ab-train")
    assert gone.returncode != 0 and "not found" in gone.stderr.lower()


def _close_queue(kube: Kube, queue: str) -> None:
    """Close a queue through Volcano's own Command (what `vcctl queue operate -a close` creates)."""
    q = kube.get("queue", queue)
    ref = {
        "apiVersion": "scheduling.volcano.sh/v1beta1",
        "kind": "Queue",
        "name": queue,
        "uid": q["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    kube.kubectl(
        "create",
        "-f",
        "-",
        input_text=json.dumps(
            {
                "apiVersion": "bus.volcano.sh/v1alpha1",
                "kind": "Command",
                "metadata": {
                    "generateName": f"{queue}-closequeue-",
                    "namespace": "default",
                    "ownerReferences": [ref],
                },
                "target": ref,
                "action": "CloseQueue",
            }
        ),
    )
    wait_for(lambda: kube.get("queue", queue)["status"].get("state") == "Closed", 60, f"queue {queue} Closed")


def test_closed_queue_and_webhook_denial_are_one_clear_line(kube, namespace, nodes, vitjob, tmp_path):
    kube.add_pvcs(namespace)
    queue = f"closed-{namespace}"
    kube.apply(
        {
            "apiVersion": "scheduling.volcano.sh/v1beta1",
            "kind": "Queue",
            "metadata": {"name": queue},
            "spec": {"weight": 1},
        }
    )
    try:
        wait_for(
            lambda: (kube.get("queue", queue).get("status") or {}).get("state") == "Open", 60, "queue Open"
        )
        _close_queue(kube, queue)
        closed = vitjob("submit", "--hw", "ascend", "--cards", "8", "--name", "deny", "--queue", queue)
        assert closed.returncode != 0
        lines = [line for line in closed.stderr.splitlines() if line.strip()]
        assert len(lines) <= 2, closed.stderr
        assert queue in closed.stderr and "Closed" in closed.stderr
    finally:
        kube.kubectl("delete", "queue", queue, "--wait=false", check=False)

    # A job the CRD schema accepts but Volcano's validating webhook refuses (minAvailable above the
    # replicas): the API server answers 400 with the webhook's message.
    rendered = vitjob(
        "render",
        "--hw",
        "ascend",
        "--cards",
        "8",
        "--name",
        "bad",
        "-n",
        namespace,
        check=True,
        backend=False,
    ).stdout
    import yaml

    objs = list(yaml.safe_load_all(rendered))
    job = next(o for o in objs if o["kind"] == "Job")
    job["spec"]["minAvailable"] = 5
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(yaml.safe_dump_all(objs))
    denied = vitjob("submit", "--manifest", str(manifest))
    assert denied.returncode != 0
    lines = [line for line in denied.stderr.splitlines() if line.strip()]
    assert len(lines) <= 2, denied.stderr
    assert "admission webhook" in denied.stderr and "minAvailable" in denied.stderr, denied.stderr
    assert kube.get_or_none("vcjob", "bad-train", namespace) is None


def test_status_and_list_show_rank_0s_training_progress(kube, namespace, nodes, vitjob, tmp_path):
    kube.add_pvcs(namespace)
    nodes("e2e-npu-0", NPU)
    vitjob("submit", "--hw", "ascend", "--cards", "8", "--name", "pr", check=True)
    wait_for(lambda: _running(kube, namespace, "pr-train", 1), 90, "the pod Running")
    # rank 0's output as training writes it (the format vitjob/progress.py documents), among other lines
    kube.serve_logs(
        namespace,
        "pr-train-worker-0",
        tmp_path / "pr.log",
        [
            "epoch 3/15 starting",
            "vitjob-progress epoch=3/15 step=30/150 loss=0.5123 acc=0.9100 img_s=88.0 eta_s=120 event=epoch",
            "some other line",
        ],
    )
    progress = wait_for(lambda: _status(vitjob, "pr-train")["progress"], 30, "progress in `vitjob status`")
    assert (progress["epoch"], progress["epochs"], progress["step"], progress["total_steps"]) == (
        3,
        15,
        30,
        150,
    )
    assert progress["loss"] == 0.5123 and progress["accuracy"] == 0.91 and progress["img_s"] == 88.0
    listed = json.loads(vitjob("list", "-o", "json", check=True).stdout)
    assert listed[0]["progress"]["step"] == 30
    assert "30/150" in vitjob("status", "pr-train", check=True).stdout


def test_a_type_the_server_does_not_serve_is_told_apart_from_a_missing_object(kube, namespace):
    """The real API server's 404s: an API group it lacks (a CRD not installed: plain text), a resource a
    served group lacks (a Status), and a missing object of a served type."""
    import pytest

    from vitjob.backends.kubernetes.backend import KubernetesBackend
    from vitjob.errors import ResourceNotFoundError, ResourceTypeNotServedError
    from vitjob.kube.errors import Op

    api = KubernetesBackend(kubeconfig=str(kube.kubeconfig), namespace=namespace).api
    unserved = (("nothere.example.com", "v1", "things"), ("vitjob.io", "v1alpha1", "others"))
    for group, version, plural in unserved:
        with pytest.raises(ResourceTypeNotServedError, match=rf"serves no {plural}\.{group}"):
            api.call(
                Op("get", plural, group, namespace, "x"),
                api.custom.get_namespaced_custom_object, group, version, namespace, plural, "x",
            )
    with pytest.raises(ResourceNotFoundError) as missing:
        api.call(
            Op("get", "vitjobs", "vitjob.io", namespace, "absent"),
            api.custom.get_namespaced_custom_object, "vitjob.io", "v1alpha1", namespace, "vitjobs", "absent",
        )
    assert not isinstance(missing.value, ResourceTypeNotServedError), missing.value
