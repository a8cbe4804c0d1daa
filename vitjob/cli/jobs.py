"""Commands that run and observe jobs on a backend: ``submit``, ``status``, ``logs``, ``wait``,
``cancel``, ``suspend``, ``resume``, ``delete`` and ``list``.

Each handler is thin: parse, make one ``vitjob.Client`` call (``client_from_args``), print.
Results go to stdout; warnings and reasons for failure go to stderr. Exit codes: 0 success,
1 failure (incl. ``wait`` on a Failed/Aborted/Terminated job), 2 usage errors and ``wait`` timeouts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from vitjob.api.status import JobPhase, JobStatus, PipelinePhase
from vitjob.backends.base import SubmitPlan, SubmitResult
from vitjob.cli import render as spec_cli
from vitjob.cli.common import (
    add_backend_arguments,
    client_from_args,
    format_age,
    format_table,
    print_pipeline,
)
from vitjob.errors import JobNotFoundError, UsageError
from vitjob.pipeline.model import PipelineRecord
from vitjob.progress import describe, describe_checkpoint

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
        ("suspend", "stop a running job's pods and keep the job, to resume it later (Volcano AbortJob); "
         "for a pipeline (VitJob) NAME, set its spec.suspend", _add_name_only),
        ("resume", "run a suspended job or pipeline again: training continues from its last checkpoint "
         "(Volcano ResumeJob, counted as one of its --max-retry restarts)", _add_name_only),
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
    spec_cli.add_spec_arguments(p)
    spec_cli.add_validation_arguments(p)
    p.add_argument(
        "--manifest",
        metavar="FILE",
        default=None,
        help="submit these rendered objects (YAML from `vitjob render`, '-' for stdin) "
        "instead of rendering from the spec flags",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate and print the objects (stdout) and what submit would check and request (stderr); "
        "submit nothing",
    )
    p.add_argument("--replace", action="store_true", help="delete an existing job of that name first")
    p.add_argument(
        "--then",
        metavar="STAGES",
        default=None,
        help="make a pipeline: after this stage completes, run these stages in order "
        "(e.g. --then eval,export,infer310); stored on the cluster, advanced by `vitjob controller` "
        "or `vitjob pipeline run NAME --wait`",
    )
    p.add_argument(
        "--gate",
        action="append",
        default=[],
        metavar="STAGE.OUTPUT>=N",
        help="with --then: a stage starts only if this holds on an earlier stage's outputs, e.g. "
        "--gate 'eval.accuracy>=0.95' (operators >= <= > < == !=; repeatable; outputs: train "
        "best_step, val_accuracy, best_val_accuracy, test_accuracy, steps; eval accuracy, top1_correct, "
        "samples; export mindir_bytes; infer310 accuracy, top1_correct, total, mean_ms, timed_images). "
        "A gate that fails ends the pipeline Failed with the measured value",
    )
    p.add_argument(
        "--stage-retries",
        type=int,
        default=0,
        metavar="N",
        help="with --then: rerun a failed stage up to N times as a new job (<name>-<stage>-r<n>), "
        "after 10 s, 20 s, … (spec.stage_retry_backoff_s)",
    )
    add_backend_arguments(p)
    local = p.add_argument_group("local backend")
    local.add_argument("--data", dest="data_dir", type=Path, default=None, metavar="DIR",
                       help="the data PVC's directory on this machine (CIFAR-10 binary layout)")
    local.add_argument("--output", dest="output_dir", type=Path, default=None, metavar="DIR",
                       help="the output PVC's directory on this machine (runs land in DIR/NAME/…)")
    p.set_defaults(func=_cmd_submit)


def _add_status(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="job name")
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        dest="raw_notes",  # not the global -v (debug logging), which shows them too
        help="also the scheduler's raw notes about a Pending job (PodGroup state and events, unfolded); "
        "`why:` always leads with the root cause and its fix",
    )


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
    p.add_argument(
        "--attempt",
        type=int,
        default=None,
        metavar="N",
        help="run N of each pod (1: its first) as kept on the output volume; readable after Volcano "
        "deleted the pods of a restarted job (on a cluster a short-lived pod reads the volume)",
    )
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
def _manifest_objects(source: str) -> list[dict[str, Any]]:
    """The rendered objects of ``--manifest FILE`` (``-``: stdin)."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
        objects = [d for d in yaml.safe_load_all(text) if d]
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read objects from {source}: {exc}") from None
    if not objects or not all(isinstance(o, dict) for o in objects):
        raise UsageError(f"{source}: expected YAML documents that are Kubernetes objects")
    return objects


def _cmd_submit(args: argparse.Namespace) -> int:
    """Plan the submission (``--dry-run``: print the plan), else carry it out and say what follows."""
    if args.manifest:
        spec, objects = None, _manifest_objects(args.manifest)
    else:
        spec, objects = spec_cli.spec_from_args(args), None
    client = client_from_args(args)
    options = {"objects": objects, "then": args.then or (), "replace": args.replace,
               "validate": args.validate, "crd": args.crd, "gates": args.gate,
               "stage_retries": args.stage_retries}
    if args.dry_run:
        print_plan(client.submit(spec, dry_run=True, **options))
        return 0
    result = client.submit(spec, **options)
    for warning in result.status.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if result.pipeline is not None:
        return report_pipeline_run(result.pipeline)
    if result.plan.foreground:
        return _report_finished_job(result, shown=not args.verbose)
    _report_submitted(result)
    return 0


def print_plan(plan: SubmitPlan) -> None:
    """A dry run: every object as YAML on stdout (``| kubectl apply -f -`` works), and what submit
    would check and request as comments on stderr."""
    where = plan.namespace or "the backend's namespace"
    what = f"pipeline {plan.pipeline.name}" if plan.pipeline else f"job {plan.job_name}"
    lines = [f"# dry run: submit would create {what} in {where} ({plan.backend} backend)", "# checks first:"]
    lines += [f"#   - {check}" for check in plan.checks]
    lines += ["# then:"] + [f"#   {i}. {request}" for i, request in enumerate(plan.requests, 1)]
    print("\n".join(lines), file=sys.stderr)
    print(yaml.safe_dump_all(plan.documents(), sort_keys=False), end="")


def report_pipeline_run(record: PipelineRecord) -> int:
    """How a pipeline run in the foreground ended, stage by stage (exit 0 when it Completed)."""
    print(f"pipeline {record.name} {record.phase}" + (f": {record.reason}" if record.reason else ""))
    for stage in record.stages:
        state = record.progress.get(stage)
        print(f"  {stage:<9} {record.job_names[stage]:<24} {state.value if state else 'not started'}")
    return 0 if record.phase == PipelinePhase.COMPLETED else 1


def _report_finished_job(result: SubmitResult, *, shown: bool) -> int:
    """How a job run in the foreground ended (unless the console ``shown`` it already) and how to see
    its output."""
    status = result.status
    if not shown:
        print(f"job {status.name} {status.phase} ({result.plan.backend} backend, "
              f"{status.retry_count} restart(s))")
        for reason in status.reasons:
            print(f"  {reason}")
    for step in result.next_steps:
        print(f"  {step}")
    return 0 if status.phase == JobPhase.COMPLETED else 1


def _report_submitted(result: SubmitResult) -> None:
    """A job or pipeline created on a cluster: where, and the commands that follow it."""
    status, plan = result.status, result.plan
    where = f" in namespace {status.namespace}" if status.namespace else ""
    if plan.pipeline is None:
        print(f"submitted job {status.name}{where} ({plan.backend} backend)")
        print("next:")
    else:
        stages = " → ".join(plan.pipeline.stages)
        print(f"submitted pipeline {plan.pipeline.name}{where}: {stages} ({plan.backend} backend)")
        print(f"started job {status.name}; the next stages start when it completes, driven by")
        print("`vitjob controller` in the cluster, or from here:")
    for step in result.next_steps:
        print(f"  {step}")


def _cmd_status(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    try:
        status = client.status(args.name)
    except JobNotFoundError:
        observed = client.find_pipeline(args.name)
        if observed is None:
            raise
        print_pipeline(observed, args.output)
        return 0
    if args.output == "json":
        print(json.dumps(_status_dict(status), indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(_status_dict(status), sort_keys=False), end="")
    else:
        print(format_status(status, verbose=args.raw_notes or args.verbose))
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    if args.attempt is not None:
        given = [flag for flag, on in (("-f", args.follow), ("--previous", args.previous),
                                       ("--tail", args.tail is not None), ("--since", args.since)) if on]
        if given:
            raise UsageError(f"--attempt prints a kept run whole; it does not go with {', '.join(given)}")
        client = client_from_args(args)
        for line in client.kept_logs(args.name, args.attempt, rank=args.rank, pod=args.pod):
            print(line)
        return 0
    since_s = parse_duration(args.since) if args.since else None
    lines = client_from_args(args).logs(
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
    status = client_from_args(args).wait(args.name, timeout_s=args.timeout)
    if status.phase == JobPhase.COMPLETED:
        print(f"job {status.name} Completed")
        return 0
    print(f"job {status.name} {status.phase}", file=sys.stderr)
    for reason in status.reasons:
        print(f"  {reason}", file=sys.stderr)
    return 1


def _cmd_cancel(args: argparse.Namespace) -> int:
    client_from_args(args).cancel(args.name)
    print(
        f"asked to abort job {args.name}; it stays listed with its history (`vitjob delete {args.name}` "
        "removes it)"
    )
    return 0


def _cmd_suspend(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    if client.find_pipeline(args.name) is not None:  # a VitJob: its spec.suspend, the controller acts
        client.suspend_pipeline(args.name, True)
        print(f"pipeline {args.name}: spec.suspend set; its running stage's job stops (phase Suspended); "
              f"`vitjob resume {args.name}` goes on")
        return 0
    client.suspend(args.name)
    print(f"suspending job {args.name}: its pods stop, the job stays; `vitjob resume {args.name}` goes on")
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    if client.find_pipeline(args.name) is not None:
        client.suspend_pipeline(args.name, False)
        print(f"pipeline {args.name}: spec.suspend cleared; its stage's job resumes from its last checkpoint")
        return 0
    status = client.resume(args.name)
    print(f"job {status.name} {status.phase} (resumed; retries: {status.retry_count})")
    return 0 if status.phase != JobPhase.FAILED else 1


def _cmd_delete(args: argparse.Namespace) -> int:
    client_from_args(args).delete(args.name)
    print(f"deleted job {args.name} and the objects submit created for it")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    jobs = client_from_args(args).list(all_namespaces=args.all_namespaces)
    if args.output == "json":
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
        shown = [describe(j.progress.progress) if j.progress else "" for j in jobs]
        rows = [[*row, text] for row, text in zip(rows, shown, strict=True)]
    if args.all_namespaces:
        header.insert(0, "NAMESPACE")
        rows = [[j.namespace, *row] for j, row in zip(jobs, rows, strict=True)]
    if not rows:
        print("no vitjob jobs" + ("" if args.all_namespaces else " in this namespace (-A: all namespaces)"))
        return 0
    print(format_table(header, rows))
    return 0


_HANDLERS = {
    "status": _cmd_status,
    "logs": _cmd_logs,
    "wait": _cmd_wait,
    "cancel": _cmd_cancel,
    "suspend": _cmd_suspend,
    "resume": _cmd_resume,
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


def format_status(status: JobStatus, *, verbose: bool = False) -> str:
    """The table form of ``vitjob status``; ``verbose`` adds the scheduler's raw notes."""
    lines = [
        f"job:      {status.name}" + (f"  (namespace {status.namespace})" if status.namespace else ""),
        f"phase:    {status.phase}   retries: {status.retry_count}   age: {format_age(status.age_s)}",
    ]
    cards = f"{status.cards} cards" if status.cards else ""
    what = ", ".join(x for x in (status.stage, status.hw, cards) if x)
    if what:
        lines.append(f"job is:   {what}" + (f"   queue: {status.queue}" if status.queue else ""))
    if status.progress is not None:
        lines.append(f"progress: {describe(status.progress.progress)}")
    if status.last_checkpoint:
        lines.append(f"checkpoint: {describe_checkpoint(status.last_checkpoint)}")
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
    if verbose and status.scheduler_notes:
        lines += ["", "scheduler notes (raw, newest first):"] + [f"  - {n}" for n in status.scheduler_notes]
    return "\n".join(lines)
