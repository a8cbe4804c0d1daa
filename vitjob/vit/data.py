"""CIFAR-10 binary data: reading, writing, downloading, and the MindSpore input pipeline.

Layout (the seed's): ``DIR/cifar-10-batches-bin/data_batch_{1..5}.bin`` for training and
``DIR/cifar-10-verify-bin/test_batch.bin`` for testing (the official tarball's
``cifar-10-batches-bin/test_batch.bin`` is accepted too). Each record is 1 label byte followed by
3,072 image bytes (1024 R, 1024 G, 1024 B, row-major 32×32).

MindSpore's ``Cifar10Dataset`` only reads files of exactly 10,000 records, so files are read here
with numpy (validated, with errors naming the file) and fed to ``NumpySlicesDataset``; transforms
are MindSpore's C++ vision ops (the seed's train and eval transforms).

An optional ``DIR/dataset.json`` describes the data set (``name``, ``classes``, ``hflip``,
``random_crop``): the digits set turns both augmentations off — mirrored digits are different digits,
and shifting a size-normalised 8×8 glyph by a whole pixel cost more than it gave (a patch-8 ViT reached
32% instead of 86% test accuracy after 40 epochs with the seed's pad-4 random crop).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitjob.cputhreads import threads_from_env
from vitjob.errors import DataError

log = logging.getLogger(__name__)

RECORD_BYTES = 1 + 32 * 32 * 3
TRAIN_DIR = "cifar-10-batches-bin"
TEST_DIR = "cifar-10-verify-bin"
TEST_FILE = "test_batch.bin"
NUM_CLASSES = 10
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class Split:
    """One split in memory: ``images`` uint8 (N, 32, 32, 3) HWC, ``labels`` int32 (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


# ---------------------------------------------------------------------------------------------- reading


def read_bin(path: Path) -> Split:
    """Read one CIFAR-10 ``.bin`` file; raise ``DataError`` naming the file if it is malformed."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from exc
    if raw.size == 0:
        raise DataError(f"{path} is empty: expected records of {RECORD_BYTES} bytes (1 label + 3072 pixels)")
    if raw.size % RECORD_BYTES:
        raise DataError(
            f"{path} is truncated or not CIFAR-10 binary: {raw.size} bytes is not a multiple of the "
            f"{RECORD_BYTES}-byte record ({raw.size // RECORD_BYTES} whole records, "
            f"{raw.size % RECORD_BYTES} bytes left over). Re-download or regenerate the data set."
        )
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int32)
    if labels.max() >= NUM_CLASSES:
        bad = int(np.argmax(labels >= NUM_CLASSES))
        raise DataError(f"{path}: record {bad} has label {labels[bad]}, expected 0-9: not a CIFAR-10 file")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return Split(np.ascontiguousarray(images), labels)


def _resolve_root(data_dir: Path) -> Path:
    """Accept the data root, or one of its two split directories."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(
            f"data directory {data_dir} does not exist. Create one with "
            f"`vitjob data digits --out {data_dir}` "
            f"or `vitjob data cifar10 --out {data_dir}`."
        )
    if data_dir.name in (TRAIN_DIR, TEST_DIR):
        return data_dir.parent
    return data_dir


def split_files(data_dir: Path, split: str) -> list[Path]:
    """The ``.bin`` files of ``split`` ("train" or "test") under ``data_dir``."""
    root = _resolve_root(data_dir)
    if split == "train":
        files = sorted((root / TRAIN_DIR).glob("data_batch_*.bin"))
        where = root / TRAIN_DIR / "data_batch_{1..5}.bin"
    elif split == "test":
        files = [p for p in (root / TEST_DIR / TEST_FILE, root / TRAIN_DIR / TEST_FILE) if p.is_file()][:1]
        where = root / TEST_DIR / TEST_FILE
    else:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    if not files:
        raise DataError(
            f"no CIFAR-10 {split} data under {root}: expected {where}. Layout: "
            f"{TRAIN_DIR}/data_batch_N.bin and {TEST_DIR}/{TEST_FILE} (see `vitjob data --help`)."
        )
    return files


def load_split(data_dir: Path, split: str) -> Split:
    """Read and concatenate every file of a split."""
    parts = [read_bin(p) for p in split_files(data_dir, split)]
    return Split(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]))


VALIDATION_SEED = 12345  # fixed: every run over a data set holds out the same images, whatever its --seed


def split_validation(split: Split, fraction: float) -> tuple[Split, Split | None]:
    """``(train, validation)``: a seeded, class-stratified ``fraction`` of ``split`` held out.

    Checkpoints are chosen on the validation part, so the test split stays unseen until the end.
    ``fraction`` 0 holds nothing out (validation ``None``).
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"the validation fraction must be in [0, 1), not {fraction}")
    if fraction == 0.0:
        return split, None
    rng = np.random.default_rng(VALIDATION_SEED)
    held: list[np.ndarray] = []
    for label in np.unique(split.labels):
        idx = np.flatnonzero(split.labels == label)
        held.append(rng.permutation(idx)[: round(len(idx) * fraction)])
    val_idx = np.sort(np.concatenate(held))
    if len(val_idx) == 0 or len(val_idx) == len(split):
        raise DataError(
            f"a validation fraction of {fraction} of {len(split)} training images leaves "
            f"{len(val_idx)} for validation: choose another --val-fraction"
        )
    train_idx = np.setdiff1d(np.arange(len(split)), val_idx)
    return (
        Split(split.images[train_idx], split.labels[train_idx]),
        Split(split.images[val_idx], split.labels[val_idx]),
    )


def dataset_info(data_dir: Path) -> dict[str, Any]:
    """``dataset.json`` of a data directory, or CIFAR-10's defaults."""
    info: dict[str, Any] = {
        "name": "cifar10",
        "classes": list(CIFAR10_CLASSES),
        "hflip": True,
        "random_crop": True,
    }
    path = _resolve_root(data_dir) / "dataset.json"
    if path.is_file():
        try:
            info.update(json.loads(path.read_text()))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is not valid JSON: {exc}") from exc
    return info


# ---------------------------------------------------------------------------------------------- writing


def write_bin(path: Path, split: Split) -> None:
    """Write a split as CIFAR-10 binary records (atomically)."""
    if split.images.shape[1:] != (32, 32, 3) or split.images.dtype != np.uint8:
        raise ValueError(
            f"images must be uint8 (N, 32, 32, 3), got {split.images.dtype} {split.images.shape}"
        )
    chw = split.images.transpose(0, 3, 1, 2).reshape(len(split), -1)
    records = np.concatenate([split.labels.astype(np.uint8)[:, None], chw], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    records.tofile(tmp)
    os.replace(tmp, path)


def write_dataset(out: Path, train: Split, test: Split, info: dict[str, Any]) -> None:
    out = Path(out)
    write_bin(out / TRAIN_DIR / "data_batch_1.bin", train)
    write_bin(out / TEST_DIR / TEST_FILE, test)
    (out / TRAIN_DIR / "batches.meta.txt").write_text("\n".join(info["classes"]) + "\n")
    (out / "dataset.json").write_text(json.dumps(info, indent=2) + "\n")


def make_digits(test_fraction: float = 1 / 6, seed: int = 0) -> tuple[Split, Split]:
    """scikit-learn's bundled handwritten digits (1,797 real 8×8 images) as 32×32×3 CIFAR-style images.

    Grey levels 0-16 are scaled to 0-255 and each pixel becomes a 4×4 block; the split is a fixed
    seeded permutation (1,497 train / 300 test with the defaults).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)  # (N, 8, 8)
    big = grey.repeat(4, axis=1).repeat(4, axis=2)  # (N, 32, 32)
    images = np.repeat(big[..., None], 3, axis=3)
    labels = digits.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = round(len(labels) * test_fraction)
    test_idx, train_idx = order[:n_test], order[n_test:]
    return Split(images[train_idx], labels[train_idx]), Split(images[test_idx], labels[test_idx])


def write_digits(out: Path) -> tuple[int, int]:
    """Write the digits data set in CIFAR-10 binary layout; return (train, test) sizes."""
    train, test = make_digits()
    info = {
        "name": "digits",
        "classes": [str(i) for i in range(10)],
        "hflip": False,
        "random_crop": False,
        "source": "sklearn.datasets.load_digits (UCI optical recognition of handwritten digits)",
        "train": len(train),
        "test": len(test),
    }
    write_dataset(out, train, test, info)
    return len(train), len(test)


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download_cifar10(
    out: Path,
    url: str = CIFAR10_URL,
    md5: str = CIFAR10_MD5,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Download the official binary tarball, verify its MD5, unpack into the seed's layout.

    ``progress(done_bytes, total_bytes)`` is called while downloading. Nothing is left in ``out``
    if the download or the checksum fails.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".download-") as tmp:
        archive = Path(tmp) / "cifar-10-binary.tar.gz"
        log.info("downloading %s", url)
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(archive, "wb") as fh:
                total = int(resp.headers.get("Content-Length") or 0)
                done = 0
                while block := resp.read(1 << 20):
                    fh.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
        except OSError as exc:
            raise DataError(
                f"cannot download {url}: {exc}. Download it by hand and pass --url file://PATH"
            ) from exc
        digest = md5sum(archive)
        if digest != md5:
            raise DataError(
                f"checksum mismatch for {url}: MD5 {digest}, expected {md5}. The file is corrupt."
            )
        unpack = Path(tmp) / "unpacked"
        with tarfile.open(archive) as tar:
            tar.extractall(unpack, filter="data")
        src = unpack / TRAIN_DIR
        if not src.is_dir():
            raise DataError(f"{url} does not contain {TRAIN_DIR}/: not the CIFAR-10 binary tarball")
        (src / TEST_DIR).mkdir()
        shutil.move(src / TEST_FILE, src / TEST_DIR / TEST_FILE)
        for name in (TRAIN_DIR, TEST_DIR):
            if (out / name).exists():
                shutil.rmtree(out / name)
        shutil.move(src / TEST_DIR, out / TEST_DIR)
        shutil.move(src, out / TRAIN_DIR)
    for split in ("train", "test"):  # validate what was unpacked
        load_split(out, split)
    return out


# ---------------------------------------------------------------------------------------------- pipeline


def _image_ops(image_size: int, training: bool, hflip: bool, random_crop: bool = True) -> list[Any]:
    import mindspore.dataset.vision as vision

    ops: list[Any] = []
    if training:
        if random_crop:
            ops.append(vision.RandomCrop((32, 32), (4, 4, 4, 4)))
        if hflip:
            ops.append(vision.RandomHorizontalFlip())
    if image_size != 32:
        ops.append(vision.Resize((image_size, image_size)))
    ops += [
        vision.Rescale(1.0 / 255.0, 0.0),
        vision.Normalize(CIFAR_MEAN, CIFAR_STD),
        vision.HWC2CHW(),
    ]
    return ops


def default_workers() -> int:
    """One worker per thread of this process's CPU share (``VITJOB_CPU_THREADS``, set by ``vitjob launch``),
    else per core; at most 8 (MindSpore refuses more workers than cores)."""
    share = threads_from_env(os.environ)
    return max(1, min(8, share or os.cpu_count() or 1))


def create_dataset(
    split: Split,
    *,
    batch_size: int,
    image_size: int,
    training: bool,
    hflip: bool = True,
    random_crop: bool = True,
    num_shards: int = 1,
    shard_id: int = 0,
    num_workers: int | None = None,
    order: np.ndarray | None = None,
    drop_remainder: bool | None = None,
) -> Any:
    """A batched MindSpore dataset over ``split`` with the seed's transforms.

    ``order`` is the sample order (a permutation, for reproducible per-epoch shuffling that survives a
    restart); sharding takes every ``num_shards``-th sample of it starting at ``shard_id``. Training
    drops the last partial batch; evaluation keeps every sample.
    """
    import mindspore as ms
    import mindspore.dataset as ds
    import mindspore.dataset.transforms as transforms

    idx = np.arange(len(split)) if order is None else order
    idx = idx[shard_id::num_shards]
    workers = min(num_workers or default_workers(), os.cpu_count() or 1)
    dataset = ds.NumpySlicesDataset(
        {"image": split.images[idx], "label": split.labels[idx]}, shuffle=False, num_parallel_workers=1
    )
    dataset = dataset.map(operations=transforms.TypeCast(ms.int32), input_columns="label")
    dataset = dataset.map(
        operations=_image_ops(image_size, training, hflip, random_crop),
        input_columns="image",
        num_parallel_workers=workers,
    )
    return dataset.batch(batch_size, drop_remainder=training if drop_remainder is None else drop_remainder)
