"""Real training on the digits data set (MindSpore on CPU): accuracy, resume, export, eval, bad inputs.

Marked ``slow``: minutes on a 2-core machine. CI runs them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

from vitjob.cli import main

pytestmark = pytest.mark.slow

VITJOB = [sys.executable, "-m", "vitjob"]


def _run(args: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VITJOB, *args], capture_output=True, text=True, timeout=900, **kw)


@pytest.fixture(scope="module")
def trained(digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, float]:
    """`vitjob train --preset vit-tiny` with the preset's own defaults (the issue's acceptance check)."""
    out = tmp_path_factory.mktemp("train") / "run"
    t0 = time.monotonic()
    proc = _run(["train", "--preset", "vit-tiny", "--data", str(digits_dir), "--output", str(out)])
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    accuracy = float(proc.stdout.split("test accuracy ")[1].split()[0])
    print(f"\ndigits: vit-tiny defaults reached {accuracy:.4f} test accuracy in {elapsed:.0f} s")
    return out, accuracy, elapsed


def test_digits_reach_90_percent_with_preset_defaults(trained) -> None:
    out, accuracy, _ = trained
    assert accuracy >= 0.90
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == state["total_steps"] == 230  # 10 epochs x 23 steps of 64
    assert (out / state["best"]["file"]).is_file() and state["best"]["accuracy"] >= 0.90
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"step", "epoch", "loss", "lr", "img_s"} <= set(records[0])
    evals = [r["eval_accuracy"] for r in records if "eval_accuracy" in r]
    assert len(evals) == 10 and max(evals) == state["best"]["accuracy"]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < losses[0] / 5
    assert len(state["checkpoints"]) == 2  # keep the last 2 (--keep default)


def test_eval_and_exported_mindir_agree_with_the_checkpoint(
    trained, digits_dir: Path, tmp_path: Path, capsys
) -> None:
    out, _, _ = trained
    metrics = tmp_path / "metrics.json"
    assert main(["eval", "--ckpt", str(out), "--data", str(digits_dir), "--json-out", str(metrics)]) == 0
    result = json.loads(metrics.read_text())
    assert set(result) >= {"accuracy", "top1_correct", "samples"} and result["samples"] == 300
    assert result["accuracy"] == pytest.approx(
        json.loads((out / "state.json").read_text())["best"]["accuracy"]
    )

    mindir = tmp_path / "vit.mindir"
    assert main(["export", "--ckpt", str(out), "--format", "MINDIR", "--output", str(mindir)]) == 0
    assert mindir.is_file()
    from vitjob.vit.evaluate import build_from_checkpoint

    ms.set_context(mode=ms.GRAPH_MODE)
    net, _, _ = build_from_checkpoint(out, None)
    graph = ms.nn.GraphCell(ms.load(str(mindir)))
    x = ms.Tensor(np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32))
    np.testing.assert_allclose(graph(x).asnumpy(), net(x).asnumpy(), rtol=1e-4, atol=1e-5)

    from vitjob.infer310 import postprocess, preprocess, run_cpu

    pre = tmp_path / "pre"
    preprocess(digits_dir, pre, 32)
    results = tmp_path / "results"
    run_cpu(mindir, pre / "img_data", results, tmp_path / "time.txt")
    acc = postprocess(results, pre / "label", tmp_path / "acc.log")
    assert (tmp_path / "acc.log").read_text().startswith(f"top1_correct={result['top1_correct']}, tot=300")
    assert acc is not None


def test_resume_continues_from_the_checkpoint_after_a_kill(digits_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [
        *VITJOB,
        "train",
        "--preset",
        "vit-tiny",
        "--data",
        str(digits_dir),
        "--output",
        str(out),
        "--epochs",
        "2",
        "--save-steps",
        "8",
        "--log-steps",
        "1",
        "--eval-interval",
        "0",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state_file = out / "state.json"
    deadline = time.monotonic() + 600
    killed_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        if state_file.is_file() and json.loads(state_file.read_text())["step"] >= 8:
            proc.send_signal(signal.SIGKILL)
            killed_at = json.loads(state_file.read_text())["step"]
            break
        time.sleep(0.2)
    proc.wait()
    assert killed_at is not None and killed_at < 46, "training ended before it could be killed"
    steps_before = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"from step {killed_at} " in again.stderr
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    resumed = [r for r in records[len(steps_before) :] if "loss" in r]
    assert resumed[0]["step"] == killed_at + 1  # not step 1: no step is trained twice after the checkpoint
    assert resumed[-1]["step"] == 46

    # the schedule continues where it was: the logged lr is the planned one for that step
    from vitjob.vit.train import TrainOptions, make_plan

    plan = make_plan(TrainOptions(data=digits_dir, output=out, epochs=2), 1497, 1)
    assert resumed[0]["lr"] == pytest.approx(float(plan.lr[killed_at]), rel=1e-6)
    assert json.loads(state_file.read_text())["step"] == 46


def test_bad_inputs_fail_cleanly_and_write_nothing(trained, digits_dir: Path, tmp_path: Path, capsys) -> None:
    out, _, _ = trained
    air = tmp_path / "vit.air"
    assert main(["export", "--ckpt", str(out), "--format", "AIR", "--output", str(air)]) == 2
    assert "AIR export needs an Ascend 910" in capsys.readouterr().err
    assert not air.exists()

    assert main(["eval", "--ckpt", str(tmp_path / "missing.ckpt"), "--data", str(digits_dir)]) == 1
    assert "does not exist" in capsys.readouterr().err

    assert (
        main(["eval", "--ckpt", str(out / "best.ckpt"), "--data", str(digits_dir), "--preset", "vit-b16"])
        == 1
    )
    err = capsys.readouterr().err
    assert "does not fit the model" in err and "Traceback" not in err

    before = sorted(p.name for p in out.iterdir())
    assert main(["train", "--preset", "vit-b16", "--data", str(digits_dir), "--output", str(out)]) == 2
    assert "holds a run of preset vit-tiny" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before

    assert main(["export", "--ckpt", str(out), "--format", "PNG", "--output", str(air)]) == 2
    assert "--format takes" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
