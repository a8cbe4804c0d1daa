"""The local backend running rendered jobs for real: data-parallel training, simulated Ascend rank
tables, fault recovery per the job's policies, maxRetry, and the whole local pipeline.

Marked ``slow`` (real MindSpore processes on CPU); CI runs them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import mindspore as ms
import numpy as np
import psutil
import pytest

from vitjob.backends.base import JobPhase
from vitjob.backends.local import LocalBackend, expand_vars
from vitjob.render import render_objects
from vitjob.spec import load_spec

pytestmark = pytest.mark.slow


def _objects(**values):
    base = {"hw": "cpu", "cards": 2, "name": "t", "preset": "vit-tiny", "epochs": 1}
    return render_objects(load_spec({**base, **values}, None, []))


def _backend(tmp_path: Path, data: Path) -> LocalBackend:
    return LocalBackend(
        local_root=tmp_path / "local", data_dir=data, output_dir=tmp_path / "out", stream=False
    )


def _same_weights(a: Path, b: Path) -> None:
    pa, pb = ms.load_checkpoint(str(a)), ms.load_checkpoint(str(b))
    assert set(pa) == set(pb)
    for name in pa:
        np.testing.assert_array_equal(pa[name].asnumpy(), pb[name].asnumpy(), err_msg=name)


def test_expand_vars_follows_kubernetes_rules() -> None:
    env = {"A": "x", "B": "$(A)"}
    assert expand_vars("$(A)/y", env) == "x/y"
    assert expand_vars("$$(A) $(MISSING)", env) == "$(A) $(MISSING)"


@pytest.mark.parametrize(
    ("hw", "extra"),
    [("cpu", {}), ("cpu", {"cards_per_pod": 1}), ("ascend", {})],
    ids=["cpu-1pod-2cards", "cpu-2pods-1card", "ascend-simulated-1pod-2cards"],
)
def test_two_process_data_parallel_training_ends_with_identical_weights(
    hw: str, extra: dict, digits_dir: Path, tmp_path: Path
) -> None:
    backend = _backend(tmp_path, digits_dir)
    status = backend.submit(_objects(hw=hw, extra_args=["--save-rank-weights"], **extra))
    pods = [p.name for p in status.pods]
    assert len(pods) == (2 if extra else 1)
    log = "".join((backend.job_dir("t-train") / "logs" / f"{p}.log").read_text() for p in pods)
    assert status.phase == JobPhase.COMPLETED, log[-3000:]
    run = tmp_path / "out" / "t" / "train"
    _same_weights(run / "rank-weights" / "rank-0.ckpt", run / "rank-weights" / "rank-1.ckpt")
    assert "[rank 0]" in log and "[rank 1]" in log
    assert "batch 64 x 2 processes" in log
    assert "test accuracy" in log
    if hw == "ascend":
        launch_dir = backend.job_dir("t-train") / "pods" / "t-train-worker-0" / "launch"
        table = json.loads((launch_dir / "hccl.json").read_text())
        assert table["version"] == "1.0"
        assert [d["rank_id"] for d in table["server_list"][0]["device"]] == ["0", "1"]
        assert "rank table: 1 servers, 2 devices" in log


def test_killed_worker_restarts_the_job_which_resumes_from_its_checkpoint(
    digits_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "local"
    values = tmp_path / "values.yaml"
    values.write_text("extra_args: ['--save-steps', '4']\n")
    cmd = [
        sys.executable,
        "-m",
        "vitjob",
        "submit",
        "--backend",
        "local",
        "--local-root",
        str(root),
        "--data",
        str(digits_dir),
        "--output",
        str(tmp_path / "out"),
        "--hw",
        "cpu",
        "--cards",
        "2",
        "--name",
        "f",
        "--preset",
        "vit-tiny",
        "--epochs",
        "2",
        "-f",
        str(values),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state = tmp_path / "out" / "f" / "train" / "state.json"
    deadline = time.monotonic() + 600
    victim = None
    while time.monotonic() < deadline and victim is None:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        if state.is_file() and json.loads(state.read_text())["step"] >= 4:
            workers = [
                p
                for p in psutil.Process(proc.pid).children(recursive=True)
                if "train" in p.cmdline() and p.environ().get("RANK_ID") == "1"
            ]
            if workers:
                victim = workers[0]
                step_at_kill = json.loads(state.read_text())["step"]
                victim.kill()
        time.sleep(0.2)
    assert victim is not None
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-3000:]
    status = LocalBackend(local_root=root, stream=False).status("f-train")
    assert status.phase == JobPhase.COMPLETED and status.retry_count == 1
    assert any("PodFailed → RestartJob" in r for r in status.reasons)
    resumed = [ln for ln in out.splitlines() if "resuming" in ln]
    assert resumed, out[-3000:]
    step = int(resumed[0].split("from step ")[1].split()[0])
    assert step >= 4 and step >= step_at_kill - 4  # from the last checkpoint, not from step 0
    assert json.loads(state.read_text())["step"] == 22


def test_exhausted_max_retry_fails_the_job_with_the_reason(tmp_path: Path, capsys) -> None:
    from vitjob.cli import main

    code = main(
        [
            "submit",
            "--backend",
            "local",
            "--local-root",
            str(tmp_path / "local"),
            "--data",
            str(tmp_path / "no-data"),
            "--output",
            str(tmp_path / "out"),
            "--hw",
            "cpu",
            "--cards",
            "1",
            "--name",
            "bad",
            "--preset",
            "vit-tiny",
            "--max-retry",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "job bad-train Failed" in out and "maxRetry 1 exhausted" in out
    status = LocalBackend(local_root=tmp_path / "local", stream=False).status("bad-train")
    assert status.retry_count == 1 and status.pods[0].exit_code == 1
    logs = "\n".join(LocalBackend(local_root=tmp_path / "local", stream=False).logs("bad-train"))
    assert "no CIFAR-10 train data" in logs


def test_local_pipeline_end_to_end_acc_log_matches_eval(tmp_path: Path, capsys) -> None:
    from vitjob.cli import main

    assert main(["demo", "--workdir", str(tmp_path), "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "output" / "demo"
    metrics = json.loads((run / "train" / "metrics.json").read_text())
    acc_log = (run / "infer310" / "acc.log").read_text()
    assert acc_log.startswith(f"top1_correct={metrics['top1_correct']}, tot={metrics['samples']}, ")
    assert f"acc={metrics['accuracy'] * 100:.2f}%" in acc_log
    assert (run / "export" / "vit_base.mindir").is_file()
    assert (
        "NN inference cost average time:"
        in (run / "infer310" / "time_Result" / "test_perform_static.txt").read_text()
    )
    assert (run / "train" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "pipeline demo Completed" in out and "test accuracy" in out
