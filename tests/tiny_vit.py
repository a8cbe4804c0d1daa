"""vit-tiny on the digits: the reference training command, and facts computed without vitjob's code.

``independent_test_accuracy``: the test split is read straight from the CIFAR-10 binary format (1 label
byte, then the 1,024 R, G and B bytes of a 32x32 image) and normalised by hand with the seed's mean and
standard deviation; only the model itself is vitjob's. ``independent_validation_accuracy`` does the same
for the images held out of the training file for validation (which ones: ``split_validation``, whose
choice tests/test_train.py checks on its own).

``train_cmd``: the one-process run that the resume tests (tests/test_train.py) and the data-parallel
test (tests/test_resume.py) compare with; ``conftest.py`` runs it once per session.
"""

from __future__ import annotations

import sys
from pathlib import Path

import mindspore as ms
import numpy as np

TRAIN_IMAGES = 1347  # the digits' 1,497 training images less the 150 (10 %) held out for validation
SEED = 7
EPOCHS = 2
STEPS = EPOCHS * (TRAIN_IMAGES // 64)  # the preset's batch of 64: 2 epochs x 21 steps
CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
CIFAR_STD = np.array([0.2023, 0.1994, 0.2010], dtype=np.float32)


def _records(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 CHW images, int64 labels) of a CIFAR-10 binary file."""
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 3073)
    return raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0].astype(np.int64)


def _normalised(chw: np.ndarray) -> np.ndarray:
    return (chw.astype(np.float32) / 255.0 - CIFAR_MEAN[:, None, None]) / CIFAR_STD[:, None, None]


def test_images(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    chw, labels = _records(Path(data_dir) / "cifar-10-verify-bin" / "test_batch.bin")
    return _normalised(chw), labels


test_images.__test__ = False  # a helper, not a pytest test


def validation_images(data_dir: Path, fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """The training images held out for validation (150 of the digits' 1,497), normalised by hand."""
    from vitjob.vit.data import Split, split_validation

    chw, labels = _records(Path(data_dir) / "cifar-10-batches-bin" / "data_batch_1.bin")
    _, held = split_validation(Split(np.arange(len(labels)), labels), fraction)  # "images": indices
    assert held is not None and len(held) == 150
    which = held.images
    return _normalised(chw[which]), labels[which]


def independent_test_accuracy(ckpt: Path, data_dir: Path) -> float:
    """Top-1 accuracy of the vit-tiny weights in ``ckpt`` on every test image."""
    return independent_accuracy(ckpt, *test_images(data_dir))


def independent_validation_accuracy(ckpt: Path, data_dir: Path) -> float:
    """Top-1 accuracy of the vit-tiny weights in ``ckpt`` on the held-out validation images."""
    return independent_accuracy(ckpt, *validation_images(data_dir))


def independent_accuracy(ckpt: Path, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of the vit-tiny weights in ``ckpt`` on normalised NCHW ``images``."""
    from vitjob.vit.config import get_preset
    from vitjob.vit.model import build_model

    ms.set_context(mode=ms.GRAPH_MODE)
    net = build_model(get_preset("vit-tiny").model)
    params = ms.load_checkpoint(str(ckpt))
    names = {p.name for p in net.get_parameters()}
    assert names <= set(params), sorted(names - set(params))[:5]
    not_loaded, _ = ms.load_param_into_net(net, {n: params[n] for n in names}, strict_load=True)
    assert not_loaded == []
    net.set_train(False)
    batches = [images[i : i + 100] for i in range(0, len(images), 100)]
    pred = np.concatenate([net(ms.Tensor(b)).asnumpy().argmax(1) for b in batches])
    return float((pred == labels).mean())


def train_cmd(data_dir: Path, out: Path, *extra: str) -> list[str]:
    """``vitjob train`` of vit-tiny for 2 epochs, seed 7, one data worker, a checkpoint every 8 steps."""
    return [
        *(sys.executable, "-m", "vitjob", "train", "--preset", "vit-tiny"),
        *("--data", str(data_dir), "--output", str(out), "--epochs", str(EPOCHS), "--seed", str(SEED)),
        *("--save-steps", "8", "--log-steps", "1", "--num-workers", "1"),
        *("--summary-json", str(out.parent / f"{out.name}-summary.json")),
        *extra,
    ]


def relative_differences(a: dict, b: dict) -> dict[str, float]:
    """``||a - b|| / ||a||`` (L2, float64) of every tensor the two checkpoints share."""
    out = {}
    for name in a.keys() & b.keys():
        x, y = a[name].asnumpy().astype(np.float64), b[name].asnumpy().astype(np.float64)
        out[name] = float(np.linalg.norm(x - y) / max(float(np.linalg.norm(x)), 1e-30))
    return out


def max_relative_difference(a: dict, b: dict) -> tuple[float, str]:
    """The largest relative L2 difference of a tensor between two checkpoints, and its name."""
    diffs = relative_differences(a, b)
    where = max(diffs, key=diffs.__getitem__)
    return diffs[where], where
