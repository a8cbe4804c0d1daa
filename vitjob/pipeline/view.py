"""A pipeline as people read it: STAGE/JOB/PHASE rows and a JSON-able view (``vitjob status`` of a
pipeline, ``vitjob pipeline status``, ``vitjob.Client``)."""

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


def pipeline_dict(observed: Observed) -> dict[str, Any]:
    """A JSON-able view of the pipeline for ``--output json/yaml``."""
    record = observed.pipeline
    return {
        "name": record.name,
        "namespace": record.namespace,
        "phase": str(record.phase),
        "reason": record.reason,
        "stages": [
            {"stage": stage, "job": job, "phase": phase} for stage, job, phase in stage_rows(observed)
        ],
        # the train stage's progress as the controller recorded it (vitjob.progress.ProgressReading)
        "progress": record.training.to_dict() if record.training else None,
    }
