"""The ``vitjob plot`` command: training curves of a run directory as a PNG (see ``vitjob.plot``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="plot loss, learning rate and test accuracy of a training run",
        description="Read RUN_DIR/metrics.jsonl (written by `vitjob train`) and draw the training loss, the "
        "learning rate and the test accuracy against the step into one PNG.",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run directory of `vitjob train --output`")
    p.add_argument("-o", "--output", type=Path, metavar="PNG", help="default RUN_DIR/curves.png")
    p.set_defaults(func=_cmd_plot)


def _cmd_plot(args: argparse.Namespace) -> int:
    from vitjob.plot import plot_run

    out = plot_run(args.run_dir, args.output)
    print(f"wrote {out}")
    return 0
