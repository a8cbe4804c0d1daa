"""Benchmark: images/second of the training input pipeline (``vitjob.vit.data.create_dataset``).

    python bench/bench_pipeline.py [--image-size 224] [--batch 32] [--workers 1] [--images 1024]

The seed's training transforms (random crop, flip, resize to ``--image-size``, rescale, normalise,
HWC→CHW) and batching on random CIFAR-sized images, iterated as the training loop does (MindSpore
tensors). The first batch (pipeline start-up) is not timed. Prints one JSON line:
``{"image_size", "batch", "workers", "images", "img_s"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def measure_pipeline(image_size: int = 224, batch: int = 32, workers: int = 1, images: int = 1024) -> dict:
    import numpy as np

    from vitjob.vit.data import Split, create_dataset

    rng = np.random.default_rng(0)
    n = max(images, 2 * batch)
    split = Split(
        rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.int32)
    )
    dataset = create_dataset(
        split, batch_size=batch, image_size=image_size, training=True, num_workers=workers
    )
    timed, start = 0, 0.0
    for index, (image, _label) in enumerate(dataset.create_tuple_iterator(num_epochs=1)):
        if index == 0:
            start = time.perf_counter()
            continue
        timed += int(image.shape[0])
    elapsed = time.perf_counter() - start
    return {
        "image_size": image_size,
        "batch": batch,
        "workers": workers,
        "images": timed,
        "img_s": round(timed / elapsed, 1) if elapsed > 0 else None,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--images", type=int, default=1024, help="images to time (plus one batch)")
    args = parser.parse_args(argv)
    print(json.dumps(measure_pipeline(args.image_size, args.batch, args.workers, args.images)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
