"""Running pipelines on a store: ``apply`` carries out reconcile's actions, ``step`` is one
observe → reconcile → apply cycle, ``run_pipeline`` repeats it until the pipeline ends; and
``cancel_pipeline``/``delete_pipeline`` stop and remove one (through the store and a ``JobControl``).
The controller and ``vitjob pipeline run`` both drive pipelines with this code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from vitjob import constants as c
from vitjob.api.checks import spec_error
from vitjob.api.status import PipelinePhase, StageState
from vitjob.errors import (
    AdmissionDeniedError,
    BackendError,
    ConflictError,
    InvalidObjectError,
    SpecError,
    UsageError,
    WaitTimeoutError,
)
from vitjob.pipeline.define import run_problems
from vitjob.pipeline.model import (
    Action,
    CommandStage,
    CreateStage,
    JobControl,
    Observed,
    PipelineRecord,
    PipelineStore,
    RemovablePipelineStore,
    UpdatePipeline,
    requested_retries,
)
from vitjob.pipeline.reconcile import reconcile, retry_pending

log = logging.getLogger(__name__)

# Errors that retrying cannot fix: the stage is marked Failed with the error's message.
PERMANENT_ERRORS: tuple[type[Exception], ...] = (AdmissionDeniedError, InvalidObjectError, SpecError)


def apply(store: PipelineStore, record: PipelineRecord, actions: Sequence[Action]) -> PipelineRecord:
    """Carry out ``actions`` in order; stop at the first error (the next cycle starts over).

    A ``CreateStage`` that fails with a permanent error (the cluster refused the object) marks the
    stage and the pipeline Failed with the error's message instead of raising.
    """
    for action in actions:
        if isinstance(action, CreateStage):
            try:
                store.create_stage(record, action.stage)
            except PERMANENT_ERRORS as exc:
                reason = f"stage {action.stage}: job {action.job_name} could not be created: {exc}"
                log.error("pipeline %s: %s", record.name, reason)
                update = UpdatePipeline({action.stage: StageState.FAILED}, PipelinePhase.FAILED, reason)
                return store.update_pipeline(record, update)
            log.info("pipeline %s: created stage %s (job %s)", record.name, action.stage, action.job_name)
        elif isinstance(action, CommandStage):
            store.command_stage(record, action.stage, action.action)
            log.info("pipeline %s: sent %s to job %s", record.name, action.action, action.job_name)
        else:
            record = store.update_pipeline(record, action)
            if action.phase is not None:
                log.info("pipeline %s: %s %s", record.name, action.phase, action.reason or "")
    return record


def observe(store: PipelineStore, name: str, *, finished_too: bool = False) -> Observed:
    """The pipeline and its stage jobs as they are now; a finished pipeline's jobs are read only with
    ``finished_too`` (to show them: reconcile needs none)."""
    record = store.get_pipeline(name)
    jobs = store.list_stage_jobs(record) if finished_too or not record.phase.is_terminal else {}
    return Observed(record, jobs, time.time())


def step(store: PipelineStore, name: str) -> PipelineRecord:
    """One observe → reconcile → apply cycle; a stale record (``ConflictError``) is read again."""
    observed = observe(store, name)
    actions = reconcile(observed)
    if not actions:
        return observed.pipeline
    try:
        return apply(store, observed.pipeline, actions)
    except ConflictError as exc:
        log.debug("pipeline %s changed meanwhile (%s); observing again", name, exc)
        return store.get_pipeline(name)


def run_pipeline(
    store: PipelineStore,
    name: str,
    *,
    wait: bool = True,
    poll_s: float = c.DEFAULT_PIPELINE_POLL_S,
    timeout_s: float | None = None,
    on_step: Callable[[PipelineRecord], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> PipelineRecord:
    """Reconcile ``name`` until it ends (``wait``) or once; return the last record.

    Raises:
        WaitTimeoutError: still running after ``timeout_s``; the pipeline itself goes on.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        record = step(store, name)
        if on_step is not None:
            on_step(record)
        if record.phase.is_terminal or not wait:
            return record
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeoutError(
                f"pipeline {name!r} is still {record.phase} after {timeout_s:g}s; it goes on where a "
                f"controller runs it: `vitjob pipeline status {name}` shows it, "
                f"`vitjob pipeline run {name} --wait` continues"
            )
        sleep(poll_s)


# --------------------------------------------------------------------------------------------- retry
def retry_pipeline(
    store: PipelineStore,
    name: str,
    *,
    gates: Sequence[str] | None = None,
    stage_retries: int | None = None,
    attempts: int = 5,
) -> PipelineRecord:
    """Ask for a retry of the Failed pipeline ``name``: increase its ``spec.retry`` (optionally with new
    ``gates`` or ``stage_retries``), which reconcile carries out (the controller, or ``run_pipeline``):
    the first stage not Completed runs again as a new job, Completed stages are not rerun.

    Raises:
        UsageError: the pipeline is not Failed (nothing to retry), or a retry is already pending.
        SpecError: the changed spec is invalid (every problem listed).
    """
    for _ in range(attempts):
        record = store.get_pipeline(name)
        if retry_pending(record):
            raise UsageError(
                f"pipeline {name!r}: retry {requested_retries(record.spec)} was asked for already and has "
                f"not been carried out yet; `vitjob pipeline run {name} --wait` (or the controller) does it"
            )
        if record.phase != PipelinePhase.FAILED:
            raise UsageError(
                f"pipeline {name!r} is {record.phase}; only a Failed pipeline can be retried "
                f"(`vitjob pipeline status {name}` shows it)"
            )
        spec = dict(record.spec)
        spec["retry"] = record.retries + 1
        if gates is not None:
            spec["gates"] = list(gates)
        if stage_retries is not None:
            spec["stage_retries"] = stage_retries
        problems = run_problems(spec)
        if problems:
            raise spec_error(problems)
        try:
            return store.update_spec(record, spec)
        except ConflictError as exc:
            log.debug("pipeline %s changed while asking for a retry (%s); reading it again", name, exc)
    raise ConflictError(f"pipeline {name!r} kept changing while asking for a retry; run it again")


# --------------------------------------------------------------------------------- cancel and delete
CANCELLED_REASON = "cancelled with `vitjob pipeline cancel`; later stages will not start"


def cancel_pipeline(store: PipelineStore, backend: JobControl, name: str, attempts: int = 5) -> list[str]:
    """Stop pipeline ``name``: record it Failed (cancelled) so that no further stage starts, then abort
    every stage job of it that is still running. Returns the names of the jobs asked to abort.

    The record is written first, so a controller that races with this cannot start another stage
    afterwards; a stage it started just before is in the job list read afterwards and is aborted too.
    """
    for _ in range(attempts):
        record = store.get_pipeline(name)
        if record.phase.is_terminal:
            break
        try:
            record = store.update_pipeline(
                record, UpdatePipeline(phase=PipelinePhase.FAILED, reason=CANCELLED_REASON)
            )
            break
        except ConflictError as exc:
            log.debug("pipeline %s changed while cancelling it (%s); reading it again", name, exc)
    else:
        raise ConflictError(f"pipeline {name!r} kept changing while it was being cancelled; run it again")
    aborted = []
    for job in store.list_stage_jobs(record).values():
        if job.part_of != record.part_of or job.phase.is_terminal:
            continue
        try:
            backend.cancel(job.name)
        except BackendError:
            if not backend.status(job.name).phase.is_terminal:
                raise
            log.debug("job %s ended before it could be aborted", job.name)
            continue
        aborted.append(job.name)
    return aborted


def delete_pipeline(store: PipelineStore, backend: JobControl, name: str) -> list[str]:
    """Cancel pipeline ``name``, delete each of its stage jobs (with what submit created for them),
    then its stored record. Returns the names of the deleted jobs. Jobs that only share a stage
    job's name (another pipeline's, or none) are left alone."""
    if not isinstance(store, RemovablePipelineStore):
        raise BackendError(
            f"the {backend.name} backend cannot delete pipelines; delete their jobs with `vitjob delete`"
        )
    cancel_pipeline(store, backend, name)
    record = store.get_pipeline(name)
    deleted = []
    for job in store.list_stage_jobs(record).values():
        if job.part_of == record.part_of:
            backend.delete(job.name)
            deleted.append(job.name)
    store.delete_pipeline(record)
    return deleted
