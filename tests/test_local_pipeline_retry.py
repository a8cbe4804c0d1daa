"""Retry, outputs and gates on the local backend with real MindSpore (vit-tiny on the digits set): one
train run, an eval that fails for real, `vitjob pipeline retry` (train is not rerun), a gate that does
not hold (the reason carries the measured value), a retry with a changed gate that lets export run.

What the stages report is checked against what they wrote themselves: train's ``state.json`` and
``metrics.jsonl``, eval's ``metrics.json`` (its ``--json-out``), the MINDIR file on disk.
Marked ``slow`` (real MindSpore processes on CPU); CI runs them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vitjob.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def _status(capsys: pytest.CaptureFixture[str], local: list[str]) -> dict:
    capsys.readouterr()
    assert main(["pipeline", "status", "lr", "-o", "json", *local]) == 0
    return json.loads(capsys.readouterr().out)


def test_local_retry_outputs_and_gates(digits_dir: Path, tmp_path: Path, capsys) -> None:
    root, out = tmp_path / "local", tmp_path / "out"
    local = ["--backend", "local", "--local-root", str(root)]
    # A real fault for eval's first attempt: its result file's path is taken by a directory, so the
    # eval process fails writing it (after training wrote the run next to it).
    blocker = out / "lr" / "train" / "metrics.json"
    blocker.mkdir(parents=True)
    submit = [
        "submit", "--hw", "cpu", "--cards", "1", "--name", "lr", "--preset", "vit-tiny", "--epochs", "1",
        "--max-retry", "1", "--then", "eval,export", "--gate", "eval.accuracy>=1.01",
        "--data", str(digits_dir), "--output", str(out), *local,
    ]  # fmt: skip
    assert main(submit) == 1
    shown = _status(capsys, local)
    assert shown["phase"] == "Failed" and shown["reason"].startswith(
        "stage eval failed: job lr-eval ended Failed"
    )
    train, evaluation, export = shown["stages"]
    assert (evaluation["job"], evaluation["phase"], export["phase"]) == ("lr-eval", "Failed", "not started")

    # train's outputs are what training recorded itself
    run = out / "lr" / "train"
    state = json.loads((run / "state.json").read_text())
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    reported = train["outputs"]
    assert (
        reported["best_checkpoint"] == str(run / state["best"]["file"])
        and Path(reported["best_checkpoint"]).is_file()
    )
    assert reported["best_step"] == state["best"]["step"] == state["step"] == reported["steps"]
    assert reported["val_accuracy"] == [m["val_accuracy"] for m in metrics if "val_accuracy" in m][-1]
    assert reported["best_val_accuracy"] == state["best"]["val_accuracy"]
    assert reported["test_accuracy"] == [m["test_accuracy"] for m in metrics if "test_accuracy" in m][-1]
    train_state = (root / "jobs" / "lr-train" / "state.json").read_text()

    # the retry reruns eval as lr-eval-r2; it completes, and the gate on its accuracy stops the chain
    shutil.rmtree(blocker)
    assert main(["pipeline", "retry", "lr", *local]) == 1
    measured = json.loads(blocker.read_text())  # written by eval itself (--json-out)
    shown = _status(capsys, local)
    assert shown["reason"].startswith(f"gate eval.accuracy>=1.01 not met: {measured['accuracy']:g};"), shown
    train, evaluation, export = shown["stages"]
    assert (evaluation["job"], evaluation["attempt"], evaluation["phase"]) == ("lr-eval-r2", 2, "Completed")
    assert evaluation["outputs"]["accuracy"] == measured["accuracy"]
    assert evaluation["outputs"]["top1_correct"] == measured["top1_correct"]
    assert evaluation["outputs"]["samples"] == measured["samples"]
    assert [(a["job"], a["state"], a["phase"]) for a in evaluation["earlier_attempts"]] == [
        ("lr-eval", "Failed", "Failed")
    ]
    assert evaluation["earlier_attempts"][0]["reason"].startswith("stage eval failed")
    assert export["phase"] == "not started"

    # a retry with a gate that holds starts export; train was never rerun
    assert main(["pipeline", "retry", "lr", "--gate", "eval.accuracy>=0.05", *local]) == 0
    shown = _status(capsys, local)
    assert shown["phase"] == "Completed" and shown["gates"] == ["eval.accuracy>=0.05"]
    export = shown["stages"][2]
    mindir = Path(export["outputs"]["mindir"])
    assert mindir == out / "lr" / "export" / "vit_base.mindir"
    assert export["outputs"]["mindir_bytes"] == mindir.stat().st_size > 0
    assert (root / "jobs" / "lr-train" / "state.json").read_text() == train_state
    assert sorted(p.name for p in (root / "jobs").iterdir()) == [
        "lr-eval",
        "lr-eval-r2",
        "lr-export",
        "lr-train",
    ]
    assert shown["retries"] == 2
