"""``vitjob.infer310`` and ``vitjob infer310``: the ``.bin`` contract, the CPU runner, the pipeline.

Real MindSpore throughout: a small random-weight vit-tiny is exported to MINDIR once per module and
run through ``mindspore.load`` + ``nn.GraphCell``; its results are compared with the network itself.
Data: 12 test images of the bundled digits set written in CIFAR-10 binary layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vitjob import infer310
from vitjob.cli import main
from vitjob.errors import DataError, InferenceError
from vitjob.vit.data import CIFAR_MEAN, CIFAR_STD, Split, load_split, make_digits, write_dataset

pytestmark = pytest.mark.timeout(300)

N_TEST = 12


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    train, test = make_digits()
    out = tmp_path_factory.mktemp("data")
    small = lambda s, n: Split(s.images[:n], s.labels[:n])  # noqa: E731
    info = {"name": "digits", "classes": [str(i) for i in range(10)], "hflip": False}
    write_dataset(out, small(train, 16), small(test, N_TEST), info)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(network, MINDIR path) of a random-weight vit-tiny (32x32 input)."""
    import mindspore as ms
    from mindspore import Tensor

    from vitjob.vit.config import get_preset
    from vitjob.vit.model import build_model

    ms.set_seed(0)
    cfg = get_preset("vit-tiny").model
    net = build_model(cfg)
    net.set_train(False)
    base = tmp_path_factory.mktemp("model") / "vit_tiny"
    ms.export(
        net,
        Tensor(np.zeros((1, 3, cfg.image_size, cfg.image_size), np.float32)),
        file_name=str(base),
        file_format="MINDIR",
    )
    return net, base.with_suffix(".mindir")


@pytest.fixture(scope="module")
def preprocessed(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pre")
    assert infer310.preprocess(data_dir, out, 32) == N_TEST
    return out


def _eval_reference(images: np.ndarray) -> np.ndarray:
    """The evaluation transform at 32x32 computed with numpy: rescale, normalise, HWC -> CHW."""
    x = images.astype(np.float32) / 255.0
    x = (x - np.array(CIFAR_MEAN, np.float32)) / np.array(CIFAR_STD, np.float32)
    return x.transpose(0, 3, 1, 2)


# ------------------------------------------------------------------------------------------ preprocess


def test_preprocess_writes_eval_tensors_and_labels(data_dir, preprocessed):
    split = load_split(data_dir, "test")
    images = infer310.list_bins(preprocessed / "img_data")
    labels = infer310.list_bins(preprocessed / "label")
    assert sorted(p.name for p in images) == sorted(infer310.image_name(i) for i in range(N_TEST))
    assert [p.name for p in labels] == [p.name for p in images]
    expected = _eval_reference(split.images)
    for i in range(N_TEST):
        img = preprocessed / "img_data" / f"vit_base_cifar10_1_{i}.bin"
        assert img.stat().st_size == 3 * 32 * 32 * 4
        got = np.fromfile(img, np.float32).reshape(1, 3, 32, 32)
        np.testing.assert_allclose(got[0], expected[i], rtol=1e-5, atol=1e-5)
        label = np.fromfile(preprocessed / "label" / f"vit_base_cifar10_1_{i}.bin", np.int32)
        assert label.tolist() == [split.labels[i]]


def test_preprocess_resizes_to_the_image_size(data_dir, tmp_path):
    assert infer310.preprocess(data_dir, tmp_path, 48) == N_TEST
    sizes = {p.stat().st_size for p in (tmp_path / "img_data").iterdir()}
    assert sizes == {3 * 48 * 48 * 4}


def test_preprocess_refuses_a_used_output_unless_forced(data_dir, tmp_path):
    (tmp_path / "img_data").mkdir()
    (tmp_path / "img_data" / "old.bin").write_bytes(b"1234")
    with pytest.raises(InferenceError, match=r"already holds 1 \.bin files"):
        infer310.preprocess(data_dir, tmp_path, 32)
    assert infer310.preprocess(data_dir, tmp_path, 32, overwrite=True) == N_TEST
    assert not (tmp_path / "img_data" / "old.bin").exists()


def test_preprocess_missing_data_names_the_directory(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        infer310.preprocess(tmp_path / "nope", tmp_path / "out", 32)


# ------------------------------------------------------------------------------------------ postprocess


def _write(path: Path, values, dtype) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.asarray(values, dtype=dtype).tofile(path)


def test_postprocess_counts_top1_and_writes_acc_log(tmp_path):
    logits = {0: [0.1, 0.9, 0.0], 1: [2.0, -1.0, 0.5], 2: [0.0, 0.0, 3.0], 3: [1.0, 5.0, 2.0]}
    labels = {0: 1, 1: 0, 2: 2, 3: 2}  # the last one is wrong
    for i in logits:
        _write(tmp_path / "res" / f"s_{i}_0.bin", logits[i], np.float32)
        _write(tmp_path / "res" / f"s_{i}_1.bin", [99.0], np.float32)  # a second output: ignored
        _write(tmp_path / "lab" / f"s_{i}.bin", [labels[i]], np.int32)
    acc = infer310.postprocess(tmp_path / "res", tmp_path / "lab", tmp_path / "acc.log")
    assert (acc.top1_correct, acc.total) == (3, 4)
    assert acc.line() == "top1_correct=3, tot=4, acc=75.00%"
    assert (tmp_path / "acc.log").read_text() == "top1_correct=3, tot=4, acc=75.00%\n"


def test_postprocess_errors_name_the_file(tmp_path):
    res, lab = tmp_path / "res", tmp_path / "lab"
    with pytest.raises(InferenceError, match=r"results directory .*res does not exist"):
        infer310.postprocess(res, lab)
    _write(res / "a_0.bin", [0.0, 1.0], np.float32)
    lab.mkdir()
    with pytest.raises(InferenceError, match=r"no label .*lab/a\.bin for result .*a_0\.bin"):
        infer310.postprocess(res, lab)
    _write(lab / "a.bin", [0, 0], np.int32)
    with pytest.raises(InferenceError, match=r"a\.bin has 8 bytes, expected 4"):
        infer310.postprocess(res, lab)
    _write(lab / "a.bin", [7], np.int32)
    with pytest.raises(InferenceError, match="label 7 is outside the 2 model classes"):
        infer310.postprocess(res, lab)
    _write(lab / "a.bin", [1], np.int32)
    (res / "b_0.bin").write_bytes(b"\x00" * 7)
    with pytest.raises(InferenceError, match=r"b_0\.bin has 7 bytes, not a whole number of float32"):
        infer310.postprocess(res, lab)
    _write(res / "b_0.bin", [0.0, 1.0, 2.0], np.float32)
    with pytest.raises(InferenceError, match=r"b_0\.bin holds 3 logits but earlier results hold 2"):
        infer310.postprocess(res, lab)
    (res / "b_0.bin").unlink()
    (res / "a_0.bin").unlink()
    _write(res / "a_1.bin", [0.0], np.float32)
    with pytest.raises(InferenceError, match=r"no \*_0\.bin result files"):
        infer310.postprocess(res, lab)


def test_timing_line_format_round_trips():
    assert (
        infer310.timing_line(52.22741, 10000)
        == "NN inference cost average time: 52.2274 ms of infer_count 10000"
    )
    t = infer310.parse_timing_line("NN inference cost average time: 52.2274 ms of infer_count 10000\n")
    assert (t.mean_ms, t.count) == (52.2274, 10000)
    # the seed's stdout variant lacks the space before "ms"
    assert infer310.parse_timing_line("NN inference cost average time: 3.5ms of infer_count 2").count == 2
    with pytest.raises(InferenceError, match="no 'NN inference cost average time"):
        infer310.parse_timing_line("nothing here")


def test_result_naming():
    assert infer310.result_path(Path("r"), Path("/x/vit_base_cifar10_1_7.bin")) == Path(
        "r/vit_base_cifar10_1_7_0.bin"
    )
    assert infer310.result_path(Path("r"), Path("a.bin"), 2) == Path("r/a_2.bin")


# ---------------------------------------------------------------------------------- MINDIR + CPU runner


def test_image_size_comes_from_the_mindir(tiny):
    _, mindir = tiny
    assert infer310.mindir_input_shape(mindir) == (1, 3, 32, 32)
    assert infer310.resolve_image_size(mindir, None) == 32
    assert infer310.resolve_image_size(mindir, 32) == 32
    with pytest.raises(InferenceError, match=r"--image-size 224 does not match .* 1x3x32x32"):
        infer310.resolve_image_size(mindir, 224)


def test_unreadable_mindir_falls_back_to_the_requested_size(tmp_path):
    bogus = tmp_path / "bogus.mindir"
    bogus.write_bytes(b"not a protobuf at all \xff\xfe")
    assert infer310.mindir_input_shape(bogus) is None
    assert infer310.resolve_image_size(bogus, None) == infer310.DEFAULT_IMAGE_SIZE
    assert infer310.resolve_image_size(bogus, 64) == 64
    with pytest.raises(InferenceError, match="does not exist"):
        infer310.mindir_input_shape(tmp_path / "missing.mindir")


def test_cpu_runner_equals_the_network(tiny, preprocessed, tmp_path):
    from mindspore import Tensor

    net, mindir = tiny
    timing = infer310.run_cpu(
        mindir, preprocessed / "img_data", tmp_path / "res", tmp_path / "t" / "time.txt"
    )
    assert timing.count == N_TEST
    assert timing.mean_ms > 0
    line = (tmp_path / "t" / "time.txt").read_text()
    assert infer310.parse_timing_line(line).count == N_TEST
    assert line.startswith("NN inference cost average time: ") and line.endswith(
        f" ms of infer_count {N_TEST}\n"
    )
    for img in infer310.list_bins(preprocessed / "img_data"):
        got = np.fromfile(infer310.result_path(tmp_path / "res", img), np.float32)
        x = np.fromfile(img, np.float32).reshape(1, 3, 32, 32)
        want = net(Tensor(x)).asnumpy().reshape(-1)
        assert got.shape == (10,)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_cpu_runner_rejects_inputs_of_the_wrong_size(tiny, tmp_path):
    _, mindir = tiny
    _write(tmp_path / "in" / "x.bin", np.zeros(3 * 48 * 48), np.float32)
    with pytest.raises(InferenceError, match=r"x\.bin has 27648 bytes, expected 12288"):
        infer310.run_cpu(mindir, tmp_path / "in", tmp_path / "res", tmp_path / "time.txt")
    with pytest.raises(InferenceError, match=r"no \.bin files in input directory"):
        infer310.run_cpu(mindir, tmp_path / "res", tmp_path / "res", tmp_path / "time.txt")


# ------------------------------------------------------------------------------------------ pipeline / CLI


def test_cli_run_leaves_the_seed_layout_and_the_true_accuracy(tiny, data_dir, tmp_path, capsys):
    from mindspore import Tensor

    net, mindir = tiny
    work = tmp_path / "work"
    assert (
        main(["infer310", "run", "--mindir", str(mindir), "--data", str(data_dir), "--workdir", str(work)])
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    acc_line = (work / "acc.log").read_text().strip()
    assert out[-1] == acc_line
    assert out[-2] == (work / "time_Result" / "test_perform_static.txt").read_text().strip()
    assert len(list((work / "result_Files").glob("*_0.bin"))) == N_TEST
    # independent accuracy: the network on the numpy-transformed test images
    split = load_split(data_dir, "test")
    preds = [int(np.argmax(net(Tensor(x[None])).asnumpy())) for x in _eval_reference(split.images)]
    correct = sum(int(p == y) for p, y in zip(preds, split.labels, strict=True))
    assert acc_line == f"top1_correct={correct}, tot={N_TEST}, acc={100.0 * correct / N_TEST:.2f}%"


def test_cli_preprocess_and_postprocess(tiny, data_dir, tmp_path, capsys):
    _, mindir = tiny
    pre = tmp_path / "pre"
    assert (
        main(["infer310", "preprocess", "--data", str(data_dir), "--out", str(pre), "--image-size", "32"])
        == 0
    )
    assert f"wrote {N_TEST} samples" in capsys.readouterr().out
    infer310.run_cpu(mindir, pre / "img_data", tmp_path / "res", tmp_path / "time.txt")
    log = tmp_path / "acc.log"
    rc = main(
        [
            "infer310",
            "postprocess",
            "--results",
            str(tmp_path / "res"),
            "--labels",
            str(pre / "label"),
            "--acc-log",
            str(log),
        ]
    )
    assert rc == 0
    assert capsys.readouterr().out.strip() == log.read_text().strip()
    assert log.read_text().startswith("top1_correct=")


def test_cli_errors_are_one_line(tiny, data_dir, tmp_path, capsys):
    _, mindir = tiny
    rc = main(
        [
            "infer310",
            "run",
            "--mindir",
            str(mindir),
            "--data",
            str(data_dir),
            "--workdir",
            str(tmp_path),
            "--runner",
            "ascend310",
            "--infer-binary",
            str(tmp_path / "no-such-main"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1
    # progress notes (the preprocess step that ran first) may precede it; the error itself is one line
    errors = [line for line in err.splitlines() if line.startswith("vitjob infer310: error: ")]
    assert len(errors) == 1, err
    assert f"Ascend-310 inference program {tmp_path / 'no-such-main'} does not exist" in errors[0]
    assert "Traceback" not in err
    rc = main(["infer310", "postprocess", "--results", str(tmp_path / "none"), "--labels", str(tmp_path)])
    assert rc == 1
    assert "results directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["infer310", "preprocess", "--data", str(data_dir), "--out", str(tmp_path), "--image-size", "0"])
    assert exc.value.code == 2


def test_ascend310_runner_reports_a_failing_program(tiny, preprocessed, tmp_path):
    _, mindir = tiny
    with pytest.raises(InferenceError, match="exited with 1"):
        infer310.run_ascend310(
            mindir, preprocessed / "img_data", tmp_path / "res", tmp_path / "t.txt", binary=Path("/bin/false")
        )


def test_ascend310_runner_without_sdk_says_how_to_build(tiny, preprocessed, tmp_path, monkeypatch):
    _, mindir = tiny
    for var in (infer310.INFER_BINARY_ENV, "MINDSPORE_PATH", "LITE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(infer310, "DEFAULT_BINARY", tmp_path / "out" / "main")
    with pytest.raises(InferenceError, match="no MindSpore C\\+\\+ inference SDK: set MINDSPORE_PATH"):
        infer310.run_ascend310(mindir, preprocessed / "img_data", tmp_path / "res", tmp_path / "t.txt")
