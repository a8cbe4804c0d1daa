"""What the CLI's command modules share: the backend flags and the backend they choose, table and
age formatting, and the pipeline view (``vitjob status`` of a pipeline, ``vitjob pipeline status``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from vitjob.backends import BACKEND_NAMES, get_backend
from vitjob.backends.base import Backend
from vitjob.cli.console import RunConsole
from vitjob.pipeline import Observed, pipeline_dict, stage_rows


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


def backend_from_args(args: argparse.Namespace) -> Backend:
    """The backend the backend flags of ``args`` choose. Local jobs run in the foreground show on the
    terminal through a ``RunConsole`` (with ``-v``: every pod's raw output instead)."""
    verbose = bool(getattr(args, "verbose", False))
    quiet: dict[str, Any] = {}
    if not verbose:
        quiet = {"stream": False, "observer": RunConsole(sys.stdout, sys.stdout.isatty())}
    return get_backend(
        args.backend,
        kubeconfig=args.kubeconfig,
        context=args.context,
        namespace=getattr(args, "namespace", None),
        local_root=getattr(args, "local_root", None),
        data_dir=getattr(args, "data", None),
        output_dir=getattr(args, "output", None) if isinstance(getattr(args, "output", None), Path) else None,
        verbose=verbose,
        **quiet,
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
    lines += ["", format_table(["STAGE", "JOB", "PHASE"], stage_rows(observed))]
    return "\n".join(lines)
