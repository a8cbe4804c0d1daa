"""Benchmark: training speed of ``vitjob train`` (one process) and ``vitjob launch`` (data parallel).

One case (what ``python -m bench`` runs):

    python bench/bench_train.py --preset vit-tiny --batch 32 --steps 12 [--mode graph] [--procs 1]
                                [--device cpu] [--data DIR]

Runs the real command for ``--steps`` steps (``--max-steps``) on the digits data set (written to a
temporary directory unless ``--data`` is given) and reads its ``--summary-json``. The throughput is
the median step time, without the first step (graph compilation) and without waiting for input:
``img/s = batch × processes / median step``. ``wall_s`` is the whole command (start-up, compilation,
final checkpoint). With ``--procs 2`` the command runs under ``vitjob launch --cards-per-pod 2``
(MindSpore dynamic cluster, averaged gradients). Prints one JSON line with the summary fields.

The comparison (``--compare N``), in one run, ``--repeats`` rounds in turn, medians printed:

- the floor: MindSpore's bare ``TrainOneStepCell`` with the fused ``nn.AdamWeightDecay`` (no bias
  correction, no clipping, no input pipeline) on the same model, loss and batch shape, in a process
  of its own, timed as ``vitjob train`` times its steps (the call and reading the loss back);
- vitjob's step: ``step_ms_median`` of ``vitjob train`` at the same batch, and the ratio to the floor;
- wall time of ``--steps`` steps of the same global batch (``--batch`` × N) in 1 process and in N
  data-parallel processes (``vitjob launch``), the whole command and its training loop.

``--floor`` runs only the floor in this process (what the comparison starts as a child).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import last_json_line, tool_env


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
    epochs: int = 1,
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
        str(epochs),
        "--eval-interval",
        "0",
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
    epochs: int = 1,
    bind: bool = True,
) -> dict:
    """Train for ``steps`` steps in a child process; return the summary plus throughput fields.

    ``bind``: with several processes, bind each to cores of its own (``VITJOB_CPU_PIN=1``), as the local
    backend does for a job of one pod; False leaves them unbound, as ``vitjob launch`` does on its own.

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
        cmd = train_command(preset, batch, steps, mode, procs, device, data, output, summary_file, epochs)
        log_file = tmp_path / "train.log"
        start = time.perf_counter()
        with open(log_file, "w") as log:
            try:
                env = tool_env()
                if procs > 1:
                    env.setdefault("VITJOB_CPU_PIN", "1" if bind else "0")
                proc = subprocess.run(
                    cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout_s, check=False
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
        "train_s": round(float(summary["seconds"]), 1),
        "wall_s": round(wall, 1),
    }


def floor_step(preset: str, batch: int, steps: int, mode: str = "graph", device: str = "cpu") -> dict:
    """The floor in this process: bare ``TrainOneStepCell``, fused ``nn.AdamWeightDecay``; median ms/step."""
    import mindspore as ms
    import numpy as np
    from mindspore import Tensor, nn

    from vitjob.vit.config import get_preset
    from vitjob.vit.model import build_model
    from vitjob.vit.runtime import set_up
    from vitjob.vit.schedule import param_groups, warmup_cosine

    set_up(device, "auto", mode, seed=1)
    spec = get_preset(preset)
    net = build_model(spec.model)
    lr = Tensor(warmup_cosine(steps, spec.recipe.base_lr, 0))
    groups = param_groups(net.trainable_params(), spec.recipe.weight_decay)
    optimizer = nn.AdamWeightDecay(groups, learning_rate=lr, beta1=0.9, beta2=0.999, eps=1e-8)
    loss = nn.CrossEntropyLoss(label_smoothing=spec.recipe.label_smoothing)
    step_cell = nn.TrainOneStepCell(nn.WithLossCell(net, loss), optimizer)
    step_cell.set_train(True)
    rng = np.random.default_rng(0)
    size = spec.model.image_size
    images = Tensor(rng.standard_normal((batch, 3, size, size)).astype(np.float32))
    labels = Tensor(rng.integers(0, spec.model.num_classes, batch).astype(np.int32), ms.int32)
    times = []
    for _ in range(steps):
        start = time.time()
        float(step_cell(images, labels).asnumpy())
        times.append(time.time() - start)
    return {"preset": preset, "batch": batch, "steps": steps,
            "floor_ms_median": round(1000 * statistics.median(times[1:]), 2)}


def run_floor(preset: str, batch: int, steps: int, mode: str, device: str, timeout_s: float) -> dict:
    """``floor_step`` in a child process (a fresh MindSpore, as ``vitjob train`` gets)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--floor", "--preset", preset,
           "--batch", str(batch), "--steps", str(steps), "--mode", mode, "--device", device]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), timeout=timeout_s, check=False)
    result = last_json_line(proc.stdout)
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"the floor run failed ({proc.returncode}):\n{proc.stderr[-1500:]}")
    return result


@dataclass
class Round:
    floor_ms: float
    step_ms: float  # vitjob train, one process, the same batch as the floor
    one_wall_s: float  # one process, global batch = batch x procs
    one_train_s: float
    many_wall_s: float  # procs processes, batch each
    many_train_s: float


def compare(preset: str, batch: int, steps: int, procs: int, repeats: int, mode: str = "graph",
            device: str = "cpu", data: Path | None = None, timeout_s: float = 900.0,
            bind: bool = True) -> dict:
    """``repeats`` rounds of: floor, vitjob's step, 1 process and ``procs`` processes at one global batch."""
    with tempfile.TemporaryDirectory(prefix="vitjob-bench-compare-") as tmp:
        if data is None:
            from vitjob.vit.data import write_digits

            data = Path(tmp) / "data"
            write_digits(data)
        rounds = []
        for n in range(repeats):
            floor = run_floor(preset, batch, steps, mode, device, timeout_s)
            opts = {"timeout_s": timeout_s, "epochs": steps}  # every epoch has a step or more
            step = run_training(preset, batch, steps, mode, 1, device, data, **opts)
            one = run_training(preset, batch * procs, steps, mode, 1, device, data, **opts)
            many = run_training(preset, batch, steps, mode, procs, device, data, bind=bind, **opts)
            rounds.append(Round(floor["floor_ms_median"], step["step_ms_median"], one["wall_s"],
                                one["train_s"], many["wall_s"], many["train_s"]))
            print(f"round {n + 1}: {asdict(rounds[-1])}", file=sys.stderr, flush=True)
    med = {k: round(statistics.median(getattr(r, k) for r in rounds), 2) for k in asdict(rounds[0])}
    return {
        "preset": preset, "batch": batch, "procs": procs, "steps": steps, "repeats": repeats, "mode": mode,
        "bound": bind,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        **{f"{k}_median": v for k, v in med.items()},
        # Medians of each round's ratio: the machine's speed may drift between rounds, less within one.
        "step_over_floor": round(statistics.median(r.step_ms / r.floor_ms for r in rounds), 3),
        "many_over_one_wall": round(statistics.median(r.many_wall_s / r.one_wall_s for r in rounds), 3),
        "many_over_one_train": round(statistics.median(r.many_train_s / r.one_train_s for r in rounds), 3),
        "rounds": [asdict(r) for r in rounds],
    }


def comparison_table(result: dict) -> str:
    """The comparison as a few lines of text."""
    b, n, steps = result["batch"], result["procs"], result["steps"]
    placed = "each on cores of its own" if result["bound"] else "unbound"
    return "\n".join([
        f"{result['preset']}, {steps} steps, medians of {result['repeats']} rounds "
        f"(load average {result['load_average'][0]})",
        f"  floor (TrainOneStepCell + fused AdamWeightDecay), batch {b}: "
        f"{result['floor_ms_median']:.1f} ms/step",
        f"  vitjob train step, batch {b}: {result['step_ms_median']:.1f} ms/step "
        f"({result['step_over_floor']:.2f}x the floor, median of the rounds' ratios)",
        f"  global batch {b * n}, 1 process: {result['one_wall_s_median']:.1f} s wall "
        f"({result['one_train_s_median']:.1f} s training)",
        f"  global batch {b * n}, {n} processes x {b} ({placed}): "
        f"{result['many_wall_s_median']:.1f} s wall "
        f"({result['many_train_s_median']:.1f} s training): {result['many_over_one_wall']:.2f}x / "
        f"{result['many_over_one_train']:.2f}x one process",
    ])


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
    parser.add_argument("--compare", type=int, metavar="N",
                        help="floor vs vitjob's step, and 1 vs N processes at one global batch")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of --compare (medians are printed)")
    parser.add_argument("--floor", action="store_true", help="only the floor, in this process")
    parser.add_argument("--no-bind", dest="bind", action="store_false",
                        help="leave the N processes unbound (default: each on cores of its own, "
                        "VITJOB_CPU_PIN=1, as the local backend runs a one-pod job)")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is not timed)")
    if args.floor:
        print(json.dumps(floor_step(args.preset, args.batch, args.steps, args.mode, args.device)))
        return 0
    if args.compare is not None:
        if args.compare < 2 or args.repeats < 1:
            parser.error("--compare needs N >= 2 processes and --repeats >= 1")
        try:
            result = compare(args.preset, args.batch, args.steps, args.compare, args.repeats, args.mode,
                             args.device, args.data, args.timeout, args.bind)
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(comparison_table(result))
        print(json.dumps(result))
        return 0
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
            bind=args.bind,
        )
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
