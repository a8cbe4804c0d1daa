"""The controller's copy of the cluster: the VitJobs (as pipeline records) and vitjob's Volcano Jobs its
watches saw (``PipelineCache``), and the pipeline store that reads from that copy and writes through it
(``CachedPipelineStore``). Only a copy: rebuilt from a fresh list whenever the controller starts leading.
"""

from __future__ import annotations

import threading
from typing import Any

from vitjob.api.status import StageState
from vitjob.backends.kubernetes.store import (
    KubernetesPipelineStore,
    record_from_vitjob,
    stage_job_from_object,
)
from vitjob.errors import PipelineNotFoundError
from vitjob.kube.client import Api
from vitjob.kube.kinds import get_volcano_job
from vitjob.kube.workqueue import Key
from vitjob.pipeline.model import PipelineRecord, StageJob, UpdatePipeline
from vitjob.pipeline.reconcile import retry_pending


def is_active(record: PipelineRecord) -> bool:
    """Whether reconcile may act on ``record``: it has not ended, or its spec asks for a retry."""
    return not record.phase.is_terminal or retry_pending(record)


def resource_version(meta: dict[str, Any] | str) -> int | None:
    """An object's resourceVersion as a number (None when it is not one: versions are opaque)."""
    text = meta if isinstance(meta, str) else meta.get("resourceVersion", "")
    return int(text) if text.isdigit() else None


def is_newer(new: int | None, old: int | None) -> bool:
    """Whether an object at ``new`` replaces the cached one at ``old`` (opaque versions: always)."""
    return new is None or old is None or new >= old


class PipelineCache:
    """What the watches saw: pipeline records and stage jobs, keyed by (namespace, name)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pipelines: dict[Key, PipelineRecord] = {}
        self.jobs: dict[Key, tuple[int | None, StageJob]] = {}
        self.job_owner: dict[Key, Key] = {}  # stage job → its pipeline

    # pipelines
    def sync_pipelines(self, vitjobs: list[dict[str, Any]]) -> list[Key]:
        with self.lock:
            self.pipelines.clear()
            self.job_owner.clear()
        for obj in vitjobs:
            self.put_pipeline(record_from_vitjob(obj))
        with self.lock:
            return list(self.pipelines)

    def put_pipeline(self, record: PipelineRecord) -> Key:
        key = (record.namespace, record.name)
        with self.lock:
            old = self.pipelines.get(key)
            if (
                old is not None
                and old.uid == record.uid
                and not is_newer(resource_version(record.version), resource_version(old.version))
            ):
                return key
            self.pipelines[key] = record
            for job in record.job_names.values():
                self.job_owner[(record.namespace, job)] = key
        return key

    def drop_pipeline(self, namespace: str, name: str) -> None:
        with self.lock:
            record = self.pipelines.pop((namespace, name), None)
            for job in record.job_names.values() if record else ():
                self.job_owner.pop((namespace, job), None)

    def pipeline(self, key: Key) -> PipelineRecord | None:
        with self.lock:
            return self.pipelines.get(key)

    def pipeline_keys(self, *, active_only: bool = False) -> list[Key]:
        """Every pipeline's key; ``active_only``: those reconcile may act on (running, or asked to retry)."""
        with self.lock:
            return [k for k, r in self.pipelines.items() if not (active_only and not is_active(r))]

    # jobs
    def sync_jobs(self, jobs: list[dict[str, Any]]) -> None:
        with self.lock:
            self.jobs.clear()
        for job in jobs:
            self.put_job(job)

    def put_job(self, job: dict[str, Any]) -> Key | None:
        """Cache ``job``; return the key of the pipeline it belongs to when what reconcile sees of the
        job changed (it is new, or its phase, reason, part-of label or rank-0 pod differ), else None:
        Volcano writes a job's status many times within one phase (pod counts, conditions), and such
        a write gives reconcile nothing new to act on."""
        meta = job["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        rv = resource_version(meta)
        with self.lock:
            old = self.jobs.get(key)
            if old is not None and not is_newer(rv, old[0]):
                return None  # an older version than the one cached
            seen = stage_job_from_object(job)
            self.jobs[key] = (rv, seen)
            return None if old is not None and old[1] == seen else self.job_owner.get(key)

    def drop_job(self, job: dict[str, Any]) -> Key | None:
        meta = job["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        with self.lock:
            self.jobs.pop(key, None)
            return self.job_owner.get(key)

    def job(self, key: Key) -> StageJob | None:
        with self.lock:
            entry = self.jobs.get(key)
            return entry[1] if entry else None


class CachedPipelineStore(KubernetesPipelineStore):
    """The Kubernetes ``PipelineStore`` reading from the controller's cache and writing through it."""

    def __init__(self, api: Api, namespace: str, cache: PipelineCache, component: str):
        super().__init__(api, namespace, component=component)
        self.cache = cache

    def get_pipeline(self, name: str) -> PipelineRecord:
        record = self.cache.pipeline((self.namespace, name))
        if record is None:
            raise PipelineNotFoundError(f"pipeline {self.namespace}/{name} is gone")
        return record

    def list_stage_jobs(self, pipeline: PipelineRecord) -> dict[str, StageJob]:
        jobs = {}
        for stage in pipeline.stages:
            job = self.cache.job((pipeline.namespace, pipeline.job_names[stage]))
            if job is None and pipeline.progress.get(stage) == StageState.CREATED:
                # Recorded as created but not in the cache: ask the API server before calling it deleted.
                obj = get_volcano_job(self.api, pipeline.namespace, pipeline.job_names[stage])
                if obj is not None:
                    self.cache.put_job(obj)
                    job = stage_job_from_object(obj)
            if job is not None:
                jobs[stage] = self.with_outputs(pipeline, stage, job)
        return jobs

    def create_stage(self, pipeline: PipelineRecord, stage: str) -> None:
        created = self.create_stage_objects(pipeline, stage)
        if created is not None:
            self.cache.put_job(created)

    def update_pipeline(self, pipeline: PipelineRecord, update: UpdatePipeline) -> PipelineRecord:
        record = super().update_pipeline(pipeline, update)
        self.cache.put_pipeline(record)
        return record

    def refresh(self, name: str) -> None:
        """Read the pipeline again from the API server (after a 409 on a stale record)."""
        obj = self.read_vitjob(name, self.namespace)
        if obj is None:
            self.cache.drop_pipeline(self.namespace, name)
        else:
            self.cache.put_pipeline(record_from_vitjob(obj))
