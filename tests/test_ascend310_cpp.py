"""ascend310_infer/ (C++): the CTest suite, and the ``.bin`` contract across the language boundary.

The SDK-free part (library ``infer_util``, ``bin_tool``, unit tests) is configured and built with
CMake into a temporary directory and its CTest suite run. The cross-language tests let Python write
``.bin`` files with ``vitjob infer310 preprocess`` and have the C++ reader (``bin_tool``, the same
library code the inference program uses) read them back; they also check that the command line
Python builds for the program parses in C++, and that both sides name results and print the timing
line identically. cmake and ctest come from the pinned ``cmake`` wheel of the dev extra (the venv's
``bin``): without them the tests fail, never skip. Without a C++ compiler they skip with the reason
(a failure under CI, see conftest.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vitjob import infer310
from vitjob.vit.data import Split, make_digits, write_dataset

pytestmark = pytest.mark.timeout(300)

SOURCE = Path(__file__).resolve().parent.parent / "ascend310_infer"
N_TEST = 6


def _compiler() -> str | None:
    for cand in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if cand and shutil.which(cand):
            return cand
    return None


def cmake_tool(name: str) -> str:
    """``cmake`` or ``ctest``: the venv's (the dev extra's pinned wheel) first, else one on PATH."""
    venv = Path(sys.executable).parent / name
    found = str(venv) if os.access(venv, os.X_OK) else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: it is a pinned dev dependency (pip install -e '.[dev]')")
    return found


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    if _compiler() is None:
        pytest.skip("no C++ compiler (c++, g++, clang++ or $CXX): cannot build ascend310_infer")
    build = tmp_path_factory.mktemp("ascend310_build")
    configure = subprocess.run(
        [cmake_tool("cmake"), "-S", str(SOURCE), "-B", str(build), "-DCMAKE_BUILD_TYPE=Debug"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert configure.returncode == 0, configure.stdout + configure.stderr
    assert "MINDSPORE_PATH not set" in configure.stdout  # the SDK-dependent program is left out
    compiled = subprocess.run(
        [cmake_tool("cmake"), "--build", str(build), "-j", "2"], capture_output=True, text=True, check=False
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    assert not (build / "main").exists()
    return build


def _tool(build_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(build_dir / "bin_tool"), *args], capture_output=True, text=True, check=False)


def test_ctest_suite_passes(build_dir):
    proc = subprocess.run(
        [cmake_tool("ctest"), "--test-dir", str(build_dir), "--output-on-failure"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "100% tests passed" in proc.stdout
    assert "out of 16" in proc.stdout  # 15 unit-test cases + the bin_tool usage check


def test_build_script_without_sdk_fails_clearly(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MINDSPORE_PATH", "LITE_HOME")}
    proc = subprocess.run(
        ["bash", str(SOURCE / "build.sh")], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode != 0
    assert "no MindSpore C++ inference SDK: set MINDSPORE_PATH" in proc.stderr


def test_cmake_rejects_a_directory_that_is_not_the_sdk(build_dir, tmp_path):
    proc = subprocess.run(
        [cmake_tool("cmake"), "-S", str(SOURCE), "-B", str(tmp_path / "b"), f"-DMINDSPORE_PATH={tmp_path}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "is not a MindSpore C++ inference SDK" in proc.stderr


# ------------------------------------------------------------------------------------- cross-language


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory) -> Path:
    train, test = make_digits()
    data = tmp_path_factory.mktemp("data")
    info = {"name": "digits", "classes": [str(i) for i in range(10)], "hflip": False}
    write_dataset(
        data,
        Split(train.images[:8], train.labels[:8]),
        Split(test.images[:N_TEST], test.labels[:N_TEST]),
        info,
    )
    out = tmp_path_factory.mktemp("pre")
    assert infer310.preprocess(data, out, 48) == N_TEST
    return out


def _fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _parse_summary(line: str) -> dict[str, str]:
    name, *fields = line.split()
    return {"name": name, **dict(f.split("=", 1) for f in fields)}


@pytest.mark.parametrize(
    ("subdir", "dtype", "count"), [("img_data", "float32", 3 * 48 * 48), ("label", "int32", 1)]
)
def test_cpp_reads_what_python_wrote(build_dir, preprocessed, subdir, dtype, count):
    directory = preprocessed / subdir
    proc = _tool(build_dir, "summary", "--dtype", dtype, str(directory))
    assert proc.returncode == 0, proc.stderr
    rows = [_parse_summary(line) for line in proc.stdout.splitlines()]
    files = infer310.list_bins(directory)
    assert [r["name"] for r in rows] == [p.name for p in files]  # same files, same order
    for row, path in zip(rows, files, strict=True):
        raw = path.read_bytes()
        values = np.frombuffer(raw, dtype=dtype).astype(np.float64)
        assert int(row["bytes"]) == len(raw) == 4 * count
        assert int(row["elements"]) == values.size == count
        assert int(row["fnv1a64"], 16) == _fnv1a64(raw)
        assert float(row["first"]) == values[0]
        assert float(row["min"]) == values.min()
        assert float(row["max"]) == values.max()
        assert float(row["sum"]) == pytest.approx(float(values.sum()), rel=1e-9, abs=1e-9)


def test_cpp_rejects_a_truncated_python_file(build_dir, tmp_path):
    np.zeros(5, np.float32).tofile(tmp_path / "ok.bin")
    (tmp_path / "short.bin").write_bytes(b"\x00" * 10)
    proc = _tool(build_dir, "summary", "--dtype", "float32", str(tmp_path))
    assert proc.returncode == 1
    assert "short.bin has 10 bytes" in proc.stderr


def test_result_names_agree(build_dir):
    for name, index in [("vit_base_cifar10_1_0.bin", 0), ("vit_base_cifar10_1_9999.bin", 0), ("x.bin", 3)]:
        proc = _tool(build_dir, "result-name", "res", f"/in/{name}", str(index))
        assert proc.returncode == 0, proc.stderr
        assert Path(proc.stdout.strip()) == infer310.result_path(Path("res"), Path("/in") / name, index)


@pytest.mark.parametrize(
    "times", [[52.2274], [50.0, 54.4548, 52.2274], [0.000123, 0.0002], [1234567.0, 7.0], [3.0]]
)
def test_timing_lines_agree(build_dir, times):
    proc = _tool(build_dir, "timing-line", *map(repr, times))
    assert proc.returncode == 0, proc.stderr
    mean = sum(times) / len(times)
    assert proc.stdout.strip() == infer310.timing_line(mean, len(times))


def test_python_command_line_parses_in_cpp(build_dir, tmp_path):
    cmd = infer310.infer_command(
        Path("/opt/main"),
        tmp_path / "m.mindir",
        tmp_path / "img",
        tmp_path / "res",
        tmp_path / "t" / "x.txt",
        3,
    )
    proc = _tool(build_dir, "parse-args", *cmd[1:])
    assert proc.returncode == 0, proc.stderr
    parsed = dict(line.split("=", 1) for line in proc.stdout.splitlines())
    assert parsed == {
        "model_path": str((tmp_path / "m.mindir").resolve()),
        "dataset_path": str((tmp_path / "img").resolve()),
        "dataset": "cifar10",
        "result_path": str((tmp_path / "res").resolve()),
        "time_file": str((tmp_path / "t" / "x.txt").resolve()),
        "device_id": "3",
    }
    bad = _tool(build_dir, "parse-args", "--model_path=m", "--dataset_path=d", "--device_id=-2")
    assert bad.returncode == 2
    assert "--device_id must be a non-negative integer" in bad.stderr
