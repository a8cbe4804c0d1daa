"""CIFAR-10 binary layout: digits writer, validated reader, download with checksum, input pipeline."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from vitjob.cli import main
from vitjob.errors import DataError
from vitjob.vit import data


def test_digits_round_trip_through_the_binary_layout(tmp_path: Path) -> None:
    n_train, n_test = data.write_digits(tmp_path)
    assert (n_train, n_test) == (1497, 300)
    train, test = data.load_split(tmp_path, "train"), data.load_split(tmp_path, "test")
    ref_train, ref_test = data.make_digits()
    np.testing.assert_array_equal(train.images, ref_train.images)
    np.testing.assert_array_equal(test.labels, ref_test.labels)
    assert train.images.shape == (1497, 32, 32, 3) and train.images.dtype == np.uint8
    assert sorted(set(train.labels.tolist())) == list(range(10))
    assert (tmp_path / "cifar-10-batches-bin" / "data_batch_1.bin").stat().st_size == 1497 * 3073
    assert data.dataset_info(tmp_path)["hflip"] is False


def test_record_layout_is_label_then_planar_rgb(tmp_path: Path) -> None:
    images = np.zeros((2, 32, 32, 3), np.uint8)
    images[1, 0, 1, 2] = 200  # row 0, column 1, blue
    path = tmp_path / "x.bin"
    data.write_bin(path, data.Split(images, np.array([3, 7], np.int32)))
    raw = np.fromfile(path, np.uint8).reshape(2, 3073)
    assert raw[:, 0].tolist() == [3, 7]
    assert raw[1, 1 + 2 * 1024 + 1] == 200


def test_truncated_file_names_the_file(tmp_path: Path) -> None:
    data.write_digits(tmp_path)
    f = tmp_path / "cifar-10-batches-bin" / "data_batch_1.bin"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"data_batch_1\.bin is truncated"):
        data.load_split(tmp_path, "train")


def test_missing_directory_and_wrong_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        data.load_split(tmp_path / "nope", "train")
    with pytest.raises(DataError, match="no CIFAR-10 test data"):
        data.load_split(tmp_path, "test")
    bad = tmp_path / "cifar-10-batches-bin"
    bad.mkdir()
    (bad / "data_batch_1.bin").write_bytes(bytes([12]) + bytes(3072))
    with pytest.raises(DataError, match="label 12"):
        data.load_split(tmp_path, "train")


def test_train_command_on_bad_data_is_one_clear_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "none"), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    assert not out.exists()


def _tarball(src: Path, dest: Path) -> str:
    """An archive with the official layout (test_batch.bin inside cifar-10-batches-bin/)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / "cifar-10-batches-bin" / "data_batch_1.bin", "cifar-10-batches-bin/data_batch_1.bin")
        tar.add(src / "cifar-10-verify-bin" / "test_batch.bin", "cifar-10-batches-bin/test_batch.bin")
    dest.write_bytes(buf.getvalue())
    return hashlib.md5(buf.getvalue()).hexdigest()


def test_cifar10_download_verifies_and_unpacks_into_the_seed_layout(
    digits_dir: Path, tmp_path: Path, capsys
) -> None:
    archive = tmp_path / "cifar-10-binary.tar.gz"
    md5 = _tarball(digits_dir, archive)
    out = tmp_path / "cifar10"
    assert main(["data", "cifar10", "--out", str(out), "--url", archive.as_uri(), "--md5", md5]) == 0
    assert (out / "cifar-10-verify-bin" / "test_batch.bin").is_file()
    assert len(data.load_split(out, "test")) == 300
    bad_out = tmp_path / "bad"
    assert main(["data", "cifar10", "--out", str(bad_out), "--url", archive.as_uri(), "--md5", "0" * 32]) == 1
    assert "checksum mismatch" in capsys.readouterr().err
    assert list(bad_out.iterdir()) == []


def test_pipeline_shards_disjointly_and_applies_eval_transforms(digits_dir: Path) -> None:
    split = data.load_split(digits_dir, "test")
    order = np.arange(len(split))
    labels = []
    for shard in range(2):
        ds = data.create_dataset(
            split,
            batch_size=50,
            image_size=32,
            training=False,
            num_shards=2,
            shard_id=shard,
            order=order,
            num_workers=1,
        )
        batches = list(ds.create_tuple_iterator(output_numpy=True))
        labels.append(np.concatenate([b[1] for b in batches]))
        image = batches[0][0]
        assert image.shape == (50, 3, 32, 32) and image.dtype == np.float32
        expected = (
            split.images[order[shard]].astype(np.float32) / 255 - np.array(data.CIFAR_MEAN)
        ) / np.array(data.CIFAR_STD)
        np.testing.assert_allclose(image[0], expected.transpose(2, 0, 1), atol=1e-5)
    np.testing.assert_array_equal(np.sort(np.concatenate(labels)), np.sort(split.labels))
    assert len(labels[0]) == len(labels[1]) == 150
