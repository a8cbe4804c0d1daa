"""The pure reconcile step: ``reconcile(observed) → actions``, from what a store shows now alone.

No memory carries over between calls, so a restart at any moment neither duplicates nor skips a stage.
A Completed stage creates the next one; a Failed/Aborted/Terminated stage marks the pipeline Failed
with the job's reason and stops; a recorded stage whose job is gone, or a same-named job of another
pipeline, fails the pipeline with a sentence saying what to do; all stages Completed completes it.
"""

from __future__ import annotations

from vitjob.api.status import JobPhase, PipelinePhase, StageState
from vitjob.pipeline.model import Action, CreateStage, Observed, PipelineRecord, StageJob, UpdatePipeline

# Job phases that end a stage unsuccessfully (Aborted: `vitjob cancel`; Volcano could resume it, a
# pipeline does not wait for that).
FAILED_JOB_PHASES = frozenset({JobPhase.FAILED, JobPhase.ABORTED, JobPhase.TERMINATED})


def reconcile(observed: Observed) -> list[Action]:
    """The actions that move the pipeline one step on, from the observed state alone (pure).

    Besides stage states and the phase, the update records each stage job's phase when it differs
    from the recorded one (Pending when none is), so the stored status follows the jobs.
    """
    record = observed.pipeline
    if record.phase.is_terminal:
        return []
    recorded: dict[str, StageState] = {}
    seen: dict[str, str] = {}
    phase = None
    if record.phase == PipelinePhase.PENDING:
        if record.stages[0] not in observed.jobs and record.submitting:
            return []  # submit is still creating the first stage (or gave up and removes the record)
        phase = PipelinePhase.RUNNING
    for stage in record.stages:
        job = observed.jobs.get(stage)
        # a job's phase is Pending until recorded otherwise: a new job costs no write of its own
        if job is not None and record.job_phases.get(stage, str(JobPhase.PENDING)) != str(job.phase):
            seen[stage] = str(job.phase)
        state = recorded.get(stage) or record.progress.get(stage)
        if state == StageState.COMPLETED:
            continue
        job_name = record.job_names[stage]
        if job is None:
            if state is not None:
                return [_fail(recorded, stage, _deleted_reason(record, stage), seen)]
            update = UpdatePipeline(recorded | {stage: StageState.CREATED}, phase, job_phases=seen)
            return [CreateStage(stage, job_name), update]
        if job.part_of != record.part_of:
            seen.pop(stage, None)  # not our job: its phase is not the stage's
            return [_fail(recorded, stage, _foreign_reason(record, stage, job), seen)]
        if job.phase == JobPhase.COMPLETED:
            recorded[stage] = StageState.COMPLETED
            continue
        if job.phase in FAILED_JOB_PHASES:
            return [_fail(recorded, stage, _failed_reason(record, stage, job), seen)]
        if state is None:
            recorded[stage] = StageState.CREATED
        return [UpdatePipeline(recorded, phase, job_phases=seen)] if recorded or phase or seen else []
    reason = f"all {len(record.stages)} stages completed ({', '.join(record.stages)})"
    return [UpdatePipeline(recorded, PipelinePhase.COMPLETED, reason, job_phases=seen)]


def _fail(recorded: dict[str, StageState], stage: str, reason: str, seen: dict[str, str]) -> UpdatePipeline:
    return UpdatePipeline(recorded | {stage: StageState.FAILED}, PipelinePhase.FAILED, reason, seen)


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
