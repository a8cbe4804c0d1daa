"""Real training on the digits data set (MindSpore on CPU): accuracy, resume, export, eval, bad inputs.

Marked ``slow``: minutes on a 2-core machine. CI runs them.

The facts the tests compare with are independent of the code under test: test and validation accuracy
are computed by ``tiny_vit`` from the ``.bin`` files read with numpy and normalised by hand (not vitjob's
data pipeline); a resumed run is compared with a straight run of the same seed; a checkpoint mismatch is
made by hand.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from tiny_vit import (
    STEPS,
    TRAIN_IMAGES,
    independent_test_accuracy,
    independent_validation_accuracy,
    max_relative_difference,
    train_cmd,
)

from vitjob.cli import main
from vitjob.errors import CheckpointError

pytestmark = pytest.mark.slow
# Tests here run MindSpore kernels in-process as well as `vitjob` commands: the device is set first.
ms.set_device("CPU")

VITJOB = [sys.executable, "-m", "vitjob"]


def _run(args: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VITJOB, *args], capture_output=True, text=True, timeout=900, **kw)


@pytest.fixture(scope="module")
def trained(digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """`vitjob train --preset vit-tiny` with the preset's own defaults (the issue's acceptance check)."""
    tmp = tmp_path_factory.mktemp("train")
    out, summary = tmp / "run", tmp / "summary.json"
    t0 = time.monotonic()
    args = ["--preset", "vit-tiny", "--data", str(digits_dir), "--output", str(out)]
    proc = _run(["train", *args, "--summary-json", str(summary)])
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(summary.read_text())
    print(f"\ndigits: vit-tiny defaults: final test accuracy {result['accuracy']:.4f} in {elapsed:.0f} s")
    return out, result


def test_best_checkpoint_chosen_on_validation_beats_logistic_regression_on_test(
    trained, digits_dir: Path
) -> None:
    out, summary = trained
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == state["total_steps"] == 15 * (TRAIN_IMAGES // 64)  # 15 epochs x 21 steps
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"step", "epoch", "loss", "lr", "img_s"} <= set(records[0])
    vals = [(r["step"], r["val_accuracy"]) for r in records if "val_accuracy" in r]
    assert [s for s, _ in vals] == [21 * e for e in range(1, 16)]  # every epoch, on the validation split
    # The test split is evaluated once, after the last step, and never to choose anything.
    tests = [r for r in records if "test_accuracy" in r or "eval_accuracy" in r]
    assert [(r["step"], "test_accuracy" in r) for r in tests] == [(315, True)]
    best_val = max(a for _, a in vals)
    assert state["best"]["val_accuracy"] == best_val
    assert state["best"]["step"] == max(s for s, a in vals if a == best_val)  # a tie goes to the later
    # The recorded validation accuracy is best.ckpt's on the held-out images, recomputed here by hand.
    recomputed = independent_validation_accuracy(out / state["best"]["file"], digits_dir)
    print(f"\nbest.ckpt on the 150 held-out images: recorded {best_val:.4f}, recomputed {recomputed:.4f}")
    assert recomputed == best_val  # the same count of the 150 right
    best_acc = independent_test_accuracy(out / state["best"]["file"], digits_dir)
    print(f"best.ckpt: step {state['best']['step']}, validation {best_val:.4f}, test {best_acc:.4f}")
    assert best_acc >= 0.97  # scikit-learn's LogisticRegression gets 0.967 on this test split
    assert summary["accuracy"] >= 0.97 and tests[0]["test_accuracy"] == summary["accuracy"]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < losses[0] / 5
    assert len(state["checkpoints"]) == 2  # keep the last 2 (--keep default)


def test_eval_and_exported_mindir_agree_with_the_checkpoint(
    trained, digits_dir: Path, tmp_path: Path, capsys
) -> None:
    out, _ = trained
    metrics = tmp_path / "metrics.json"
    assert main(["eval", "--ckpt", str(out), "--data", str(digits_dir), "--json-out", str(metrics)]) == 0
    result = json.loads(metrics.read_text())
    assert set(result) >= {"accuracy", "top1_correct", "samples"} and result["samples"] == 300
    assert result["accuracy"] == pytest.approx(independent_test_accuracy(out / "best.ckpt", digits_dir))

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


def test_evaluation_fills_its_last_batch_and_counts_only_the_real_images(trained, digits_dir: Path) -> None:
    from vitjob.vit.data import Split, create_dataset, load_split
    from vitjob.vit.evaluate import build_from_checkpoint
    from vitjob.vit.train import evaluate_split

    ms.set_context(mode=ms.GRAPH_MODE)
    net, _, _ = build_from_checkpoint(trained[0], None)
    test = load_split(digits_dir, "test")
    blank = create_dataset(Split(np.zeros_like(test.images[:1]), test.labels[:1]), batch_size=1,
                           image_size=32, training=False, num_workers=1)
    blank_class = int(net(next(blank.create_tuple_iterator())[0]).asnumpy().argmax())
    # 75 images (2 batches of 64, the second filled up with 53 blank images), every one labelled as a
    # blank image is predicted: counting a filler would show.
    part = Split(test.images[:75], np.full(75, blank_class, dtype=test.labels.dtype))
    result = evaluate_split(net, part, 32, 64, 1)
    straight = create_dataset(part, batch_size=75, image_size=32, training=False, num_workers=1)
    images, _ = next(straight.create_tuple_iterator())  # all 75 in one batch, nothing added
    expected = int((net(images).asnumpy().argmax(1) == blank_class).sum())
    assert 0 < expected < 75
    assert result == {"accuracy": expected / 75, "top1_correct": expected, "samples": 75}


def test_padding_adds_blank_unmatchable_images_after_the_real_ones() -> None:
    from vitjob.vit.data import Split
    from vitjob.vit.train import PAD_LABEL, even_batch, pad_to_batches

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (75, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 75, dtype=np.int32)
    split = Split(images, labels)
    padded = pad_to_batches(split, 64)
    assert len(padded) == 128 and padded.images.shape == (128, 32, 32, 3)
    assert np.array_equal(padded.images[:75], images) and np.array_equal(padded.labels[:75], labels)
    assert not padded.images[75:].any() and set(padded.labels[75:].tolist()) == {PAD_LABEL} and PAD_LABEL < 0
    assert pad_to_batches(split, 75) is split and len(pad_to_batches(split, 25)) == 75
    # as many batches as batches of 64 need, as even as they can be: 75 -> 38 + 37 (+1 blank)
    assert [even_batch(n, 64) for n in (75, 150, 64, 65, 1, 300)] == [38, 50, 64, 33, 1, 60]


def test_validation_split_is_stratified_disjoint_and_fixed() -> None:
    from vitjob.vit.data import Split, make_digits, split_validation

    train, _ = make_digits()
    n = len(train)
    tagged = np.zeros((n, 32, 32, 3), np.uint8)  # each image carries its own index
    tagged[:, 0, 0, 0], tagged[:, 0, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
    part, val = split_validation(Split(tagged, train.labels), 0.1)

    def index(s: Split) -> np.ndarray:
        return s.images[:, 0, 0, 0].astype(int) + 256 * s.images[:, 0, 0, 1].astype(int)

    fit, held = index(part), index(val)
    assert (len(fit), len(held)) == (TRAIN_IMAGES, 150)
    assert not set(fit) & set(held) and sorted(set(fit) | set(held)) == list(range(n))
    np.testing.assert_array_equal(part.labels, train.labels[fit])
    np.testing.assert_array_equal(val.labels, train.labels[held])
    for label in range(10):  # 10 % of every class
        assert (val.labels == label).sum() == round(0.1 * (train.labels == label).sum())
    np.testing.assert_array_equal(index(split_validation(Split(tagged, train.labels), 0.1)[1]), held)
    assert split_validation(train, 0.0) == (train, None)


# --- resume -----------------------------------------------------------------------------------

def test_killed_and_resumed_run_ends_exactly_where_a_straight_run_ends(
    straight_run: Path, digits_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    cmd = train_cmd(digits_dir, out)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = out / "state.json"
    deadline = time.monotonic() + 600
    killed_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        if state_file.is_file() and json.loads(state_file.read_text())["step"] >= 8:
            proc.send_signal(signal.SIGKILL)
            killed_at = json.loads(state_file.read_text())["step"]
            break
        time.sleep(0.05)
    proc.wait()
    assert killed_at is not None and killed_at < 21, "the run passed its first epoch before it was killed"
    assert killed_at % 8 == 0  # a mid-epoch checkpoint: the rest of epoch 1, then all of epoch 2
    steps_before = len((out / "metrics.jsonl").read_text().splitlines())

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"from step {killed_at} " in again.stdout + again.stderr
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    resumed = [r for r in records[steps_before:] if "loss" in r]
    assert resumed[0]["step"] == killed_at + 1  # not step 1: no step is trained twice after the checkpoint
    assert resumed[-1]["step"] == STEPS
    assert json.loads(state_file.read_text())["step"] == STEPS

    # The whole final training state, not only the weights: model, Adam moments, global_step (which
    # indexes the learning-rate array) and the bias-correction powers. Measured: bit-identical (0.0).
    final = f"ckpt/step-{STEPS:08d}.ckpt"
    a = ms.load_checkpoint(str(straight_run / final))
    b = ms.load_checkpoint(str(out / final))
    assert set(a) == set(b) and {"global_step", "beta1_power", "learning_rate"} <= set(a)
    assert int(b["global_step"].asnumpy().reshape(-1)[0]) == STEPS
    worst, where = max_relative_difference(a, b)
    print(f"\nresumed from step {killed_at}: max relative difference to the straight run {worst:.3g}")
    assert worst <= 1e-5, f"{where} differs from the straight run by {worst:.3g} (relative)"
    acc_straight = json.loads((straight_run.parent / "run-summary.json").read_text())["accuracy"]
    acc_resumed = json.loads((out.parent / "run-summary.json").read_text())["accuracy"]
    print(f"test accuracy: straight {acc_straight:.4f}, resumed {acc_resumed:.4f}")
    assert acc_resumed == acc_straight


def test_resuming_with_another_optimizer_fails_listing_the_keys(
    straight_run: Path, digits_dir: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    shutil.copytree(straight_run, run)
    before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    argv = train_cmd(digits_dir, run, "--optimizer", "momentum")[3:]  # after python -m vitjob
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "does not match this run's model and optimizer" in err
    missing = re.search(r"missing keys \((\d+)\): (.*)", err)
    extra = re.search(r"extra keys \((\d+)\): (.*)", err)
    assert missing and extra, err
    # Momentum keeps one moment per weight and its momentum, AdamW two moments per weight and its
    # bias-correction powers (vit-tiny has 72 weights).
    assert int(missing.group(1)) == 72 + 1 and missing.group(2).startswith("moments.")
    assert int(extra.group(1)) == 2 * 72 + 2 and "adam_m." in extra.group(2)
    assert "resume with the settings that wrote it" in err and "Traceback" not in err
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == before  # nothing written


def test_a_mismatching_checkpoint_lists_missing_extra_and_reshaped_keys(tmp_path: Path) -> None:
    from vitjob.vit import checkpoints as ck

    cell = ms.nn.SequentialCell([ms.nn.Dense(3, 2), ms.nn.Dense(2, 4)])
    params = {p.name: ms.Parameter(p.data.copy(), name=p.name) for p in cell.get_parameters()}
    assert set(params) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    del params["0.bias"]
    params["1.weight"] = ms.Parameter(ms.Tensor(np.zeros((5, 5), np.float32)), name="1.weight")
    params["adam_m.0.weight"] = ms.Parameter(ms.Tensor(np.zeros((2, 3), np.float32)), name="adam_m.0.weight")
    before = [p.asnumpy().copy() for p in cell.get_parameters()]
    with pytest.raises(CheckpointError) as info:
        ck.restore_all(cell, params, "x.ckpt")
    message = str(info.value)
    assert "missing keys (1): 0.bias" in message
    assert "extra keys (1): adam_m.0.weight" in message
    assert "shape mismatches (1): 1.weight (5, 5) in the file, (4, 2) here" in message
    for p, old in zip(cell.get_parameters(), before, strict=True):
        np.testing.assert_array_equal(p.asnumpy(), old, err_msg=p.name)  # nothing was loaded


def test_loss_scale_and_optimizer_counters_are_saved_and_restored(tmp_path: Path) -> None:
    """The O2 step cell (dynamic loss scale, as on GPU/Ascend): its scale and counters come back."""
    from vitjob.vit import checkpoints as ck
    from vitjob.vit.model import build_model
    from vitjob.vit.train import TrainOptions, build_optimizer, build_train_step, make_plan, training_state

    plan = make_plan(TrainOptions(data=tmp_path, output=tmp_path, epochs=1), TRAIN_IMAGES, 1)

    def step_cell():
        net = ms.amp.auto_mixed_precision(build_model(plan.preset.model), "O2")
        return build_train_step(net, build_optimizer(net, plan), plan, "O2")

    cell = step_cell()
    values = {
        "scale_sense": 1024.0,
        "current_iterator_step": 77,
        "last_overflow_iterator_step": 5,
        "global_step": 9,
        "beta1_power": 0.9**9,
        "adam_v.head.bias": 0.25,
    }
    params = {p.name: p for p in cell.get_parameters()}
    for name, value in values.items():
        p = params[name]
        p.set_data(ms.Tensor(np.full(p.shape, value, p.asnumpy().dtype)))
    ck.save_ckpt_atomic(training_state(cell), tmp_path / "state.ckpt")

    fresh = step_cell()
    fresh_params = {p.name: p for p in fresh.get_parameters()}
    assert fresh_params["scale_sense"].asnumpy().item() == 2.0**16
    ck.restore_all(fresh, ck.load_params(tmp_path / "state.ckpt"), "state.ckpt")
    for name, value in values.items():
        got = fresh_params[name].asnumpy()
        np.testing.assert_allclose(got, np.full(got.shape, value), rtol=1e-6, err_msg=name)


def test_bad_inputs_fail_cleanly_and_write_nothing(trained, digits_dir: Path, tmp_path: Path, capsys) -> None:
    out, _ = trained
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
