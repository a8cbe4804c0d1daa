"""The local backend's ``Backend`` API: runs the rendered Volcano Jobs as processes on this machine.

It emulates what the cluster would do with the very objects ``vitjob render`` produces:
- each replica of each task becomes one local "pod": the container's command and args run as a
  process with the container's env, ``$(VAR)`` references expanded as the kubelet does;
- Volcano's env and svc plugins: ``VC_TASK_INDEX``, ``VC_<TASK>_HOSTS``/``_NUM`` and a ``<task>.host``
  file with the svc plugin's host names (``<job>-<task>-<i>.<job>``);
- pod networking (``network``): as root with iproute2, each pod in its own network namespace with
  its own address, found by name and using the job's rendered ports, as on a cluster; otherwise all
  pods share this machine's network (by name through a hosts file, free ports per job). The job's log
  says which mode ran, and ``state.json`` records it with the pods' addresses;
- the downward API: ``status.podIP``/``status.hostIP`` env values get the pod's and the "node's" address;
- volumes: a ``persistentVolumeClaim`` mounted at the data or output mount path maps to ``--data`` /
  ``--output``, other claims to ``<local-root>/pvc/<claim>``; env values under a mount path are
  rewritten to the local directory;
- Ascend: a downward-API ``annotations`` file with a simulated device-plugin allocation per pod, so
  ``vitjob launch`` builds the rank table for real, then computes on the CPU
  (``VITJOB_SIMULATE_DEVICE=cpu``);
- policies: a failed pod restarts the whole job (``PodFailed → RestartJob``) up to ``maxRetry``, then the
  job is Failed with the reason; all pods succeeding completes it (``TaskCompleted → CompleteJob``).

State lives in ``<local-root>/jobs/<job>/`` (``state.json``, ``logs/<pod>.log`` and the previous run's
``logs/<pod>.previous.log``), so ``vitjob status/logs/wait/cancel/delete/list`` work from another shell.
``submit`` runs the job in the foreground and streams its output. The pieces: ``runner`` (one job's
pods and policies), ``pod`` (one process), ``network``, ``state`` (the state file), ``store``
(pipelines).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from vitjob import constants as c
from vitjob import keptlogs
from vitjob.backends.base import Backend, JobPhase, JobStatus, LocalJobObserver, SubmitPlan, SubmitResult
from vitjob.backends.local.runner import Runner
from vitjob.backends.local.state import CANCEL_FILE, STATE_FILE, SUSPEND_FILE, status_from_state
from vitjob.backends.local.store import LocalPipelineStore
from vitjob.errors import ConflictError, JobNotFoundError, UsageError, WaitTimeoutError
from vitjob.logsetup import quieted
from vitjob.pipeline.model import PipelineDefinition
from vitjob.pipeline.runner import run_pipeline
from vitjob.progress import ProgressReading, last_progress_in_file

log = logging.getLogger(__name__)



def default_root() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "vitjob" / "local"


def find_volcano_job(objects: list[dict[str, Any]]) -> dict[str, Any]:
    jobs = [
        o for o in objects if o.get("kind") == c.VOLCANO_KIND and o.get("apiVersion") == c.VOLCANO_API_VERSION
    ]
    if len(jobs) != 1:
        raise UsageError(
            f"expected exactly one Volcano Job ({c.VOLCANO_API_VERSION}) among the objects, got {len(jobs)}"
        )
    return jobs[0]


class LocalBackend(Backend):
    name = "local"

    def __init__(
        self,
        local_root: str | Path | None = None,
        data_dir: str | Path | None = None,
        output_dir: str | Path | None = None,
        stream: IO[str] | bool | None = True,
        poll_s: float = 0.2,
        grace_s: float = 15.0,
        observer: LocalJobObserver | None = None,
        verbose: bool = False,
    ) -> None:
        self.root = Path(local_root) if local_root else default_root()
        self.data_dir = Path(data_dir).resolve() if data_dir else None
        self.output_dir = Path(output_dir).resolve() if output_dir else None
        self.out: IO[str] | None = sys.stdout if stream is True else (stream or None)
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.observer = observer
        self.verbose = verbose  # False: MindSpore's own logging limited to errors in the pods

    # -------------------------------------------------------------------------------- state files
    def job_dir(self, name: str) -> Path:
        return self.root / "jobs" / name

    def _read_state(self, name: str) -> dict[str, Any]:
        path = self.job_dir(name) / STATE_FILE
        try:
            state: dict[str, Any] = json.loads(path.read_text())
            return state
        except FileNotFoundError:
            raise JobNotFoundError(
                f"no local job {name!r} under {self.root / 'jobs'} (`vitjob list --backend local`)"
            ) from None

    # -------------------------------------------------------------------------------- Backend API
    def plan_submit(
        self,
        objects: Sequence[dict[str, Any]],
        *,
        pipeline: PipelineDefinition | None = None,
        later_objects: Mapping[str, tuple[dict[str, Any], ...]] | None = None,
        replace: bool = False,
    ) -> SubmitPlan:
        """Local jobs run in the foreground: the plan runs the job (each stage of a pipeline) here."""
        job = find_volcano_job(list(objects))
        name = job["metadata"]["name"]
        stages = pipeline.stages if pipeline is not None else (name,)
        checks = [f"no local job {name} under {self.root / 'jobs'}"
                  + (" (--replace deletes it first)" if replace else "")]
        requests = [f"write {self.job_dir(name) / 'job.json'}, then run its pods as processes until the "
                    "job ends"]
        if pipeline is not None:
            checks.insert(0, f"no local pipeline {pipeline.name} under {self.root / 'pipelines'}")
            requests.insert(0, f"write {self.root / 'pipelines' / pipeline.name}.json (the pipeline's spec)")
            requests.append(f"then each later stage ({', '.join(stages[1:])}) the same way, rendered from "
                            "that spec when it starts")
        return SubmitPlan(
            backend=self.name,
            job_name=name,
            namespace=job["metadata"].get("namespace", ""),
            objects=tuple(copy.deepcopy(list(objects))),
            pipeline=pipeline,
            later_objects=dict(later_objects or {}),
            replace=replace,
            checks=tuple(checks),
            requests=tuple(requests),
            foreground=True,
        )

    def execute(self, plan: SubmitPlan) -> SubmitResult:
        """Run the job to its end; a pipeline runs stage after stage (no controller runs it here)."""
        if plan.pipeline is None:
            status = self.run_job(list(plan.objects), replace=plan.replace)
            steps = (f"vitjob logs {status.name} --backend local   # every pod's output",)
            return SubmitResult(plan, status, None, steps)
        store = self.pipeline_store()
        # The console shows each stage as it starts and ends; the reconcile loop's notes would repeat it.
        with quieted("vitjob.pipeline") if self.observer is not None else contextlib.nullcontext():
            status = store.create_pipeline(plan.pipeline, replace=plan.replace)
            record = run_pipeline(store, plan.pipeline.name, wait=True, poll_s=self.poll_s)
        return SubmitResult(plan, status, record, ())

    def pipeline_store(self) -> LocalPipelineStore:
        return LocalPipelineStore(self)

    def run_job(self, objects: list[dict[str, Any]], *, replace: bool = False) -> JobStatus:
        """Run one job's objects in the foreground until the job ends; its status then."""
        job = find_volcano_job(objects)
        name = job["metadata"]["name"]
        jdir = self.job_dir(name)
        if (jdir / STATE_FILE).exists():
            current = status_from_state(self._read_state(name))
            if not replace:
                raise ConflictError(
                    f"local job {name} already exists ({current.phase}); pass --replace to run it again "
                    f"or `vitjob delete {name} --backend local`"
                )
            self.delete(name)
        jdir.mkdir(parents=True)
        (jdir / "job.json").write_text(json.dumps(job, indent=2))
        runner = Runner(self, job, jdir)
        try:
            return runner.run()
        finally:
            runner.network.close()

    def status(self, name: str) -> JobStatus:
        return self._with_progress(status_from_state(self._read_state(name)))

    def _with_progress(self, status: JobStatus) -> JobStatus:
        """A running train job gets the last progress line of its first pod (rank 0's)."""
        if status.phase == JobPhase.RUNNING and status.stage == "train" and status.pods:
            log_file = self.job_dir(status.name) / "logs" / f"{status.pods[0].name}.log"
            status.progress = ProgressReading.now(last_progress_in_file(log_file))
        return status

    def kept_logs(self, name: str, attempt: int, *, pod: str | None = None) -> Iterator[str]:
        state = self._read_state(name)
        log_dir = state.get("kept_logs")
        if not log_dir:
            raise UsageError(f"job {name} keeps no logs of its attempts (rendered without {c.ENV_LOG_DIR})")
        files = keptlogs.attempt_files(Path(log_dir), name, attempt, pod)
        if not files:
            kept = keptlogs.attempts(Path(log_dir), name)
            have = f"attempts kept: {', '.join(map(str, kept))}" if kept else "none kept yet"
            raise JobNotFoundError(f"job {name} has no logs of attempt {attempt} in {log_dir} ({have})")
        yield from keptlogs.read_lines(files)

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
        if since_s is not None:
            raise UsageError("--since needs timestamps, which local logs do not have; use --tail N")
        state = self._read_state(name)
        pods = [p["name"] for p in state.get("pods", [])]
        if rank is not None:
            pods = [p for i, p in enumerate(pods) if i == rank]
        if pod is not None:
            pods = [p for p in pods if p == pod]
        if not pods:
            raise JobNotFoundError(f"job {name} has no pod matching --rank/--pod")
        suffix = ".previous.log" if previous else ".log"
        files = {p: self.job_dir(name) / "logs" / f"{p}{suffix}" for p in pods}
        offsets = dict.fromkeys(pods, 0)
        first = True
        while True:
            for p, path in files.items():
                if not path.exists():
                    continue
                with open(path) as fh:
                    fh.seek(offsets[p])
                    lines = fh.read().splitlines(keepends=True)
                    complete = [ln for ln in lines if ln.endswith("\n")]
                    offsets[p] += sum(len(ln.encode()) for ln in complete)
                if first and tail is not None:
                    complete = complete[-tail:] if tail > 0 else []
                for ln in complete:
                    yield f"[{p}] {ln.rstrip()}"
            first = False
            if not follow or status_from_state(self._read_state(name)).phase.is_terminal:
                if follow:  # one last read after the end
                    follow = False
                    continue
                return
            time.sleep(self.poll_s)

    def wait(self, name: str, timeout_s: float | None = None) -> JobStatus:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            status = self.status(name)
            if status.phase.is_terminal:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeoutError(f"job {name} is still {status.phase} after {timeout_s:g} s")
            time.sleep(self.poll_s)

    def cancel(self, name: str) -> None:
        self._read_state(name)
        (self.job_dir(name) / CANCEL_FILE).touch()

    def suspend(self, name: str) -> None:
        status = status_from_state(self._read_state(name))
        if status.phase.is_terminal:
            raise UsageError(f"job {name} already ended ({status.phase}); only running jobs can be suspended")
        (self.job_dir(name) / SUSPEND_FILE).touch()

    def resume(self, name: str) -> JobStatus:
        """Run the suspended job ``name`` again in the foreground (as its submit did), until it ends."""
        state = self._read_state(name)
        if not state.get("suspended") or state.get("phase") != JobPhase.ABORTED.value:
            raise UsageError(
                f"job {name} is {state.get('phase')}, not suspended: only a job `vitjob suspend` stopped "
                "can be resumed"
            )
        jdir = self.job_dir(name)
        job = json.loads((jdir / "job.json").read_text())
        runner = Runner(self, job, jdir, resumed=state)
        try:
            return runner.run()
        finally:
            runner.network.close()

    def delete(self, name: str) -> None:
        status = self.status(name)
        if not status.phase.is_terminal:
            self.cancel(name)
            self.wait(name, timeout_s=self.grace_s + 30)
        shutil.rmtree(self.job_dir(name))

    def list_jobs(self, all_namespaces: bool = False) -> list[JobStatus]:
        jobs_dir = self.root / "jobs"
        if not jobs_dir.is_dir():
            return []
        return [
            self._with_progress(status_from_state(self._read_state(d.name)))
            for d in sorted(jobs_dir.iterdir())
            if (d / STATE_FILE).is_file()
        ]


