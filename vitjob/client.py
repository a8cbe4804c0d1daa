"""``vitjob.Client``: the public Python API of vitjob, and the one service the CLI calls.

A client wraps one backend (``local`` or ``kubernetes``, ``auto`` picks) and offers what the ``vitjob``
command does: submit a job or a pipeline (with a dry run that only plans), read its status and logs,
wait for it, cancel, delete and list jobs, and run, show, cancel and delete pipelines. Notebooks and
other tools use it instead of shelling out::

    from vitjob import Client
    from vitjob.api.values import load_spec

    client = Client("kubernetes", namespace="ml")
    spec = load_spec({"name": "vit", "hw": "gpu", "cards": 8}, None, [])
    print(client.submit(spec, dry_run=True).requests)     # what submit would do; nothing is sent
    result = client.submit(spec, then=["eval", "export"])  # a pipeline: train → eval → export
    print(client.wait(result.status.name).phase)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from vitjob.api.spec import JobSpec
from vitjob.api.status import JobStatus, PipelinePhase
from vitjob.backends import get_backend, pipeline_store
from vitjob.backends.base import Backend, SubmitPlan, SubmitResult
from vitjob.constants import DEFAULT_NAMESPACE, STAGES, TASK_NAME, VOLCANO_POD_NAME_FORMAT
from vitjob.errors import BackendError, PipelineNotFoundError, UsageError
from vitjob.pipeline.define import define_pipeline, in_order, parse_then
from vitjob.pipeline.model import Observed, PipelineRecord, PipelineStore
from vitjob.pipeline.runner import (
    cancel_pipeline,
    delete_pipeline,
    observe,
    retry_pipeline,
    run_pipeline,
)
from vitjob.render.manifests import render_objects

if TYPE_CHECKING:
    from vitjob.backends.base import LocalJobObserver

log = logging.getLogger(__name__)

Objects = Sequence[dict[str, Any]]


class Client:
    """Jobs and pipelines on one backend.

    Args:
        backend: ``"auto"`` (kubernetes when a kubeconfig or in-cluster account exists, else local),
            ``"local"``, ``"kubernetes"``, or a ``Backend`` built already.
        kubeconfig, context: the kubeconfig file and context (kubernetes).
        namespace: the namespace jobs go to and are read from (default: the context's).
        local_root: where the local backend keeps its jobs' state and logs.
        data_dir, output_dir: the data and output PVCs' directories on this machine (local).
        verbose: local pods keep MindSpore's own logging and stream their raw output.
        observer: told what a local job run in the foreground does (``vitjob.cli.console``).
    """

    def __init__(
        self,
        backend: str | Backend = "auto",
        *,
        kubeconfig: str | Path | None = None,
        context: str | None = None,
        namespace: str | None = None,
        local_root: str | Path | None = None,
        data_dir: str | Path | None = None,
        output_dir: str | Path | None = None,
        verbose: bool = False,
        observer: LocalJobObserver | None = None,
    ) -> None:
        self.namespace = namespace
        if isinstance(backend, Backend):
            self.backend = backend
            return
        quiet: dict[str, Any] = {} if observer is None else {"stream": False, "observer": observer}
        self.backend = get_backend(
            backend,
            kubeconfig=str(kubeconfig) if kubeconfig else None,
            context=context,
            namespace=namespace,
            local_root=local_root,
            data_dir=data_dir,
            output_dir=output_dir,
            verbose=verbose,
            **quiet,
        )

    # ------------------------------------------------------------------------------------ submit
    def plan(
        self,
        spec: JobSpec | None = None,
        *,
        objects: Objects | None = None,
        then: Sequence[str] | str = (),
        replace: bool = False,
        validate: bool = True,
        crd: str | Path | None = None,
        offline_check: bool = True,
        gates: Sequence[str] = (),
        stage_retries: int = 0,
    ) -> SubmitPlan:
        """What ``submit`` would do, without a request to anything: the backend's plan for the job of
        ``spec`` (or the rendered ``objects``), a pipeline when ``then`` names later stages (with
        ``gates`` on stage outputs, e.g. ``eval.accuracy>=0.95``, and ``stage_retries`` automatic
        retries of a failed stage).

        With ``validate``, every object (later stages' too) is first checked offline against the
        Kubernetes schemas and, given ``crd``, the Volcano CRD: always for a dry run (where the cluster
        cannot check), and before a submit when ``crd`` is given (``offline_check``: whether this is a
        dry run; a submit without ``crd`` leaves the check to the cluster's own CRD).

        Raises:
            UsageError: neither or both of ``spec`` and ``objects``, or ``then`` with ``objects``.
            SpecError, RenderError, ValidationError: the job cannot be made or is invalid.
        """
        if (spec is None) == (objects is None):
            raise UsageError("submit takes a spec or rendered objects (--manifest), not both or neither")
        first_stage = spec.stage if spec else STAGES[0]
        stages = parse_then(then, first_stage) if isinstance(then, str) else tuple(then)
        if stages and not in_order((first_stage, *stages)):
            raise UsageError(
                f"then {list(stages)}: stages must follow {first_stage} in the order "
                f"{' → '.join(STAGES)}, each once (e.g. ['eval', 'export', 'infer310'])"
            )
        # a spec left in the default namespace goes to the backend's: the client's namespace, else the
        # kubeconfig context's (the CLI's -n sets both, so -n X means X either way)
        backend_namespace = spec is not None and spec.namespace == DEFAULT_NAMESPACE
        if (gates or stage_retries) and not stages:
            raise UsageError("--gate and --stage-retries apply to pipelines; add --then (e.g. --then eval)")
        if objects is not None:
            if stages:
                raise UsageError(
                    "--then renders every stage from the spec flags; it cannot be combined with --manifest"
                )
            first = [dict(o) for o in objects]
            plan = self.backend.plan_submit(first, replace=replace)
        else:
            assert spec is not None
            first = self._objects(spec, backend_namespace)
            if stages:
                definition = define_pipeline(spec, stages, gates, stage_retries)
                if backend_namespace:
                    definition = dataclasses.replace(definition, namespace="")  # the backend's
                later: dict[str, tuple[dict[str, Any], ...]] = {
                    stage: tuple(self._objects(dataclasses.replace(spec, stage=stage), backend_namespace))
                    for stage in stages
                }
                plan = self.backend.plan_submit(
                    first, pipeline=definition, later_objects=later, replace=replace
                )
            else:
                plan = self.backend.plan_submit(first, replace=replace)
        if validate and (offline_check or crd is not None):
            from vitjob.render.validate import validate_objects  # jsonschema: only when checking

            validate_objects(plan.documents(), crd_source=str(crd) if crd else None)
        return plan

    @overload
    def submit(
        self,
        spec: JobSpec | None = ...,
        *,
        objects: Objects | None = ...,
        then: Sequence[str] | str = ...,
        replace: bool = ...,
        dry_run: Literal[True],
        validate: bool = ...,
        crd: str | Path | None = ...,
        gates: Sequence[str] = ...,
        stage_retries: int = ...,
    ) -> SubmitPlan: ...

    @overload
    def submit(
        self,
        spec: JobSpec | None = ...,
        *,
        objects: Objects | None = ...,
        then: Sequence[str] | str = ...,
        replace: bool = ...,
        dry_run: Literal[False] = ...,
        validate: bool = ...,
        crd: str | Path | None = ...,
        gates: Sequence[str] = ...,
        stage_retries: int = ...,
    ) -> SubmitResult: ...

    def submit(
        self,
        spec: JobSpec | None = None,
        *,
        objects: Objects | None = None,
        then: Sequence[str] | str = (),
        replace: bool = False,
        dry_run: bool = False,
        validate: bool = True,
        crd: str | Path | None = None,
        gates: Sequence[str] = (),
        stage_retries: int = 0,
    ) -> SubmitPlan | SubmitResult:
        """Submit the job of ``spec`` (or ``objects``), a pipeline with the stages ``then``; with
        ``dry_run`` only plan it (``plan``) and return the plan. On the local backend the job (every
        stage) runs to its end before this returns; on a cluster it returns once the job is created."""
        plan = self.plan(spec, objects=objects, then=then, replace=replace, validate=validate, crd=crd,
                         offline_check=dry_run, gates=gates, stage_retries=stage_retries)
        if dry_run:
            return plan
        return self.backend.execute(plan)

    # -------------------------------------------------------------------------------------- jobs
    def status(self, name: str) -> JobStatus:
        """The job's phase, pods and why it waits or failed (``JobNotFoundError`` if there is none)."""
        return self.backend.status(name)

    def logs(
        self,
        name: str,
        *,
        follow: bool = False,
        rank: int | None = None,
        pod: str | None = None,
        previous: bool = False,
        tail: int | None = None,
        since_s: int | None = None,
    ) -> Iterator[str]:
        """The job's pods' log lines, merged and prefixed with the pod; ``follow`` until the job ends."""
        if follow and previous:
            raise UsageError("--previous shows a finished run; it cannot be combined with -f")
        return self.backend.logs(
            name, follow=follow, rank=rank, pod=pod, previous=previous, tail=tail, since_s=since_s
        )

    def kept_logs(
        self, name: str, attempt: int, *, rank: int | None = None, pod: str | None = None
    ) -> Iterator[str]:
        """Attempt ``attempt`` (1: each pod's first run) of the logs job ``name``'s pods kept on the
        output volume, prefixed with the pod; readable after Volcano deleted the pods of a restart."""
        if rank is not None:
            pod = VOLCANO_POD_NAME_FORMAT.format(job=name, task=TASK_NAME, index=rank)
        return self.backend.kept_logs(name, attempt, pod=pod)

    def wait(self, name: str, timeout_s: float | None = None) -> JobStatus:
        """Block until the job ends; ``WaitTimeoutError`` after ``timeout_s``."""
        return self.backend.wait(name, timeout_s=timeout_s)

    def cancel(self, name: str) -> None:
        """Abort the job (Volcano AbortJob); it stays listed with its history."""
        self.backend.cancel(name)

    def suspend(self, name: str) -> None:
        """Stop the running job's pods, keeping the job (Volcano AbortJob, marked as a suspension);
        ``resume`` runs it again and training continues from its last checkpoint."""
        self.backend.suspend(name)

    def resume(self, name: str) -> JobStatus:
        """Run a suspended job again (Volcano ResumeJob; the local backend runs it in the foreground to
        its end); its status afterwards."""
        return self.backend.resume(name)

    def delete(self, name: str) -> None:
        """Delete the job and the objects submit created for it."""
        self.backend.delete(name)

    # --------------------------------------------------------------------------------- pipelines
    def pipeline_store(self) -> PipelineStore:
        """The store of this backend's pipelines (``BackendError`` if it cannot run any)."""
        return pipeline_store(self.backend)

    def pipeline(self, name: str) -> Observed:
        """The pipeline and each stage's job as they are now (``PipelineNotFoundError`` if none)."""
        return observe(self.pipeline_store(), name, finished_too=True)

    def find_pipeline(self, name: str) -> Observed | None:
        """The pipeline ``name``, or None when this backend has no such pipeline (or no pipelines)."""
        try:
            return self.pipeline(name)
        except (PipelineNotFoundError, BackendError) as exc:
            log.debug("%s is not a pipeline either: %s", name, exc)
            return None

    def run_pipeline(
        self,
        name: str,
        *,
        wait: bool = True,
        poll_s: float | None = None,
        timeout_s: float | None = None,
        on_step: Callable[[PipelineRecord], None] | None = None,
    ) -> PipelineRecord:
        """Advance the pipeline from here (what the controller does): once, or until it ends."""
        if timeout_s is not None and not wait:
            raise UsageError("--timeout applies to --wait; add --wait")
        options: dict[str, Any] = {} if poll_s is None else {"poll_s": poll_s}
        return run_pipeline(
            self.pipeline_store(), name, wait=wait, timeout_s=timeout_s, on_step=on_step, **options
        )

    def retry_pipeline(
        self, name: str, *, gates: Sequence[str] | None = None, stage_retries: int | None = None
    ) -> PipelineRecord:
        """Ask for a retry of the Failed pipeline (``spec.retry`` + 1; optionally new ``gates`` or
        ``stage_retries``): its first stage not Completed runs again as a new job once the controller
        (or ``run_pipeline``) acts. Returns the record as stored."""
        return retry_pipeline(self.pipeline_store(), name, gates=gates, stage_retries=stage_retries)

    def suspend_pipeline(self, name: str, suspend: bool = True) -> PipelineRecord:
        """Set the pipeline's ``spec.suspend`` (as ``kubectl patch`` would): true aborts its running stage's
        job (phase Suspended), false resumes it from its last checkpoint, once the controller acts."""
        store = self.pipeline_store()
        record = store.get_pipeline(name)
        if suspend and record.phase.is_terminal:
            raise UsageError(f"pipeline {name} already ended ({record.phase}); nothing to suspend")
        if not suspend and record.phase != PipelinePhase.SUSPENDED and not record.spec.get("suspend"):
            raise UsageError(f"pipeline {name} is {record.phase}, not suspended")
        return store.update_spec(record, {**record.spec, "suspend": suspend})

    def cancel_pipeline(self, name: str) -> list[str]:
        """Stop the pipeline (no further stage starts); returns the stage jobs asked to abort."""
        return cancel_pipeline(self.pipeline_store(), self.backend, name)

    def delete_pipeline(self, name: str) -> list[str]:
        """Cancel the pipeline, delete its stage jobs and the pipeline; returns the deleted jobs."""
        return delete_pipeline(self.pipeline_store(), self.backend, name)

    # ----------------------------------------------------------------------------------- helpers
    @staticmethod
    def _objects(spec: JobSpec, backend_namespace: bool) -> list[dict[str, Any]]:
        """The objects of ``spec``; without a namespace when the backend's namespace applies."""
        objects = render_objects(spec)
        if backend_namespace:
            for obj in objects:
                obj.get("metadata", {}).pop("namespace", None)
        return objects

    # ------------------------------------------------------------------------------------- list
    def list(self, all_namespaces: bool = False) -> list[JobStatus]:
        """The jobs vitjob manages (in the namespace, or in every one)."""
        return self.backend.list_jobs(all_namespaces=all_namespaces)
