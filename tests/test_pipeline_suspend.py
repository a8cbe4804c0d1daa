"""spec.suspend of a pipeline (issue 22): the pure reconcile step's actions, and the stored status.

Each case is a state the controller can find after any crash, so the actions must be right from the
observed state alone: abort the running stage's job once, hold the run while suspended (its job's
Aborted phase is no failure), resume that job once, and run on only after Volcano has restarted it.
"""

from __future__ import annotations

from typing import Any

from test_pipeline_retry import C, D, job, record

from vitjob.api.status import JobPhase, PipelinePhase
from vitjob.backends.kubernetes.store import event_for, status_after
from vitjob.pipeline.model import CommandStage, CreateStage, Observed, UpdatePipeline
from vitjob.pipeline.reconcile import RESUMING, reconcile


def observed(rec: Any, **jobs: str) -> Observed:
    return Observed(rec, {s: job(s, p) for s, p in jobs.items()}, 1000.0)


def test_suspend_aborts_the_running_stage_once_and_holds_the_run() -> None:
    running = record(spec={"suspend": True}, train=D, eval=C)
    actions = reconcile(observed(running, train="Completed", eval="Running"))
    assert actions[0] == CommandStage("eval", "vit-eval", "AbortJob")
    (update,) = actions[1:]
    assert update.phase == PipelinePhase.SUSPENDED and "job vit-eval aborted" in (update.reason or "")
    suspended = record(PipelinePhase.SUSPENDED, spec={"suspend": True}, train=D, eval=C)
    suspended = record_with_reason(suspended, update.reason)
    # asked once: while Volcano aborts the job (still Running, then Aborting, Aborted) nothing more
    for phase in ("Running", "Aborting", "Aborted"):
        assert reconcile(observed(suspended, train="Completed", eval=phase)) == [], phase


def test_a_suspended_run_starts_no_next_stage() -> None:
    between = record(spec={"suspend": True}, train=D)  # train done, eval not created yet
    assert reconcile(observed(between, train="Completed")) == [
        UpdatePipeline(phase=PipelinePhase.SUSPENDED, reason="suspended (spec.suspend): no stage job runs")
    ]
    held = record(PipelinePhase.SUSPENDED, spec={"suspend": True}, train=D)
    assert reconcile(observed(held, train="Completed")) == []
    # resumed: the next stage is created as usual
    resumed = record(PipelinePhase.SUSPENDED, spec={"suspend": False}, train=D)
    (update,) = reconcile(observed(resumed, train="Completed"))
    assert update.phase == PipelinePhase.RUNNING
    running = record(spec={"suspend": False}, train=D)
    assert any(isinstance(a, CreateStage) for a in reconcile(observed(running, train="Completed")))


def test_resume_restarts_the_aborted_job_once_and_runs_on_after_volcano_restarted_it() -> None:
    suspended = record(PipelinePhase.SUSPENDED, spec={"suspend": False}, train=C)
    assert reconcile(observed(suspended, train="Aborted")) == [
        CommandStage("train", "vit-train", "ResumeJob"),
        UpdatePipeline(reason=RESUMING),
    ]
    resuming = record_with_reason(suspended, RESUMING)
    assert reconcile(observed(resuming, train="Aborted")) == []  # asked already: the abort is no failure
    for phase in ("Restarting", "Pending", "Running"):
        (update,) = reconcile(observed(resuming, train=phase))
        assert update.phase == PipelinePhase.RUNNING, phase


def test_suspend_again_while_resuming_aborts_again() -> None:
    resuming = record_with_reason(record(PipelinePhase.SUSPENDED, spec={"suspend": True}, train=C), RESUMING)
    actions = reconcile(observed(resuming, train="Restarting"))
    assert actions[0] == CommandStage("train", "vit-train", "AbortJob")


def test_without_suspend_an_aborted_stage_still_fails_the_run() -> None:
    cancelled = record(train=C)
    (update,) = reconcile(observed(cancelled, train="Aborted"))
    assert update.phase == PipelinePhase.FAILED


def test_the_stored_status_has_a_suspended_condition_and_events() -> None:
    running = record(train=C)
    update = UpdatePipeline(phase=PipelinePhase.SUSPENDED, reason="suspended (spec.suspend): x")
    status = status_after(running, update, "2026-12-06T08:00:00Z")
    assert status["phase"] == "Suspended"
    conditions = {x["type"]: x["status"] for x in status["conditions"]}
    assert conditions == {"Running": "False", "Completed": "False", "Failed": "False", "Suspended": "True"}
    assert event_for(running, update) == ("Normal", "Suspended", "suspended (spec.suspend): x")
    suspended = record(PipelinePhase.SUSPENDED, train=C)
    back = UpdatePipeline(phase=PipelinePhase.RUNNING, reason="resumed")
    assert event_for(suspended, back) == ("Normal", "Resumed", "resumed")
    assert JobPhase.ABORTED.is_terminal  # why the pipeline must not read a suspended stage's job alone


def record_with_reason(rec: Any, reason: str | None) -> Any:
    import dataclasses

    return dataclasses.replace(rec, reason=reason or "")
