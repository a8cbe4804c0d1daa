"""Benchmark: render + validate 1,000 Volcano Jobs of 64 Ascend cards (8 pods each).

    python bench/bench_render.py [--jobs 1000] [--crd ../shared/crds] [--k8s-version 1.30]

Prints milliseconds per job for JobSpec construction + rendering + parsing + validation (the Volcano
CRD with unknown-field checks, and kubernetes-validate strict for the pod templates). Loading the
schemas happens once, before the clock starts, and is reported on its own line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vitjob.api.spec import JobSpec
from vitjob.render.manifests import render_objects
from vitjob.render.validate import load_crds, validate_objects

DEFAULT_CRDS = Path(__file__).resolve().parents[2] / "shared" / "crds"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--cards", type=int, default=64)
    parser.add_argument("--crd", default=str(DEFAULT_CRDS), help="Volcano CRD file or directory")
    parser.add_argument("--k8s-version", default="1.30")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    crds = load_crds(args.crd)
    # Warm the kubernetes-validate schema caches with one job.
    warm = JobSpec(name="warm", hw="ascend", cards=args.cards)
    validate_objects(render_objects(warm), crd_source=crds, k8s_version=args.k8s_version)
    setup_s = time.perf_counter() - start

    start = time.perf_counter()
    for index in range(args.jobs):
        spec = JobSpec(name=f"vit-{index:04d}", hw="ascend", cards=args.cards, k8s_version=args.k8s_version)
        validate_objects(render_objects(spec), crd_source=crds, k8s_version=spec.k8s_version)
    elapsed = time.perf_counter() - start

    pods = args.cards // 8
    print(f"schema loading (once): {setup_s * 1000:.0f} ms")
    print(
        f"render + validate: {elapsed / args.jobs * 1000:.2f} ms per job "
        f"({args.jobs} jobs x {args.cards} Ascend cards = {pods} pods each; {elapsed:.2f} s in total)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
