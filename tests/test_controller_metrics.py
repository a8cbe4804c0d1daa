"""The controller's training progress in the VitJob status and its Prometheus metrics, against the FAKE
API server (fast unit tests; tests/e2e/test_e2e_progress_metrics.py runs both on the real cluster).

Metric values are compared with counted facts: the calls a test made, the requests the fake server
recorded (with the status code it answered), the VitJobs it holds. ``/metrics`` is read over HTTP and
parsed with ``prometheus_client.parser``.
"""

from __future__ import annotations

import collections
import time
import urllib.request
from collections.abc import Iterator

import pytest
from kube_testing import fake_cluster, pipeline_definition, seed_pipeline
from prometheus_client.parser import text_string_to_metric_families
from test_controller import Running, complete, handled_so_far, status, wait_recorded

from vitjob.backends.kubernetes.backend import KubernetesBackend
from vitjob.backends.kubernetes.store import record_from_vitjob
from vitjob.controller.loop import Controller, ControllerOptions
from vitjob.progress import ProgressReading, TrainProgress, format_line

pytestmark = pytest.mark.timeout(120)

LOG = r"/pods/vit-train-worker-0/log$"


@pytest.fixture
def fake(tmp_path, monkeypatch):
    with fake_cluster(tmp_path, monkeypatch) as api:
        yield api


@pytest.fixture
def controllers() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for ctl in started:
        if ctl.thread.is_alive():
            ctl.stop()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) → value, from Prometheus' text format."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def reconciles_total(got: dict) -> float:
    return sum(v for (name, _), v in got.items() if name == "vitjob_controller_reconciles_total")


def scrape(ctl: Running) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    host, port = ctl.controller.health_address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        return samples(resp.read().decode())


def line(step: int, total: int = 100, epoch: int = 1, event: str = "step") -> str:
    return "[rank 0] " + format_line(
        TrainProgress(epoch=epoch, epochs=2, step=step, total_steps=total, loss=1.0 / step,
                      accuracy=None if epoch == 1 else 0.5, img_s=64.0, eta_s=float(total - step),
                      event=event)
    )


def train_running(fake, pipeline: str = "vit") -> str:
    """The train job runs and its rank-0 pod has started; returns that pod's name."""
    fake.set_job_phase("default", f"{pipeline}-train", "Running")
    pod = fake.add_pod("default", f"{pipeline}-train", 0)["metadata"]["name"]
    fake.set_pod_running("default", pod)
    return pod


def progress_of(fake, pipeline: str = "vit") -> dict:
    return status(fake, pipeline).get("progress") or {}


def progress_writes(fake, pipeline: str = "vit") -> list:
    return [p for p in fake.requests_matching("PATCH", f"/vitjobs/{pipeline}/status$")
            if "progress" in p.body["status"]]


# ---------------------------------------------------------------------------------- progress
def test_progress_is_recorded_rate_limited_and_final_at_the_end(fake, controllers) -> None:
    seed_pipeline(fake, pipeline_definition("vit"))
    pod = train_running(fake)
    fake.append_log("default", pod, ["loading data", line(10)])
    interval = 1.0
    started = time.monotonic()
    controllers.append(ctl := Running(progress_interval_s=interval))
    fake.wait_for(lambda: progress_of(fake).get("step") == 10, what="step 10 recorded")
    # the first read comes one interval after the job was seen Running, not at once
    assert time.monotonic() - started >= interval
    got = progress_of(fake)
    where = (got["epoch"], got["epochs"], got["step"], got["totalSteps"], got["percent"])
    assert where == (1, 2, 10, 100, 10.0)
    assert got["loss"] == 0.1 and got["imgPerSecond"] == 64.0 and got["etaSeconds"] == 90.0
    assert got["eta"] == "1m30s" and got["final"] is False and "accuracy" not in got  # unknown: left out
    assert got["time"].endswith("Z")

    fake.append_log("default", pod, [line(20)])  # the next read, an interval later, sees it
    fake.wait_for(lambda: progress_of(fake).get("step") == 20, what="step 20 recorded")
    for step in range(21, 60):  # many lines: still one read and at most one write per interval
        fake.append_log("default", pod, [line(step)])
        time.sleep(0.05)
    fake.wait_for(lambda: progress_of(fake).get("step") == 59, what="step 59 recorded")
    elapsed = time.monotonic() - started
    reads = len(fake.requests_matching("GET", LOG))
    assert reads <= elapsed / interval + 2, (reads, elapsed)
    assert len(progress_writes(fake)) <= reads
    assert fake.requests_matching("GET", LOG)[0].query["tailLines"] == "40"  # a tail, never a stream
    assert "follow" not in fake.requests_matching("GET", LOG)[0].query

    fake.append_log("default", pod, [line(100, epoch=2, event="epoch")])
    fake.set_job_phase("default", "vit-train", "Completed")  # read once more at once, marked final
    wait_recorded(fake, "eval", "Created")
    fake.wait_for(lambda: progress_of(fake).get("final") is True, what="final progress")
    final = progress_of(fake)
    assert (final["step"], final["percent"], final["accuracy"], final["event"]) == (100, 100.0, 0.5, "epoch")
    assert "eta" not in final  # nothing left
    reads = len(fake.requests_matching("GET", LOG))
    fake.set_job_phase("default", "vit-eval", "Running")
    handled_so_far(fake, "probe")
    assert len(fake.requests_matching("GET", LOG)) == reads, "no read after the final one"
    assert ctl.controller.stats.progress_writes == len(progress_writes(fake))


def test_a_train_job_shorter_than_the_interval_costs_one_read_the_final_one(fake, controllers) -> None:
    seed_pipeline(fake, pipeline_definition("vit"))
    pod = train_running(fake)
    fake.append_log("default", pod, [line(10)])
    controllers.append(Running(progress_interval_s=30.0))
    fake.wait_for(lambda: status(fake)["stages"][0].get("phase") == "Running", what="Running recorded")
    handled_so_far(fake, "probe")  # the Running train job has been reconciled: no read yet
    assert not fake.requests_matching("GET", LOG)
    fake.append_log("default", pod, [line(100, epoch=2, event="epoch")])
    fake.set_job_phase("default", "vit-train", "Completed")
    fake.wait_for(lambda: progress_of(fake).get("final") is True, what="final progress")
    assert progress_of(fake)["step"] == 100
    assert len(fake.requests_matching("GET", LOG)) == 1


def test_no_progress_read_unless_a_train_job_runs(fake, controllers) -> None:
    seed_pipeline(fake, pipeline_definition("vit"))  # train job Pending
    seed_pipeline(fake, pipeline_definition("ev", stage="eval", then=()))
    fake.set_job_phase("default", "ev-eval", "Running")
    controllers.append(Running(progress_interval_s=0.2))
    handled_so_far(fake, "probe")
    time.sleep(0.5)  # two intervals: a read would have come
    handled_so_far(fake, "probe2")
    assert not fake.requests_matching("GET", "/pods/(vit|ev)-[a-z]+-worker-0/log$")
    # a probe's train job completed: read once for its final values (none: its pod never existed)
    assert len(fake.requests_matching("GET", "/pods/probe-train-worker-0/log$")) == 1


def test_pipeline_status_json_carries_the_recorded_progress(fake, controllers, capsys) -> None:
    import json

    from vitjob.cli import main

    seed_pipeline(fake, pipeline_definition("vit"))
    pod = train_running(fake)
    fake.append_log("default", pod, [line(30)])
    controllers.append(Running(progress_interval_s=0.3))
    fake.wait_for(lambda: progress_of(fake).get("step") == 30, what="step 30 recorded")
    assert main(["pipeline", "status", "vit", "-o", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)["progress"]
    stored = progress_of(fake)
    assert shown == ProgressReading.from_status(stored).to_dict()
    assert (shown["step"], shown["total_steps"], shown["percent"], shown["eta"], shown["final"]) == (
        30, 100, 30.0, "1m10s", False)
    assert shown["time"] == stored["time"]
    assert main(["pipeline", "status", "vit"]) == 0
    assert "training: epoch 1/2  step 30/100" in capsys.readouterr().out
    # `vitjob status` of the running train job reads the same line: the same fields, read now
    assert main(["status", "vit-train", "-o", "json"]) == 0
    direct = json.loads(capsys.readouterr().out)["progress"]
    assert set(direct) == set(shown)
    assert {k: v for k, v in direct.items() if k != "time"} == {k: v for k, v in shown.items() if k != "time"}


# ----------------------------------------------------------------------------------- metrics
def test_reconcile_counter_and_histogram_count_each_reconcile(fake) -> None:
    """N reconciles called → counter N by result, histogram count N; a 409 → conflict and a retry."""
    seed_pipeline(fake, pipeline_definition("vit"))
    backend = KubernetesBackend()
    ctl = Controller(backend.api, backend.namespace, ControllerOptions(health_port=None))
    ctl.cache.put_pipeline(record_from_vitjob(fake.get("vitjob.io", "vitjobs", "vit", "default")))
    for obj in fake.list(fake._resource("batch.volcano.sh", "jobs"), "default"):
        ctl.cache.put_job(obj)
    key = ("default", "vit")
    calls = 7
    for _ in range(calls):
        ctl._process(key)
    got = samples(ctl.metrics.exposition()[0].decode())
    assert got[("vitjob_controller_reconciles_total", (("result", "success"),))] == calls
    assert got[("vitjob_controller_reconcile_duration_seconds_count", ())] == calls
    assert got[("vitjob_controller_reconciles_total", (("result", "error"),))] == 0
    assert got[("vitjob_controller_workqueue_retries_total", ())] == 0

    # The job moves on; the status write is refused with 409 (a stale record): conflict, queued again.
    job = fake.set_job_phase("default", "vit-train", "Completed")
    ctl.cache.put_job(job)
    fake.fail("PATCH", "/vitjobs/vit/status$", 409, reason="Conflict")
    ctl._process(key)
    got = samples(ctl.metrics.exposition()[0].decode())
    assert got[("vitjob_controller_reconciles_total", (("result", "conflict"),))] == 1
    assert got[("vitjob_controller_workqueue_retries_total", ())] == 1
    assert got[("vitjob_controller_workqueue_depth", ())] == len(ctl.queue) == 1
    assert got[("vitjob_controller_reconcile_duration_seconds_count", ())] == calls + 1
    # Requests counted by verb and code: what the fake server answered this controller.
    answered = collections.Counter((r.verb, str(r.code)) for r in fake.requests if r.verb != "watch")
    counted = collections.Counter()
    for (name, labels), value in got.items():
        if name == "vitjob_controller_api_requests_total":
            lab = dict(labels)
            counted[(lab["verb"], lab["code"])] += int(value)
    assert counted == answered and counted[("patch", "409")] == 1


def test_metrics_endpoint_phases_leader_and_requests(fake, controllers) -> None:
    for name in ("a", "b", "c"):
        seed_pipeline(fake, pipeline_definition(name, then=()))
    controllers.append(ctl := Running(resync_s=60))
    complete(fake, "a-train")  # a: Completed
    fake.set_job_phase("default", "b-train", "Failed", reason="PodFailed")  # b: Failed; c: Running
    fake.wait_for(lambda: status(fake, "a").get("phase") == "Completed", what="a Completed")
    fake.wait_for(lambda: status(fake, "b").get("phase") == "Failed", what="b Failed")
    handled_so_far(fake, "probe")  # probe: Running, its train stage done, eval created
    vitjobs = fake.list(fake._resource("vitjob.io", "vitjobs"), "default")
    on_server = collections.Counter((o.get("status") or {}).get("phase", "Pending") for o in vitjobs)
    got = scrape(ctl)
    gauge = {dict(k)["phase"]: value for (name, k), value in got.items() if name == "vitjob_vitjobs"}
    phases = ("Pending", "Running", "Completed", "Failed", "Suspended")
    assert gauge == {p: on_server.get(p, 0) for p in phases}
    assert gauge["Running"] == 2 and gauge["Completed"] == 1 and gauge["Failed"] == 1
    assert got[("vitjob_controller_leader", ())] == 1
    reconciles = reconciles_total(got)
    assert reconciles >= 3 and reconciles == got[("vitjob_controller_reconcile_duration_seconds_count", ())]
    complete(fake, "probe-eval")  # one more step: the counter rises
    wait_recorded(fake, "export", "Created", pipeline="probe")
    deadline = time.monotonic() + 10  # the status write is seen before the reconcile that made it ends
    while reconciles_total(scrape(ctl)) <= reconciles:
        assert time.monotonic() < deadline, "the reconcile counter did not rise"
        time.sleep(0.05)
    got = scrape(ctl)  # that reconcile has ended: every request it made is answered and counted
    patches = got[("vitjob_controller_api_requests_total",
                   (("code", "200"), ("resource", "vitjobs/status.vitjob.io"), ("verb", "patch")))]
    assert patches == len([r for r in fake.requests_matching("PATCH", "/status$") if r.code == 200])
    assert got[("vitjob_controller_api_requests_total",
                (("code", "200"), ("resource", "jobs.batch.volcano.sh"), ("verb", "watch")))] >= 1
    ctl.stop()
    other = Controller(KubernetesBackend().api, "default", ControllerOptions(health_port=None))
    assert ctl.controller.metrics.registry is not other.metrics.registry  # one registry per controller
    after = samples(ctl.controller.metrics.exposition()[0].decode())
    assert after[("vitjob_controller_leader", ())] == 0
    assert not [k for k in after if k[0] == "vitjob_vitjobs"]  # not leading: no cache to count
