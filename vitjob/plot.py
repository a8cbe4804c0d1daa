"""Training curves of a run directory: loss, learning rate and validation accuracy against the step.

``plot_run(run_dir, out_png)`` reads ``RUN_DIR/metrics.jsonl`` as ``vitjob train`` writes it — training
records ``{"step", "epoch", "loss", "lr", "img_s", "time"}`` and evaluation records
``{"step", "epoch", "val_accuracy", "time"}`` (``eval_accuracy`` in older runs) — and draws one PNG
with three panels sharing the step axis. A resumed run logs some steps twice; the last record of a step
wins. A line that is not JSON (a run killed mid-write) is skipped with a warning. Uses matplotlib's
Agg backend: no display needed.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitjob.errors import DataError, UsageError

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
DEFAULT_PNG = "curves.png"


@dataclass
class RunMetrics:
    """The curves of one run, sorted by step (one value per step)."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    img_s: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_accuracy: list[float] = field(default_factory=list)
    epochs: dict[int, int] = field(default_factory=dict)  # step -> epoch


def read_metrics(run_dir: Path) -> RunMetrics:
    """Parse ``RUN_DIR/metrics.jsonl``; ``UsageError``/``DataError`` when there is nothing to plot."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"run directory {run_dir} does not exist")
    path = run_dir / METRICS_FILE
    if not path.is_file():
        raise DataError(
            f"{path} not found: {run_dir} is not a run directory of `vitjob train`, or training has not "
            "logged a step yet"
        )
    train: dict[int, dict[str, Any]] = {}
    evals: dict[int, dict[str, Any]] = {}
    skipped = 0
    with open(path) as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                step = int(record["step"])
            except (ValueError, KeyError, TypeError):
                skipped += 1
                log.warning("%s line %d is not a metrics record: skipped", path, number)
                continue
            if "val_accuracy" in record or "eval_accuracy" in record:
                evals[step] = record
            elif "loss" in record:
                train[step] = record
    if not train and not evals:
        more = f" ({skipped} unreadable lines)" if skipped else ""
        raise DataError(f"{path} holds no training or evaluation records{more}: nothing to plot")
    m = RunMetrics()
    for step in sorted(train):
        r = train[step]
        m.steps.append(step)
        m.loss.append(float(r["loss"]))
        m.lr.append(float(r.get("lr", float("nan"))))
        m.img_s.append(float(r.get("img_s", float("nan"))))
        if "epoch" in r:
            m.epochs[step] = int(r["epoch"])
    for step in sorted(evals):
        m.eval_steps.append(step)
        r = evals[step]
        m.eval_accuracy.append(float(r["val_accuracy"] if "val_accuracy" in r else r["eval_accuracy"]))
    return m


def _title(run_dir: Path, m: RunMetrics) -> str:
    preset = ""
    state = run_dir / "state.json"
    if state.is_file():
        try:
            preset = json.loads(state.read_text()).get("preset", "")
        except (OSError, ValueError):
            preset = ""
    name = run_dir.resolve().name
    last = max([*m.steps, *m.eval_steps])
    parts = [f"run {name}"] + ([preset] if preset else []) + [f"{last} steps"]
    if m.eval_accuracy:
        best = max(range(len(m.eval_accuracy)), key=m.eval_accuracy.__getitem__)
        acc, at = 100 * m.eval_accuracy[best], m.eval_steps[best]
        parts.append(f"best validation accuracy {acc:.2f} % at step {at}")
    return " · ".join(parts)


def plot_run(run_dir: Path, out_png: Path | None = None) -> Path:
    """Draw loss, learning rate and validation accuracy of ``run_dir``; return the PNG path.

    ``out_png`` defaults to ``RUN_DIR/curves.png``; the file is written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

    run_dir = Path(run_dir)
    m = read_metrics(run_dir)
    out = Path(out_png) if out_png is not None else run_dir / DEFAULT_PNG

    fig, (ax_loss, ax_lr, ax_acc) = plt.subplots(3, 1, figsize=(9, 9.5), sharex=True, layout="constrained")
    fig.suptitle(_title(run_dir, m), fontsize=11)

    # Evaluations happen at epoch ends: mark them in every panel to read the three against each other.
    for ax in (ax_loss, ax_lr, ax_acc):
        ax.grid(True, alpha=0.3)
        if len(m.eval_steps) <= 60:
            for s in m.eval_steps:
                ax.axvline(s, color="tab:green", alpha=0.25, linewidth=0.8, linestyle=":", zorder=0)

    if m.steps:
        ax_loss.plot(
            m.steps,
            m.loss,
            color="tab:blue",
            marker="." if len(m.steps) < 40 else None,
            label="training loss (mean since the previous point)",
        )
        ax_loss.annotate(
            f"{m.loss[-1]:.4f}",
            (m.steps[-1], m.loss[-1]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
            color="tab:blue",
        )
        ax_loss.legend(loc="upper right", fontsize=8)
        ax_lr.plot(m.steps, m.lr, color="tab:orange", marker="." if len(m.steps) < 40 else None)
        ax_lr.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.2e}" if v else "0"))
    else:
        for ax in (ax_loss, ax_lr):
            ax.text(0.5, 0.5, "no training records", transform=ax.transAxes, ha="center", color="0.5")
    ax_loss.set_title("Training loss", fontsize=10, loc="left")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_lr.set_title("Learning rate", fontsize=10, loc="left")
    ax_lr.set_ylabel("learning rate")

    if m.eval_steps:
        acc = [100 * a for a in m.eval_accuracy]
        ax_acc.plot(m.eval_steps, acc, color="tab:green", marker="o")
        for s, a in zip(m.eval_steps, acc, strict=True):
            ax_acc.annotate(
                f"{a:.2f} %",
                (s, a),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=8,
                color="tab:green",
            )
        low, high = min(acc), max(acc)
        pad = max(2.0, 0.15 * (high - low))
        ax_acc.set_ylim(max(0.0, low - pad), min(100.0, high + pad) + 2)
    else:
        ax_acc.text(
            0.5,
            0.5,
            "no evaluation yet (the test set is scored at the end of an epoch)",
            transform=ax_acc.transAxes,
            ha="center",
            color="0.5",
        )
        ax_acc.set_ylim(0, 100)
    ax_acc.yaxis.set_major_formatter(PercentFormatter(decimals=0 if not m.eval_steps else None))
    ax_acc.set_title("Validation accuracy (top-1)", fontsize=10, loc="left")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_xlabel("training step")
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    os.replace(tmp, out)
    log.debug("wrote %s (%d training points, %d evaluations)", out, len(m.steps), len(m.eval_steps))
    return out
