"""What a user sees of local jobs: a quiet terminal, the failing pod's last lines, training progress
in ``vitjob status``/``list``, and MindSpore's log level in the processes vitjob starts.

The pods here are small real processes (``python -c …``), so each test takes a second or two; the
real training run is in ``test_demo_output.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from kube_testing import volcano_job

from vitjob.cli import main

pytestmark = pytest.mark.timeout(120)


def job_file(tmp_path: Path, name: str, code: str, *, stage: str = "train", max_retry: int = 0) -> str:
    """A one-pod Volcano Job, labelled like a rendered one, whose container runs ``python -c CODE``."""
    job = volcano_job(name, replicas=1, cards=0, hw="cpu", stage=stage)
    job["spec"]["maxRetry"] = max_retry
    job["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["command"] = [sys.executable, "-c", code]
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job))
    return str(path)


def local(tmp_path: Path) -> list[str]:
    return ["--backend", "local", "--local-root", str(tmp_path / "local")]


PRINT_LOG_ENV = "import os; print('GLOG', *(os.environ.get(k) for k in ('GLOG_v', 'GLOG_logtostderr')))"


@pytest.mark.parametrize(
    ("flags", "user_env", "expected"),
    [
        ([], {}, "GLOG 3 1"),  # MindSpore limited to errors, kept on the process's output
        (["-v"], {}, "GLOG None None"),  # MindSpore's own defaults
        ([], {"GLOG_v": "1"}, "GLOG 1 1"),  # what the user set wins
    ],
)
def test_pods_get_mindspore_log_level_errors_unless_verbose(tmp_path, capsys, monkeypatch, flags, user_env,
                                                          expected):
    for key in ("GLOG_v", "GLOG_logtostderr", "GLOG_stderrthreshold"):
        monkeypatch.delenv(key, raising=False)
    for key, value in user_env.items():
        monkeypatch.setenv(key, value)
    manifest = job_file(tmp_path, "env1", PRINT_LOG_ENV)
    assert main([*flags, "submit", "--manifest", manifest, *local(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["logs", "env1", *local(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == f"[env1-worker-0] {expected}"


def test_launch_gives_its_children_the_quiet_mindspore_environment(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLOG_")}
    env.update({"VC_TASK_INDEX": "0", "VITJOB_WORKDIR": str(tmp_path)})
    proc = subprocess.run(
        [sys.executable, "-m", "vitjob", "launch", "--hw", "cpu", "--cards-per-pod", "1", "--",
         sys.executable, "-c", PRINT_LOG_ENV],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "[rank 0] GLOG 3 1" in proc.stdout


FAILING = "\n".join(
    [
        "for i in range(40): print(f'noise line {i}')",
        "raise ValueError('boom: the data set is missing')",
    ]
)


def test_a_failed_local_job_shows_its_reason_and_last_lines_not_the_whole_output(tmp_path, capsys):
    code = main(["submit", "--manifest", job_file(tmp_path, "f1", FAILING), *local(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 1, err
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert lines[0].startswith("train     job f1 started: 1 pod, output in ")
    assert lines[1].startswith("train     job f1 Failed in ")
    assert "pod f1-worker-0 failed with exit code 1; maxRetry 0 exhausted" in out
    assert "  | ValueError: boom: the data set is missing" in out
    assert "noise line 0" not in out and "noise line 39" in out  # only the end of the output
    assert len(lines) <= 20, lines
    capsys.readouterr()
    main(["logs", "f1", *local(tmp_path)])
    full = capsys.readouterr().out
    assert "noise line 0" in full and "ValueError: boom" in full  # everything is in the log file


TRAINS = """
import sys, time
from pathlib import Path
from vitjob.progress import ProgressWriter
w = ProgressWriter(sys.stdout, epochs=3, total_steps=30, global_batch=32)
for step in range(1, 11):
    time.sleep(0.01)
    w.step(step, 1, 2.0 / step, emit=step % 5 == 0)
w.epoch_end(10, 1, 0.625)
print('a line that is not progress', flush=True)
deadline = time.time() + 60
while not Path(sys.argv[1]).exists() and time.time() < deadline:
    time.sleep(0.05)
"""


def test_status_and_list_of_a_running_local_train_job_show_its_progress(tmp_path, capsys):
    release = tmp_path / "release"
    manifest = yaml.safe_load(Path(job_file(tmp_path, "p1", TRAINS)).read_text())
    manifest["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["command"].append(str(release))
    path = tmp_path / "p1.yaml"
    path.write_text(yaml.safe_dump(manifest))
    runner = subprocess.Popen(
        [sys.executable, "-m", "vitjob", "submit", "--manifest", str(path), *local(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert main(["status", "p1", *local(tmp_path), "-o", "json"]) in (0, 1)
            out = capsys.readouterr().out
            shown = json.loads(out) if out.startswith("{") else {}
            if shown.get("progress", {}) and shown["progress"]["event"] == "epoch":
                break
            assert time.monotonic() < deadline and runner.poll() is None, (out, runner.poll())
            time.sleep(0.1)
        progress = shown["progress"]
        assert shown["phase"] == "Running"
        where = (progress["epoch"], progress["epochs"], progress["step"], progress["total_steps"])
        assert where == (1, 3, 10, 30)
        assert progress["loss"] == pytest.approx((2 / 6 + 2 / 7 + 2 / 8 + 2 / 9 + 2 / 10) / 5, abs=1e-4)
        assert progress["accuracy"] == 0.625 and progress["img_s"] > 0
        assert progress["eta_s"] == pytest.approx(20 * 32 / progress["img_s"], abs=0.5)  # 20 steps left
        assert main(["status", "p1", *local(tmp_path)]) == 0
        table = capsys.readouterr().out
        assert "progress: epoch 1/3  step 10/30  loss 0.2583  val acc 62.50%  " in table
        assert main(["list", *local(tmp_path)]) == 0
        listed = capsys.readouterr().out.splitlines()
        assert listed[0].split()[-1] == "PROGRESS" and "epoch 1/3  step 10/30" in listed[1]
    finally:
        release.touch()
        terminal, _ = runner.communicate(timeout=60)
    assert runner.returncode == 0, terminal
    assert "train     job p1 Completed" in terminal and "vitjob-progress" not in terminal
    assert main(["status", "p1", *local(tmp_path), "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["progress"] is None  # only while it runs
