"""Commands that run and observe jobs on a backend: ``submit``, ``status``, ``logs``, ``wait``,
``cancel``, ``delete`` and ``list``.

Each handler is thin: parse, make one ``Backend`` call (``vitjob.backends.get_backend``), print.
Results go to stdout; warnings and reasons for failure go to stderr. Exit codes: 0 success,
1 failure (incl. ``wait`` on a Failed/Aborted/Terminated job), 2 usage errors and ``wait`` timeouts.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from vitjob.backends import pipeline_store
from vitjob.backends.base import Backend, JobPhase, JobStatus
from vitjob.cli.common import (
    add_backend_arguments,
    backend_from_args,
    format_age,
    format_table,
    print_pipeline,
)
from vitjob.constants import DEFAULT_NAMESPACE
from vitjob.errors import BackendError, JobNotFoundError, PipelineNotFoundError, UsageError
from vitjob.pipeline import observe
from vitjob.progress import describe

log = logging.getLogger("vitjob")

_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def register(sub: argparse._SubParsersAction) -> None:
    _register_submit(sub)
    for name, help_, add in (
        ("status", "show a job's phase, pods and why it is Pending or Failed", _add_status),
        ("logs", "print (or follow with -f) the logs of a job's pods, merged", _add_logs),
        ("wait", "wait until a job ends: exit 0 Completed, 1 Failed/Aborted, 2 timeout", _add_wait),
        ("cancel", "abort a running job (Volcano AbortJob); the job and its history stay", _add_name_only),
        ("delete", "delete a job and the objects submit created for it", _add_name_only),
        ("list", "list the jobs vitjob manages", _add_list),
    ):
        p = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".")
        add(p)
        add_backend_arguments(p)
        p.set_defaults(func=_HANDLERS[name])


# ------------------------------------------------------------------------------------------- arguments
def _register_submit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submit",
        help="render a job and submit it to the cluster (or run it locally)",
        description="Render the job from the same flags as `vitjob render` (or take rendered "
        "YAML with -f), check that the cluster can run it, and create it.",
    )
    spec_cli = _render_cli()
    if spec_cli is not None:
        spec_cli.add_spec_arguments(p)
        spec_cli.add_validation_arguments(p)
    p.add_argument(
        "--manifest",
        metavar="FILE",
        default=None,
        help="submit these rendered objects (YAML from `vitjob render`, '-' for stdin) "
        "instead of rendering from the spec flags",
    )
    p.add_argument("--dry-run", action="store_true", help="validate and print the objects; submit nothing")
    p.add_argument("--replace", action="store_true", help="delete an existing job of that name first")
    p.add_argument(
        "--then",
        metavar="STAGES",
        default=None,
        help="make a pipeline: after this stage completes, run these stages in order "
        "(e.g. --then eval,export,infer310); stored on the cluster, advanced by `vitjob controller` "
        "or `vitjob pipeline run NAME --wait`",
    )
    add_backend_arguments(p)
    local = p.add_argument_group("local backend")
    local.add_argument("--data", type=Path, default=None, metavar="DIR",
                       help="the data PVC's directory on this machine (CIFAR-10 binary layout)")
    local.add_argument("--output", type=Path, default=None, metavar="DIR",
                       help="the output PVC's directory on this machine (runs land in DIR/NAME/…)")
    p.set_defaults(func=_cmd_submit)


def _render_cli() -> Any:
    try:
        from vitjob.cli import render
    except ImportError:  # the render commands are optional for submitting rendered YAML
        return None
    return render


def _add_status(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="job name")
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")


def _add_logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="job name")
    p.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="wait for pods to start, follow across restarts and retries, stop when the job ends",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--rank", type=int, default=None, help="only the pod with this index")
    which.add_argument("--pod", default=None, help="only this pod")
    p.add_argument("--previous", action="store_true", help="the previous (crashed) run of each container")
    p.add_argument("--tail", type=int, default=None, help="only the last N lines of each pod")
    p.add_argument("--since", default=None, help="only lines newer than this (e.g. 30s, 10m, 2h)")


def _add_wait(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="job name")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (exit 2)")


def _add_name_only(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="job name")


def _add_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("-A", "--all-namespaces", action="store_true", help="jobs of every namespace")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")


def parse_duration(text: str) -> int:
    """``30s``, ``10m``, ``2h``, ``1d`` or plain seconds → seconds."""
    m = _DURATION.match(text.strip())
    if not m:
        raise UsageError(f"--since {text!r}: expected a duration such as 30s, 10m, 2h or 1d")
    return int(m.group(1)) * _UNIT_S[m.group(2)]


# ------------------------------------------------------------------------------------------- handlers
def _load_objects(args: argparse.Namespace) -> list[dict]:
    """The objects to submit: from --manifest, or rendered from the spec flags."""
    if args.manifest:
        try:
            text = sys.stdin.read() if args.manifest == "-" else Path(args.manifest).read_text()
            objects = [d for d in yaml.safe_load_all(text) if d]
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"cannot read objects from {args.manifest}: {exc}") from None
        if not objects or not all(isinstance(o, dict) for o in objects):
            raise UsageError(f"{args.manifest}: expected YAML documents that are Kubernetes objects")
        return objects
    spec_cli = _render_cli()
    if spec_cli is None:
        raise UsageError(
            "rendering from flags is not available in this build; pass rendered YAML with --manifest FILE"
        )
    from vitjob.render import render_objects

    spec = spec_cli.spec_from_args(args)
    objects = render_objects(spec)
    if args.namespace is None and spec.namespace == DEFAULT_NAMESPACE:
        # No namespace asked for: the backend uses the kubeconfig context's namespace.
        for obj in objects:
            obj.get("metadata", {}).pop("namespace", None)
    return objects


def _cmd_submit(args: argparse.Namespace) -> int:
    if getattr(args, "then", None):
        return _submit_pipeline(args)
    objects = _load_objects(args)
    if args.dry_run:
        from vitjob.validate import validate_objects

        if getattr(args, "validate", True):
            validate_objects(objects, crd_source=getattr(args, "crd", None))
        print(yaml.safe_dump_all(objects, sort_keys=False), end="")
        return 0
    backend = backend_from_args(args)
    status = backend.submit(objects, replace=args.replace)
    for warning in status.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if backend.name == "local":  # ran in the foreground: report how it ended
        return _report_local_run(status, shown=getattr(backend, "observer", None) is not None)
    where = f" in namespace {status.namespace}" if status.namespace else ""
    print(f"submitted job {status.name}{where} ({backend.name} backend)")
    print("next:")
    print(f"  vitjob status {status.name}      # phase, pods, and why it waits")
    print(f"  vitjob logs -f {status.name}     # follow all pods until the job ends")
    print(f"  vitjob wait {status.name}        # exit 0 when Completed, 1 when it failed")
    if backend.name == "kubernetes":
        print(f"  kubectl logs -n {status.namespace} -l volcano.sh/job-name={status.name} -f --prefix")
    return 0


def run_local_pipeline(store: Any, name: str) -> int:
    from vitjob.logsetup import quieted
    from vitjob.pipeline import PipelinePhase, run_pipeline

    # The console shows each stage as it starts and ends; the reconcile loop's notes would repeat it.
    shown = getattr(store, "observer", None) is not None
    with quieted("vitjob.pipeline") if shown else contextlib.nullcontext():
        record = run_pipeline(store, name, wait=True, poll_s=0.2)
    print(f"pipeline {name} {record.phase}" + (f": {record.reason}" if record.reason else ""))
    for stage in record.stages:
        state = record.progress.get(stage)
        print(f"  {stage:<9} {record.job_names[stage]:<24} {state.value if state else 'not started'}")
    return 0 if record.phase == PipelinePhase.COMPLETED else 1


def _report_local_run(status: Any, *, shown: bool) -> int:
    """How a local job ended (unless the console ``shown`` it already) and how to see its output."""
    if not shown:
        print(f"job {status.name} {status.phase} (local backend, {status.retry_count} restart(s))")
        for reason in status.reasons:
            print(f"  {reason}")
    print(f"  vitjob logs {status.name} --backend local   # every pod's output")
    return 0 if status.phase == JobPhase.COMPLETED else 1


def _submit_pipeline(args: argparse.Namespace) -> int:
    """``submit --then``: store the pipeline and start its first stage."""
    from vitjob.pipeline import define_pipeline, parse_then

    if args.manifest:
        raise UsageError(
            "--then renders every stage from the spec flags; it cannot be combined with --manifest"
        )
    spec_cli = _render_cli()
    if spec_cli is None:
        raise UsageError("--then needs the render commands, which this build lacks")
    spec = spec_cli.spec_from_args(args)
    definition = define_pipeline(spec, parse_then(args.then, spec.stage))
    if args.namespace is None and spec.namespace == DEFAULT_NAMESPACE:
        definition = dataclasses.replace(definition, namespace="")  # the backend's namespace
    if args.dry_run:
        from vitjob.validate import validate_objects

        objects = [o for s in definition.stages for o in yaml.safe_load_all(s.manifest) if o]
        if getattr(args, "validate", True):
            validate_objects(objects, crd_source=getattr(args, "crd", None))
        print(yaml.safe_dump_all(objects, sort_keys=False), end="")
        return 0
    if getattr(args, "validate", True) and getattr(args, "crd", None):
        from vitjob.validate import validate_objects

        later = [o for s in definition.stages[1:] for o in yaml.safe_load_all(s.manifest) if o]
        validate_objects(later, crd_source=args.crd)
    backend = backend_from_args(args)
    store = pipeline_store(backend)
    status = store.create_pipeline(definition, replace=args.replace)
    if backend.name == "local":  # no controller here: advance the pipeline in the foreground
        return run_local_pipeline(store, definition.name)
    for warning in status.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    where = f" in namespace {status.namespace}" if status.namespace else ""
    stages = " → ".join(s.stage for s in definition.stages)
    print(f"submitted pipeline {definition.name}{where}: {stages} ({backend.name} backend)")
    print(f"started job {status.name}; the next stages start when it completes, driven by")
    print("`vitjob controller` in the cluster, or from here:")
    print(f"  vitjob pipeline run {definition.name} --wait   # advance it from this machine")
    print(f"  vitjob status {definition.name}                # each stage's job and phase")
    print(f"  kubectl get vitjob {definition.name}           # stage and phase (describe: its Events)")
    print(f"  vitjob logs -f {status.name}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    backend = backend_from_args(args)
    try:
        status = backend.status(args.name)
    except JobNotFoundError:
        observed = _pipeline_or_none(backend, args.name)
        if observed is None:
            raise

        print_pipeline(observed, args.output)
        return 0
    if args.output == "json":
        print(json.dumps(_status_dict(status), indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(_status_dict(status), sort_keys=False), end="")
    else:
        print(format_status(status))
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    if args.follow and args.previous:
        raise UsageError("--previous shows a finished run; it cannot be combined with -f")
    since_s = parse_duration(args.since) if args.since else None
    lines = backend_from_args(args).logs(
        args.name,
        follow=args.follow,
        rank=args.rank,
        pod=args.pod,
        previous=args.previous,
        tail=args.tail,
        since_s=since_s,
    )
    for line in lines:
        print(line, flush=args.follow)
    return 0


def _cmd_wait(args: argparse.Namespace) -> int:
    status = backend_from_args(args).wait(args.name, timeout_s=args.timeout)
    if status.phase == JobPhase.COMPLETED:
        print(f"job {status.name} Completed")
        return 0
    print(f"job {status.name} {status.phase}", file=sys.stderr)
    for reason in status.reasons:
        print(f"  {reason}", file=sys.stderr)
    return 1


def _cmd_cancel(args: argparse.Namespace) -> int:
    backend_from_args(args).cancel(args.name)
    print(
        f"asked to abort job {args.name}; it stays listed with its history (`vitjob delete {args.name}` "
        "removes it)"
    )
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    backend_from_args(args).delete(args.name)
    print(f"deleted job {args.name} and the objects submit created for it")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    jobs = backend_from_args(args).list_jobs(all_namespaces=args.all_namespaces)
    if getattr(args, "output", "table") == "json":
        keys = ("name", "namespace", "stage", "hw", "cards", "phase", "age_s", "progress")
        print(json.dumps([{k: _status_dict(j)[k] for k in keys} for j in jobs], indent=2))
        return 0
    rows = [
        [j.name, j.stage or "-", j.hw or "-", str(j.cards or "-"), str(j.phase), format_age(j.age_s)]
        for j in jobs
    ]
    header = ["NAME", "STAGE", "HW", "CARDS", "PHASE", "AGE"]
    if any(j.progress for j in jobs):  # running train jobs: where they are
        header.append("PROGRESS")
        rows = [[*row, describe(j.progress) if j.progress else ""] for j, row in zip(jobs, rows, strict=True)]
    if args.all_namespaces:
        header.insert(0, "NAMESPACE")
        rows = [[j.namespace, *row] for j, row in zip(jobs, rows, strict=True)]
    if not rows:
        print("no vitjob jobs" + ("" if args.all_namespaces else " in this namespace (-A: all namespaces)"))
        return 0
    print(format_table(header, rows))
    return 0


def _pipeline_or_none(backend: Backend, name: str) -> Any:
    """The pipeline ``name`` with its stage jobs, or None when the backend has no such pipeline."""
    try:
        return observe(pipeline_store(backend), name, finished_too=True)
    except (PipelineNotFoundError, BackendError) as exc:
        log.debug("%s is not a pipeline either: %s", name, exc)
        return None


_HANDLERS = {
    "status": _cmd_status,
    "logs": _cmd_logs,
    "wait": _cmd_wait,
    "cancel": _cmd_cancel,
    "delete": _cmd_delete,
    "list": _cmd_list,
}


# ------------------------------------------------------------------------------------------ formatting
def _status_dict(status: JobStatus) -> dict[str, Any]:
    data = dataclasses.asdict(status)
    data["phase"] = str(status.phase)
    data["age_s"] = round(status.age_s, 1)
    data["progress"] = status.progress.to_dict() if status.progress else None
    return data


def format_status(status: JobStatus) -> str:
    lines = [
        f"job:      {status.name}" + (f"  (namespace {status.namespace})" if status.namespace else ""),
        f"phase:    {status.phase}   retries: {status.retry_count}   age: {format_age(status.age_s)}",
    ]
    cards = f"{status.cards} cards" if status.cards else ""
    what = ", ".join(x for x in (status.stage, status.hw, cards) if x)
    if what:
        lines.append(f"job is:   {what}" + (f"   queue: {status.queue}" if status.queue else ""))
    if status.progress is not None:
        lines.append(f"progress: {describe(status.progress)}")
    for task, counts in sorted(status.tasks.items()):
        lines.append(f"task {task}: " + ", ".join(f"{n} {phase}" for phase, n in sorted(counts.items())))
    if status.pods:
        rows = [
            [
                p.name,
                "-" if p.rank is None else str(p.rank),
                p.phase,
                p.node or "-",
                str(p.restarts),
                "-" if p.exit_code is None else str(p.exit_code),
                p.reason or "",
            ]
            for p in status.pods
        ]
        lines += ["", format_table(["POD", "RANK", "PHASE", "NODE", "RESTARTS", "EXIT", "REASON"], rows)]
    else:
        lines.append("pods:     none yet")
    if status.reasons:
        lines += ["", "why:"] + [f"  - {r}" for r in status.reasons]
    return "\n".join(lines)
