"""Pipelines on the local backend: the ``vitjob.pipeline.model.PipelineStore`` protocol over JSON files
under the local root, each stage an ordinary local job rendered from the stored spec when it starts.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from vitjob import constants as c
from vitjob.api.status import JobPhase, JobStatus, PipelinePhase, StageState
from vitjob.backends.local.state import STATE_FILE, termination_log
from vitjob.errors import ConflictError, PipelineNotFoundError, UsageError
from vitjob.outputs import parse as parse_outputs
from vitjob.pipeline.define import stage_objects
from vitjob.pipeline.model import PipelineDefinition, PipelineRecord, StageJob, UpdatePipeline, job_name


class LocalJobs(Protocol):
    """What the store needs of the local backend (``vitjob.backends.local.backend.LocalBackend``, which
    holds a store: a protocol keeps the two modules from importing each other)."""

    root: Path
    data_dir: Path | None
    output_dir: Path | None

    def job_dir(self, name: str) -> Path: ...

    def submit(self, objects: list[dict[str, Any]], *, replace: bool = False) -> JobStatus: ...

    def status(self, name: str) -> JobStatus: ...

    def delete(self, name: str) -> None: ...


class LocalPipelineStore:
    """Pipelines on the local backend (``vitjob.pipeline.model.PipelineStore``).

    A pipeline is ``<local-root>/pipelines/<name>.json`` (the run's spec and its progress, each stage's
    attempts with their times and outputs); its stage jobs are ordinary local jobs. Each stage is
    rendered from the stored spec when it starts
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
        attempts = {k: int(v) for k, v in data.get("attempts", {}).items()}
        return PipelineRecord(
            name=data["name"],
            namespace=data.get("namespace", ""),
            part_of=data["part_of"],
            stages=tuple(data["stages"]),
            job_names={s: job_name(data["name"], s, attempts.get(s, 1)) for s in data["stages"]},
            spec=data["spec"],
            attempts=attempts,
            outputs=data.get("outputs", {}),
            retries=int(data.get("retries", 0)),
            auto_retries=data.get("auto_retries", {}),
            ended_at=data.get("ended_at", {}),
            history={k: tuple(v) for k, v in data.get("history", {}).items()},
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
            # the directories of the data and output PVCs (--data, --output) every later stage uses too
            "volumes": {
                "data_dir": str(self.backend.data_dir) if self.backend.data_dir else None,
                "output_dir": str(self.backend.output_dir) if self.backend.output_dir else None,
            },
        }
        self._write(data)
        first = definition.stages[0]
        record = self._record(data)
        try:
            data.update(
                phase=PipelinePhase.RUNNING.value,
                progress={first: StageState.CREATED.value},
                started_at={first: time.time()},
                version=2,
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
            outputs = None
            if status.phase == JobPhase.COMPLETED and pipeline.progress.get(stage) != StageState.COMPLETED:
                outputs = self.read_outputs(jdir, [p.name for p in status.pods], stage)
            part_of = labels.get(c.LABEL_PART_OF, "")
            jobs[stage] = StageJob(name, status.phase, part_of, "; ".join(status.reasons), outputs=outputs)
        return jobs

    def read_outputs(self, jdir: Path, pods: list[str], stage: str) -> dict[str, Any]:
        """The outputs line the job's first pod (by name) that left one wrote ({} when none did)."""
        for pod in sorted(pods):
            path = termination_log(jdir, pod)
            found = parse_outputs(path.read_text(), stage) if path.exists() else None
            if found is not None:
                return found
        return {}

    def create_stage(self, pipeline: PipelineRecord, stage: str) -> None:
        name = pipeline.job_names[stage]
        if (self.backend.job_dir(name) / STATE_FILE).exists():
            return
        self._use_volumes(pipeline.name)
        self.backend.submit(self.render_stage(pipeline, stage))

    def _use_volumes(self, name: str) -> None:
        """A stage started by a later command (`pipeline run`, `pipeline retry`) reads and writes the
        directories the pipeline was submitted with, unless that command names its own (--data,
        --output): the backend is set to them for this command."""
        volumes = json.loads(self._path(name).read_text()).get("volumes") or {}
        if self.backend.data_dir is None and volumes.get("data_dir"):
            self.backend.data_dir = Path(volumes["data_dir"])
        if self.backend.output_dir is None and volumes.get("output_dir"):
            self.backend.output_dir = Path(volumes["output_dir"])

    def update_pipeline(self, pipeline: PipelineRecord, update: UpdatePipeline) -> PipelineRecord:
        data = json.loads(self._path(pipeline.name).read_text())
        if pipeline.version and str(data["version"]) != pipeline.version:
            raise ConflictError(f"local pipeline {pipeline.name} changed meanwhile")
        now = time.time()
        for key in ("job_phases", "outputs", "attempts", "auto_retries", "started_at", "ended_at", "history",
                    "reasons"):
            data.setdefault(key, {})
        for stage, attempt in update.attempts.items():  # the current attempt goes to the history
            data["history"].setdefault(stage, []).append(self._attempt(data, stage))
            for key in ("progress", "job_phases", "outputs", "started_at", "ended_at", "reasons"):
                data[key].pop(stage, None)
            data["attempts"][stage] = attempt
        reason = data.get("reason", "") if update.reason is None else update.reason
        for stage, state in update.stages.items():
            if data["progress"].get(stage) != state.value:
                if state == StageState.CREATED:
                    data["started_at"][stage] = now
                else:
                    data["ended_at"][stage] = now
                if state == StageState.FAILED:
                    data["reasons"][stage] = reason
            data["progress"][stage] = state.value
        data["job_phases"].update(update.job_phases)
        data["outputs"].update({k: dict(v) for k, v in update.outputs.items()})
        data["auto_retries"].update(update.auto_retries)
        if update.retries is not None:
            data["retries"] = update.retries
        if update.phase is not None:
            data["phase"] = update.phase.value
        data["reason"] = reason
        data["version"] = int(data["version"]) + 1
        self._write(data)
        return self._record(data)

    @staticmethod
    def _attempt(data: dict[str, Any], stage: str) -> dict[str, Any]:
        """The current attempt of ``stage`` as the VitJob status keeps an earlier one."""
        attempt = int(data["attempts"].get(stage, 1))
        entry: dict[str, Any] = {"attempt": attempt, "job": job_name(data["name"], stage, attempt)}
        for key, field in (("progress", "state"), ("job_phases", "phase"), ("reasons", "reason"),
                           ("outputs", "outputs")):
            if stage in data[key]:
                entry[field] = data[key][stage]
        for key, field in (("started_at", "startTime"), ("ended_at", "completionTime")):
            if stage in data[key]:
                when = dt.datetime.fromtimestamp(float(data[key][stage]), dt.UTC)
                entry[field] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        return entry

    def command_stage(self, pipeline: PipelineRecord, stage: str, action: str) -> None:
        raise UsageError(
            f"local pipelines cannot be suspended (spec.suspend); suspend the running stage job instead: "
            f"`vitjob suspend {pipeline.job_names[stage]} --backend local`"
        )

    def update_spec(self, pipeline: PipelineRecord, spec: Mapping[str, Any]) -> PipelineRecord:
        data = json.loads(self._path(pipeline.name).read_text())
        if pipeline.version and str(data["version"]) != pipeline.version:
            raise ConflictError(f"local pipeline {pipeline.name} changed meanwhile")
        data["spec"] = dict(spec)
        data["version"] = int(data["version"]) + 1
        self._write(data)
        return self._record(data)

    def delete_pipeline(self, pipeline: PipelineRecord) -> None:
        """Remove the stored pipeline (its stage jobs are deleted by
        ``vitjob.pipeline.runner.delete_pipeline``)."""
        self._path(pipeline.name).unlink(missing_ok=True)
