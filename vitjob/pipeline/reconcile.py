"""The pure reconcile step: ``reconcile(observed) → actions``, from what a store shows now alone.

Suspend: ``spec.suspend`` aborts the running stage's job and holds the run Suspended until it is
false again (``_suspension``).

No memory carries over between calls, so a restart at any moment neither duplicates nor skips a stage.
A Completed stage records what it reported (its outputs) and creates the next one, if every gate
(``spec.gates``) on the stages before that one holds; a Failed/Aborted/Terminated stage is retried as a
new job while ``spec.stage_retries`` allows (after ``stage_retry_backoff_s``, doubled each time), else
marks the pipeline Failed with the job's reason and stops; a recorded stage whose job is gone, or a
same-named job of another pipeline, fails the pipeline with a sentence saying what to do; all stages
Completed (and their gates held) completes it.

Retry: a Failed pipeline whose ``spec.retry`` exceeds the retries carried out (``status.retries``) goes
Running again from its first stage not Completed: when that stage had a job, it starts a new attempt
(job ``<name>-<stage>-r<n>``; the failed one stays in the stage's history), else (a gate stopped the
pipeline before it) it is created as it would have been. Completed stages are not rerun. A retry asked
of a pipeline that is not Failed is only counted as carried out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vitjob.api.status import JobPhase, PipelinePhase, StageState
from vitjob.outputs import failed_gate, parse_gate
from vitjob.pipeline.model import (
    Action,
    CommandStage,
    CreateStage,
    Observed,
    PipelineRecord,
    StageJob,
    UpdatePipeline,
    job_name,
    requested_retries,
    suspend_requested,
)

# Job phases that end a stage unsuccessfully (Aborted: `vitjob cancel`; Volcano could resume it, a
# pipeline does not wait for that).
FAILED_JOB_PHASES = frozenset({JobPhase.FAILED, JobPhase.ABORTED, JobPhase.TERMINATED})


# Default seconds before the first automatic retry of a failed stage (doubled for each further one).
DEFAULT_STAGE_RETRY_BACKOFF_S = 10.0

# Job phases on the way to an end (Volcano's Completing → Completed, Terminating → Terminated,
# Aborting → Aborted): the stage's recorded job phase stays what it was until the end is reached, so
# passing through one costs no status write of its own.
TRANSIENT_JOB_PHASES = frozenset({JobPhase.COMPLETING, JobPhase.TERMINATING, JobPhase.ABORTING})


def retry_pending(record: PipelineRecord) -> bool:
    """Whether ``record``'s spec asks for a retry not carried out yet (reconcile acts on it even when
    the pipeline has ended)."""
    return record.phase != PipelinePhase.PENDING and requested_retries(record.spec) > record.retries


def reconcile(observed: Observed) -> list[Action]:
    """The actions that move the pipeline one step on, from the observed state alone (pure).

    Besides stage states and the phase, the update records each stage job's phase when it differs
    from the recorded one (Pending when none is), so the stored status follows the jobs (Pending,
    Running, Restarting, an end; not the ``TRANSIENT_JOB_PHASES`` just before an end), and the outputs
    of each stage that completed now.
    """
    record = observed.pipeline
    if retry_pending(record):
        return [_retry(record)]
    if record.phase.is_terminal:
        return []
    suspension = _suspension(observed)
    if suspension is not None:
        return suspension
    recorded: dict[str, StageState] = {}
    seen: dict[str, str] = {}
    outputs: dict[str, Mapping[str, Any]] = {}
    phase = None
    if record.phase == PipelinePhase.PENDING:
        if record.stages[0] not in observed.jobs and record.submitting:
            return []  # submit is still creating the first stage (or gave up and removes the record)
        phase = PipelinePhase.RUNNING
    for stage in record.stages:
        job = observed.jobs.get(stage)
        # a job's phase is Pending until recorded otherwise: a new job costs no write of its own
        if (
            job is not None
            and job.phase not in TRANSIENT_JOB_PHASES
            and record.job_phases.get(stage, str(JobPhase.PENDING)) != str(job.phase)
        ):
            seen[stage] = str(job.phase)
        state = recorded.get(stage) or record.progress.get(stage)
        if state == StageState.COMPLETED:
            continue
        name = record.job_names[stage]
        if job is None:
            if state == StageState.FAILED and _auto_retries_left(record, stage):  # its job gone meanwhile
                return _auto_retry(observed, stage, recorded, outputs, seen, phase)
            if state is not None:
                return [_fail(recorded, stage, _deleted_reason(record, stage), seen, outputs)]
            gate = _failed_gate(record, stage, outputs)
            if gate is not None:
                return [_fail_gate(recorded, gate, seen, outputs)]
            update = UpdatePipeline(
                recorded | {stage: StageState.CREATED}, phase, job_phases=seen, outputs=outputs
            )
            return [CreateStage(stage, name), update]
        if job.part_of != record.part_of:
            seen.pop(stage, None)  # not our job: its phase is not the stage's
            return [_fail(recorded, stage, _foreign_reason(record, stage, job), seen, outputs)]
        if job.phase == JobPhase.COMPLETED:
            recorded[stage] = StageState.COMPLETED
            if job.outputs is not None:
                outputs[stage] = dict(job.outputs)
            continue
        if job.phase in FAILED_JOB_PHASES:
            if _auto_retries_left(record, stage):
                return _auto_retry(observed, stage, recorded, outputs, seen, phase, job)
            return [_fail(recorded, stage, _failed_reason(record, stage, job), seen, outputs)]
        if state is None:
            recorded[stage] = StageState.CREATED
        return [UpdatePipeline(recorded, phase, job_phases=seen)] if recorded or phase or seen else []
    gate = _failed_gate(record, None, outputs)
    if gate is not None:
        return [_fail_gate(recorded, gate, seen, outputs)]
    reason = f"all {len(record.stages)} stages completed ({', '.join(record.stages)})"
    return [UpdatePipeline(recorded, PipelinePhase.COMPLETED, reason, job_phases=seen, outputs=outputs)]


def _fail(
    recorded: dict[str, StageState],
    stage: str,
    reason: str,
    seen: dict[str, str],
    outputs: Mapping[str, Mapping[str, Any]],
) -> UpdatePipeline:
    return UpdatePipeline(
        recorded | {stage: StageState.FAILED}, PipelinePhase.FAILED, reason, seen, outputs=outputs
    )


# ------------------------------------------------------------------------------------- suspension
RESUMING = "resuming"  # the reason a Suspended pipeline records once it asked Volcano to resume its job
SUSPENDED_JOB_PHASES = frozenset({JobPhase.ABORTING, JobPhase.ABORTED})


def _suspension(observed: Observed) -> list[Action] | None:
    """The actions of ``spec.suspend`` (None: it does not apply, reconcile goes on as usual).

    Suspend (``suspend: true`` on a Running pipeline): Volcano's AbortJob to the current stage's job
    if it runs (its pods are deleted; the job stays, Aborted), and phase Suspended; no further stage
    starts. Resume (``suspend: false`` on a Suspended one): ResumeJob to that job while it is Aborted
    (Volcano restarts it, training continues from its last checkpoint), recorded as reason
    ``resuming``, then phase Running once the job has left Aborted, so its abort is never taken for
    a failure. A stage without a running job is suspended and resumed by the phase alone.
    """
    record = observed.pipeline
    wanted = suspend_requested(record.spec)
    if record.phase == PipelinePhase.PENDING or (not wanted and record.phase != PipelinePhase.SUSPENDED):
        return None
    stage = next((s for s in record.stages if record.progress.get(s) != StageState.COMPLETED), None)
    job = observed.jobs.get(stage) if stage is not None else None
    if wanted:
        # Abort the stage's job unless that was asked already (a resume asked since is undone).
        asked = record.phase == PipelinePhase.SUSPENDED and record.reason != RESUMING
        runs = job is not None and not job.phase.is_terminal and job.phase not in SUSPENDED_JOB_PHASES
        if runs and not asked and job is not None and stage is not None:
            what = f"stage {stage}: job {job.name} aborted, its pods deleted"
            return [
                CommandStage(stage, job.name, "AbortJob"),
                UpdatePipeline(phase=PipelinePhase.SUSPENDED, reason=f"suspended (spec.suspend): {what}"),
            ]
        if record.phase == PipelinePhase.SUSPENDED and record.reason != RESUMING:
            return []
        reason = "suspended (spec.suspend): no stage job runs"
        return [UpdatePipeline(phase=PipelinePhase.SUSPENDED, reason=reason)]
    if job is not None and stage is not None and job.phase in SUSPENDED_JOB_PHASES:
        if record.reason == RESUMING:
            return []  # asked already: wait for Volcano to restart the job
        return [CommandStage(stage, job.name, "ResumeJob"), UpdatePipeline(reason=RESUMING)]
    where = f"stage {stage} goes on" if stage is not None else "the run goes on"
    return [UpdatePipeline(phase=PipelinePhase.RUNNING, reason=f"resumed (spec.suspend: false): {where}")]


# ------------------------------------------------------------------------------------------- gates
def _failed_gate(
    record: PipelineRecord, before: str | None, new: Mapping[str, Mapping[str, Any]]
) -> str | None:
    """Why the first gate on a stage before ``before`` (None: on any stage) fails, or None."""
    earlier = record.stages[: record.stages.index(before)] if before else record.stages
    for text in record.spec.get("gates") or ():
        gate = parse_gate(text)  # checked when the spec was made (define.run_problems)
        if gate.stage in earlier:
            why = failed_gate(gate, new.get(gate.stage, record.outputs.get(gate.stage)))
            if why is not None:
                return why
    return None


def _fail_gate(
    recorded: dict[str, StageState],
    why: str,
    seen: dict[str, str],
    outputs: Mapping[str, Mapping[str, Any]],
) -> UpdatePipeline:
    reason = (
        f"{why}; later stages were not started. Change the gate or the run "
        "(`kubectl edit vitjob`, or `vitjob pipeline retry NAME --gate …`) and retry"
    )
    return UpdatePipeline(recorded, PipelinePhase.FAILED, reason, seen, outputs=outputs)


# ----------------------------------------------------------------------------------------- retries
def _retry(record: PipelineRecord) -> UpdatePipeline:
    """Carry out a retry request: a Failed pipeline runs again from its first stage not Completed."""
    requested = requested_retries(record.spec)
    if record.phase != PipelinePhase.FAILED:
        return UpdatePipeline(retries=requested)
    stage = next((s for s in record.stages if record.progress.get(s) != StageState.COMPLETED), None)
    attempts: dict[str, int] = {}
    if stage is None:
        what = "the gates are checked again"
    elif record.progress.get(stage) is None:
        what = f"stage {stage} starts as job {record.job_names[stage]}"
    else:
        attempt = record.attempt(stage) + 1
        attempts[stage] = attempt
        what = f"stage {stage} runs again as job {job_name(record.name, stage, attempt)} (attempt {attempt})"
    return UpdatePipeline(
        phase=PipelinePhase.RUNNING,
        reason=f"retry {requested}: {what}",
        attempts=attempts,
        retries=requested,
        auto_retries={stage: 0} if stage else {},
    )


def _auto_retries_left(record: PipelineRecord, stage: str) -> bool:
    allowed = record.spec.get("stage_retries") or 0
    return isinstance(allowed, int) and record.auto_retries.get(stage, 0) < allowed


def _auto_retry(
    observed: Observed,
    stage: str,
    recorded: dict[str, StageState],
    outputs: Mapping[str, Mapping[str, Any]],
    seen: dict[str, str],
    phase: PipelinePhase | None,
    job: StageJob | None = None,
) -> list[Action]:
    """A failed stage with automatic retries left: record it Failed (its time starts the backoff),
    then, once the backoff has passed, start its next attempt."""
    record = observed.pipeline
    done = record.auto_retries.get(stage, 0)
    if record.progress.get(stage) != StageState.FAILED or stage not in record.ended_at:
        why = _failed_reason(record, stage, job) if job is not None else f"stage {stage} failed"
        reason = f"{why}; automatic retry {done + 1} of {record.spec.get('stage_retries')} follows"
        return [UpdatePipeline(recorded | {stage: StageState.FAILED}, phase, reason, seen, outputs=outputs)]
    base = record.spec.get("stage_retry_backoff_s")
    backoff = float(DEFAULT_STAGE_RETRY_BACKOFF_S if base is None else base) * 2**done
    if observed.now < record.ended_at[stage] + backoff:
        return [UpdatePipeline(recorded, phase, job_phases=seen, outputs=outputs)] if recorded or seen else []
    attempt = record.attempt(stage) + 1
    reason = (
        f"stage {stage}: automatic retry {done + 1} of {record.spec.get('stage_retries')} "
        f"as job {job_name(record.name, stage, attempt)}"
    )
    return [
        UpdatePipeline(
            recorded, phase, reason, seen, outputs=outputs, attempts={stage: attempt},
            auto_retries={stage: done + 1},
        )
    ]


def _failed_reason(record: PipelineRecord, stage: str, job: StageJob) -> str:
    why = f" ({job.reason})" if job.reason else ""
    return (
        f"stage {stage} failed: job {job.name} ended {job.phase}{why}; later stages were not started. "
        f"`vitjob status {job.name}` shows why"
    )


def _deleted_reason(record: PipelineRecord, stage: str) -> str:
    job = record.job_names[stage]
    return (
        f"stage {stage}: job {job} was deleted while the pipeline was running (by hand, or by its "
        f"ttlSecondsAfterFinished before the pipeline saw it end); vitjob does not recreate it. "
        f"Start over with `vitjob submit … --then … --replace`"
    )


def _foreign_reason(record: PipelineRecord, stage: str, job: StageJob) -> str:
    owner = f"pipeline {job.part_of}" if job.part_of else "no vitjob pipeline"
    return (
        f"stage {stage}: job {job.name} exists but belongs to {owner}, not {record.part_of}; "
        f"delete it (`vitjob delete {job.name}`) or submit the pipeline under another --name"
    )
