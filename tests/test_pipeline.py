"""Pipelines: the pure ``reconcile`` (table-driven), ``--then`` parsing, and the loop run from the CLI
(``submit --then``, ``pipeline run --wait``, ``status``) against the FAKE API server, asserting on the
requests the client sent. The same flows on the real control plane (conflict, --replace, cancel, a
stage job deleted by hand, delete, the controller) are in tests/e2e/test_e2e_pipeline.py."""

from __future__ import annotations

import json
import sys
import threading
import time

import pytest
from kube_testing import fake_cluster, pipeline_definition, volcano_job

from vitjob.api.status import JobPhase, PipelinePhase, StageState
from vitjob.backends import get_backend, pipeline_store
from vitjob.cli import main
from vitjob.errors import ConflictError, PreflightError, UsageError
from vitjob.pipeline.define import parse_then
from vitjob.pipeline.model import (
    CreateStage,
    Observed,
    PipelineDefinition,
    PipelineRecord,
    StageJob,
    UpdatePipeline,
)
from vitjob.pipeline.reconcile import reconcile
from vitjob.pipeline.runner import run_pipeline, step

pytestmark = pytest.mark.timeout(120)

STAGES = ("train", "eval", "export", "infer310")
JOBS = "/apis/batch.volcano.sh/v1alpha1/namespaces/default/jobs"
VITJOBS = "/apis/vitjob.io/v1alpha1/namespaces/default/vitjobs"
C, D, F = StageState.CREATED, StageState.COMPLETED, StageState.FAILED


def record(
    phase: PipelinePhase = PipelinePhase.RUNNING,
    *,
    seen: dict[str, str] | None = None,
    submitting: bool = False,
    **progress: StageState,
) -> PipelineRecord:
    return PipelineRecord(
        name="vit",
        namespace="ml",
        part_of="vit",
        stages=STAGES,
        job_names={s: f"vit-{s}" for s in STAGES},
        phase=phase,
        progress=progress,
        job_phases=seen or {},
        submitting=submitting,
    )


def jobs(**phases: str) -> dict[str, StageJob]:
    return {s: StageJob(f"vit-{s}", JobPhase(p), "vit") for s, p in phases.items()}


# ----------------------------------------------------------------------------------- reconcile
@pytest.mark.parametrize(
    ("case", "observed", "expected"),
    [
        (
            "train running, as recorded: nothing to do",
            Observed(record(train=C, seen={"train": "Running"}), jobs(train="Running")),
            [],
        ),
        (
            "train started running: record its job's phase",
            Observed(record(train=C, seen={"train": "Pending"}), jobs(train="Running")),
            [UpdatePipeline({}, job_phases={"train": "Running"})],
        ),
        (
            "train completing (Volcano's step before Completed): no write of its own",
            Observed(record(train=C, seen={"train": "Running"}), jobs(train="Completing")),
            [],
        ),
        (
            "train terminating, never recorded Running: still no write until it ends",
            Observed(record(train=C), jobs(train="Terminating")),
            [],
        ),
        (
            "train completed: create eval and record both in one write",
            Observed(record(train=C, seen={"train": "Running"}), jobs(train="Completed")),
            [
                CreateStage("eval", "vit-eval"),
                UpdatePipeline({"train": D, "eval": C}, job_phases={"train": "Completed"}),
            ],
        ),
        (
            "eval exists but was not recorded (crash after create): adopt it, create nothing",
            Observed(record(train=D, seen={"train": "Completed"}), jobs(train="Completed", eval="Pending")),
            [UpdatePipeline({"eval": C})],  # a job's phase is Pending until recorded otherwise
        ),
        (
            "a completed stage's job may be gone (ttlSecondsAfterFinished)",
            Observed(record(train=D, eval=C, seen={"eval": "Running"}), jobs(eval="Running")),
            [],
        ),
        (
            "Pending (submit still creating train): wait",
            Observed(record(PipelinePhase.PENDING, submitting=True), {}),
            [],
        ),
        (
            "Pending, created by kubectl or helm (nobody submits): create train",
            Observed(record(PipelinePhase.PENDING), {}),
            [CreateStage("train", "vit-train"), UpdatePipeline({"train": C}, PipelinePhase.RUNNING)],
        ),
        (
            "Pending but train exists (submit died before recording): adopt it",
            Observed(record(PipelinePhase.PENDING, submitting=True), jobs(train="Running")),
            [UpdatePipeline({"train": C}, PipelinePhase.RUNNING, job_phases={"train": "Running"})],
        ),
        ("a finished pipeline is left alone", Observed(record(PipelinePhase.FAILED), {}), []),
        (
            "all stages completed",
            Observed(
                record(train=D, eval=D, export=D, infer310=C, seen={"infer310": "Running"}),
                jobs(infer310="Completed"),
            ),
            [
                UpdatePipeline(
                    {"infer310": D},
                    PipelinePhase.COMPLETED,
                    "all 4 stages completed (train, eval, export, infer310)",
                    job_phases={"infer310": "Completed"},
                )
            ],
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_reconcile_table(case: str, observed: Observed, expected: list) -> None:
    assert reconcile(observed) == expected, case
    assert reconcile(observed) == expected, "reconcile must be deterministic"


@pytest.mark.parametrize("phase", ["Failed", "Aborted", "Terminated"])
def test_a_failed_stage_fails_the_pipeline_with_the_jobs_reason_and_starts_nothing(phase: str) -> None:
    failed = {"eval": StageJob("vit-eval", JobPhase(phase), "vit", "PodFailed: exit code 1")}
    (action,) = reconcile(Observed(record(train=D, eval=C), failed))
    assert action.phase == PipelinePhase.FAILED and action.stages == {"eval": F}
    assert f"stage eval failed: job vit-eval ended {phase} (PodFailed: exit code 1)" in action.reason
    assert "vitjob status vit-eval" in action.reason


def test_a_stage_job_deleted_while_running_is_reported_not_recreated() -> None:
    (action,) = reconcile(Observed(record(train=C), {}))
    assert not isinstance(action, CreateStage)
    assert action.phase == PipelinePhase.FAILED and action.stages == {"train": F}
    assert "job vit-train was deleted while the pipeline was running" in action.reason
    assert "--replace" in action.reason


def test_a_same_named_job_of_another_pipeline_is_not_adopted() -> None:
    other = {
        "train": StageJob("vit-train", JobPhase.COMPLETED, "vit"),
        "eval": StageJob("vit-eval", JobPhase.RUNNING, "someone-else"),
    }
    (action,) = reconcile(Observed(record(train=D), other))
    assert action.phase == PipelinePhase.FAILED
    assert "job vit-eval exists but belongs to pipeline someone-else, not vit" in action.reason


def test_reconcile_does_not_mutate_what_it_observed() -> None:
    observed = Observed(record(train=C), jobs(train="Completed"))
    before = (dict(observed.pipeline.progress), dict(observed.jobs))
    reconcile(observed)
    assert (dict(observed.pipeline.progress), dict(observed.jobs)) == before


# ------------------------------------------------------------------------------------ --then
def test_parse_then() -> None:
    assert parse_then("eval, export,infer310", "train") == ("eval", "export", "infer310")
    assert parse_then("infer310", "export") == ("infer310",)
    for bad, words in (
        ("eval,bogus", "unknown: bogus"),
        ("export,eval", "in the order"),
        ("eval,eval", "in the order"),
        ("train", "in the order"),
        ("", "expected stages"),
    ):
        with pytest.raises(UsageError, match=words):
            parse_then(bad, "train")


# -------------------------------------------------------------------------- against the fake
@pytest.fixture
def fake(tmp_path, monkeypatch):
    with fake_cluster(tmp_path, monkeypatch) as api:
        yield api


def creates(fake, name: str) -> int:
    return sum(1 for r in fake.requests_matching("POST", JOBS + "$") if r.body["metadata"]["name"] == name)


def vitjob_object(fake) -> dict:
    return fake.get("vitjob.io", "vitjobs", "vit", "default")


def status(fake) -> dict:
    return (vitjob_object(fake) or {}).get("status") or {}


def states(fake) -> dict[str, str]:
    return {e["name"]: e.get("state") for e in status(fake).get("stages", [])}


def vitjob_events(fake) -> list[tuple[str, str]]:
    events = fake.list(fake._resource("", "events"), "default")
    events.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))  # the order they were written
    return [(e["type"], e["reason"]) for e in events if e["involvedObject"]["kind"] == "VitJob"]


SUBMIT = ["submit", "--name", "vit", "--hw", "cpu", "--cards", "2", "--then", "eval,export,infer310"]


def test_submit_then_stores_a_vitjob_and_starts_the_first_stage(fake, capsys) -> None:
    assert main(SUBMIT) == 0
    out = capsys.readouterr().out
    assert "submitted pipeline vit in namespace default: train → eval → export → infer310" in out
    vj = vitjob_object(fake)
    assert vj["metadata"]["labels"]["app.kubernetes.io/component"] == "pipeline"
    assert "ownerReferences" not in vj["metadata"]  # nothing may delete it before the pipeline ends
    spec = vj["spec"]
    assert (spec["hw"], spec["cards"], spec["stage"], spec["then"]) == ("cpu", 2, "train", list(STAGES[1:]))
    assert "name" not in spec and "namespace" not in spec  # they are the VitJob's metadata
    st = status(fake)
    assert (st["phase"], st["stage"], st["reason"]) == ("Running", "train", "")
    assert [(e["name"], e["job"], e["state"]) for e in st["stages"]] == [("train", "vit-train", "Created")]
    assert {x["type"]: x["status"] for x in st["conditions"]} == {
        "Running": "True",
        "Completed": "False",
        "Failed": "False",
        "Suspended": "False",
    }
    train = fake.get("batch.volcano.sh", "jobs", "vit-train", "default")
    assert train["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "vitjob.io/v1alpha1",
            "kind": "VitJob",
            "name": "vit",
            "uid": vj["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert [creates(fake, f"vit-{s}") for s in STAGES] == [1, 0, 0, 0]
    # Created (marked as being submitted) → the job → Running through the status subresource only,
    # conditional on the resourceVersion read (so a controller never races it).
    writes = [r for r in fake.requests if "/vitjobs" in r.path and r.method in ("POST", "PATCH", "PUT")]
    written = [(r.method, r.path.rsplit("/", 1)[-1]) for r in writes]
    assert written == [("POST", "vitjobs"), ("PATCH", "status")]
    assert writes[0].body["metadata"]["annotations"] == {"vitjob.io/submitting": "true"}
    assert writes[1].body["metadata"]["resourceVersion"]
    assert vitjob_events(fake) == [("Normal", "StageCreated")]

    assert main(["status", "vit"]) == 0
    out = capsys.readouterr().out
    assert "pipeline: vit" in out and "phase:    Running" in out
    assert "train     vit-train     Pending" in out and "eval      vit-eval      not started" in out


def test_submit_then_without_the_vitjob_crd_says_how_to_install_it(fake, capsys) -> None:
    fake.delete("apiextensions.k8s.io", "customresourcedefinitions", "vitjobs.vitjob.io")
    assert main(SUBMIT) == 1
    err = capsys.readouterr().err
    assert "does not serve VitJobs (vitjobs.vitjob.io)" in err and "vitjob controller --render" in err
    assert fake.get("batch.volcano.sh", "jobs", "vit-train", "default") is None
    # a single stage needs no CRD
    assert main(SUBMIT[:-2]) == 0
    assert fake.get("batch.volcano.sh", "jobs", "vit-train", "default") is not None


def test_a_failed_first_submission_leaves_no_pipeline_behind(fake) -> None:
    store = pipeline_store(get_backend("kubernetes"))
    with pytest.raises(PreflightError, match="queue 'nope' does not exist"):
        store.create_pipeline(pipeline_definition("vit", queue="nope"))
    assert vitjob_object(fake) is None


def _complete_jobs_as_they_appear(fake, stop: threading.Event, fail: dict[str, str]) -> None:
    """A stand-in for Volcano: every new vit job runs, then Completes (or Fails, for ``fail``)."""
    seen: set[str] = set()
    while not stop.is_set():
        for job in fake.list(fake._resource("batch.volcano.sh", "jobs"), "default"):
            name = job["metadata"]["name"]
            if name not in seen:
                seen.add(name)
                fake.set_job_phase("default", name, "Running")
                fake.set_job_phase(
                    "default",
                    name,
                    fail.get(name, "Completed"),
                    reason="PodFailed" if name in fail else "",
                    message="exit code 3",
                )
        stop.wait(0.02)


@pytest.mark.parametrize("failing", [None, "vit-eval"])
def test_pipeline_run_wait_drives_every_stage_once(fake, capsys, failing) -> None:
    assert main(SUBMIT) == 0
    capsys.readouterr()
    stop = threading.Event()
    volcano = threading.Thread(
        target=_complete_jobs_as_they_appear, args=(fake, stop, {failing: "Failed"} if failing else {})
    )
    volcano.start()
    try:
        code = main(["pipeline", "run", "vit", "--wait", "--poll", "0.05", "--timeout", "60"])
    finally:
        stop.set()
        volcano.join()
    out = capsys.readouterr().out
    if failing is None:
        assert code == 0
        assert [creates(fake, f"vit-{s}") for s in STAGES] == [1, 1, 1, 1]
        st = status(fake)
        assert (st["phase"], st["stage"]) == ("Completed", "infer310")
        assert [(e["name"], e["state"], e["phase"]) for e in st["stages"]] == [
            (stage, "Completed", "Completed") for stage in STAGES
        ]
        assert all(e["startTime"] <= e["completionTime"] for e in st["stages"])
        assert "pipeline vit: stage infer310 Completed" in out and "phase:    Completed" in out
        assert vitjob_events(fake)[-1] == ("Normal", "Completed")
        # each later stage is what `vitjob render` gives for that stage, owned by the VitJob
        from vitjob.api.spec import JobSpec
        from vitjob.render.manifests import render_objects

        posts = fake.requests_matching("POST", JOBS + "$")
        [posted] = [r.body for r in posts if r.body["metadata"]["name"] == "vit-eval"]
        spec = JobSpec(name="vit", hw="cpu", cards=2, stage="eval", namespace="default")
        straight = render_objects(spec)[-1]
        assert posted["spec"] == straight["spec"]
        assert posted["metadata"]["labels"] == straight["metadata"]["labels"]
    else:
        assert code == 1
        assert [creates(fake, f"vit-{s}") for s in STAGES] == [1, 1, 0, 0]
        st = status(fake)
        failed = "stage eval failed: job vit-eval ended Failed (PodFailed: exit code 3)"
        assert st["reason"].startswith(failed)
        assert (st["phase"], st["stage"]) == ("Failed", "eval")
        assert {x["type"]: x["status"] for x in st["conditions"]}["Failed"] == "True"
        assert st["stages"][1]["reason"] == st["reason"]
        assert vitjob_events(fake)[-1] == ("Warning", "Failed")
        assert "phase:    Failed" in out and "export    vit-export    not started" in out


def test_pipeline_status_json_shows_each_stage(fake, capsys) -> None:
    assert main(SUBMIT) == 0
    fake.set_job_phase("default", "vit-train", "Completed")
    step(pipeline_store(get_backend("kubernetes")), "vit")
    capsys.readouterr()
    assert main(["pipeline", "status", "vit", "-o", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["phase"] == "Running"
    assert shown["stages"] == [  # the fake's train pod left no outputs line: {} recorded
        {"stage": "train", "job": "vit-train", "phase": "Completed", "attempt": 1, "outputs": {}},
        {"stage": "eval", "job": "vit-eval", "phase": "Pending", "attempt": 1},
        {"stage": "export", "job": "vit-export", "phase": "not started", "attempt": 1},
        {"stage": "infer310", "job": "vit-infer310", "phase": "not started", "attempt": 1},
    ]
    assert (shown["gates"], shown["retries"]) == ([], 0)


def test_a_stage_the_cluster_refuses_fails_the_pipeline_with_the_cluster_message(fake) -> None:
    store = pipeline_store(get_backend("kubernetes"))
    fake.add_queue("q1")
    store.create_pipeline(pipeline_definition("vit", queue="q1"))
    fake.set_job_phase("default", "vit-train", "Completed")
    # Volcano's validating webhook refusing the next stage's job, as the real API server relays it
    # (400, the webhook's message: seen in tests/e2e); a real server would need the queue deleted
    # between two reconcile steps, which the fake cannot order otherwise.
    fake.fail(
        "POST",
        r"/jobs$",
        400,
        times=5,
        message='admission webhook "validatejob.volcano.sh" denied the request: unable to find job queue: q1',
    )
    result = step(store, "vit")
    assert result.phase == PipelinePhase.FAILED
    assert result.reason.startswith("stage eval: job vit-eval could not be created: the cluster refused")
    assert "unable to find job queue: q1" in result.reason
    assert step(store, "vit").phase == PipelinePhase.FAILED  # and it stays so, creating nothing more
    assert creates(fake, "vit-eval") == 1


def test_a_stale_record_is_read_again_not_overwritten(fake) -> None:
    store = pipeline_store(get_backend("kubernetes"))
    store.create_pipeline(pipeline_definition("vit"))
    stale = store.get_pipeline("vit")
    fake.update("vitjob.io", "vitjobs", "vit", "default", lambda o: o["status"].update({"reason": "touched"}))
    with pytest.raises(ConflictError):
        store.update_pipeline(stale, UpdatePipeline({"train": D}))
    assert states(fake) == {"train": "Created"} and status(fake)["reason"] == "touched"


# ------------------------------------------------------------------------------- cancel and delete
COMMANDS = "/apis/bus.volcano.sh/v1alpha1/namespaces/default/commands"


def test_pipeline_cancel_stops_the_chain_and_aborts_the_running_stage(fake, capsys) -> None:
    assert main(SUBMIT) == 0
    fake.set_job_phase("default", "vit-train", "Completed")
    step(pipeline_store(get_backend("kubernetes")), "vit")  # eval is created
    fake.set_job_phase("default", "vit-eval", "Running")
    capsys.readouterr()
    assert main(["pipeline", "cancel", "vit"]) == 0
    assert "cancelled pipeline vit; asked to abort vit-eval" in capsys.readouterr().out
    assert status(fake)["phase"] == "Failed"
    assert status(fake)["reason"].startswith("cancelled with `vitjob pipeline cancel`")
    [abort] = fake.requests_matching("POST", COMMANDS + "$")
    assert abort.body["action"] == "AbortJob" and abort.body["target"]["name"] == "vit-eval"
    # the finished train job is not aborted, and nothing starts after the cancel
    fake.set_job_phase("default", "vit-eval", "Completed")
    assert main(["pipeline", "run", "vit", "--wait", "--poll", "0.05", "--timeout", "5"]) == 1
    assert creates(fake, "vit-export") == 0
    # cancelling again finds nothing running
    capsys.readouterr()
    assert main(["pipeline", "cancel", "vit"]) == 0
    assert "no stage job was running" in capsys.readouterr().out
    assert len(fake.requests_matching("POST", COMMANDS + "$")) == 1


def test_pipeline_delete_removes_its_jobs_and_record_but_not_a_foreign_job(fake, capsys) -> None:
    assert main(SUBMIT) == 0
    fake.set_job_phase("default", "vit-train", "Completed")
    step(pipeline_store(get_backend("kubernetes")), "vit")
    fake.set_job_phase("default", "vit-eval", "Running")
    capsys.readouterr()
    assert main(["pipeline", "delete", "vit"]) == 0
    assert "deleted pipeline vit and its jobs vit-train, vit-eval" in capsys.readouterr().out
    assert fake.get("batch.volcano.sh", "jobs", "vit-train", "default") is None
    assert fake.get("batch.volcano.sh", "jobs", "vit-eval", "default") is None
    assert vitjob_object(fake) is None
    assert fake.requests_matching("POST", COMMANDS + "$")  # the running stage was aborted first
    assert main(["pipeline", "delete", "vit"]) == 1
    assert "pipeline 'vit' not found" in capsys.readouterr().err


def _sleeper_stage(record: PipelineRecord, stage: str) -> list[dict]:
    """Stage objects of a two-stage pipeline whose train stage sleeps (a real process, as long as the
    spec's ``epochs`` says in seconds) and whose eval stage prints: rendered from the record when the
    stage starts, as ``stage_objects`` does, but cheap."""
    code = {"train": f"import time; time.sleep({record.spec['epochs']})", "eval": "print('eval ran')"}[stage]
    job = volcano_job(record.job_names[stage], replicas=1, cards=0, hw="cpu", stage=stage)
    job["metadata"]["labels"]["app.kubernetes.io/part-of"] = record.part_of
    job["spec"]["maxRetry"] = 0
    job["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["command"] = [sys.executable, "-c", code]
    return [job]


def _sleeper_definition(name: str, seconds: float) -> PipelineDefinition:
    return PipelineDefinition(name, "", name, {"stage": "train", "then": ["eval"], "epochs": seconds})


def test_local_pipeline_cancel_and_delete_from_another_command(tmp_path, capsys) -> None:
    from vitjob.backends.local.backend import LocalBackend
    from vitjob.backends.local.store import LocalPipelineStore

    root = tmp_path / "local"
    backend = LocalBackend(local_root=root, stream=False, poll_s=0.05)
    result: dict[str, PipelineRecord] = {}

    def foreground() -> None:  # what `vitjob submit --backend local --then …` does
        store = LocalPipelineStore(backend, render_stage=_sleeper_stage)
        store.create_pipeline(_sleeper_definition("lp", 60))
        result["record"] = run_pipeline(store, "lp", poll_s=0.05)

    runner = threading.Thread(target=foreground)
    runner.start()
    state = root / "jobs" / "lp-train" / "state.json"
    deadline = time.monotonic() + 30
    while not (state.is_file() and json.loads(state.read_text())["phase"] == "Running"):
        assert time.monotonic() < deadline, "the train stage did not start"
        time.sleep(0.05)
    local = ["--backend", "local", "--local-root", str(root)]
    started = time.monotonic()
    assert main(["pipeline", "cancel", "lp", *local]) == 0
    assert "cancelled pipeline lp; asked to abort lp-train" in capsys.readouterr().out
    runner.join(30)
    assert not runner.is_alive() and time.monotonic() - started < 20  # not the 60 s sleep
    record = result["record"]
    assert record.phase == PipelinePhase.FAILED and record.reason.startswith("cancelled with")
    assert backend.status("lp-train").phase == JobPhase.ABORTED
    assert not (root / "jobs" / "lp-eval").exists()  # the next stage never started

    assert main(["pipeline", "delete", "lp", *local]) == 0
    assert "deleted pipeline lp and its jobs lp-train" in capsys.readouterr().out
    assert not (root / "jobs" / "lp-train").exists() and not (root / "pipelines" / "lp.json").exists()
    assert main(["pipeline", "status", "lp", *local]) == 1
    assert "no local pipeline 'lp'" in capsys.readouterr().err
