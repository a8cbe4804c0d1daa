"""Pipelines on the local backend: the ``vitjob.pipeline.model.PipelineStore`` protocol over JSON files
under the local root, each stage an ordinary local job rendered from the stored spec when it starts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from vitjob import constants as c
from vitjob.api.status import JobStatus, PipelinePhase, StageState
from vitjob.backends.local.state import STATE_FILE
from vitjob.errors import ConflictError, PipelineNotFoundError
from vitjob.pipeline.define import stage_objects
from vitjob.pipeline.model import PipelineDefinition, PipelineRecord, StageJob, UpdatePipeline


class LocalJobs(Protocol):
    """What the store needs of the local backend (``vitjob.backends.local.backend.LocalBackend``, which
    holds a store: a protocol keeps the two modules from importing each other)."""

    root: Path

    def job_dir(self, name: str) -> Path: ...

    def submit(self, objects: list[dict[str, Any]], *, replace: bool = False) -> JobStatus: ...

    def status(self, name: str) -> JobStatus: ...

    def delete(self, name: str) -> None: ...


class LocalPipelineStore:
    """Pipelines on the local backend (``vitjob.pipeline.model.PipelineStore``).

    A pipeline is ``<local-root>/pipelines/<name>.json`` (the run's spec and its progress); its stage
    jobs are ordinary local jobs. Each stage is rendered from the stored spec when it starts
    (``render_stage``, by default ``vitjob.pipeline.define.stage_objects``, as on Kubernetes).
    Creating a stage runs it in the foreground, so ``run_pipeline`` advances stage by stage.
    """

    def __init__(
        self,
        backend: LocalJobs,
        render_stage: Callable[[PipelineRecord, str], list[dict[str, Any]]] = stage_objects,
    ) -> None:
        self.backend = backend
        self.render_stage = render_stage

    def _path(self, name: str) -> Path:
        return self.backend.root / "pipelines" / f"{name}.json"

    def _write(self, data: dict[str, Any]) -> None:
        path = self._path(data["name"])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)

    def _record(self, data: dict[str, Any]) -> PipelineRecord:
        return PipelineRecord(
            name=data["name"],
            namespace=data.get("namespace", ""),
            part_of=data["part_of"],
            stages=tuple(data["stages"]),
            job_names=data["job_names"],
            spec=data["spec"],
            phase=PipelinePhase(data["phase"]),
            reason=data.get("reason", ""),
            progress={k: StageState(v) for k, v in data.get("progress", {}).items()},
            version=str(data["version"]),
            job_phases=data.get("job_phases", {}),
            submitting=data["phase"] == PipelinePhase.PENDING.value,  # create_pipeline is writing it
        )

    def create_pipeline(self, definition: PipelineDefinition, *, replace: bool = False) -> JobStatus:
        if self._path(definition.name).exists():
            if not replace:
                raise ConflictError(
                    f"local pipeline {definition.name} already exists; pass --replace to run it again"
                )
            for stage in definition.stages:
                if (self.backend.job_dir(definition.job_name(stage)) / STATE_FILE).exists():
                    self.backend.delete(definition.job_name(stage))
            self._path(definition.name).unlink()
        data = {
            "name": definition.name,
            "namespace": definition.namespace,
            "part_of": definition.part_of,
            "stages": list(definition.stages),
            "job_names": {stage: definition.job_name(stage) for stage in definition.stages},
            "spec": dict(definition.spec),
            "phase": PipelinePhase.PENDING.value,
            "reason": "",
            "progress": {},
            "version": 1,
        }
        self._write(data)
        first = definition.stages[0]
        record = self._record(data)
        try:
            data.update(
                phase=PipelinePhase.RUNNING.value, progress={first: StageState.CREATED.value}, version=2
            )
            self._write(data)
            return self.backend.submit(self.render_stage(record, first))
        except Exception:
            self._path(definition.name).unlink(missing_ok=True)
            raise

    def get_pipeline(self, name: str) -> PipelineRecord:
        try:
            return self._record(json.loads(self._path(name).read_text()))
        except FileNotFoundError:
            raise PipelineNotFoundError(
                f"no local pipeline {name!r} under {self.backend.root / 'pipelines'}"
            ) from None

    def list_stage_jobs(self, pipeline: PipelineRecord) -> dict[str, StageJob]:
        jobs = {}
        for stage in pipeline.stages:
            name = pipeline.job_names[stage]
            jdir = self.backend.job_dir(name)
            if not (jdir / STATE_FILE).exists():
                continue
            status = self.backend.status(name)
            labels = json.loads((jdir / "job.json").read_text())["metadata"].get("labels", {})
            jobs[stage] = StageJob(
                name, status.phase, labels.get(c.LABEL_PART_OF, ""), "; ".join(status.reasons)
            )
        return jobs

    def create_stage(self, pipeline: PipelineRecord, stage: str) -> None:
        name = pipeline.job_names[stage]
        if (self.backend.job_dir(name) / STATE_FILE).exists():
            return
        self.backend.submit(self.render_stage(pipeline, stage))

    def update_pipeline(self, pipeline: PipelineRecord, update: UpdatePipeline) -> PipelineRecord:
        data = json.loads(self._path(pipeline.name).read_text())
        if pipeline.version and str(data["version"]) != pipeline.version:
            raise ConflictError(f"local pipeline {pipeline.name} changed meanwhile")
        data["progress"].update({k: v.value for k, v in update.stages.items()})
        data.setdefault("job_phases", {}).update(update.job_phases)
        if update.phase is not None:
            data["phase"] = update.phase.value
        if update.reason is not None:
            data["reason"] = update.reason
        data["version"] = int(data["version"]) + 1
        self._write(data)
        return self._record(data)

    def delete_pipeline(self, pipeline: PipelineRecord) -> None:
        """Remove the stored pipeline (its stage jobs are deleted by
        ``vitjob.pipeline.runner.delete_pipeline``)."""
        self._path(pipeline.name).unlink(missing_ok=True)
