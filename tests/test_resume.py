"""Data-parallel training and fault recovery on the local backend, against runs that are independent of
the code path under test.

- 2 processes at batch B (a rendered Volcano Job run by the local backend, MindSpore's dynamic
  cluster on CPU) against 1 process at batch 2B with the same seed (conftest's ``straight_run``): the
  same weights, which moved away from their initialisation, and a test accuracy over a threshold;
- each process's own count of steps per epoch (``rank-weights/rank-N.json``) against the steps per
  epoch of the one-process run (its ``metrics.jsonl``): each takes its half of every batch, not the whole
  epoch;
- the same job with a worker killed mid-training (the job restarts and resumes from its checkpoint)
  against the undisturbed job: the same final test accuracy within one point; and the restart resumed:
  its progress lines, rank 0's metrics records and both processes' step counts start at the
  checkpoint's step + 1 (a restart from step 0 is as deterministic, and ends with the same weights).

Test accuracy comes from ``digits_eval`` (test images read and normalised by hand). Marked ``slow``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import mindspore as ms
import numpy as np
import psutil
import pytest
from tiny_vit import EPOCHS, SEED, STEPS, TRAIN_IMAGES, independent_test_accuracy, relative_differences

from vitjob.api.values import load_spec
from vitjob.backends.base import JobPhase, JobStatus
from vitjob.backends.local.backend import LocalBackend
from vitjob.errors import UsageError
from vitjob.progress import parse_line
from vitjob.render.manifests import render_objects

pytestmark = pytest.mark.slow
# Tests here run MindSpore kernels in-process as well as `vitjob` commands: the device is set first.
ms.set_device("CPU")

# The one-process reference is conftest's ``straight_run``: batch 64, 2 epochs, seed 7. Two processes at
# 32 each take 21 steps per epoch over the same 1,344 of the 1,347 training images, in the same order
# (rank r takes every other image of the epoch's permutation from r), with the same peak learning rate
# (linearly scaled to the global batch) and warm-up.
PER_PROCESS_BATCH = 32
JOB_ARGS = ["--seed", str(SEED), "--num-workers", "1", "--save-steps", "8", "--log-steps", "1"]
# Measured (MindSpore 2.10, CPU): every tensor within 2.0e-5 (relative L2) of the one-process run.
DP_TOLERANCE = 1e-4
MIN_ACCURACY = 0.8  # measured 0.87 for both; chance is 0.1

INIT_WEIGHTS = """
import sys
import mindspore as ms
from vitjob.vit.config import get_preset
from vitjob.vit.model import build_model
ms.set_seed(int(sys.argv[2]))
ms.save_checkpoint(build_model(get_preset("vit-tiny").model), sys.argv[1])
"""


def _job(name: str) -> list[dict]:
    values = {
        "hw": "cpu",
        "cards": 2,
        "name": name,
        "preset": "vit-tiny",
        "epochs": EPOCHS,
        "batch_size": PER_PROCESS_BATCH,
        "extra_args": [*JOB_ARGS, "--save-rank-weights"],
    }
    return render_objects(load_spec(values, None, []))


def _backend(root: Path, data: Path) -> LocalBackend:
    return LocalBackend(local_root=root / "local", data_dir=data, output_dir=root / "out", stream=False)


def _training_records(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def _rank_steps(run: Path, rank: int) -> dict:
    """What process ``rank`` says it ran: ``{"rank", "resumed_from", "epoch_steps": {"1": n, ...}}``."""
    return json.loads((run / "rank-weights" / f"rank-{rank}.json").read_text())


def _completed(backend: LocalBackend, status: JobStatus) -> None:
    logs = "".join(
        (backend.job_dir(status.name) / "logs" / f"{p.name}.log").read_text() for p in status.pods
    )
    assert status.phase == JobPhase.COMPLETED, logs[-3000:]


@pytest.fixture(scope="module")
def undisturbed(digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 2-process training job, run to the end by the local backend; its run directory."""
    root = tmp_path_factory.mktemp("undisturbed")
    backend = _backend(root, digits_dir)
    _completed(backend, backend.submit(_job("dp")))
    return root / "out" / "dp" / "train"


def test_two_processes_at_batch_b_train_the_weights_of_one_process_at_batch_2b(
    undisturbed: Path, straight_run: Path, tmp_path: Path, digits_dir: Path
) -> None:
    assert PER_PROCESS_BATCH * 2 == 64 and (TRAIN_IMAGES // 2) // PER_PROCESS_BATCH == TRAIN_IMAGES // 64
    assert json.loads((undisturbed / "state.json").read_text())["step"] == STEPS
    # Each process ran as many steps in each epoch as the one process did (it logged every step).
    per_epoch = {str(e): sum(1 for r in _training_records(straight_run) if r["epoch"] == e) for e in (1, 2)}
    assert per_epoch == {"1": STEPS // 2, "2": STEPS // 2}
    for rank in (0, 1):
        assert _rank_steps(undisturbed, rank) == {"rank": rank, "resumed_from": 0, "epoch_steps": per_epoch}
    init = tmp_path / "init.ckpt"
    subprocess.run([sys.executable, "-c", INIT_WEIGHTS, str(init), str(SEED)], check=True, timeout=300)

    rank0 = ms.load_checkpoint(str(undisturbed / "rank-weights" / "rank-0.ckpt"))
    rank1 = ms.load_checkpoint(str(undisturbed / "rank-weights" / "rank-1.ckpt"))
    one_file = straight_run / "ckpt" / f"step-{STEPS:08d}.ckpt"
    one = {n: v for n, v in ms.load_checkpoint(str(one_file)).items() if n in rank0}
    start = ms.load_checkpoint(str(init))
    assert set(rank0) == set(rank1) == set(one) == set(start)
    assert max(relative_differences(rank0, rank1).values()) == 0.0  # all-reduced gradients: same replicas

    # The runs sum the same 64 per-sample gradients in another order (two halves, then the all-reduce):
    # float32 rounding, which later steps carry on. The attention key biases are left out: a key bias
    # adds the same q.b to every logit of a softmax row, so their exact gradient is 0 and what each run
    # applies is its own rounding noise, normalised by Adam into steps of the learning rate's size
    # (measured: 1e-5 to 1e-4 in value, differing by 100 %). They must stay that small.
    diffs = relative_differences(one, rank0)
    noise = {n for n in diffs if n.endswith("attn.key.bias")}
    assert len(noise) == 4  # one per block
    worst = max(diffs[n] for n in diffs if n not in noise)
    assert max(float(np.abs(one[n].asnumpy()).max()) for n in noise) < 1e-3
    w0 = np.concatenate([start[n].asnumpy().ravel() for n in sorted(start)])
    w1 = np.concatenate([one[n].asnumpy().ravel() for n in sorted(start)])
    moved = float(np.linalg.norm(w1 - w0) / np.linalg.norm(w0))
    print(f"\n2 x {PER_PROCESS_BATCH} vs 1 x {2 * PER_PROCESS_BATCH}: max relative difference {worst:.3g}")
    print(f"the weights moved by {moved:.3g} (relative L2) from their initial values")
    assert worst <= DP_TOLERANCE, max((d, n) for n, d in diffs.items() if n not in noise)
    assert moved > 100 * DP_TOLERANCE  # the agreement is not that of two barely trained copies
    acc_dp = independent_test_accuracy(undisturbed / "rank-weights" / "rank-0.ckpt", digits_dir)
    acc_one = independent_test_accuracy(one_file, digits_dir)
    print(f"test accuracy: 2 processes {acc_dp:.4f}, 1 process {acc_one:.4f}")
    assert acc_dp >= MIN_ACCURACY and abs(acc_dp - acc_one) <= 1 / 300 + 1e-9


def _progress(log: Path) -> list[tuple[str, int]]:
    """(event, global step) of every progress line in a pod's log: rank 0's (``vitjob.progress``)."""
    lines = [parse_line(line) for line in log.read_text().splitlines()]
    return [(p.event, p.step) for p in lines if p is not None]


def _progress_of(lines: Iterable[str]) -> list[tuple[str, int]]:
    """``_progress`` of lines read back from the kept logs (``[pod] line``)."""
    parsed = [parse_line(line) for line in lines]
    return [(p.event, p.step) for p in parsed if p is not None]


def _kill_rank_1_after_checkpoint(pid: int, state: Path, at_least: int, result: dict) -> None:
    """Kill the rank-1 training process of the job run by ``pid`` once a checkpoint ``>= at_least`` exists."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and "step" not in result:
        if state.is_file() and json.loads(state.read_text())["step"] >= at_least:
            for p in psutil.Process(pid).children(recursive=True):
                try:
                    if "train" in p.cmdline() and p.environ().get("RANK_ID") == "1":
                        result["step"] = json.loads(state.read_text())["step"]
                        p.kill()
                        break
                except psutil.NoSuchProcess:
                    continue
        time.sleep(0.05)


def test_job_with_a_killed_worker_ends_as_accurate_as_the_undisturbed_job(
    undisturbed: Path, digits_dir: Path, tmp_path: Path
) -> None:
    backend = _backend(tmp_path, digits_dir)
    run = tmp_path / "out" / "killed" / "train"
    killed: dict = {}
    killer = threading.Thread(
        target=_kill_rank_1_after_checkpoint, args=(psutil.Process().pid, run / "state.json", 8, killed)
    )
    killer.start()
    try:
        status = backend.submit(_job("killed"))
    finally:
        killed.setdefault("step", None)
        killer.join()
    _completed(backend, status)
    assert killed["step"] is not None, "the job ended before a worker could be killed"
    assert status.retry_count == 1 and any("PodFailed → RestartJob" in r for r in status.reasons)
    logs = backend.job_dir("killed-train") / "logs"
    log = "".join((logs / f"{p.name}.log").read_text() for p in status.pods)
    resumed_from = int(log.split("from step ")[1].split()[0])
    assert 8 <= resumed_from < STEPS, resumed_from  # a checkpoint from the middle of the run
    assert json.loads((run / "state.json").read_text())["step"] == STEPS

    # The restart resumed: what it says, and what it did, begin after the checkpoint's step.
    (pod,) = [p.name for p in status.pods]
    before = _progress(logs / f"{pod}.previous.log")
    after = _progress(logs / f"{pod}.log")
    assert after[0] == ("resume", resumed_from), after[:3]
    assert [s for e, s in after if e == "step"] == list(range(resumed_from + 1, STEPS + 1)), after
    # Each run kept its own log on the output volume (vitjob.keptlogs), read back by attempt: the same
    # progress as the runner's record of the previous and the current run.
    assert _progress_of(backend.kept_logs("killed-train", 1)) == before
    assert _progress_of(backend.kept_logs("killed-train", 2)) == after
    trained_before = [s for e, s in before if e == "step"]
    assert trained_before == list(range(1, len(trained_before) + 1)) and len(trained_before) >= resumed_from
    # Rank 0's records: the first run's steps 1..k (k at least the checkpoint's), then the restart's.
    steps = [r["step"] for r in _training_records(run)]
    k = len(steps) - (STEPS - resumed_from)
    assert k >= resumed_from and steps == [*range(1, k + 1), *range(resumed_from + 1, STEPS + 1)], steps
    spe = STEPS // 2
    remaining = {str(e): e * spe - max(resumed_from, (e - 1) * spe) for e in (1, 2) if e * spe > resumed_from}
    for rank in (0, 1):  # the killed process too
        expected = {"rank": rank, "resumed_from": resumed_from, "epoch_steps": remaining}
        assert _rank_steps(run, rank) == expected

    acc_killed = independent_test_accuracy(run / "rank-weights" / "rank-0.ckpt", digits_dir)
    acc_straight = independent_test_accuracy(undisturbed / "rank-weights" / "rank-0.ckpt", digits_dir)
    worst = max(
        relative_differences(
            ms.load_checkpoint(str(undisturbed / "rank-weights" / "rank-0.ckpt")),
            ms.load_checkpoint(str(run / "rank-weights" / "rank-0.ckpt")),
        ).values()
    )
    print(
        f"\nkilled rank 1 at step {killed['step']}, resumed from {resumed_from}: test accuracy "
        f"{acc_killed:.4f} (undisturbed {acc_straight:.4f}); max relative weight difference {worst:.3g}"
    )
    assert abs(acc_killed - acc_straight) <= 0.01
    # Measured: 0 (bit-identical), as for one process (tests/test_train.py); the bound is the issue's.
    assert worst <= 1e-5


def _suspend_after_checkpoint(
    backend: LocalBackend, name: str, state: Path, at_least: int, result: dict
) -> None:
    """``vitjob suspend`` the job once a checkpoint ``>= at_least`` exists (as a user would from a shell)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if state.is_file() and json.loads(state.read_text())["step"] >= at_least:
            result["step"] = json.loads(state.read_text())["step"]
            backend.suspend(name)
            return
        time.sleep(0.05)


def test_suspended_job_has_no_processes_and_resume_goes_on_from_its_checkpoint(
    undisturbed: Path, digits_dir: Path, tmp_path: Path
) -> None:
    backend = _backend(tmp_path, digits_dir)
    run = tmp_path / "out" / "sus" / "train"
    suspended: dict = {}
    suspender = threading.Thread(
        target=_suspend_after_checkpoint, args=(backend, "sus-train", run / "state.json", 8, suspended)
    )
    suspender.start()
    try:
        status = backend.submit(_job("sus"))
    finally:
        suspender.join()
    assert "step" in suspended, "the job ended before it could be suspended"
    assert status.phase == JobPhase.ABORTED
    assert any("suspended by `vitjob suspend`" in r for r in status.reasons), status.reasons
    # Nothing of the job runs while it is suspended: no process works on its run directory.
    cmdlines = [" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])]
    left = [line for line in cmdlines if str(run) in line]
    assert not left, left
    at_suspend = json.loads((run / "state.json").read_text())["step"]

    resumed = backend.resume("sus-train")
    _completed(backend, resumed)
    assert resumed.retry_count == 1 and resumed.reasons[-1] == "resumed by `vitjob resume`"
    (pod,) = [p.name for p in resumed.pods]
    after = _progress(backend.job_dir("sus-train") / "logs" / f"{pod}.log")
    # The resumed run starts at the checkpoint it had when suspended, and trains the steps after it.
    assert after[0] == ("resume", at_suspend), after[:3]
    assert [s for e, s in after if e == "step"] == list(range(at_suspend + 1, STEPS + 1))
    # Its result is the undisturbed job's (CPU training is deterministic: bit-identical weights).
    worst = max(
        relative_differences(
            ms.load_checkpoint(str(undisturbed / "rank-weights" / "rank-0.ckpt")),
            ms.load_checkpoint(str(run / "rank-weights" / "rank-0.ckpt")),
        ).values()
    )
    assert worst <= 1e-5
    with pytest.raises(UsageError, match="not suspended"):
        backend.resume("sus-train")
