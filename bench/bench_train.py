"""Benchmark: training throughput of ``vitjob train`` (one process) and ``vitjob launch`` (data parallel).

    python bench/bench_train.py --preset vit-tiny --batch 32 --steps 12 [--mode graph] [--procs 1]
                                [--device cpu] [--data DIR]

Runs the real command for ``--steps`` steps (``--max-steps``) on the digits data set (written to a
temporary directory unless ``--data`` is given) and reads its ``--summary-json``. The throughput is
the median step time, without the first step (graph compilation) and without waiting for input:
``img/s = batch × processes / median step``. ``wall_s`` is the whole command (start-up, compilation,
final checkpoint). With ``--procs 2`` the command runs under ``vitjob launch --cards-per-pod 2``
(MindSpore dynamic cluster, averaged gradients). Prints one JSON line with the summary fields.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import tool_env


def vitjob_exe() -> str:
    """``vitjob`` next to this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "vitjob"
    return str(beside) if beside.exists() else (shutil.which("vitjob") or "vitjob")


def train_command(
    preset: str,
    batch: int,
    steps: int,
    mode: str,
    procs: int,
    device: str,
    data: Path,
    output: Path,
    summary: Path,
) -> list[str]:
    train = [
        vitjob_exe(),
        "train",
        "--preset",
        preset,
        "--data",
        str(data),
        "--output",
        str(output),
        "--epochs",
        "1",
        "--batch-size",
        str(batch),
        "--max-steps",
        str(steps),
        "--mode",
        mode,
        "--device",
        device,
        "--log-steps",
        str(max(1, steps // 4)),
        "--summary-json",
        str(summary),
    ]
    if procs == 1:
        return train
    hw = {"cpu": "cpu", "gpu": "gpu", "ascend": "ascend"}[device]
    return [
        vitjob_exe(),
        "launch",
        "--hw",
        hw,
        "--cards-per-pod",
        str(procs),
        "--rdzv-timeout",
        "120",
        "--workdir",
        str(output.parent / f"{output.name}-launch"),
        "--",
        *train,
    ]


def run_training(
    preset: str,
    batch: int,
    steps: int,
    mode: str = "graph",
    procs: int = 1,
    device: str = "cpu",
    data: Path | None = None,
    workdir: Path | None = None,
    timeout_s: float = 900.0,
) -> dict:
    """Train for ``steps`` steps in a child process; return the summary plus throughput fields.

    Raises ``RuntimeError`` with the tail of the command's output when it fails or times out.
    """
    with tempfile.TemporaryDirectory(prefix="vitjob-bench-train-", dir=workdir) as tmp:
        tmp_path = Path(tmp)
        if data is None:
            from vitjob.vit.data import write_digits

            data = tmp_path / "data"
            write_digits(data)
        output = tmp_path / "run"
        summary_file = tmp_path / "summary.json"
        cmd = train_command(preset, batch, steps, mode, procs, device, data, output, summary_file)
        log_file = tmp_path / "train.log"
        start = time.perf_counter()
        with open(log_file, "w") as log:
            try:
                proc = subprocess.run(
                    cmd, stdout=log, stderr=subprocess.STDOUT, env=tool_env(), timeout=timeout_s, check=False
                )
                code: int | str = proc.returncode
            except subprocess.TimeoutExpired:
                code = f"timeout after {timeout_s:.0f} s"
        wall = time.perf_counter() - start
        if code != 0 or not summary_file.is_file():
            tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
            raise RuntimeError(f"`{' '.join(cmd[:3])} …` failed ({code}):\n{tail}")
        summary = json.loads(summary_file.read_text())
    step_ms = float(summary["step_ms_median"])
    world = int(summary["world_size"])
    return {
        "preset": preset,
        "mode": mode,
        "procs": procs,
        "world_size": world,
        "device": device,
        "batch_per_process": batch,
        "global_batch": batch * world,
        "steps": int(summary["steps"]),
        "step_ms_median": round(step_ms, 2),
        "img_s": float(f"{batch * world * 1000.0 / step_ms:.4g}") if step_ms > 0 else None,
        "img_s_wall_incl_compile": round(float(summary["img_s"]), 2),
        "wall_s": round(wall, 1),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="vit-tiny")
    parser.add_argument("--batch", type=int, default=32, help="images per process per step")
    parser.add_argument("--steps", type=int, default=12, help="steps to run (the first is not timed)")
    parser.add_argument("--mode", choices=("graph", "pynative"), default="graph")
    parser.add_argument("--procs", type=int, default=1, help="data-parallel processes")
    parser.add_argument("--device", choices=("cpu", "gpu", "ascend"), default="cpu")
    parser.add_argument("--data", type=Path, help="data directory (default: digits in a temp dir)")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is not timed)")
    try:
        result = run_training(
            args.preset,
            args.batch,
            args.steps,
            args.mode,
            args.procs,
            args.device,
            args.data,
            timeout_s=args.timeout,
        )
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
