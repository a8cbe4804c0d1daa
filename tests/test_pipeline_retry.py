"""Retry, stage outputs and gates (issue 23): the pure ``reconcile`` on retry requests, automatic stage
retries with backoff, outputs recorded when a stage completes and gates on them; the gate grammar and
its meaning check; the outputs line a stage writes; how the VitJob status keeps every attempt. The
same flows on the real control plane: tests/e2e/test_e2e_pipeline_retry.py; with real MindSpore on the
local backend: tests/test_local_pipeline_retry.py."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kube_testing import volcano_job

from vitjob import constants as c
from vitjob.api.schema import crd_schema
from vitjob.api.status import JobPhase, PipelinePhase, StageState
from vitjob.backends.kubernetes.store import outputs_from_pods, record_from_vitjob, status_after
from vitjob.errors import SpecError, UsageError
from vitjob.outputs import GATE_PATTERN, gate_problems, parse, parse_gate, report
from vitjob.pipeline.define import stage_spec
from vitjob.pipeline.model import (
    CreateStage,
    Observed,
    PipelineDefinition,
    PipelineRecord,
    StageJob,
    UpdatePipeline,
    job_name,
)
from vitjob.pipeline.reconcile import reconcile, retry_pending
from vitjob.pipeline.runner import retry_pipeline, run_pipeline

STAGES = ("train", "eval", "export")
C, D, F = StageState.CREATED, StageState.COMPLETED, StageState.FAILED


def record(
    phase: PipelinePhase = PipelinePhase.RUNNING,
    *,
    spec: dict[str, Any] | None = None,
    attempts: dict[str, int] | None = None,
    outputs: dict[str, dict[str, Any]] | None = None,
    retries: int = 0,
    auto: dict[str, int] | None = None,
    ended: dict[str, float] | None = None,
    seen: dict[str, str] | None = None,
    **progress: StageState,
) -> PipelineRecord:
    attempts = attempts or {}
    return PipelineRecord(
        name="vit",
        namespace="ml",
        part_of="vit",
        stages=STAGES,
        job_names={s: job_name("vit", s, attempts.get(s, 1)) for s in STAGES},
        phase=phase,
        progress=progress,
        spec={"hw": "cpu", "then": ["eval", "export"], **(spec or {})},
        attempts=attempts,
        outputs=outputs or {},
        retries=retries,
        auto_retries=auto or {},
        ended_at=ended or {},
        job_phases=seen or {},
    )


def job(stage: str, phase: str, attempt: int = 1, outputs: dict[str, Any] | None = None) -> StageJob:
    return StageJob(job_name("vit", stage, attempt), JobPhase(phase), "vit", outputs=outputs)


# --------------------------------------------------------------------------------------- retry
def test_a_retry_reruns_the_failed_stage_as_a_new_job_and_not_the_completed_ones() -> None:
    failed = record(PipelinePhase.FAILED, spec={"retry": 1}, train=D, eval=F)
    assert retry_pending(failed)
    (update,) = reconcile(
        Observed(failed, {"train": job("train", "Completed"), "eval": job("eval", "Failed")})
    )
    assert update == UpdatePipeline(
        phase=PipelinePhase.RUNNING,
        reason="retry 1: stage eval runs again as job vit-eval-r2 (attempt 2)",
        attempts={"eval": 2},
        retries=1,
        auto_retries={"eval": 0},
    )
    # as a store records it: eval's state cleared, its job name the new attempt's
    retried = record(spec={"retry": 1}, attempts={"eval": 2}, retries=1, seen={"train": "Completed"}, train=D)
    assert not retry_pending(retried)
    actions = reconcile(Observed(retried, {"train": job("train", "Completed")}))
    assert actions == [CreateStage("eval", "vit-eval-r2"), UpdatePipeline({"eval": C})]
    # the new attempt completes: the chain goes on
    running = record(
        spec={"retry": 1}, attempts={"eval": 2}, retries=1, seen={"train": "Completed"}, train=D, eval=C
    )
    actions = reconcile(
        Observed(running, {"train": job("train", "Completed"), "eval": job("eval", "Completed", 2)})
    )
    assert actions[0] == CreateStage("export", "vit-export")


def test_a_retry_after_a_cancel_reruns_the_aborted_stage() -> None:
    cancelled = record(PipelinePhase.FAILED, spec={"retry": 1}, train=C)  # cancel leaves it Created
    (update,) = reconcile(Observed(cancelled, {"train": job("train", "Aborted")}))
    assert update.attempts == {"train": 2} and update.phase == PipelinePhase.RUNNING


def test_a_retry_already_carried_out_does_nothing_and_one_asked_while_running_is_only_counted() -> None:
    done = record(PipelinePhase.FAILED, spec={"retry": 2}, retries=2, train=D, eval=F)
    assert reconcile(Observed(done, {})) == []
    running = record(spec={"retry": 1}, train=C)
    assert reconcile(Observed(running, {"train": job("train", "Running")})) == [UpdatePipeline(retries=1)]
    completed = record(PipelinePhase.COMPLETED, spec={"retry": 1}, train=D, eval=D, export=D)
    assert reconcile(Observed(completed, {})) == [UpdatePipeline(retries=1)]


class MemoryStore:
    """A ``PipelineStore`` holding one record in memory, for ``retry_pipeline``'s checks."""

    def __init__(self, rec: PipelineRecord) -> None:
        self.rec = rec
        self.specs: list[dict[str, Any]] = []

    def get_pipeline(self, name: str) -> PipelineRecord:
        return self.rec

    def update_spec(self, pipeline: PipelineRecord, spec: dict[str, Any]) -> PipelineRecord:
        self.specs.append(dict(spec))
        return pipeline


def test_retry_pipeline_asks_once_for_a_failed_pipeline_only() -> None:
    store = MemoryStore(record(PipelinePhase.FAILED, retries=1, spec={"retry": 1}, train=D, eval=F))
    retry_pipeline(store, "vit", gates=["eval.accuracy>=0.5"])  # type: ignore[arg-type]
    assert store.specs[-1]["retry"] == 2 and store.specs[-1]["gates"] == ["eval.accuracy>=0.5"]
    store.rec = record(retries=0, train=C)
    with pytest.raises(UsageError, match="is Running; only a Failed pipeline can be retried"):
        retry_pipeline(store, "vit")  # type: ignore[arg-type]
    store.rec = record(PipelinePhase.FAILED, spec={"retry": 1}, train=D, eval=F)
    with pytest.raises(UsageError, match="retry 1 was asked for already"):
        retry_pipeline(store, "vit")  # type: ignore[arg-type]
    store.rec = record(PipelinePhase.FAILED, train=D, eval=F)
    with pytest.raises(SpecError, match=r"stage eval has no numeric output 'acc'.*it reports accuracy"):
        retry_pipeline(store, "vit", gates=["eval.acc>=0.5"])  # type: ignore[arg-type]


# --------------------------------------------------------------------------------- auto retries
def test_automatic_stage_retries_wait_their_backoff_then_give_up() -> None:
    spec = {"stage_retries": 2, "stage_retry_backoff_s": 10}
    failed_job = {"train": job("train", "Failed")}
    (first,) = reconcile(Observed(record(spec=spec, train=C), failed_job, now=100.0))
    assert first.stages == {"train": F} and first.phase is None  # the pipeline keeps running
    assert "automatic retry 1 of 2 follows" in (first.reason or "")
    waiting = record(spec=spec, ended={"train": 100.0}, seen={"train": "Failed"}, train=F)
    assert reconcile(Observed(waiting, failed_job, now=109.0)) == []  # backoff 10 s
    (retry,) = reconcile(Observed(waiting, failed_job, now=110.5))
    assert retry.attempts == {"train": 2} and retry.auto_retries == {"train": 1}
    # the second retry waits twice as long
    second = record(
        spec=spec,
        attempts={"train": 2},
        auto={"train": 1},
        ended={"train": 200.0},
        seen={"train": "Failed"},
        train=F,
    )
    failed2 = {"train": job("train", "Failed", 2)}
    assert reconcile(Observed(second, failed2, now=219.0)) == []
    assert reconcile(Observed(second, failed2, now=220.5))[0].attempts == {"train": 3}
    # none left: the pipeline fails with the job's reason
    spent = record(spec=spec, attempts={"train": 3}, auto={"train": 2}, train=C)
    (end,) = reconcile(Observed(spent, {"train": job("train", "Failed", 3)}, now=300.0))
    assert end.phase == PipelinePhase.FAILED and "job vit-train-r3 ended Failed" in (end.reason or "")


# ------------------------------------------------------------------------------ outputs, gates
def test_a_completed_stage_records_its_outputs() -> None:
    out = {"accuracy": 0.93, "top1_correct": 93, "samples": 100}
    rec = record(seen={"train": "Completed"}, train=D, eval=C)
    actions = reconcile(
        Observed(rec, {"train": job("train", "Completed"), "eval": job("eval", "Completed", 1, out)})
    )
    assert actions == [
        CreateStage("export", "vit-export"),
        UpdatePipeline({"eval": D, "export": C}, job_phases={"eval": "Completed"}, outputs={"eval": out}),
    ]


@pytest.mark.parametrize(
    ("gate", "measured", "reason"),
    [
        ("eval.accuracy>=0.95", 0.91, "gate eval.accuracy>=0.95 not met: 0.91"),
        ("eval.accuracy >= 0.9", 0.91, None),
        ("eval.samples==100", 100, None),
        ("eval.samples!=100", 100, "gate eval.samples!=100 not met: 100"),
        ("eval.top1_correct>95", 91, "gate eval.top1_correct>95 not met: 91"),
        ("eval.accuracy<0.5", 0.91, "gate eval.accuracy<0.5 not met: 0.91"),
        ("eval.accuracy<=1", 0.91, None),
    ],
)
def test_a_stage_starts_only_when_the_gates_on_earlier_outputs_hold(gate, measured, reason) -> None:
    key = gate.split(".")[1].split(">")[0].split("<")[0].split("=")[0].split("!")[0].strip()
    out = {"accuracy": 0.91, "top1_correct": 91, "samples": 100, key: measured}
    rec = record(spec={"gates": [gate]}, train=D, eval=C)
    actions = reconcile(Observed(rec, {"eval": job("eval", "Completed", 1, out)}))
    if reason is None:
        assert actions[0] == CreateStage("export", "vit-export")
        return
    (update,) = actions  # no CreateStage
    assert update.phase == PipelinePhase.FAILED and update.reason.startswith(reason + ";"), update.reason
    assert update.stages == {"eval": D} and update.outputs == {"eval": out}


def test_gates_on_missing_outputs_fail_and_a_gate_on_the_last_stage_holds_back_completion() -> None:
    rec = record(spec={"gates": ["train.test_accuracy>=0.5"]}, train=C)
    (update,) = reconcile(Observed(rec, {"train": job("train", "Completed", 1, {})}))
    assert update.reason.startswith("gate train.test_accuracy>=0.5 not met: stage train reported no outputs")
    rec = record(spec={"gates": ["train.test_accuracy>=0.5"]}, train=C)
    (update,) = reconcile(Observed(rec, {"train": job("train", "Completed", 1, {"test_accuracy": None})}))
    assert "stage train reported no test_accuracy" in update.reason
    last = record(spec={"gates": ["export.mindir_bytes>1000"]}, train=D, eval=D, export=C)
    (update,) = reconcile(Observed(last, {"export": job("export", "Completed", 1, {"mindir_bytes": 10})}))
    assert update.phase == PipelinePhase.FAILED and "not met: 10" in update.reason


def test_a_retry_after_a_gate_starts_the_held_stage_when_the_changed_gate_holds() -> None:
    out = {"eval": {"accuracy": 0.91}}
    held = record(
        PipelinePhase.FAILED, spec={"retry": 1, "gates": ["eval.accuracy>=0.9"]}, outputs=out, train=D, eval=D
    )
    (update,) = reconcile(Observed(held, {}))
    assert update.attempts == {} and update.reason == "retry 1: stage export starts as job vit-export"
    after = record(
        spec={"retry": 1, "gates": ["eval.accuracy>=0.9"]}, outputs=out, retries=1, train=D, eval=D
    )
    assert reconcile(Observed(after, {}))[0] == CreateStage("export", "vit-export")
    still = record(
        spec={"retry": 1, "gates": ["eval.accuracy>=0.95"]}, outputs=out, retries=1, train=D, eval=D
    )
    assert reconcile(Observed(still, {}))[0].phase == PipelinePhase.FAILED


def test_gate_syntax_and_meaning_errors_name_what_is_valid() -> None:
    assert parse_gate("eval.accuracy>=0.95").value == 0.95
    for bad in ("eval.accuracy=>0.9", "eval.accuracy", "accuracy>=0.9", "eval.accuracy>=high", "x.y>1"):
        with pytest.raises(ValueError, match=r"is not STAGE\.OUTPUT OP NUMBER"):
            parse_gate(bad)
        assert not re.match(GATE_PATTERN, bad), bad
    for good in ("eval.accuracy>=0.95", "infer310.mean_ms<12.5", "train.best_step > 10", "eval.samples==1e4"):
        assert re.match(GATE_PATTERN, good), good
    problems = gate_problems(["infer310.accuracy>=0.9", "eval.acc>=1", "eval.accuracy>0"], ("train", "eval"))
    assert problems == [
        "gates: 'infer310.accuracy>=0.9' tests stage infer310, which this pipeline does not run "
        "(its stages: train, eval)",
        "gates: 'eval.acc>=1': stage eval has no numeric output 'acc' (it reports accuracy, top1_correct, "
        "samples)",
    ]
    with pytest.raises(SpecError, match="tests stage infer310, which this pipeline does not run"):
        stage_spec({"hw": "cpu", "then": ["eval"], "gates": ["infer310.accuracy>=0.9"]}, "v", "ml", "eval")
    # the CRD checks the syntax with the same pattern
    gates = crd_schema()["properties"]["spec"]["properties"]["gates"]
    assert gates["items"]["pattern"] == GATE_PATTERN


def test_submit_rejects_a_gate_on_an_unknown_output_before_storing_anything(capsys) -> None:
    from vitjob.cli import main

    code = main(
        ["submit", "--hw", "cpu", "--name", "g", "--then", "eval", "--gate", "eval.acc>=0.9", "--dry-run"]
    )
    assert code == 2
    assert "stage eval has no numeric output 'acc' (it reports accuracy" in capsys.readouterr().err


# ------------------------------------------------------------------------------- outputs line
def test_a_stage_reports_one_json_line_to_its_termination_log_and_nothing_without_one(tmp_path) -> None:
    log = tmp_path / "termination-log"
    assert report("eval", {"accuracy": 0.5}, env={}) is None
    assert report("eval", {"accuracy": 0.5, "samples": 10}, env={c.ENV_TERMINATION_LOG: str(log)}) == log
    text = log.read_text()
    assert text.count("\n") == 1 and json.loads(text) == {
        "stage": "eval",
        "outputs": {"accuracy": 0.5, "samples": 10},
    }
    assert parse(text, "eval") == {"accuracy": 0.5, "samples": 10}
    assert parse(text, "export") is None  # another stage's line
    assert parse("Traceback (most recent call last):\n ...", "eval") is None  # not an outputs line
    assert report("eval", {}, env={c.ENV_TERMINATION_LOG: str(tmp_path / "no" / "dir")}) is None


def test_outputs_are_read_from_the_pods_termination_message() -> None:
    def pod(name: str, message: str | None) -> dict[str, Any]:
        state = {
            "terminated": {"exitCode": 0, "reason": "Completed", **({"message": message} if message else {})}
        }
        return {
            "metadata": {"name": name},
            "status": {"containerStatuses": [{"name": "worker", "state": state}]},
        }

    line = json.dumps({"stage": "train", "outputs": {"best_step": 20}})
    assert outputs_from_pods([pod("t-train-worker-1", None), pod("t-train-worker-0", line)], "train") == {
        "best_step": 20
    }
    assert outputs_from_pods([pod("t-train-worker-0", "oops")], "train") == {}


# ------------------------------------------------------------------------ the VitJob's status
# The eval stage's first attempt as the VitJob's status records it (without its name, as an earlier attempt)
FAILED_EVAL = {
    "job": "vit-eval",
    "attempt": 1,
    "state": "Failed",
    "phase": "Failed",
    "reason": "stage eval failed: …",
    "startTime": "2026-01-01T00:01:00Z",
    "completionTime": "2026-01-01T00:02:00Z",
}


def test_the_vitjob_status_keeps_every_attempt_of_a_stage() -> None:
    vitjob = {
        "metadata": {"name": "vit", "namespace": "ml", "resourceVersion": "7", "uid": "u"},
        "spec": {"hw": "cpu", "then": ["eval", "export"], "retry": 1},
        "status": {
            "phase": "Failed",
            "reason": "stage eval failed: …",
            "stages": [
                {
                    "name": "train",
                    "job": "vit-train",
                    "attempt": 1,
                    "state": "Completed",
                    "phase": "Completed",
                    "startTime": "2026-01-01T00:00:00Z",
                    "completionTime": "2026-01-01T00:01:00Z",
                    "outputs": {"best_step": 20},
                },
                {"name": "eval", **FAILED_EVAL},
            ],
        },
    }
    rec = record_from_vitjob(vitjob)
    assert rec.outputs == {"train": {"best_step": 20}} and rec.job_names["eval"] == "vit-eval"
    (update,) = reconcile(Observed(rec, {}))
    status = status_after(rec, update, "2026-01-01T00:03:00Z")
    eval_entry = status["stages"][1]
    assert eval_entry["job"] == "vit-eval-r2" and eval_entry["attempt"] == 2 and "state" not in eval_entry
    assert eval_entry["earlierAttempts"] == [FAILED_EVAL]
    assert status["stages"][0]["outputs"] == {"best_step": 20} and status["retries"] == 1
    assert status["phase"] == "Running"
    again = record_from_vitjob({**vitjob, "status": status})
    assert again.job_names["eval"] == "vit-eval-r2" and again.history["eval"][0]["job"] == "vit-eval"
    assert again.retries == 1 and not retry_pending(again)


def test_apply_of_a_retry_renders_the_new_attempt_with_the_same_inputs_and_outputs() -> None:
    from vitjob.pipeline.define import stage_objects

    rec = record(spec={"retry": 1}, attempts={"eval": 2}, retries=1, train=D)
    objects = stage_objects(rec, "eval")
    job_obj = objects[-1]
    assert job_obj["metadata"]["name"] == "vit-eval-r2"
    first = stage_objects(record(train=D), "eval")[-1]
    args = job_obj["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["args"]
    assert args == first["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["args"]


# ------------------------------------------------------- the local store, with real processes
def _scripted_stage(marker: Path) -> Callable[[PipelineRecord, str], list[dict]]:
    """Stage objects whose one process reports outputs through ``vitjob.outputs.report`` (train: a test
    accuracy; eval: fails on its first attempt, reports an accuracy on the next)."""
    code = {
        "train": "from vitjob.outputs import report; report('train', {'test_accuracy': 0.5, 'steps': 3})",
        "eval": (
            "import pathlib, sys; from vitjob.outputs import report; m = pathlib.Path(sys.argv[1])\n"
            "if not m.exists(): m.write_text('failed once'); sys.exit(1)\n"
            "report('eval', {'accuracy': 0.8, 'top1_correct': 8, 'samples': 10})"
        ),
    }

    def render(rec: PipelineRecord, stage: str) -> list[dict]:
        job_obj = volcano_job(rec.job_names[stage], replicas=1, cards=0, hw="cpu", stage=stage)
        job_obj["metadata"]["labels"]["app.kubernetes.io/part-of"] = rec.part_of
        job_obj["spec"]["maxRetry"] = 1
        container = job_obj["spec"]["tasks"][0]["template"]["spec"]["containers"][0]
        container["command"] = [sys.executable, "-c", code[stage], str(marker)]
        container["env"] = [{"name": c.ENV_TERMINATION_LOG, "value": c.TERMINATION_LOG_PATH}]
        return [job_obj]

    return render


def test_a_local_stage_is_retried_automatically_and_its_outputs_pass_the_gate(tmp_path: Path) -> None:
    from vitjob.backends.local.backend import LocalBackend
    from vitjob.backends.local.store import LocalPipelineStore

    backend = LocalBackend(local_root=tmp_path / "local", stream=False, poll_s=0.05)
    store = LocalPipelineStore(backend, render_stage=_scripted_stage(tmp_path / "marker"))
    spec = {
        "stage": "train",
        "then": ["eval"],
        "stage_retries": 1,
        "stage_retry_backoff_s": 0,
        "gates": ["eval.accuracy>=0.7", "train.test_accuracy>=0.5"],
    }
    store.create_pipeline(PipelineDefinition("la", "", "la", spec))
    done = run_pipeline(store, "la", poll_s=0.05, timeout_s=60)
    assert done.phase == PipelinePhase.COMPLETED, done.reason
    assert done.job_names == {"train": "la-train", "eval": "la-eval-r2"}
    assert done.outputs == {
        "train": {"test_accuracy": 0.5, "steps": 3},
        "eval": {"accuracy": 0.8, "top1_correct": 8, "samples": 10},
    }
    (first,) = done.history["eval"]
    assert (first["job"], first["attempt"], first["state"], first["phase"]) == (
        "la-eval",
        1,
        "Failed",
        "Failed",
    )
    assert "automatic retry 1 of 1 follows" in first["reason"]
    assert first["startTime"] <= first["completionTime"]
    assert done.auto_retries == {"eval": 1} and "train" not in done.history
    assert backend.status("la-eval").phase == JobPhase.FAILED  # the first attempt's job is kept
