"""Benchmark: the machine's measured matrix-multiply peak in MindSpore (the denominator of MFU).

    python bench/bench_matmul.py [--device cpu|gpu] [--dtype float32] [--sizes 1024,2048] [--seconds 2]

Multiplies two square random matrices in PYNATIVE mode, repeatedly for about ``--seconds`` per size
after a warm-up, and reports the best FLOP/s (2·n³ per product) over the sizes. Prints one JSON line:
``{"device", "dtype", "best_gflops", "best_n", "per_size": {n: gflops}}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def measure_peak(
    device: str = "cpu", dtype: str = "float32", sizes: tuple[int, ...] = (1024, 2048), seconds: float = 2.0
) -> dict:
    import mindspore as ms
    import numpy as np
    from mindspore import ops

    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_device({"cpu": "CPU", "gpu": "GPU", "ascend": "Ascend"}[device])
    ms_dtype = getattr(ms, dtype)
    rng = np.random.default_rng(0)
    per_size: dict[int, float] = {}
    for n in sizes:
        a = ms.Tensor(rng.standard_normal((n, n), dtype=np.float32), ms_dtype)
        b = ms.Tensor(rng.standard_normal((n, n), dtype=np.float32), ms_dtype)
        ops.matmul(a, b).asnumpy()  # warm-up: kernel selection, allocation
        best = 0.0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or best == 0.0:
            reps = 3
            start = time.perf_counter()
            for _ in range(reps):
                c = ops.matmul(a, b)
            c.asnumpy()  # synchronise (GPU/Ascend run asynchronously)
            elapsed = time.perf_counter() - start
            best = max(best, reps * 2 * n**3 / elapsed / 1e9)
        per_size[n] = round(best, 2)
    best_n = max(per_size, key=per_size.__getitem__)
    return {
        "device": device,
        "dtype": dtype,
        "best_gflops": per_size[best_n],
        "best_n": best_n,
        "per_size": per_size,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "gpu", "ascend"), default="cpu")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    parser.add_argument("--sizes", default="1024,2048", help="comma-separated matrix sizes")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per size")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    print(json.dumps(measure_peak(args.device, args.dtype, sizes, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
