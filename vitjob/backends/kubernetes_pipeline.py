"""Pipelines on Kubernetes: the ``vitjob.pipeline.PipelineStore`` protocol over ConfigMaps and Volcano Jobs.

A pipeline NAME is the ConfigMap ``NAME-pipeline`` (rendered from ``manifests/pipeline-configmap.yaml.j2``):
its data holds each stage's rendered objects, its annotations the recorded progress. Stage jobs carry
an ownerReference to it (no ``blockOwnerDeletion``, which would need extra RBAC), so deleting the
ConfigMap garbage-collects them; nothing owns the ConfigMap.

Every request goes through ``KubernetesBackend``'s client (``vitjob.kube.client.Api.call``: one error
mapping, retries);
this module adds no client layer of its own.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

from vitjob import constants as c
from vitjob.backends.base import JobStatus
from vitjob.backends.kubernetes import KubernetesBackend, job_phase
from vitjob.errors import (
    ConflictError,
    JobNotFoundError,
    PipelineNotFoundError,
    ResourceNotFoundError,
)
from vitjob.kube.errors import Op
from vitjob.kube.kinds import VC_GROUP, VC_JOBS, VC_VERSION, kind_info
from vitjob.pipeline import (
    PipelineDefinition,
    PipelinePhase,
    PipelineRecord,
    StageJob,
    StageState,
    UpdatePipeline,
    configmap_name,
)

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
CONFIGMAPS = "configmaps"


# ------------------------------------------------------------------------------------ conversions
def record_from_configmap(cm: dict[str, Any]) -> PipelineRecord:
    """Parse a pipeline ConfigMap into a ``PipelineRecord``."""
    meta, data = cm["metadata"], cm.get("data") or {}
    annotations = meta.get("annotations") or {}
    name = meta["name"].removesuffix(c.PIPELINE_CONFIGMAP_SUFFIX)
    stages = tuple(json.loads(data.get(c.PIPELINE_STAGES_KEY) or "[]"))
    progress = {}
    for stage in stages:
        value = annotations.get(c.ANNOTATION_STAGE_PREFIX + stage)
        if value in StageState.__members__.values():
            progress[stage] = StageState(value)
    try:
        phase = PipelinePhase(annotations.get(c.ANNOTATION_PIPELINE_PHASE) or "Pending")
    except ValueError:
        phase = PipelinePhase.PENDING
    return PipelineRecord(
        name=name,
        namespace=meta.get("namespace", ""),
        part_of=data.get(c.PIPELINE_PART_OF_KEY) or name,
        stages=stages,
        job_names={stage: f"{name}-{stage}" for stage in stages},
        manifests={s: data.get(s + c.PIPELINE_STAGE_KEY_SUFFIX, "") for s in stages},
        phase=phase,
        reason=annotations.get(c.ANNOTATION_PIPELINE_REASON, ""),
        progress=progress,
        version=meta.get("resourceVersion", ""),
        uid=meta.get("uid", ""),
    )


def stage_job_from_object(job: dict[str, Any]) -> StageJob:
    """The fields of a Volcano Job that ``reconcile`` uses."""
    meta = job["metadata"]
    state = (job.get("status") or {}).get("state") or {}
    reason = ": ".join(x for x in (state.get("reason"), state.get("message")) if x)
    return StageJob(
        name=meta["name"],
        phase=job_phase(job),
        part_of=(meta.get("labels") or {}).get(c.LABEL_PART_OF, ""),
        reason=reason,
    )


def update_patch(record: PipelineRecord, update: UpdatePipeline) -> dict[str, Any]:
    """The merge patch that records ``update``, conditional on the record's resourceVersion."""
    annotations: dict[str, str] = {c.ANNOTATION_STAGE_PREFIX + s: str(v) for s, v in update.stages.items()}
    if update.phase is not None:
        annotations[c.ANNOTATION_PIPELINE_PHASE] = str(update.phase)
    if update.reason is not None:
        annotations[c.ANNOTATION_PIPELINE_REASON] = update.reason
    metadata: dict[str, Any] = {"annotations": annotations}
    if record.version:
        metadata["resourceVersion"] = record.version  # the API server refuses a stale write (409)
    return {"metadata": metadata}


def owner_reference(record: PipelineRecord) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": configmap_name(record.name), "uid": record.uid}


# ------------------------------------------------------------------------------------------- store
class KubernetesPipelineStore:
    """``PipelineStore`` on a cluster, reading fresh state with each call (CLI use).

    Args:
        backend: the ``KubernetesBackend`` whose client, namespace and error mapping are used.
        namespace: the pipelines' namespace (default: the backend's).
    """

    def __init__(self, backend: KubernetesBackend, namespace: str | None = None):
        self.backend = backend
        self._namespace = namespace

    @property
    def namespace(self) -> str:
        return self._namespace or self.backend.namespace

    # -------------------------------------------------------------------------------- create
    def create_pipeline(self, definition: PipelineDefinition, *, replace: bool = False) -> JobStatus:
        from vitjob.render import render_pipeline_configmap

        ns = definition.namespace or self.namespace
        existing = self._read_configmap(definition.name, ns)
        if existing is not None:
            if not replace:
                old = record_from_configmap(existing)
                raise ConflictError(
                    f"pipeline {definition.name!r} already exists in namespace {ns!r} ({old.phase}); "
                    f"`vitjob status {definition.name}` shows it, `vitjob submit … --then … --replace` "
                    "deletes it and its stage jobs and starts over, or choose another --name"
                )
            self._delete_pipeline(record_from_configmap(existing))
        cm = render_pipeline_configmap(
            name=configmap_name(definition.name),
            namespace=ns,
            part_of=definition.part_of,
            stages=[(s.stage, s.manifest) for s in definition.stages],
            phase=str(PipelinePhase.PENDING),
        )
        api = self.backend.api
        created = api.call(Op("create", CONFIGMAPS, "", ns), api.core.create_namespaced_config_map, ns, cm)
        record = record_from_configmap(created)
        first = definition.stages[0]
        objects = [self._owned(obj, record) for obj in record.stage_objects(first.stage)]
        try:
            status = self.backend.submit(objects, replace=replace)
        except BaseException:
            self._delete_configmap(record)
            raise
        self._mark_started(record, first.stage)
        log.debug("created pipeline %s/%s with stages %s", ns, definition.name, record.stages)
        return status

    def _mark_started(self, created: PipelineRecord, stage: str) -> None:
        """Pending → Running with ``stage`` Created, unless a controller has moved it on already."""
        update = UpdatePipeline({stage: StageState.CREATED}, PipelinePhase.RUNNING, "")
        name = created.name
        for _ in range(5):
            cm = self._read_configmap(name, created.namespace)
            if cm is None:
                return
            record = record_from_configmap(cm)
            if record.phase != PipelinePhase.PENDING:
                return
            try:
                self.update_pipeline(record, update)
                return
            except ConflictError:
                log.debug("pipeline %s changed while recording its start; reading it again", name)
        log.warning("pipeline %s: could not record its start; its controller will adopt it", name)

    def _delete_pipeline(self, record: PipelineRecord) -> None:
        """For --replace: the stage jobs (waiting until they are gone), then the ConfigMap."""
        for stage in record.stages:
            job = self._read_job(record.job_names[stage], record.namespace)
            if job is not None:
                self.backend.delete_job(job, record.namespace)
                self.backend.wait_gone(record.job_names[stage], record.namespace)
        self._delete_configmap(record)

    def _delete_configmap(self, record: PipelineRecord) -> None:
        api, ns, name = self.backend.api, record.namespace, configmap_name(record.name)
        try:
            api.call(Op("delete", CONFIGMAPS, "", ns, name), api.core.delete_namespaced_config_map, name, ns)
        except ResourceNotFoundError:
            log.debug("pipeline ConfigMap %s/%s was already gone", ns, name)

    # ---------------------------------------------------------------------------------- read
    def get_pipeline(self, name: str) -> PipelineRecord:
        ns = self.namespace
        cm = self._read_configmap(name, ns)
        if cm is None:
            raise PipelineNotFoundError(
                f"pipeline {name!r} not found in namespace {ns!r} (no ConfigMap "
                f"{configmap_name(name)}); `vitjob submit … --then eval,export,infer310` creates one, "
                "`vitjob list` shows the jobs there"
            )
        return record_from_configmap(cm)

    def list_stage_jobs(self, pipeline: PipelineRecord) -> dict[str, StageJob]:
        """One LIST by part-of label, plus a GET for the first stage not yet recorded Completed when
        the list lacks it (a same-named job without the label is reported, as foreign)."""
        api, ns = self.backend.api, pipeline.namespace
        listed = api.call(
            Op("list", VC_JOBS, VC_GROUP, ns),
            api.custom.list_namespaced_custom_object,
            VC_GROUP,
            VC_VERSION,
            ns,
            VC_JOBS,
            label_selector=f"{c.LABEL_PART_OF}={pipeline.part_of}",
        )["items"]
        by_name = {j["metadata"]["name"]: j for j in listed}
        jobs = {}
        for stage in pipeline.stages:
            job = by_name.get(pipeline.job_names[stage])
            if job is None and pipeline.progress.get(stage) != StageState.COMPLETED:
                job = self._read_job(pipeline.job_names[stage], ns)
                if job is None:
                    break  # reconcile looks no further than the first stage without a job
            if job is not None:
                jobs[stage] = stage_job_from_object(job)
        return jobs

    # --------------------------------------------------------------------------------- write
    def create_stage(self, pipeline: PipelineRecord, stage: str) -> None:
        self.create_stage_objects(pipeline, stage)

    def create_stage_objects(self, pipeline: PipelineRecord, stage: str) -> dict[str, Any] | None:
        """Create the stage's objects (owned by the pipeline ConfigMap); return the created Job, or
        None when it already existed."""
        created_job = None
        for obj in pipeline.stage_objects(stage):
            obj = self._owned(obj, pipeline)
            group, plural, _ = kind_info(obj)
            try:
                result = self.backend.create_object(obj)
            except ConflictError:
                log.debug("%s %s exists already; counts as created", obj["kind"], obj["metadata"]["name"])
                continue
            if group == VC_GROUP and plural == VC_JOBS:
                created_job = result
        return created_job

    def update_pipeline(self, pipeline: PipelineRecord, update: UpdatePipeline) -> PipelineRecord:
        return record_from_configmap(self._patch(pipeline, update_patch(pipeline, update)))

    def delete_pipeline(self, pipeline: PipelineRecord) -> None:
        """Delete the pipeline's ConfigMap (jobs it still owns are garbage-collected with it)."""
        self._delete_configmap(pipeline)

    # ------------------------------------------------------------------------------- helpers
    def _patch(self, record: PipelineRecord, patch: dict[str, Any]) -> dict[str, Any]:
        api, ns, name = self.backend.api, record.namespace, configmap_name(record.name)
        return api.call(
            Op("patch", CONFIGMAPS, "", ns, name),
            api.core.patch_namespaced_config_map,
            name,
            ns,
            patch,
            _content_type=MERGE_PATCH,
        )

    def _owned(self, obj: dict[str, Any], record: PipelineRecord) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta["namespace"] = record.namespace
        meta["ownerReferences"] = [owner_reference(record)]
        return obj

    def _read_configmap(self, name: str, ns: str) -> dict[str, Any] | None:
        api, cm_name = self.backend.api, configmap_name(name)
        try:
            return api.call(
                Op("get", CONFIGMAPS, "", ns, cm_name), api.core.read_namespaced_config_map, cm_name, ns
            )
        except ResourceNotFoundError:
            return None

    def _read_job(self, name: str, ns: str) -> dict[str, Any] | None:
        api = self.backend.api
        try:
            return api.call(
                Op("get", VC_JOBS, VC_GROUP, ns, name),
                api.custom.get_namespaced_custom_object,
                VC_GROUP,
                VC_VERSION,
                ns,
                VC_JOBS,
                name,
            )
        except JobNotFoundError:
            return None
