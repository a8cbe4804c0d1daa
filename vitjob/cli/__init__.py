"""The ``vitjob`` command line.

``main(argv)`` builds one argparse parser from the command modules listed in ``COMMAND_MODULES``;
each module owns the commands of one concept and exposes ``register(subparsers)``. Every command
handler returns an exit code. ``VitjobError`` becomes a one-line message and its exit code: users
never see a traceback for an error they can fix (set ``VITJOB_DEBUG=1`` to see it anyway).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from vitjob.errors import VitjobError
from vitjob.logsetup import configure_logging
from vitjob.version import __version__

COMMAND_MODULES: tuple[str, ...] = (
    "vitjob.cli.vit",
    "vitjob.cli.launch",
    "vitjob.cli.demo",
    "vitjob.cli.infer310",
    "vitjob.cli.render",
    "vitjob.cli.jobs",
    "vitjob.cli.pipeline",
    "vitjob.cli.plot",
)

log = logging.getLogger("vitjob")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vitjob",
        description=(
            "Train, evaluate, export and serve MindSpore ViT-B/16 on CIFAR-10 — locally, or as Volcano "
            "jobs on Kubernetes with Ascend NPUs or NVIDIA GPUs."
        ),
    )
    parser.add_argument("--version", action="version", version=f"vitjob {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="debug logging; MindSpore's own warnings; every pod's output on the terminal (local jobs)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        code = int(args.func(args) or 0)
    except VitjobError as exc:
        if os.environ.get("VITJOB_DEBUG"):
            raise
        print(f"vitjob {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"vitjob {args.command}: interrupted", file=sys.stderr)
        return 130
    if code == 0:  # under `vitjob launch`: this worker's work is complete
        from vitjob.launch.supervisor import report_done  # only now: not on every command's start-up

        report_done(os.environ)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
