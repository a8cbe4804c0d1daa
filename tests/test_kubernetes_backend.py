"""``KubernetesBackend`` against the FAKE API server: following many jobs, watches that expire,
job retries, timeouts, webhook denials, backend selection, and the fake's own API behaviour."""

from __future__ import annotations

import socket
import threading

import pytest
from kube_testing import Collector, fake_cluster, volcano_job

import vitjob.backends.kubernetes.backend as kube
from vitjob.backends import get_backend
from vitjob.backends.base import JobPhase
from vitjob.backends.kubernetes.status import job_phase
from vitjob.errors import (
    ClusterUnreachableError,
    ConflictError,
    JobNotFoundError,
    UsageError,
)
from vitjob.kube.client import RetryPolicy

pytestmark = pytest.mark.timeout(90)

JOBS = "/apis/batch.volcano.sh/v1alpha1/namespaces/default/jobs"


@pytest.fixture
def fake(tmp_path, monkeypatch):
    with fake_cluster(tmp_path, monkeypatch) as api:
        yield api


@pytest.fixture
def backend(fake):
    return get_backend("kubernetes")


def test_fifty_jobs_followed_at_once_lose_and_repeat_nothing(fake, backend):
    jobs, pods = 50, 2
    for j in range(jobs):  # created directly: submit is tested elsewhere
        fake.create("batch.volcano.sh", "jobs", volcano_job(f"f{j}", replicas=pods, cards=1), "default")
        for i in range(pods):
            fake.add_pod("default", f"f{j}", i)
    followers = [Collector(lambda j=j: backend.logs(f"f{j}", follow=True)) for j in range(jobs)]
    fake.wait_for(
        lambda: len(fake.requests_matching("GET", "/pods$", verb="watch")) == jobs,
        timeout=30,
        what="every follower watching its pods",
    )
    expected: dict[str, list[str]] = {}
    for j in range(jobs):
        for i in range(pods):
            fake.set_pod_running("default", f"f{j}-worker-{i}")
    for batch in range(3):
        for j in range(jobs):
            for i in range(pods):
                lines = [f"job {j} pod {i} batch {batch} line {n}" for n in range(5)]
                fake.append_log("default", f"f{j}-worker-{i}", lines)
                expected.setdefault(f"f{j}-worker-{i}", []).extend(lines)
        if batch == 0:
            fake.wait_for(
                lambda: all(fake.following(f"f{j}-worker-0") for j in range(jobs)),
                timeout=30,
                what="all log streams open",
            )
            for j in range(0, jobs, 5):  # every fifth job: its rank 0 restarts mid-follow
                fake.restart_pod("default", f"f{j}-worker-0")
        if batch == 1:
            fake.drop_log_streams()  # every connection breaks once
    for j in range(jobs):
        for i in range(pods):
            fake.finish_pod("default", f"f{j}-worker-{i}")
        fake.set_job_phase("default", f"f{j}", "Completed")
    for j, follower in enumerate(followers):
        got = follower.join(timeout=30)
        for i in range(pods):
            prefix = f"[rank {i} f{j}-worker-{i}] "
            assert [x[len(prefix) :] for x in got if x.startswith(prefix)] == expected[f"f{j}-worker-{i}"]
        assert len(got) == pods * 15


def test_wait_relists_after_410_gone(fake, backend):
    backend.submit([volcano_job("w410")])
    fake.set_job_phase("default", "w410", "Running")
    result: dict = {}
    waiter = threading.Thread(target=lambda: result.update(status=backend.wait("w410", timeout_s=20)))
    waiter.start()
    fake.wait_for(lambda: len(fake.requests_matching("GET", JOBS + "$", verb="watch")) == 1, what="watch")
    fake.expire_watches()  # the open watch gets an ERROR 410 event
    fake.wait_for(lambda: len(fake.requests_matching("GET", JOBS + "$", verb="watch")) == 2, what="re-watch")
    lists = fake.requests_matching("GET", JOBS + "$", verb="list")
    assert len(lists) == 2 and lists[-1].query["fieldSelector"] == "metadata.name=w410"  # re-listed
    fake.set_job_phase("default", "w410", "Completed")
    waiter.join(10)
    assert result["status"].phase == JobPhase.COMPLETED


def test_wait_relists_after_a_plain_http_410_on_the_watch_request(fake, backend):
    # The API server can refuse the watch request itself with 410 Gone (the resourceVersion is older
    # than its watch cache), instead of a 200 stream carrying an ERROR event: the same "re-list".
    backend.submit([volcano_job("p410")])
    fake.set_job_phase("default", "p410", "Running")
    fake.fail("GET", JOBS + "$", 410, times=1, query={"watch": "true"}, reason="Expired")
    result: dict = {}

    def wait() -> None:
        try:
            result["status"] = backend.wait("p410", timeout_s=20)
        except Exception as exc:  # reported by the assertions below
            result["error"] = exc

    waiter = threading.Thread(target=wait)
    waiter.start()
    fake.wait_for(
        lambda: "error" in result or len(fake.requests_matching("GET", JOBS + "$", verb="watch")) == 2,
        what="a second watch after the 410",
    )
    assert "error" not in result, result.get("error")
    lists = fake.requests_matching("GET", JOBS + "$", verb="list")
    assert len(lists) == 2  # re-listed after the 410, as after an ERROR 410 event
    fake.set_job_phase("default", "p410", "Completed")
    waiter.join(10)
    assert result["status"].phase == JobPhase.COMPLETED


def test_wait_for_missing_job(fake, backend):
    with pytest.raises(JobNotFoundError, match="job 'ghost' not found in namespace 'default'"):
        backend.wait("ghost", timeout_s=5)


def test_server_that_never_answers_times_out_with_retries(monkeypatch):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)  # accepts connections, never answers
        from kubernetes import client

        cfg = client.Configuration(host=f"http://127.0.0.1:{server.getsockname()[1]}")
        cfg.retries = 0
        backend = kube.KubernetesBackend(
            api_client=client.ApiClient(cfg),
            namespace="default",
            retry=RetryPolicy(attempts=2, backoff_s=0.01),
            request_timeout_s=0.3,
        )
        with pytest.raises(ClusterUnreachableError, match=r"did not answer in time .*\(2 attempts\)"):
            backend.status("x")


def test_supporting_object_of_someone_else_is_a_conflict(fake, backend):
    fake.create("", "configmaps", {"metadata": {"name": "theirs"}}, "default")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "theirs"}, "data": {}}
    with pytest.raises(ConflictError, match=r"ConfigMap 'theirs' already exists .* not created by vitjob"):
        backend.submit([cm, volcano_job("sup")])
    assert not fake.requests_matching("POST", JOBS + "$")


def test_status_of_failed_job_with_crashlooping_pod(fake, backend):
    backend.submit([volcano_job("crash", replicas=1)])
    fake.add_pod("default", "crash", 0)
    fake.set_pod_running("default", "crash-worker-0")
    fake.append_log("default", "crash-worker-0", ["Traceback (most recent call last):", "MemoryError"])
    fake.restart_pod("default", "crash-worker-0", exit_code=137, reason="OOMKilled")
    fake.set_pod_waiting("default", "crash-worker-0", "CrashLoopBackOff", "back-off 40s restarting")
    fake.set_job_phase("default", "crash", "Failed", reason="PodFailed")
    st = backend.status("crash")
    assert st.pods[0].restarts == 1 and st.pods[0].reason == "CrashLoopBackOff"
    assert (
        "pod crash-worker-0 (previous run) exited with code 137 "
        "(OOMKilled: no memory limit is set, so its node ran out of memory)"
    ) in st.reasons
    assert st.reasons[-1].endswith("  | Traceback (most recent call last):\n  | MemoryError")
    assert fake.requests_matching("GET", "crash-worker-0/log$")[-1].query["previous"] == "true"


def test_status_of_running_job_says_why_its_pod_restarted(fake, backend):
    # The kubelet restarts the container in place: pod and job still Running, the kill in lastState.
    backend.submit([volcano_job("oomr", replicas=1)])
    fake.add_pod("default", "oomr", 0)
    fake.set_pod_running("default", "oomr-worker-0")
    fake.restart_pod("default", "oomr-worker-0", exit_code=137, reason="OOMKilled")
    fake.set_job_phase("default", "oomr", "Running")
    st = backend.status("oomr")
    assert st.phase == JobPhase.RUNNING and st.pods[0].phase == "Running"
    assert (
        "pod oomr-worker-0 (previous run) exited with code 137 "
        "(OOMKilled: no memory limit is set, so its node ran out of memory)"
    ) in st.reasons


def test_status_of_running_job_without_exits_reads_no_failure_logs(fake, backend):
    backend.submit([volcano_job("fine", replicas=1)])
    fake.add_pod("default", "fine", 0)
    fake.set_pod_running("default", "fine-worker-0")
    fake.set_job_phase("default", "fine", "Running")
    assert backend.status("fine").reasons == []
    # Only the progress read (rank 0's last lines), no failed run's tail.
    assert [r.query["tailLines"] for r in fake.requests_matching("GET", "fine-worker-0/log$")] == ["40"]


def test_quantities_as_the_api_server_writes_them():
    from vitjob.kube.kinds import quantity

    texts = ("500m", "4Gi", "1e3", "0.5", "8", 8, "1Ti", "1.2.3", "")
    assert [quantity(q) for q in texts] == [0.5, 4 * 2**30, 1000.0, 0.5, 8.0, 8.0, 2**40, 0.0, 0.0]


def test_public_object_operations(fake, backend):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "obj"}, "data": {"k": "v"}}
    assert backend.create_object(cm)["metadata"]["namespace"] == "default"  # the backend's namespace
    assert "namespace" not in cm["metadata"]  # the caller's object is left as it was
    with pytest.raises(ConflictError, match=r"cannot create configmaps 'obj' in namespace 'default': it alr"):
        backend.create_object(cm)
    backend.create_object(volcano_job("obj"))
    job = backend.get_job_or_none("default", "obj")
    assert job is not None and job_phase(job) == JobPhase.PENDING
    backend.delete_job(job, "default")
    backend.wait_gone("obj", "default")
    assert backend.get_job_or_none("default", "obj") is None


def test_get_backend_selection(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    (tmp_path / "kc").write_text("apiVersion: v1\nkind: Config\n")
    b = get_backend(None, kubeconfig=str(tmp_path / "kc"), local_root=tmp_path, context=None)
    assert isinstance(b, kube.KubernetesBackend)
    assert b.settings.kubeconfig == str(tmp_path / "kc")
    with pytest.raises(UsageError, match="unknown backend 'slurm'"):
        get_backend("slurm")


def test_fake_merge_patch_and_label_selectors(fake, backend):
    backend.submit([volcano_job("p1")])
    backend.submit([volcano_job("p2")])  # keeps vitjob.io/hw: the selector must leave it out
    api = backend.api.custom
    job = ("batch.volcano.sh", "v1alpha1", "default", "jobs")
    created = api.get_namespaced_custom_object(*job, "p1")["metadata"]["resourceVersion"]
    patched = api.patch_namespaced_custom_object(
        *job, "p1", {"metadata": {"labels": {"extra": "yes", "vitjob.io/hw": None}}}
    )
    [patch] = fake.requests_matching("PATCH")
    assert patch.content_type.split(";")[0].strip() == "application/merge-patch+json"  # RFC 7386
    labels = patched["metadata"]["labels"]
    assert labels["extra"] == "yes" and "vitjob.io/hw" not in labels  # null deletes a key (RFC 7386)
    assert "vitjob.io/hw" in api.get_namespaced_custom_object(*job, "p2")["metadata"]["labels"]
    # Every write gives the object a new resourceVersion, and a list is at least as new as its items.
    assert int(patched["metadata"]["resourceVersion"]) > int(created)
    listed = api.list_namespaced_custom_object(*job, label_selector="extra in (yes,maybe),!vitjob.io/hw")
    assert [j["metadata"]["name"] for j in listed["items"]] == ["p1"]
    assert listed["items"][0]["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]
    assert int(listed["metadata"]["resourceVersion"]) >= int(patched["metadata"]["resourceVersion"])
    assert api.list_namespaced_custom_object(*job, label_selector="extra=no")["items"] == []
