"""The training progress line (``vitjob.progress``) and the terminal view of local jobs (``RunConsole``).

The numbers a writer reports are checked against values worked out by hand from the steps, batch
size and clock readings fed to it; nothing here trains a model.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest

from vitjob.backends.base import JobPhase, JobStatus, PodStatus
from vitjob.cli.console import RunConsole, failing_pod
from vitjob.progress import (
    ProgressWriter,
    TrainProgress,
    describe,
    format_duration,
    format_line,
    last_progress,
    last_progress_in_file,
    parse_line,
)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_line_round_trips_and_reads_behind_launch_and_pod_prefixes():
    p = TrainProgress(3, 10, 69, 230, loss=0.43215, accuracy=0.95667, img_s=140.25, eta_s=94.6, event="epoch")
    line = format_line(p)
    assert line == (
        "vitjob-progress epoch=3/10 step=69/230 loss=0.4321 acc=0.9567 img_s=140.2 eta_s=95 event=epoch"
    )
    back = parse_line(f"[demo-train-worker-0] [rank 0] {line}")
    assert back == TrainProgress(3, 10, 69, 230, 0.4321, 0.9567, 140.2, 95.0, "epoch")
    assert parse_line("2026-01-01T00:00:00.000000001Z " + line) == back


def test_unknown_values_unknown_keys_and_junk():
    p = parse_line("vitjob-progress epoch=1/2 step=5/40 loss=2.3026 acc=- img_s=- eta_s=- event=step new=1")
    assert p == TrainProgress(1, 2, 5, 40, 2.3026, None, None, None, "step")
    assert parse_line("vitjob-progress epoch=1/2 loss=1.0") is None  # no step: not a progress line
    assert parse_line("vitjob-progress epoch=x/2 step=5/40") is None
    assert parse_line("not-vitjob-progress epoch=1/2 step=5/40") is None
    assert parse_line("epoch 1/2 done at step 20") is None
    diverged = parse_line("vitjob-progress epoch=1/2 step=5/40 loss=nan acc=- img_s=9.0 eta_s=30 event=step")
    assert diverged is not None and math.isnan(diverged.loss)
    assert "loss nan" in describe(diverged)
    assert diverged.to_dict()["loss"] is None  # JSON has no NaN


def test_last_progress_in_a_log_file_ignores_other_output(tmp_path: Path):
    log = tmp_path / "pod.log"
    assert last_progress_in_file(log) is None
    lines = ["[rank 0] training vit-tiny: 1497 images"]
    lines += [f"[rank 0] vitjob-progress epoch=1/1 step={s}/3 loss=1.0 event=step" for s in (1, 2)]
    lines += ["[rank 1] some other rank's line", "[sched] scheduler output"]
    log.write_text("\n".join(lines) + "\n")
    assert last_progress_in_file(log).step == 2
    assert last_progress(lines[:2]).step == 1
    assert last_progress(["x", "y"]) is None


def test_writer_speed_eta_mean_loss_and_epoch_lines():
    out, clock = io.StringIO(), Clock()
    w = ProgressWriter(out, epochs=2, total_steps=20, global_batch=64, start_step=0, clock=clock)
    for step, loss in ((1, 2.0), (2, 1.0), (3, 0.0)):
        clock.t += 2.0
        emitted = w.step(step, 1, loss, emit=step == 3)
    # 3 steps x 64 images in 6 s = 32 img/s; 17 steps left = 1088 images = 34 s; mean loss 1.0
    assert emitted == TrainProgress(1, 2, 3, 20, 1.0, None, 32.0, 34.0, "step")
    assert out.getvalue().splitlines() == [format_line(emitted)]
    w.step(4, 1, 9.0, emit=False)  # the epoch ends between two lines
    clock.t += 100.0  # the evaluation is not training time
    end = w.epoch_end(10, 1, 0.875)
    assert (end.event, end.accuracy, end.step, end.loss) == ("epoch", 0.875, 10, 9.0)
    clock.t += 1.0
    nxt = w.step(11, 2, 0.5, emit=True)
    assert nxt.img_s == 64.0 and nxt.accuracy == 0.875  # 1 step in 1 s since the epoch line
    assert nxt.eta_s == 9.0 and nxt.loss == 0.5  # not averaged with the previous epoch's step 4
    assert len(out.getvalue().splitlines()) == 3


def test_writer_on_resume_says_so_and_counts_speed_from_the_resumed_step():
    out, clock = io.StringIO(), Clock()
    w = ProgressWriter(out, epochs=1, total_steps=100, global_batch=10, start_step=50, clock=clock)
    assert w.resumed(50, 1) == TrainProgress(1, 1, 50, 100, event="resume")
    clock.t += 5.0
    p = w.step(60, 1, 1.0, emit=True)
    assert p.img_s == 20.0 and p.eta_s == 20.0  # 10 steps x 10 images in 5 s; 40 steps left
    assert [parse_line(line).event for line in out.getvalue().splitlines()] == ["resume", "step"]


def test_describe_and_durations():
    p = TrainProgress(3, 10, 69, 230, 0.4321, 0.9567, 140.2, 95.0)
    assert describe(p) == "epoch 3/10  step 69/230  loss 0.4321  val acc 95.67%  140 img/s  ETA 1m35s"
    assert describe(TrainProgress(1, 10, 1, 230)) == "epoch 1/10  step 1/230"
    assert "ETA" not in describe(TrainProgress(10, 10, 230, 230, 0.1, 0.9, 100.0, 0.0))
    durations = [format_duration(s) for s in (0, 59.6, 95, 3600, 7300)]
    assert durations == ["0s", "1m00s", "1m35s", "1h00m", "2h01m"]


# ------------------------------------------------------------------------------------------- console
def _status(phase: JobPhase, pods: list[PodStatus], reasons: list[str]) -> JobStatus:
    return JobStatus(name="demo-train", namespace="", phase=phase, stage="train", pods=pods, reasons=reasons)


def test_console_without_a_terminal_prints_a_line_per_epoch_not_per_step(tmp_path: Path):
    out = io.StringIO()
    console = RunConsole(out, tty=False)
    console.job_started("demo-train", "train", ["demo-train-worker-0"], tmp_path)
    for step in range(1, 21):
        event = "epoch" if step % 10 == 0 else "step"
        epoch = 1 + (step - 1) // 10
        line = format_line(TrainProgress(epoch, 2, step, 20, 1.0 / step, None, 50.0, 1.0, event))
        console.pod_line("demo-train", "demo-train-worker-0", f"[rank 0] {line}")
        console.pod_line("demo-train", "demo-train-worker-0", f"[rank 0] noisy framework line {step}")
    console.job_finished(_status(JobPhase.COMPLETED, [], []), tmp_path)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4, lines
    assert lines[0].startswith("train     job demo-train started: 1 pod, output in ")
    assert lines[1] == "train     epoch 1/2  step 10/20  loss 0.1000  50 img/s  ETA 1s"
    assert lines[2] == "train     epoch 2/2  step 20/20  loss 0.0500  50 img/s"
    assert lines[3].startswith("train     job demo-train Completed in ")
    assert "noisy" not in out.getvalue()


@pytest.mark.parametrize("tty", [False, True])
def test_console_says_when_a_restarted_job_resumes(tmp_path: Path, tty: bool):
    out = io.StringIO()
    console = RunConsole(out, tty=tty)
    console.job_started("demo-train", "train", ["demo-train-worker-0"], tmp_path)
    line = format_line(TrainProgress(2, 15, 12, 150, event="resume"))
    console.pod_line("demo-train", "demo-train-worker-0", f"[rank 0] {line}")
    shown = [ln for ln in out.getvalue().splitlines() if "resuming" in ln]
    assert shown == ["train     resuming from step 12 of 150 (epoch 2/15), its latest checkpoint"]


def test_console_on_failure_shows_reasons_and_the_failing_pods_last_lines(tmp_path: Path):
    out = io.StringIO()
    console = RunConsole(out, tty=False, tail_lines=3)
    pods = ["demo-train-worker-0", "demo-train-worker-1"]
    console.job_started("demo-train", "train", pods, tmp_path)
    for i in range(30):
        console.pod_line("demo-train", pods[0], f"[rank 0] line {i}")
    for text in ("Traceback (most recent call last):", '  File "train.py", line 1', "ValueError: boom"):
        console.pod_line("demo-train", pods[1], f"[rank 1] {text}")
    pod_states = [PodStatus(pods[0], "Failed", exit_code=-15), PodStatus(pods[1], "Failed", exit_code=1)]
    reason = "pod demo-train-worker-1 failed with exit code 1; maxRetry 0 exhausted"
    console.job_finished(_status(JobPhase.FAILED, pod_states, [reason]), tmp_path)
    text = out.getvalue()
    assert f"  {reason}" in text
    assert "  last lines of demo-train-worker-1:" in text
    assert "  | [rank 1] ValueError: boom" in text and "Traceback" in text
    assert "line 29" not in text  # the pod stopped by a signal is not the one shown
    assert text.rstrip().endswith(f"all output: {tmp_path}")
    assert len(text.splitlines()) == 8


def test_failing_pod_prefers_a_positive_exit_code():
    pods = [PodStatus("a", "Failed", exit_code=-15), PodStatus("b", "Failed", exit_code=2)]
    pods.append(PodStatus("c", "Running"))
    assert failing_pod(pods).name == "b"
    assert failing_pod([PodStatus("a", "Failed", exit_code=-9)]).name == "a"
    assert failing_pod([PodStatus("a", "Running")]) is None


def test_console_on_a_terminal_draws_one_progress_bar(tmp_path: Path):
    out = io.StringIO()
    console = RunConsole(out, tty=True)
    console.job_started("demo-train", "train", ["demo-train-worker-0"], tmp_path)
    for step in (5, 10):
        line = format_line(TrainProgress(1, 10, step, 230, 0.5, 0.9, 120.0, 60.0, "step"))
        console.pod_line("demo-train", "demo-train-worker-0", line)
    console.job_finished(_status(JobPhase.COMPLETED, [], []), tmp_path)
    text = out.getvalue()
    bar = [ln for ln in text.splitlines() if "step 10/230" in ln][-1]
    assert "epoch 1/10" in bar and "loss 0.500 acc 90.0% 120 img/s ETA 1m00s" in bar
    assert "━" in bar and "…" not in bar  # rich's bar, and all of it fits in 80 columns
    assert "job demo-train Completed" in text


# ------------------------------------------------------------------ publishing checkpoints (vitjob launch)
def test_publisher_patches_rank_0s_checkpoints_only_and_survives_a_failing_server(caplog):
    import json
    import threading

    from vitjob.launch.checkpoints import CheckpointPublisher
    from vitjob.progress import parse_checkpoint_annotation as parse_annotation

    patched: list[dict] = []
    gate, entered = threading.Event(), threading.Event()
    fail = {"n": 1}

    def patch(body):
        entered.set()
        gate.wait(5)
        if fail["n"]:
            fail["n"] -= 1
            raise OSError("connection refused")
        patched.append(body)

    pub = CheckpointPublisher(patch, clock=lambda: 0.0)
    ckpt = lambda step: format_line(TrainProgress(1, 2, step, 42, event="checkpoint"))  # noqa: E731
    pub.line("rank 0", ckpt(8))  # taken by the thread, fails (logged once)
    assert entered.wait(5)
    pub.line("rank 1", ckpt(99))  # another rank: ignored
    pub.line("rank 0", format_line(TrainProgress(1, 2, 9, 42)))  # a step line: ignored
    gate.set()
    pub.line("rank 0", ckpt(16))
    pub.close()
    assert pub.published == len(patched) == 1
    values = [parse_annotation(b["metadata"]["annotations"]["vitjob.io/last-checkpoint"]) for b in patched]
    assert values == [{"step": 16, "epoch": 1, "time": "1970-01-01T00:00:00Z"}]
    assert "cannot annotate this pod with its last checkpoint: connection refused" in caplog.text
    assert parse_annotation("not json") is None and parse_annotation(json.dumps({"step": "x"})) is None
    # Another rank's checkpoint line alone publishes nothing (above it could be replaced before it was).
    others: list[dict] = []
    pub = CheckpointPublisher(others.append, clock=lambda: 0.0)
    pub.line("rank 1", ckpt(99))
    pub.close()
    assert others == [] and pub.published == 0


def test_checkpoint_annotation_reads_back_and_describes_its_age():
    from vitjob.progress import checkpoint_annotation, describe_checkpoint, parse_checkpoint_annotation

    written = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    text = checkpoint_annotation(TrainProgress(3, 10, 120, 400, event="checkpoint"), written)
    assert text == '{"step":120,"epoch":3,"time":"2027-01-15T08:00:00Z"}'
    parsed = parse_checkpoint_annotation(text)
    assert describe_checkpoint(parsed, now=written + 125) == "step 120 (epoch 3), written 2m05s ago"


# --- a reading: what `vitjob status -o json` prints and what the controller records in the VitJob ------
def test_a_reading_has_the_same_fields_in_json_and_in_the_vitjob_status() -> None:
    from vitjob.progress import ProgressReading

    line = "vitjob-progress epoch=3/10 step=69/230 loss=0.4321 acc=0.9567 img_s=140.2 eta_s=95 event=step"
    reading = ProgressReading(parse_line(line), time="2026-01-02T03:04:05Z")
    assert reading.to_dict() == {
        "epoch": 3, "epochs": 10, "step": 69, "total_steps": 230, "percent": 30.0, "loss": 0.4321,
        "accuracy": 0.9567, "img_s": 140.2, "eta_s": 95.0, "eta": "1m35s", "event": "step",
        "time": "2026-01-02T03:04:05Z", "final": False,
    }
    status = reading.to_status()
    assert status == {
        "epoch": 3, "epochs": 10, "step": 69, "totalSteps": 230, "percent": 30.0, "loss": 0.4321,
        "accuracy": 0.9567, "imgPerSecond": 140.2, "etaSeconds": 95.0, "eta": "1m35s", "event": "step",
        "time": "2026-01-02T03:04:05Z", "final": False,
    }
    assert list(status.values()) == list(reading.to_dict().values())  # the same fields, in order
    assert ProgressReading.from_status(status) == reading


def test_a_final_reading_has_no_eta_and_unknown_values_are_left_out_of_the_status() -> None:
    from vitjob.progress import ProgressReading

    first = parse_line("vitjob-progress epoch=1/2 step=5/40 loss=nan acc=- img_s=- eta_s=- event=step")
    status = ProgressReading(first, time="t").to_status()
    assert set(status) == {"epoch", "epochs", "step", "totalSteps", "percent", "event", "time", "final"}
    assert status["percent"] == 12.5  # a diverged loss (nan) is not JSON: left out like an unknown one
    ended = parse_line("vitjob-progress epoch=1/2 step=30/40 loss=0.5 acc=0.8 img_s=10 eta_s=100 event=epoch")
    final = ProgressReading(ended, time="t", final=True)
    assert final.eta == "" and "eta" not in final.to_status() and final.to_status()["final"] is True
    assert ProgressReading.from_status({"epoch": 1}) is None and ProgressReading.from_status(None) is None
