"""The pipeline controller against the FAKE API server: stage transitions, a failed stage, restarts
between every pair of steps, leader election between two replicas, 200 pipelines at once, a stage
job deleted by hand, and the health endpoint. Job phases are driven through the fake (it runs no
Volcano); assertions are on the requests each client sent and the answers it got. A check that nothing
happened first waits for something countable that shows the controller had its chance (a later
pipeline moving on, more tries for the Lease), never for a fixed time."""

from __future__ import annotations

import itertools
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from kube_testing import fake_cluster, pipeline_definition, seed_pipeline

from vitjob.backends.kubernetes.backend import KubernetesBackend
from vitjob.controller.loop import Controller, ControllerOptions

pytestmark = pytest.mark.timeout(120)

JOBS = "/apis/batch.volcano.sh/v1alpha1/namespaces/default/jobs"
STAGES = ("train", "eval", "export", "infer310")
FAST = {"resync_s": 0.5, "error_backoff_s": 0.05, "max_backoff_s": 0.2}
# Short, but with room for a loaded CI machine: a leader that misses renewals for 1.2 s steps down.
ELECTION = {"lease_duration_s": 2.0, "renew_deadline_s": 1.2, "retry_period_s": 0.2}


@pytest.fixture
def fake(tmp_path, monkeypatch):
    with fake_cluster(tmp_path, monkeypatch) as api:
        yield api


class Running:
    """A controller running in a thread; ``stop`` ends it the way SIGTERM does."""

    def __init__(self, agent: str = "vitjob-test", **options):
        backend = KubernetesBackend()
        backend.api.client.user_agent = agent  # tells replicas apart in the fake's request log
        self.agent = agent
        opts = ControllerOptions(
            health_host="127.0.0.1", health_port=0, identity=agent, **{**FAST, **options}
        )
        self.controller = Controller(backend.api, backend.namespace, opts)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.controller.run, args=(self.stop_event,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "controller did not stop"

    def get(self, path: str) -> tuple[int, str]:
        deadline = time.monotonic() + 5
        while self.controller.health_address is None and time.monotonic() < deadline:
            time.sleep(0.01)
        host, port = self.controller.health_address
        try:
            with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


@pytest.fixture
def controllers() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for ctl in started:
        if ctl.thread.is_alive():
            ctl.stop()


def job(fake, name: str) -> dict | None:
    return fake.get("batch.volcano.sh", "jobs", name, "default")


def status(fake, pipeline: str = "vit") -> dict:
    return fake.get("vitjob.io", "vitjobs", pipeline, "default").get("status") or {}


def states(fake, pipeline: str = "vit") -> dict[str, str]:
    return {e["name"]: e.get("state") for e in status(fake, pipeline).get("stages", [])}


def creates(fake, name: str, agent: str | None = None) -> int:
    return sum(
        1
        for r in fake.requests_matching("POST", JOBS + "$")
        if r.body["metadata"]["name"] == name and (agent is None or r.user_agent == agent)
    )


def wait_recorded(fake, stage: str, state: str, pipeline: str = "vit", timeout: float = 15) -> None:
    fake.wait_for(
        lambda: states(fake, pipeline).get(stage) == state,
        timeout=timeout,
        what=f"{pipeline}: stage {stage} recorded {state}",
    )


def complete(fake, name: str) -> None:
    fake.set_job_phase("default", name, "Running")
    fake.set_job_phase("default", name, "Completed")


def handled_so_far(fake, probe: str) -> None:
    """Return once the controller has handled every event the fake has sent so far.

    A pipeline ``probe`` is seeded now and its training completed; the controller works its queue
    in order, one pipeline at a time, so once ``probe`` has its next stage, every event queued before
    (a status write's own watch event among them) has been reconciled: what a "nothing more happened"
    check waits for instead of a fixed sleep.
    """
    seed_pipeline(fake, pipeline_definition(probe))
    complete(fake, f"{probe}-train")
    wait_recorded(fake, "eval", "Created", pipeline=probe)


WRITES = ("POST", "PUT", "PATCH", "DELETE")


def resource(path: str) -> str:
    """The resource (plural) a request path names: .../leases, .../jobs/vit-eval, .../vitjobs/vit/status."""
    parts = path.split("/")
    index = max(i for i, part in enumerate(parts) if part == "namespaces") + 2
    return parts[index]


def lease(fake) -> dict:
    return fake.get("coordination.k8s.io", "leases", "vitjob-controller", "default")


def lease_reads(fake, agent: str) -> int:
    reads = fake.requests_matching("GET", "/leases/vitjob-controller$")
    return sum(1 for r in reads if r.user_agent == agent)


# ------------------------------------------------------------------------------ transitions
def test_stage_transitions_one_create_and_one_record_per_step(fake, controllers) -> None:
    seed_pipeline(fake, pipeline_definition("vit"))
    controllers.append(ctl := Running())
    for stage, nxt in itertools.pairwise(STAGES):
        complete(fake, f"vit-{stage}")
        wait_recorded(fake, nxt, "Created")
        owner = job(fake, f"vit-{nxt}")["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("VitJob", "vit", True)
    complete(fake, "vit-infer310")
    fake.wait_for(lambda: status(fake)["phase"] == "Completed", what="Completed")
    assert status(fake)["reason"] == "all 4 stages completed (train, eval, export, infer310)"
    assert [creates(fake, f"vit-{s}") for s in STAGES] == [0, 1, 1, 1]  # train: seeded, as submit does
    patches = fake.requests_matching("PATCH", "/vitjobs/vit/status$")
    recorded = [{e["name"]: e.get("state") for e in p.body["status"]["stages"]} for p in patches]
    steps = [b for a, b in itertools.pairwise([{"train": "Created"}, *recorded]) if a != b]
    assert len(steps) == 4  # (train done + eval created) … (infer310 done + Completed); the other
    # writes only follow a job's phase (Pending → Running), which the status shows too
    assert all(p.content_type == "application/merge-patch+json" for p in patches)
    assert not fake.requests_matching("PATCH", "/vitjobs/vit$"), "the spec is never written"
    assert all(p.body["metadata"]["resourceVersion"] for p in patches), "writes must be conditional"
    assert not fake.requests_matching("DELETE") and not fake.requests_matching("PUT", "/jobs/")
    assert ctl.get("/healthz")[0] == 200
    code, text = ctl.get("/readyz")
    assert code == 200 and text.startswith("ready: leader; 1 pipelines tracked")
    assert ctl.get("/metrics")[0] == 200  # tests/test_controller_metrics.py reads it
    assert ctl.get("/nothing") == (404, "not found: use /healthz, /readyz or /metrics\n")


def test_a_failed_stage_stops_the_pipeline_with_its_reason(fake, controllers) -> None:
    seed_pipeline(fake, pipeline_definition("vit"))
    controllers.append(Running())
    complete(fake, "vit-train")
    wait_recorded(fake, "eval", "Created")
    fake.set_job_phase(
        "default", "vit-eval", "Failed", reason="PodFailed", message="pod vit-eval-worker-0 exit 2"
    )
    fake.wait_for(lambda: status(fake)["phase"] == "Failed", what="Failed")
    reason = status(fake)["reason"]
    assert reason.startswith(
        "stage eval failed: job vit-eval ended Failed (PodFailed: pod vit-eval-worker-0 exit 2)"
    )
    handled_so_far(fake, "probe")  # the Failed record's own event among them: nothing more follows
    assert creates(fake, "vit-export") == 0 and job(fake, "vit-export") is None
    assert states(fake)["eval"] == "Failed"
    phases = [p.body["status"].get("phase") for p in fake.requests_matching("PATCH", "/vitjobs/vit/status$")]
    assert phases[-1] == "Failed" and phases.count("Failed") == 1, phases  # written once, the last write


def test_a_training_job_deleted_by_hand_is_reported_not_recreated(fake, controllers) -> None:
    seed_pipeline(fake, pipeline_definition("vit"))
    controllers.append(Running())
    fake.wait_for(lambda: len(fake.requests_matching("GET", JOBS + "$", verb="watch")) > 0, what="watching")
    fake.delete("batch.volcano.sh", "jobs", "vit-train", "default")
    fake.wait_for(lambda: status(fake)["phase"] == "Failed", what="Failed")
    assert "job vit-train was deleted while the pipeline was running" in status(fake)["reason"]
    # The cache said "gone"; the controller asked the API server before concluding so.
    assert fake.requests_matching("GET", JOBS + "/vit-train$")
    handled_so_far(fake, "probe")
    assert creates(fake, "vit-train") == 0 and job(fake, "vit-train") is None
    phases = [p.body["status"].get("phase") for p in fake.requests_matching("PATCH", "/vitjobs/vit/status$")]
    assert phases[-1] == "Failed" and phases.count("Failed") == 1, phases


def _applied_vitjob(fake, name: str, **spec) -> None:
    """A VitJob as `kubectl apply` or `helm install` stores it: spec only, no status, not submitting."""
    body = {"apiVersion": "vitjob.io/v1alpha1", "kind": "VitJob", "metadata": {"name": name}, "spec": spec}
    fake.create("vitjob.io", "vitjobs", body, "default")


def test_a_vitjob_applied_with_kubectl_gets_its_first_stage_from_the_controller(fake, controllers) -> None:
    _applied_vitjob(fake, "vit", hw="cpu", cards=1, stage="train", then=["eval"])
    controllers.append(Running())
    wait_recorded(fake, "train", "Created")
    train = job(fake, "vit-train")
    assert train["metadata"]["labels"]["app.kubernetes.io/part-of"] == "vit"
    assert train["metadata"]["ownerReferences"][0]["kind"] == "VitJob"
    complete(fake, "vit-train")
    wait_recorded(fake, "eval", "Created")
    assert status(fake)["phase"] == "Running" and status(fake)["stage"] == "eval"


def test_a_vitjob_whose_spec_makes_no_valid_job_fails_with_the_spec_s_message(fake, controllers) -> None:
    # The CRD schema checks each field; rules across fields (Ascend card counts) are the spec's.
    _applied_vitjob(fake, "vit", hw="ascend", cards=3)
    controllers.append(Running())
    fake.wait_for(lambda: status(fake).get("phase") == "Failed", what="Failed")
    reason = status(fake)["reason"]
    assert reason.startswith("stage train: job vit-train could not be created: invalid job spec"), reason
    assert "cards" in reason
    assert not fake.requests_matching("POST", JOBS + "$")

    def failed_events() -> list[tuple[str, str]]:
        events = fake.list(fake._resource("", "events"), "default")
        return [(e["type"], e["involvedObject"]["name"]) for e in events if e["reason"] == "Failed"]

    fake.wait_for(lambda: failed_events(), what="the Failed event (written after the status)")
    assert failed_events() == [("Warning", "vit")]


def test_a_vitjob_whose_stages_are_out_of_order_fails_before_any_job(fake, controllers) -> None:
    # infer310 needs export's MINDIR: the CRD allows each stage name, the order is the spec's rule.
    _applied_vitjob(fake, "vit", hw="cpu", cards=1, stage="train", then=["infer310", "export"])
    controllers.append(Running())
    fake.wait_for(lambda: status(fake).get("phase") == "Failed", what="Failed")
    assert "then: stages train → infer310 → export must follow the order" in status(fake)["reason"]
    assert not fake.requests_matching("POST", JOBS + "$")


# ---------------------------------------------------------------------------------- restarts
def test_killed_and_restarted_between_every_pair_of_steps_runs_each_stage_once(fake) -> None:
    seed_pipeline(fake, pipeline_definition("vit"))
    ctl = Running()  # nothing to do while train runs; killed
    fake.wait_for(lambda: ctl.controller.ready()[0], what="synced")
    ctl.stop()
    for stage, nxt in itertools.pairwise(STAGES):
        complete(fake, f"vit-{stage}")  # the step happens while no controller runs
        if nxt == "eval":
            # Killed between creating the job and recording it: the record write keeps failing.
            fake.fail("PATCH", "/vitjobs/vit/status$", 500, times=10_000)
            ctl = Running()
            fake.wait_for(lambda: job(fake, "vit-eval") is not None, what="vit-eval created")
            ctl.stop()
            fake.failures.clear()
            assert "eval" not in states(fake)
        ctl = Running()
        wait_recorded(fake, nxt, "Created")
        ctl.stop()
        idle = Running()  # and once more with nothing to do
        fake.wait_for(lambda: idle.controller.ready()[0], what="synced")  # noqa: B023
        idle.stop()
    complete(fake, "vit-infer310")
    ctl = Running()
    fake.wait_for(lambda: status(fake)["phase"] == "Completed", what="Completed")
    ctl.stop()
    assert [creates(fake, f"vit-{s}") for s in STAGES] == [0, 1, 1, 1]
    names = sorted(j["metadata"]["name"] for j in fake.list(fake._resource("batch.volcano.sh", "jobs"), None))
    assert names == sorted(f"vit-{s}" for s in STAGES)


# ------------------------------------------------------------------------------ leader election
def test_two_replicas_at_once_only_the_leader_writes_and_the_other_takes_over(fake, controllers) -> None:
    seed_pipeline(fake, pipeline_definition("vit"))
    controllers += [Running(f"replica-{x}", leader_elect=True, **ELECTION) for x in "ab"]  # together
    fake.wait_for(
        lambda: lease(fake) is not None and all(lease_reads(fake, c.agent) for c in controllers),
        what="a Lease, and both replicas campaigning",
    )
    first = lease(fake)
    (leader,) = [c for c in controllers if c.agent == first["spec"]["holderIdentity"]]
    (standby,) = [c for c in controllers if c is not leader]
    fake.wait_for(lambda: leader.controller.is_leader, what=f"{leader.agent} leads")
    complete(fake, "vit-train")
    for nxt in STAGES[1:]:
        wait_recorded(fake, nxt, "Created")
        complete(fake, f"vit-{nxt}")
    fake.wait_for(lambda: status(fake).get("phase") == "Completed", what="Completed")
    # The standby went on reading the Lease meanwhile, and does three times more: it had every chance.
    reads = lease_reads(fake, standby.agent)
    fake.wait_for(lambda: lease_reads(fake, standby.agent) >= reads + 3, what="the standby campaigns")

    # Only the leader wrote. The standby's only write can be a Lease create that lost the race (409).
    by_standby = [r for r in fake.requests if r.user_agent == standby.agent]
    wrote = [(r.method, r.path, r.code) for r in by_standby if r.method in WRITES and r.code != 409]
    assert wrote == [], "the standby wrote"
    assert {resource(r.path) for r in by_standby} == {"leases"}, "a standby watches nothing"
    acting = [r for r in fake.requests if r.method in WRITES and resource(r.path) != "leases"]
    assert {r.user_agent for r in acting} == {leader.agent}
    assert [creates(fake, f"vit-{s}", leader.agent) for s in STAGES] == [0, 1, 1, 1]
    assert standby.get("/readyz") == (
        200,
        "ready: standby; 0 pipelines tracked, 0 reconciles, 0 actions, 0 errors\n",
    )
    renewed = lease(fake)
    assert renewed["spec"]["holderIdentity"] == leader.agent and renewed["spec"]["leaseTransitions"] == 0
    assert renewed["spec"]["renewTime"] > first["spec"]["renewTime"]  # the leader renews it

    # The leader crashes (no release): the standby takes over once the Lease expires by its own clock.
    seed_pipeline(fake, pipeline_definition("vit2"))
    leader.controller.elector.release = lambda: None
    crashed = time.monotonic()  # its last renewal was at most one retry period before this
    leader.stop()
    after_crash = len(fake.requests)
    fake.wait_for(lambda: standby.controller.is_leader, timeout=10, what=f"{standby.agent} leads")
    assert time.monotonic() - crashed >= ELECTION["lease_duration_s"] - 2 * ELECTION["retry_period_s"]
    taken = lease(fake)
    assert taken["spec"]["holderIdentity"] == standby.agent, taken["spec"]
    assert taken["spec"]["leaseTransitions"] == 1
    assert taken["spec"]["acquireTime"] > renewed["spec"]["renewTime"]  # acquired anew, after the crash
    complete(fake, "vit2-train")
    wait_recorded(fake, "eval", "Created", pipeline="vit2")
    assert creates(fake, "vit2-eval", standby.agent) == 1 and creates(fake, "vit2-eval") == 1
    with fake.lock:
        later = fake.requests[after_crash:]
    assert not [r for r in later if r.user_agent == leader.agent], "a stopped replica sent requests"


def test_a_leader_that_cannot_renew_stops_acting(fake, controllers) -> None:
    seed_pipeline(fake, pipeline_definition("vit"))
    controllers.append(ctl := Running("replica-a", leader_elect=True, **ELECTION))
    fake.wait_for(lambda: ctl.controller.is_leader, what="leads")
    fake.fail("PUT", "/leases/vitjob-controller$", 500, times=10_000)
    fake.wait_for(lambda: not ctl.controller.is_leader, timeout=10, what="steps down")
    complete(fake, "vit-train")
    # Standing by, it tries three more times to take the Lease back (each answered 500) and acts on none.
    tries = len(fake.requests_matching("PUT", "/leases/vitjob-controller$"))
    fake.wait_for(
        lambda: len(fake.requests_matching("PUT", "/leases/vitjob-controller$")) >= tries + 3,
        timeout=10,
        what="three more tries for the Lease",
    )
    assert job(fake, "vit-eval") is None, "a replica without the lease must not act"
    fake.failures.clear()
    wait_recorded(fake, "eval", "Created")  # it wins the lease back and goes on
    assert creates(fake, "vit-eval") == 1


def test_leader_election_timings_are_checked() -> None:
    from vitjob.errors import UsageError

    with pytest.raises(UsageError, match="retry period < renew deadline < lease duration"):
        ControllerOptions(lease_duration_s=5, renew_deadline_s=10)


# ------------------------------------------------------------------------------------- scale
def test_two_hundred_pipelines_at_once_complete(fake, controllers) -> None:
    count = 200
    definitions = [pipeline_definition(f"p{i}") for i in range(count)]
    fake.validators.clear()  # CRD validation of 800 jobs is tested elsewhere and would dominate here
    for d in definitions:
        seed_pipeline(fake, d)
        complete(fake, f"{d.name}-train")
    stop = threading.Event()

    def volcano() -> None:  # completes every job the controller creates
        seen = 0
        while not stop.is_set():
            with fake.lock:
                new = fake.requests[seen:]
                seen = len(fake.requests)
            for r in new:
                if r.method == "POST" and r.path == JOBS:
                    fake.wait_for(lambda r=r: job(fake, r.body["metadata"]["name"]) is not None, what="job")
                    complete(fake, r.body["metadata"]["name"])
            stop.wait(0.01)

    helper = threading.Thread(target=volcano, daemon=True)
    helper.start()
    started = time.monotonic()
    controllers.append(ctl := Running())
    try:
        fake.wait_for(
            lambda: all(
                status(fake, d.name).get("phase") == "Completed" for d in definitions
            ),
            timeout=90,
            what="200 pipelines Completed",
        )
    finally:
        stop.set()
        helper.join()
    elapsed = time.monotonic() - started
    posts = fake.requests_matching("POST", JOBS + "$")
    assert len(posts) == 3 * count
    assert len({p.body["metadata"]["name"] for p in posts}) == 3 * count, "one create per stage job"
    assert ctl.controller.stats.errors == 0
    print(f"200 pipelines x 3 stage transitions in {elapsed:.1f}s")


# ---------------------------------------------------------------------------------- manifests
def test_rendered_controller_is_valid_and_least_privilege(capsys) -> None:
    import yaml

    from vitjob.cli import main
    from vitjob.render.validate import validate_objects

    assert main(["controller", "--render", "-n", "ml", "--replicas", "2"]) == 0
    objects = list(yaml.safe_load_all(capsys.readouterr().out))
    assert objects[0]["kind"] == "CustomResourceDefinition"  # first: `kubectl apply` needs it first
    assert objects[0]["metadata"]["name"] == "vitjobs.vitjob.io"
    validate_objects(objects)  # kubernetes-validate schemas of the default Kubernetes version
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert kinds == {
        ("CustomResourceDefinition", "vitjobs.vitjob.io"),
        ("ServiceAccount", "vitjob-controller"),
        ("Role", "vitjob-controller"),
        ("Role", "vitjob-controller-leader-election"),
        ("RoleBinding", "vitjob-controller"),
        ("RoleBinding", "vitjob-controller-leader-election"),
        ("Deployment", "vitjob-controller"),
        ("Service", "vitjob-controller"),  # its health port, where /metrics is served
    }
    rules = {
        (o["metadata"]["name"], g, r, tuple(rule.get("resourceNames", ())), tuple(rule["verbs"]))
        for o in objects
        if o["kind"] == "Role"
        for rule in o["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert rules == {
        # the runs; their status only through the subresource; blockOwnerDeletion on stage jobs
        ("vitjob-controller", "vitjob.io", "vitjobs", (), ("get", "list", "watch")),
        ("vitjob-controller", "vitjob.io", "vitjobs/status", (), ("patch",)),
        ("vitjob-controller", "vitjob.io", "vitjobs/finalizers", (), ("update",)),
        ("vitjob-controller", "batch.volcano.sh", "jobs", (), ("get", "list", "watch", "create")),
        ("vitjob-controller", "", "events", (), ("create",)),
        # spec.suspend: Volcano's AbortJob / ResumeJob on the running stage's job
        ("vitjob-controller", "bus.volcano.sh", "commands", (), ("create",)),
        # a train stage with publish_checkpoints: its ServiceAccount, Role and RoleBinding, whose grant
        # (get/patch of rank 0's pod) the controller must hold itself to create (RBAC escalation check)
        ("vitjob-controller", "", "serviceaccounts", (), ("create",)),
        ("vitjob-controller", "rbac.authorization.k8s.io", "roles", (), ("create",)),
        ("vitjob-controller", "rbac.authorization.k8s.io", "rolebindings", (), ("create",)),
        # pods: also list, for a completed stage's outputs (its pod's termination message)
        ("vitjob-controller", "", "pods", (), ("get", "list", "patch")),
        ("vitjob-controller", "", "pods/log", (), ("get",)),  # the train stage's progress
        ("vitjob-controller-leader-election", "coordination.k8s.io", "leases", (), ("create",)),
        (
            "vitjob-controller-leader-election",
            "coordination.k8s.io",
            "leases",
            ("vitjob-controller",),
            ("get", "update"),
        ),
    }
    deploy = next(o for o in objects if o["kind"] == "Deployment")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == [
        "vitjob",
        "controller",
        "--health-port",
        "8080",
        "--progress-interval",
        "30",
        "--namespace",
        "ml",
        "--leader-elect",
    ]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"

    with pytest.raises(SystemExit):  # argparse: one or the other
        main(["controller", "--render", "-A", "-n", "ops"])
    capsys.readouterr()
    render_all = ["controller", "--render", "-A", "--lease-namespace", "ops", "--replicas", "1", "--no-crd"]
    assert main(render_all) == 0
    objects = list(yaml.safe_load_all(capsys.readouterr().out))
    assert "CustomResourceDefinition" not in {o["kind"] for o in objects}
    validate_objects(objects)
    assert {o["metadata"].get("namespace") for o in objects} == {"ops", None}  # cluster roles: none
    assert {o["kind"] for o in objects} >= {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    deploy = next(o for o in objects if o["kind"] == "Deployment")
    assert "--all-namespaces" in deploy["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--leader-elect" not in deploy["spec"]["template"]["spec"]["containers"][0]["command"]


def test_a_job_status_write_that_changes_nothing_reconcile_sees_queues_no_reconcile() -> None:
    """Volcano writes a job's status many times within one phase (pod counts, conditions): only a new
    job, another phase or reason, or an older/newer version that differs queues its pipeline."""
    from vitjob.backends.kubernetes.store import record_from_vitjob
    from vitjob.controller.cache import PipelineCache
    from vitjob.pipeline.define import stage_objects
    from vitjob.render.manifests import render_vitjob

    definition = pipeline_definition("vit")
    vitjob = render_vitjob(name="vit", namespace="default", part_of="vit", spec=definition.spec)
    vitjob["metadata"].update(uid="u1", resourceVersion="1")
    cache = PipelineCache()
    key = cache.put_pipeline(record_from_vitjob(vitjob))
    rendered = stage_objects(record_from_vitjob(vitjob), "train")[-1]

    def version(rv: int, phase: str, running: int = 0) -> dict:
        obj = {**rendered, "metadata": {**rendered["metadata"], "namespace": "default",
                                        "resourceVersion": str(rv)}}
        obj["status"] = {"state": {"phase": phase}, "running": running, "pending": 1 - running}
        return obj

    assert cache.put_job(version(2, "Pending")) == key  # new
    assert cache.put_job(version(3, "Pending")) is None  # the same phase again
    assert cache.put_job(version(4, "Running", running=1)) == key
    assert cache.put_job(version(5, "Running", running=1)) is None
    assert cache.put_job(version(3, "Pending")) is None  # older than the cached one: ignored
    assert cache.job(("default", "vit-train")).phase == "Running"
    assert cache.put_job(version(6, "Completed")) == key
