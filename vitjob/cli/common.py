"""What the CLI's command modules share: the backend flags and the ``vitjob.Client`` they make, table
and age formatting, and the pipeline view (``vitjob status`` of a pipeline, ``vitjob pipeline status``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from vitjob.backends import BACKEND_NAMES
from vitjob.cli.console import RunConsole
from vitjob.client import Client
from vitjob.pipeline.model import Observed
from vitjob.pipeline.view import attempt_rows, format_outputs, pipeline_dict, stage_rows
from vitjob.progress import describe


# ------------------------------------------------------------------------------------------- backend
def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backend")
    g.add_argument(
        "--backend",
        choices=BACKEND_NAMES,
        default="auto",
        help="where jobs run (auto: kubernetes when a kubeconfig or in-cluster config exists)",
    )
    g.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"
    )
    g.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
    if "--namespace" not in p._option_string_actions:
        g.add_argument("-n", "--namespace", default=None, help="namespace (default: the context's)")
    if "--local-root" not in p._option_string_actions:
        g.add_argument(
            "--local-root",
            type=Path,
            default=None,
            help="local backend: directory holding the jobs' processes and logs",
        )
    # the local backend's data and output directories: flags of `submit` only, None elsewhere
    p.set_defaults(data_dir=None, output_dir=None)


def client_from_args(args: argparse.Namespace) -> Client:
    """The client the backend flags of ``args`` choose (every parser with ``add_backend_arguments``
    has them all). Local jobs run in the foreground show on the terminal through a ``RunConsole``
    (with ``-v``: every pod's raw output instead)."""
    return Client(
        args.backend,
        kubeconfig=args.kubeconfig,
        context=args.context,
        namespace=args.namespace,
        local_root=args.local_root,
        data_dir=args.data_dir,
        output_dir=args.output_dir,
        verbose=args.verbose,
        observer=None if args.verbose else RunConsole(sys.stdout, sys.stdout.isatty()),
    )


# ------------------------------------------------------------------------------------------ formatting
def format_age(seconds: float) -> str:
    for limit, div, unit in ((120, 1, "s"), (7200, 60, "m"), (172800, 3600, "h")):
        if seconds < limit:
            return f"{seconds / div:.0f}{unit}"
    return f"{seconds / 86400:.0f}d"


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
    )


# ------------------------------------------------------------------------------------------- pipelines
def print_pipeline(observed: Observed, output: str) -> None:
    if output == "json":
        print(json.dumps(pipeline_dict(observed), indent=2))
    elif output == "yaml":
        print(yaml.safe_dump(pipeline_dict(observed), sort_keys=False), end="")
    else:
        print(format_pipeline(observed))


def format_pipeline(observed: Observed) -> str:
    record = observed.pipeline
    where = f"  (namespace {record.namespace})" if record.namespace else ""
    lines = [f"pipeline: {record.name}{where}", f"phase:    {record.phase}"]
    if record.reason:
        lines.append(f"reason:   {record.reason}")
    if record.training is not None:
        reading = record.training
        when = "final" if reading.final else f"read {reading.time}"
        lines.append(f"training: {describe(reading.progress)}  ({reading.percent:g}%, {when})")
    if record.spec.get("gates"):
        lines.append(f"gates:    {', '.join(record.spec['gates'])}")
    rows = [
        [*row, str(record.attempt(row[0])), format_outputs(dict(record.outputs.get(row[0], {})))]
        for row in stage_rows(observed)
    ]
    lines += ["", format_table(["STAGE", "JOB", "PHASE", "ATTEMPT", "OUTPUTS"], rows)]
    earlier = attempt_rows(observed)
    if earlier:
        header = ["STAGE", "ATTEMPT", "JOB", "STATE", "REASON"]
        lines += ["", "earlier attempts:", format_table(header, earlier)]
    return "\n".join(lines)
