"""Ascend-310 style offline inference: owns the ``.bin`` contract shared with ``ascend310_infer/`` (C++).

The seed's ``run_infer_310.sh`` pipeline, file for file, under one work directory::

    WORKDIR/preprocess_Result/img_data/vit_base_cifar10_1_{idx}.bin  float32 NCHW 1x3xHxW (eval transforms)
    WORKDIR/preprocess_Result/label/vit_base_cifar10_1_{idx}.bin     int32, one value
    WORKDIR/result_Files/vit_base_cifar10_1_{idx}_{i}.bin            output i (float32 logits 1xC)
    WORKDIR/time_Result/test_perform_static.txt                      the timing line (below)
    WORKDIR/acc.log                                                  top1_correct=…, tot=…, acc=…%

The timing line is ``NN inference cost average time: X ms of infer_count N``.
Every ``.bin`` is raw native-endian (little-endian on x86-64 and aarch64) data without a header.
Inputs are every regular ``*.bin`` file of the input directory, in sorted name order; output ``i`` of
input ``NAME.bin`` is ``NAME_{i}.bin``. ``preprocess`` uses exactly the evaluation pipeline of
``vitjob.vit.data`` (the one ``vitjob eval`` uses), so an inference on these files sees the same
tensors as an evaluation.

Two runners read the same layout: ``run_cpu`` (MindSpore in Python, ``mindspore.load`` + ``nn.GraphCell``)
and ``run_ascend310`` (the C++ program ``ascend310_infer/out/main``, MindSpore's C++ inference API).
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitjob.errors import InferenceError

log = logging.getLogger(__name__)

PREPROCESS_DIR = "preprocess_Result"
IMAGE_DIR = "img_data"
LABEL_DIR = "label"
RESULT_DIR = "result_Files"
TIMING_FILE = "time_Result/test_perform_static.txt"
ACC_LOG = "acc.log"
FILE_PREFIX = "vit_base_cifar10_1_"
BIN_SUFFIX = ".bin"
FIRST_OUTPUT_SUFFIX = "_0.bin"
DEFAULT_IMAGE_SIZE = 224
RUNNERS = ("cpu", "ascend310")

# The C++ program: explicit flag > this environment variable > the source tree's build output.
INFER_BINARY_ENV = "VITJOB_ASCEND310_INFER"
SOURCE_DIR = Path(__file__).resolve().parent.parent / "ascend310_infer"
DEFAULT_BINARY = SOURCE_DIR / "out" / "main"

_TIMING_RE = re.compile(r"NN inference cost average time: ([-+0-9.eE]+|nan|inf) ?ms of infer_count (\d+)")


@dataclass(frozen=True)
class Accuracy:
    """Top-1 accuracy over the result files."""

    top1_correct: int
    total: int

    @property
    def acc(self) -> float:
        return self.top1_correct / self.total if self.total else 0.0

    def line(self) -> str:
        return f"top1_correct={self.top1_correct}, tot={self.total}, acc={100.0 * self.acc:.2f}%"


@dataclass(frozen=True)
class Timing:
    """Per-sample inference time statistics (milliseconds)."""

    count: int
    mean_ms: float

    def line(self) -> str:
        return timing_line(self.mean_ms, self.count)


@dataclass(frozen=True)
class RunResult:
    accuracy: Accuracy
    timing: Timing
    workdir: Path


# ------------------------------------------------------------------------------------------ .bin files


def image_name(idx: int) -> str:
    return f"{FILE_PREFIX}{idx}{BIN_SUFFIX}"


def result_path(results_dir: Path, input_path: Path, index: int = 0) -> Path:
    """``results_dir/<input stem>_<index>.bin`` (what the C++ program writes)."""
    name = Path(input_path).name
    stem = name[: -len(BIN_SUFFIX)] if name.endswith(BIN_SUFFIX) else name
    return Path(results_dir) / f"{stem}_{index}{BIN_SUFFIX}"


def list_bins(directory: Path, what: str = "input") -> list[Path]:
    """Regular ``*.bin`` files directly in ``directory``, sorted by name (the C++ program's order)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InferenceError(f"{what} directory {directory} does not exist or is not a directory")
    files = sorted(p for p in directory.iterdir() if p.name.endswith(BIN_SUFFIX) and p.is_file())
    if not files:
        raise InferenceError(f"no .bin files in {what} directory {directory}")
    return files


def read_bin(path: Path, dtype: Any, count: int | None = None) -> np.ndarray:
    """Read a raw ``.bin``; ``InferenceError`` naming the file if it is missing, empty or the wrong size."""
    path = Path(path)
    dtype = np.dtype(dtype)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InferenceError(f"cannot read {path}: {exc.strerror}") from exc
    if size == 0:
        raise InferenceError(f"{path} is empty")
    if size % dtype.itemsize:
        raise InferenceError(f"{path} has {size} bytes, not a whole number of {dtype.name} values")
    if count is not None and size != count * dtype.itemsize:
        raise InferenceError(
            f"{path} has {size} bytes, expected {count * dtype.itemsize} ({count} {dtype.name} values)"
        )
    return np.fromfile(path, dtype=dtype)


def timing_line(mean_ms: float, count: int) -> str:
    """The seed's timing line; the mean is printed like C++ iostreams (``%g``: 6 significant digits)."""
    return f"NN inference cost average time: {mean_ms:g} ms of infer_count {count}"


def parse_timing_line(text: str, source: str = "timing file") -> Timing:
    match = _TIMING_RE.search(text)
    if not match:
        raise InferenceError(f"{source} has no 'NN inference cost average time: X ms of infer_count N' line")
    return Timing(count=int(match.group(2)), mean_ms=float(match.group(1)))


def write_timing(timing_file: Path, timing: Timing) -> None:
    timing_file = Path(timing_file)
    timing_file.parent.mkdir(parents=True, exist_ok=True)
    timing_file.write_text(timing.line() + "\n")


def _prepare_dir(directory: Path, overwrite: bool) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    stale = [p for p in directory.iterdir() if p.name.endswith(BIN_SUFFIX)]
    if stale and not overwrite:
        raise InferenceError(
            f"{directory} already holds {len(stale)} .bin files: use an empty output directory "
            "(or --force to replace them)"
        )
    for p in stale:
        p.unlink()


# ------------------------------------------------------------------------------------------ preprocess


def preprocess(
    data_dir: Path, out_dir: Path, image_size: int = DEFAULT_IMAGE_SIZE, *, overwrite: bool = False
) -> int:
    """Write the test split as ``out_dir/img_data/*.bin`` (float32 1x3xHxW) and ``out_dir/label/*.bin``
    (int32).

    The images go through ``vitjob.vit.data.create_dataset(..., training=False)``, the evaluation
    transforms. Returns the number of samples written.
    """
    from vitjob.vit.data import create_dataset, load_split

    if image_size <= 0:
        raise InferenceError(f"image size must be positive, got {image_size}")
    out_dir = Path(out_dir)
    image_dir, label_dir = out_dir / IMAGE_DIR, out_dir / LABEL_DIR
    split = load_split(Path(data_dir), "test")
    _prepare_dir(image_dir, overwrite)
    _prepare_dir(label_dir, overwrite)
    dataset = create_dataset(split, batch_size=1, image_size=image_size, training=False)
    count = 0
    for image, label in dataset.create_tuple_iterator(output_numpy=True, num_epochs=1):
        np.ascontiguousarray(image, dtype=np.float32).tofile(image_dir / image_name(count))
        np.ascontiguousarray(label, dtype=np.int32).tofile(label_dir / image_name(count))
        count += 1
    log.info(
        "wrote %d samples (1x3x%dx%d float32) to %s and %s",
        count,
        image_size,
        image_size,
        image_dir,
        label_dir,
    )
    return count


# ------------------------------------------------------------------------------------------ postprocess


def postprocess(results_dir: Path, labels_dir: Path, acc_log: Path | None = None) -> Accuracy:
    """Top-1 accuracy of ``results_dir/*_0.bin`` (float32 logits) against ``labels_dir/*.bin`` (int32).

    Writes the ``top1_correct=…, tot=…, acc=…%`` line to ``acc_log`` when given.
    """
    results_dir, labels_dir = Path(results_dir), Path(labels_dir)
    results = [p for p in list_bins(results_dir, "results") if p.name.endswith(FIRST_OUTPUT_SUFFIX)]
    if not results:
        raise InferenceError(f"no *{FIRST_OUTPUT_SUFFIX} result files in {results_dir}")
    if not labels_dir.is_dir():
        raise InferenceError(f"label directory {labels_dir} does not exist or is not a directory")
    num_classes: int | None = None
    correct = 0
    for res in results:
        logits = read_bin(res, np.float32)
        if num_classes is None:
            num_classes = logits.size
        elif logits.size != num_classes:
            raise InferenceError(
                f"{res} holds {logits.size} logits but earlier results hold {num_classes}: mixed results?"
            )
        label_file = labels_dir / (res.name[: -len(FIRST_OUTPUT_SUFFIX)] + BIN_SUFFIX)
        if not label_file.is_file():
            raise InferenceError(f"no label {label_file} for result {res}")
        label = int(read_bin(label_file, np.int32, count=1)[0])
        if not 0 <= label < num_classes:
            raise InferenceError(f"{label_file}: label {label} is outside the {num_classes} model classes")
        correct += int(int(np.argmax(logits)) == label)
    unmatched = len(list(labels_dir.glob(f"*{BIN_SUFFIX}"))) - len(results)
    if unmatched > 0:
        log.warning(
            "%d labels in %s have no result in %s: accuracy covers %d samples",
            unmatched,
            labels_dir,
            results_dir,
            len(results),
        )
    accuracy = Accuracy(top1_correct=correct, total=len(results))
    if acc_log is not None:
        acc_log = Path(acc_log)
        acc_log.parent.mkdir(parents=True, exist_ok=True)
        acc_log.write_text(accuracy.line() + "\n")
    log.info("%s", accuracy.line())
    return accuracy


# ------------------------------------------------------------------------------------------ MINDIR


def mindir_input_shape(mindir: Path) -> tuple[int, ...] | None:
    """Shape of the MINDIR's first graph input (e.g. ``(1, 3, 224, 224)``), or None if it cannot be read."""
    mindir = Path(mindir)
    if not mindir.is_file():
        raise InferenceError(f"MINDIR file {mindir} does not exist (export one with `vitjob export`)")
    try:
        from mindspore.train.mind_ir_pb2 import ModelProto

        model = ModelProto()
        model.ParseFromString(mindir.read_bytes())
        dims = tuple(int(d) for d in model.graph.input[0].tensor[0].dims)
    except Exception as exc:  # an unreadable shape is not fatal: the caller falls back to --image-size
        log.debug("cannot read the input shape of %s: %s", mindir, exc)
        return None
    return dims or None


def image_size_of(shape: tuple[int, ...] | None) -> int | None:
    """H of a ``(1, 3, H, H)`` input shape, else None."""
    if (
        shape
        and len(shape) == 4
        and shape[0] == 1
        and shape[1] == 3
        and shape[2] == shape[3]
        and shape[2] > 0
    ):
        return shape[2]
    return None


def resolve_image_size(mindir: Path, requested: int | None) -> int:
    """The MINDIR's image size; ``requested`` must agree with it. Falls back to ``requested`` or 224."""
    shape = mindir_input_shape(mindir)
    size = image_size_of(shape)
    if size is None:
        if shape is not None:
            raise InferenceError(
                f"{mindir} takes input {shape}: expected (1, 3, H, H) (export with batch size 1)"
            )
        chosen = requested or DEFAULT_IMAGE_SIZE
        log.info("input shape of %s not readable: using image size %d", mindir, chosen)
        return chosen
    if requested is not None and requested != size:
        raise InferenceError(
            f"--image-size {requested} does not match {mindir}, which takes 1x3x{size}x{size}"
        )
    return size


# ------------------------------------------------------------------------------------------ runners


def _use_cpu() -> None:
    import mindspore as ms

    if str(ms.get_context("device_target")).upper() != "CPU":
        try:
            ms.set_device("CPU")
        except (RuntimeError, ValueError) as exc:
            log.warning(
                "cannot switch MindSpore to CPU (%s): running on %s", exc, ms.get_context("device_target")
            )


def _outputs(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def run_cpu(mindir: Path, inputs_dir: Path, results_dir: Path, timing_file: Path) -> Timing:
    """Run the MINDIR with MindSpore on every input ``.bin``; write ``<name>_<i>.bin`` and the timing line."""
    import mindspore as ms
    from mindspore import Tensor, nn

    mindir, results_dir = Path(mindir), Path(results_dir)
    shape = mindir_input_shape(mindir)
    files = list_bins(Path(inputs_dir))
    if shape is None:
        side = math.isqrt(files[0].stat().st_size // 4 // 3)
        shape = (1, 3, side, side)
        log.info("input shape of %s not readable: assuming %s from %s", mindir, shape, files[0])
    count = math.prod(shape)
    _use_cpu()
    try:
        net = nn.GraphCell(ms.load(str(mindir)))
    except (RuntimeError, ValueError, TypeError) as exc:
        raise InferenceError(f"cannot load {mindir}: {exc}") from exc
    results_dir.mkdir(parents=True, exist_ok=True)
    times: list[float] = []
    for path in files:
        x = read_bin(path, np.float32, count=count).reshape(shape)
        start = time.perf_counter()
        outputs = [o.asnumpy() for o in _outputs(net(Tensor(x)))]
        times.append((time.perf_counter() - start) * 1000.0)
        for i, out in enumerate(outputs):
            np.ascontiguousarray(out).tofile(result_path(results_dir, path, i))
    timing = Timing(count=len(times), mean_ms=float(np.mean(times)))
    write_timing(timing_file, timing)
    log.info("%s (min %.3f ms, max %.3f ms)", timing.line(), min(times), max(times))
    return timing


def find_infer_binary(explicit: Path | None = None) -> Path:
    """The C++ program: ``explicit``, else ``$VITJOB_ASCEND310_INFER``, else ``ascend310_infer/out/main``."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get(INFER_BINARY_ENV)
    return Path(env) if env else DEFAULT_BINARY


def build_infer_binary(source_dir: Path = SOURCE_DIR) -> Path:
    """Run ``ascend310_infer/build.sh`` (needs the MindSpore C++ inference SDK); return ``out/main``."""
    script = source_dir / "build.sh"
    if not script.is_file():
        raise InferenceError(
            f"the Ascend-310 inference program is not built and its sources are not here ({script} missing): "
            f"set {INFER_BINARY_ENV} or pass --infer-binary"
        )
    log.info("building the Ascend-310 inference program with %s", script)
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise InferenceError(f"building the Ascend-310 inference program failed ({script}): {tail}")
    return source_dir / "out" / "main"


def infer_command(
    program: Path, mindir: Path, inputs_dir: Path, results_dir: Path, timing_file: Path, device_id: int = 0
) -> list[str]:
    """The C++ program's command line (its flags: ascend310_infer/inc/infer_util.h ``Options``)."""
    return [
        str(program),
        f"--model_path={Path(mindir).resolve()}",
        f"--dataset_path={Path(inputs_dir).resolve()}",
        f"--device_id={device_id}",
        f"--result_path={Path(results_dir).resolve()}",
        f"--time_file={Path(timing_file).resolve()}",
    ]


def run_ascend310(
    mindir: Path,
    inputs_dir: Path,
    results_dir: Path,
    timing_file: Path,
    *,
    device_id: int = 0,
    binary: Path | None = None,
) -> Timing:
    """Run the C++ program (building it from the source tree if it is missing) on the input ``.bin`` files."""
    program = find_infer_binary(binary)
    if not program.is_file():
        if binary is not None or os.environ.get(INFER_BINARY_ENV):
            raise InferenceError(f"Ascend-310 inference program {program} does not exist")
        program = build_infer_binary()
    cmd = infer_command(program, mindir, inputs_dir, results_dir, timing_file, device_id)
    log.info("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise InferenceError(f"cannot run {program}: {exc.strerror}") from exc
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise InferenceError(f"{program} exited with {proc.returncode}: {tail or 'no error output'}")
    timing_file = Path(timing_file)
    if not timing_file.is_file():
        raise InferenceError(f"{program} succeeded but wrote no timing file {timing_file}")
    return parse_timing_line(timing_file.read_text(), str(timing_file))


# ------------------------------------------------------------------------------------------ pipeline


def _fresh(paths: Iterable[Path]) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def run(
    mindir: Path,
    data_dir: Path,
    workdir: Path,
    *,
    runner: str = "cpu",
    image_size: int | None = None,
    device_id: int = 0,
    binary: Path | None = None,
) -> RunResult:
    """preprocess → inference (``runner``) → postprocess in ``workdir``, like the seed's run_infer_310.sh.

    Leaves ``workdir/acc.log`` and ``workdir/time_Result/test_perform_static.txt``. The work
    directory's own sub-directories (preprocess_Result, result_Files, time_Result) are replaced.
    """
    if runner not in RUNNERS:
        raise InferenceError(f"unknown runner {runner!r}; choose one of {', '.join(RUNNERS)}")
    mindir, workdir = Path(mindir), Path(workdir)
    size = resolve_image_size(mindir, image_size)
    pre, results, timing_file = workdir / PREPROCESS_DIR, workdir / RESULT_DIR, workdir / TIMING_FILE
    _fresh([pre, results, timing_file.parent, workdir / ACC_LOG])
    preprocess(data_dir, pre, size)
    if runner == "cpu":
        timing = run_cpu(mindir, pre / IMAGE_DIR, results, timing_file)
    else:
        timing = run_ascend310(
            mindir, pre / IMAGE_DIR, results, timing_file, device_id=device_id, binary=binary
        )
    accuracy = postprocess(results, pre / LABEL_DIR, workdir / ACC_LOG)
    return RunResult(accuracy=accuracy, timing=timing, workdir=workdir)
