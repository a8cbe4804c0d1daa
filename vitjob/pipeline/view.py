"""A pipeline as people read it: STAGE/JOB/PHASE rows, each stage's outputs and earlier attempts, and a
JSON-able view (``vitjob status`` of a pipeline, ``vitjob pipeline status``, ``vitjob.Client``)."""

from __future__ import annotations

from typing import Any

from vitjob.pipeline.model import Observed


def stage_rows(observed: Observed) -> list[list[str]]:
    """STAGE, JOB, PHASE rows: the job's live phase, else what the pipeline recorded, else ``-``."""
    record = observed.pipeline
    rows = []
    for stage in record.stages:
        job = observed.jobs.get(stage)
        recorded = record.progress.get(stage)
        if job is not None:
            phase = str(job.phase)
        elif recorded is not None:
            phase = f"{recorded} (job gone)"
        else:
            phase = "not started"
        rows.append([stage, record.job_names[stage], phase])
    return rows


def format_outputs(outputs: dict[str, Any]) -> str:
    """``key=value`` pairs (numbers to 4 significant digits), or ``-``."""
    def text(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    return ", ".join(f"{k}={text(v)}" for k, v in outputs.items() if v is not None) or "-"


def attempt_rows(observed: Observed) -> list[list[str]]:
    """STAGE, ATTEMPT, JOB, STATE, REASON rows of every earlier attempt (retried stages only)."""
    record = observed.pipeline
    rows = []
    for stage in record.stages:
        for entry in record.history.get(stage, ()):
            rows.append([stage, str(entry.get("attempt", "")), str(entry.get("job", "")),
                         str(entry.get("state") or entry.get("phase") or "-"), str(entry.get("reason", ""))])
    return rows


def pipeline_dict(observed: Observed) -> dict[str, Any]:
    """A JSON-able view of the pipeline for ``--output json/yaml``: each stage's current attempt (its
    job, phase, attempt number, outputs) and its earlier attempts as stored."""
    record = observed.pipeline
    stages = []
    for stage, job, phase in stage_rows(observed):
        entry: dict[str, Any] = {"stage": stage, "job": job, "phase": phase, "attempt": record.attempt(stage)}
        if stage in record.outputs:
            entry["outputs"] = dict(record.outputs[stage])
        if record.history.get(stage):
            entry["earlier_attempts"] = [dict(e) for e in record.history[stage]]
        stages.append(entry)
    return {
        "name": record.name,
        "namespace": record.namespace,
        "phase": str(record.phase),
        "reason": record.reason,
        "gates": list(record.spec.get("gates") or []),
        "retries": record.retries,
        "stages": stages,
        # the train stage's progress as the controller recorded it (vitjob.progress.ProgressReading)
        "progress": record.training.to_dict() if record.training else None,
    }
