"""Commands of pod start-up: ``launch`` (the container entrypoint) and ``rank-table`` (debugging)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path

from vitjob import constants as c
from vitjob import keptlogs
from vitjob.errors import RankTableError, UsageError
from vitjob.logsetup import ROOT_LOGGER

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "launch",
        help="pod entrypoint: prepare the cluster environment, run one process per card",
        description="Reads what Volcano gives the pod (VC_TASK_INDEX, /etc/volcano/worker.host), builds the "
        "HCCL rank table (Ascend) or the MindSpore dynamic-cluster environment (GPU/CPU), then runs COMMAND "
        "once per card with a [rank N] prefix on every output line. Exits with the first failing child's "
        "code.",
    )
    p.add_argument("--hw", choices=c.HW_KINDS, help=f"hardware (default ${c.ENV_HW}, else cpu)")
    p.add_argument(
        "--cards-per-pod", type=int, help=f"processes in this pod (default ${c.ENV_CARDS_PER_POD})"
    )
    p.add_argument(
        "--rdzv-timeout",
        type=float,
        default=c.DEFAULT_RDZV_TIMEOUT_S,
        help="seconds to wait for the other pods (default 600)",
    )
    p.add_argument("--workdir", type=Path, help="where the rank table is written (default a temp dir)")
    p.add_argument(
        "--grace-period",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="after a failure or SIGTERM, how long children get to exit before SIGKILL (default 10)",
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    p.set_defaults(func=_cmd_launch)

    r = sub.add_parser(
        "rank-table",
        help="build an HCCL rank table from saved per-pod device annotations",
        description="Each FILE holds one pod's ascend-910-configuration annotation (JSON), "
        "or the pod's downward-API annotations file holding it; pods are ordered as given "
        "(task index 0, 1, …).",
    )
    r.add_argument("--pod-info", nargs="+", type=Path, required=True, metavar="FILE")
    r.add_argument("--out", type=Path, help="write hccl.json here (default: stdout)")
    r.set_defaults(func=_cmd_rank_table)


def _cmd_launch(args: argparse.Namespace) -> int:
    from vitjob.launch.entrypoint import launch
    from vitjob.logsetup import framework_log_environment

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    with contextlib.ExitStack() as stack:
        kept = _keep_log(stack)
        out = keptlogs.Tee(sys.stdout, kept) if kept else sys.stdout
        # The children (training processes, the MindSpore scheduler) log MindSpore errors only, unless -v
        # or the pod's environment sets GLOG_v & co. itself.
        with framework_log_environment(args.verbose):
            outcome = launch(
                command, args.hw, args.cards_per_pod, args.rdzv_timeout, args.workdir, args.grace_period,
                out=out,
            )
        summary = f"vitjob launch: {outcome.summary}"
        print(summary, file=sys.stderr)
        if kept:
            kept.write(summary + "\n")
    return outcome.exit_code


def _keep_log(stack: contextlib.ExitStack) -> keptlogs.KeptLog | None:
    """Open this run's kept log when the pod was rendered to keep one (VITJOB_LOG_DIR & co.), and copy
    vitjob's own log records into it until ``stack`` closes. A volume that cannot take it is logged,
    not fatal: the pod's own log still has every line."""
    target = keptlogs.PodLogTarget.from_env(os.environ)
    if target is None:
        return None
    try:
        kept = keptlogs.open_attempt(target.log_dir, target.job, target.pod)
    except OSError as exc:
        log.warning("not keeping this run's log under %s: %s", target.log_dir, exc)
        return None
    stack.callback(kept.close)
    root = logging.getLogger(ROOT_LOGGER)
    stderr_handler = next((h for h in root.handlers if h.formatter is not None), None)
    handler = keptlogs.KeptLogHandler(kept, stderr_handler.formatter if stderr_handler else None)
    root.addHandler(handler)
    stack.callback(root.removeHandler, handler)
    log.info("keeping this run's log as %s (attempt %d)", kept.path, kept.attempt)
    return kept


def _pod_annotation(path: Path, text: str) -> tuple[str, str]:
    """(pod name, device annotation JSON) from a saved annotation: the JSON itself, or a downward-API
    ``annotations`` file (``key="value"`` lines) holding it."""
    from vitjob.launch.ranktable import parse_downward_annotations

    stripped = text.strip()
    if not stripped.startswith("{"):
        annotations = parse_downward_annotations(text)
        found = next((annotations[k] for k in c.ASCEND_DEVICE_ANNOTATIONS if k in annotations), None)
        if found is None:
            raise RankTableError(
                f"pod {path.stem}: {path} holds neither device-annotation JSON nor a "
                f"downward-API annotations file with {c.ASCEND_DEVICE_ANNOTATIONS[0]}"
            )
        stripped = found
    try:
        data = json.loads(stripped)
        name = data.get("pod_name") if isinstance(data, dict) else None
    except json.JSONDecodeError:
        name = None  # piece_from_annotation reports the malformed JSON, naming the pod
    return str(name or path.stem), stripped


def _cmd_rank_table(args: argparse.Namespace) -> int:
    from vitjob.launch.ranktable import build_rank_table, piece_from_annotation

    pieces = []
    for index, path in enumerate(args.pod_info):
        try:
            text = path.read_text()
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
        name, annotation = _pod_annotation(path, text)
        pieces.append(piece_from_annotation(index, name, annotation))
    table = json.dumps(build_rank_table(pieces), indent=2) + "\n"
    if args.out:
        args.out.write_text(table)
        print(f"wrote {args.out}: {len(pieces)} servers")
    else:
        sys.stdout.write(table)
    return 0
