"""``vitjob demo`` as a newcomer runs it, without a terminal: what it prints, and what ``vitjob status``
shows while it trains. One real run of the whole pipeline (2 data-parallel MindSpore processes).

The progress that ``status`` reports is checked against what training recorded independently: the
run's ``state.json`` (the step count) and ``metrics.jsonl`` (the mean loss and the validation accuracy
that the training loop logs itself).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vitjob.cli import main
from vitjob.progress import parse_line
from vitjob.vit.config import get_preset

# A MindSpore log line (C++ or Python logger), e.g. "[WARNING] DISTRIBUTED(1234,7f…,python):2026-…"
MINDSPORE_LOG = re.compile(r"\[(WARNING|INFO|DEBUG|ERROR)\] [A-Z_]+\(")


def _user_env() -> dict[str, str]:
    """The environment of a user who set nothing: no MindSpore log variables, the venv first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLOG_", "MS_SUBMODULE", "VLOG_"))}
    env.pop("VITJOB_DEBUG", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _status(capsys: pytest.CaptureFixture[str], local_root: Path) -> dict | None:
    code = main(["status", "demo-train", "--backend", "local", "--local-root", str(local_root), "-o", "json"])
    out = capsys.readouterr().out
    return json.loads(out) if code == 0 and out.startswith("{") else None


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_demo_output_fits_one_screen_and_status_shows_training_progress(tmp_path: Path, capsys) -> None:
    work = tmp_path / "demo"
    local_root = work / "local"
    demo = subprocess.Popen(
        [sys.executable, "-m", "vitjob", "demo", "--workdir", str(work)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # the terminal shows both
        stdin=subprocess.DEVNULL,
        text=True,
        env=_user_env(),
    )
    seen: list[dict] = []  # every progress `vitjob status demo-train` showed while the job ran
    table = ""
    try:
        while demo.poll() is None:
            status = _status(capsys, local_root)
            if status and status["phase"] == "Running" and status["progress"]:
                if not seen or status["progress"] != seen[-1]:
                    seen.append(status["progress"])
                if not table:
                    main(["status", "demo-train", "--backend", "local", "--local-root", str(local_root)])
                    table = capsys.readouterr().out
            time.sleep(1.0)
        output = demo.stdout.read()
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0, output

    # ------------------------------------------------------------------- the terminal, without a TTY
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) <= 60, f"{len(lines)} lines:\n{output}"
    noise = [line for line in lines if MINDSPORE_LOG.search(line)]
    assert not noise, noise
    assert "vitjob-progress" not in output  # progress lines are for logs and status, not the terminal
    assert not [line for line in lines if line.startswith("pipeline demo: ")]  # the console said it
    epochs = get_preset("vit-tiny").recipe.epochs  # the demo trains the preset's recipe
    epoch_lines = [line for line in lines if line.startswith("train     epoch ")]
    assert [line.split()[2] for line in epoch_lines] == [f"{e}/{epochs}" for e in range(1, epochs + 1)], (
        output
    )
    summary = lines.index(next(line for line in lines if line.startswith("demo summary (")))
    assert lines[summary - 1].startswith("  infer310  demo-infer310") and "Completed" in lines[summary - 1]
    assert [line.split()[0] for line in lines[summary + 1 :]] == [
        "test", "checkpoint", "MINDIR", "acc.log", "curves", "logs"
    ]

    # ------------------------------------------------- `vitjob status` while training, against the run
    run = work / "output" / "demo" / "train"
    state = json.loads((run / "state.json").read_text())
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = {m["step"]: m["loss"] for m in metrics if "loss" in m}
    # The accuracy training evaluates after each epoch (on the validation split; "eval_accuracy" before
    # training held one out).
    key = "val_accuracy" if any("val_accuracy" in m for m in metrics) else "eval_accuracy"
    accuracies = {m["epoch"]: m[key] for m in metrics if key in m}
    assert sorted(accuracies) == list(range(1, epochs + 1))
    assert seen, "vitjob status never showed training progress while demo-train ran"
    assert "progress: epoch " in table and " loss " in table
    for p in seen:
        assert (p["epochs"], p["total_steps"]) == (epochs, state["total_steps"])
        assert 1 <= p["epoch"] <= epochs and 0 < p["step"] <= p["total_steps"]
        assert math.isfinite(p["loss"]) and p["loss"] > 0 and p["img_s"] > 0
        if p["event"] == "step":
            assert p["loss"] == pytest.approx(losses[p["step"]], abs=1e-4)
        if p["accuracy"] is not None:
            assert p["accuracy"] in {round(a, 4) for a in accuracies.values()}
    assert [p["step"] for p in seen] == sorted(p["step"] for p in seen)

    # ------------------------------------------------ every rank's full output is in the job's logs
    main(["logs", "demo-train", "--backend", "local", "--local-root", str(local_root)])
    logged = capsys.readouterr().out.splitlines()
    assert any("[rank 1]" in line for line in logged) and any("[rank 0]" in line for line in logged)
    progress = [p for p in map(parse_line, logged) if p is not None]
    assert progress[-1].step == state["total_steps"] and progress[-1].event == "epoch"
    assert progress[-1].accuracy == pytest.approx(accuracies[epochs], abs=1e-4)

    # ------------------------------------------------ the pipeline's artifacts agree with each other
    out_dir = work / "output" / "demo"
    final = json.loads((out_dir / "train" / "metrics.json").read_text())
    acc_log = (out_dir / "infer310" / "acc.log").read_text()
    assert acc_log.startswith(f"top1_correct={final['top1_correct']}, tot={final['samples']}, ")
    assert f"acc={final['accuracy'] * 100:.2f}%" in acc_log
    assert (out_dir / "export" / "vit_base.mindir").is_file()
    perf = (out_dir / "infer310" / "time_Result" / "test_perform_static.txt").read_text()
    assert "NN inference cost average time:" in perf
    assert (out_dir / "train" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
