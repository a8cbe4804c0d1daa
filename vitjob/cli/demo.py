"""``vitjob demo``: the README's main command — the whole pipeline on this machine.

Writes the digits data set (offline), then runs the rendered train → eval → export → infer310 jobs
on the local backend (2 data-parallel CPU processes by default), plots the training curves and
prints where everything is. It is exactly ``vitjob submit --backend local --then eval,export,infer310``
with the data and output mapped into ``--workdir``. The terminal shows a few lines per stage and the
training progress; every pod's full output goes to the jobs' log files (``vitjob logs``; ``-v``
prints it too).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_WORKDIR = Path("runs/demo")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline locally on the bundled digits data",
        description="Generate the digits data set, then train vit-tiny with 2 data-parallel CPU processes, "
        "evaluate, export MINDIR and run the 310-inference stage with its CPU runner — the same rendered "
        "Volcano Jobs a cluster would run, on the local backend. Ends with a summary.",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help="where data, runs and logs go (default runs/demo)",
    )
    p.add_argument("--cards", type=int, default=2, help="data-parallel CPU processes (default 2)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the preset's, 15)")
    p.add_argument(
        "--hw",
        choices=("cpu", "ascend"),
        default="cpu",
        help="cpu, or ascend simulated locally (rank-table start-up, CPU compute)",
    )
    p.add_argument("--name", default="demo", help="pipeline name (default demo)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from vitjob.api.values import load_spec
    from vitjob.cli.console import RunConsole
    from vitjob.cli.jobs import report_pipeline_run
    from vitjob.client import Client
    from vitjob.vit.data import write_digits

    work = args.workdir.resolve()
    data_dir, output_dir = work / "data", work / "output"
    if not (data_dir / "dataset.json").is_file():
        n_train, n_test = write_digits(data_dir)
        print(f"digits data set: {n_train} train / {n_test} test images in {data_dir}")
    values = {"hw": args.hw, "cards": args.cards, "name": args.name, "preset": "vit-tiny"}
    if args.epochs is not None:
        values["epochs"] = args.epochs
    spec = load_spec(values, None, [])
    stages = ("eval", "export") + (("infer310",) if args.hw == "cpu" else ())
    verbose = args.verbose  # -v: every pod's raw output, MindSpore's warnings
    client = Client(
        "local",
        local_root=work / "local",
        data_dir=data_dir,
        output_dir=output_dir,
        verbose=verbose,
        observer=None if verbose else RunConsole(sys.stdout, sys.stdout.isatty()),
    )
    result = client.submit(spec, then=stages, replace=True, validate=False)
    assert result.pipeline is not None  # the local backend runs every stage before it returns
    code = report_pipeline_run(result.pipeline)
    _summary(output_dir / spec.pipeline_name, args.name)
    return code


def _summary(run: Path, name: str) -> None:
    train = run / "train"
    lines = ["", f"demo summary ({run})"]
    metrics = train / "metrics.json"
    if metrics.is_file():
        m = json.loads(metrics.read_text())
        lines.append(f"  test accuracy  {m['accuracy']:.2%} ({m['top1_correct']}/{m['samples']})  {metrics}")
    state = train / "state.json"
    if state.is_file():
        best = json.loads(state.read_text()).get("best") or {}
        if best:
            lines.append(f"  checkpoint     {train / best['file']} (step {best['step']})")
    for label, path in (
        ("MINDIR", run / "export" / "vit_base.mindir"),
        ("acc.log", run / "infer310" / "acc.log"),
    ):
        if path.is_file():
            extra = f"  {path.read_text().strip()}" if path.suffix == ".log" else ""
            lines.append(f"  {label:<14} {path}{extra}")
    curves = train / "curves.png"
    lines.append(f"  curves         {curves if curves.is_file() else 'not plotted (see the train log)'}")
    local_root = run.parent.parent / "local"
    lines.append(f"  logs           vitjob logs {name}-train --backend local --local-root {local_root}")
    print("\n".join(lines), file=sys.stdout)
