"""Commands of the training module: ``data``, ``convert-npz``, ``train``, ``eval``, ``export``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from vitjob import outputs
from vitjob.errors import UsageError

log = logging.getLogger("vitjob")


def register(sub: argparse._SubParsersAction) -> None:
    _register_data(sub)
    _register_convert(sub)
    _register_train(sub)
    _register_eval(sub)
    _register_export(sub)


# ------------------------------------------------------------------------------------------------ data


def _register_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="create or download a data set in CIFAR-10 binary layout",
        description="Data sets in the CIFAR-10 binary layout the training module reads: "
        "DIR/cifar-10-batches-bin/data_batch_N.bin and DIR/cifar-10-verify-bin/test_batch.bin.",
    )
    dsub = p.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    d = dsub.add_parser(
        "digits", help="scikit-learn's bundled handwritten digits (offline; the default demo data)"
    )
    d.add_argument("--out", type=Path, required=True, help="directory to write")
    d.set_defaults(func=_cmd_digits)
    c = dsub.add_parser("cifar10", help="download the official CIFAR-10 binary tarball and verify its MD5")
    c.add_argument("--out", type=Path, required=True, help="directory to write")
    c.add_argument("--url", default=None, help="tarball URL (default: the official one; file:// works)")
    c.add_argument("--md5", default=None, help="expected MD5 of the tarball (default: the official one)")
    c.set_defaults(func=_cmd_cifar10)


def _cmd_digits(args: argparse.Namespace) -> int:
    from vitjob.vit.data import write_digits

    n_train, n_test = write_digits(args.out)
    print(f"wrote digits to {args.out}: {n_train} train, {n_test} test images (32x32x3, 10 classes)")
    return 0


def _cmd_cifar10(args: argparse.Namespace) -> int:
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    from vitjob.vit import data

    with Progress(
        *Progress.get_default_columns(),
        DownloadColumn(),
        TransferSpeedColumn(),
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task("CIFAR-10", total=None)
        out = data.download_cifar10(
            args.out,
            url=args.url or data.CIFAR10_URL,
            md5=args.md5 or data.CIFAR10_MD5,
            progress=lambda done, total: bar.update(task, completed=done, total=total or None),
        )
    print(f"CIFAR-10 ready in {out}")
    return 0


# ------------------------------------------------------------------------------------------- convert


def _register_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-npz",
        help="convert Google's ViT-B_16.npz to a MindSpore checkpoint",
        description="Convert an ImageNet-21k ViT-B/16 .npz (Google vision_transformer release) "
        "into a MindSpore .ckpt with the seed's parameter names.",
    )
    p.add_argument("input", type=Path, metavar="IN.npz")
    p.add_argument("output", type=Path, metavar="OUT.ckpt")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument(
        "--image-size",
        type=int,
        default=224,
        help="target input size; position embeddings are interpolated if it differs (default 224)",
    )
    p.add_argument(
        "--head",
        choices=("zero", "truncate"),
        default="zero",
        help="zero: new zero-initialised head (the paper's); truncate: first N pretrained rows (the seed's)",
    )
    p.add_argument("--preset", default="vit-b16", help="architecture of the checkpoint (default vit-b16)")
    p.set_defaults(func=_cmd_convert)


def _cmd_convert(args: argparse.Namespace) -> int:
    import mindspore as ms

    from vitjob.vit.checkpoints import save_ckpt_atomic
    from vitjob.vit.config import get_preset
    from vitjob.vit.npz import load_npz

    if args.num_classes <= 0:
        raise UsageError("--num-classes must be positive")
    cfg = get_preset(args.preset, num_classes=args.num_classes, image_size=args.image_size).model
    params = load_npz(args.input, cfg, args.head)
    save_ckpt_atomic([{"name": k, "data": ms.Tensor(v)} for k, v in params.items()], args.output)
    print(
        f"wrote {args.output}: {len(params)} parameters for {args.preset} "
        f"({args.num_classes} classes, {args.image_size}x{args.image_size})"
    )
    return 0


# ---------------------------------------------------------------------------------------------- train


def _register_train(sub: argparse._SubParsersAction) -> None:
    from vitjob.vit.config import PRESETS

    presets = "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values())
    p = sub.add_parser(
        "train",
        help="train (or resume) ViT on CIFAR-10-layout data",
        description="Train a ViT preset. Re-running the same command resumes from the latest checkpoint in "
        f"--output. Presets — {presets}. Unset options take the preset's recipe.",
    )
    p.add_argument(
        "--preset", default="vit-tiny", help="model and recipe (vit-tiny, vit-b16); default vit-tiny"
    )
    p.add_argument("--data", type=Path, required=True, help="data directory (CIFAR-10 binary layout)")
    p.add_argument("--output", type=Path, required=True, help="run directory: checkpoints, metrics.jsonl")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="images per device per step")
    p.add_argument(
        "--lr", type=float, help="peak learning rate (default: the preset's, scaled to the global batch)"
    )
    p.add_argument("--optimizer", choices=("momentum", "adamw"))
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--warmup-epochs", type=float)
    p.add_argument("--grad-clip", type=float, help="global-norm gradient clipping (0: off)")
    p.add_argument("--pretrained", type=Path, help="initial weights: Google .npz or MindSpore .ckpt")
    p.add_argument("--head", choices=("zero", "truncate"), default="zero", help="head handling for a .npz")
    p.add_argument("--device", choices=("cpu", "gpu", "ascend"), default="cpu")
    p.add_argument(
        "--amp",
        choices=("auto", "O0", "O1", "O2", "O3"),
        default="auto",
        help="mixed precision (auto: O0 on CPU, O2 with dynamic loss scale on GPU/Ascend)",
    )
    p.add_argument("--mode", choices=("graph", "pynative"), default="graph")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--save-steps", type=int, default=0, help="also checkpoint every N steps (default: epoch end)"
    )
    p.add_argument("--keep", type=int, default=2, help="checkpoints to keep besides best.ckpt (default 2)")
    p.add_argument(
        "--eval-interval", type=int, default=1, help="evaluate every N epochs (0: at the end only)"
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="fraction of the training images held out to choose best.ckpt (default 0.1; 0: best is the "
        "last); the test split is only evaluated at the end",
    )
    p.add_argument(
        "--log-steps", type=int, default=0, help="log every N steps (default: ~10 lines per epoch)"
    )
    p.add_argument("--num-workers", type=int, help="data pipeline workers (default: one per core, at most 8)")
    flip = p.add_mutually_exclusive_group()
    flip.add_argument(
        "--hflip", dest="hflip", action="store_true", default=None, help="random horizontal flips"
    )
    flip.add_argument("--no-hflip", dest="hflip", action="store_false")
    crop = p.add_mutually_exclusive_group()
    crop.add_argument(
        "--random-crop",
        dest="random_crop",
        action="store_true",
        default=None,
        help="pad-4 random 32x32 crops, as the seed (default: per the data set's dataset.json)",
    )
    crop.add_argument("--no-random-crop", dest="random_crop", action="store_false")
    p.add_argument(
        "--max-steps", type=int, help="stop after this many steps in total (for tests and benchmarks)"
    )
    p.add_argument("--summary-json", type=Path, help="also write the run summary as JSON here")
    p.add_argument(
        "--save-rank-weights",
        action="store_true",
        help="every rank also writes OUTPUT/rank-weights/rank-N.ckpt at the end, and rank-N.json with "
        "the steps it ran in each epoch (to check that data-parallel ranks hold identical weights "
        "and each trained on its share)",
    )
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from vitjob.vit.checkpoints import write_json_atomic
    from vitjob.vit.train import TrainOptions, train

    opts = TrainOptions(**{k: v for k, v in vars(args).items() if k in TrainOptions.__dataclass_fields__})
    summary = train(opts)
    if summary["rank"] == 0:
        outputs.report("train", train_outputs(summary))
        if summary["accuracy"] is not None:
            print(
                f"test accuracy {summary['accuracy']:.4f} after {summary['steps']} steps "
                f"({summary['seconds']:.0f} s, {summary['img_s']:.0f} img/s); run in {summary['output']}"
            )
        if args.summary_json:
            write_json_atomic(args.summary_json, summary)
    return 0


def train_outputs(summary: dict[str, Any]) -> dict[str, Any]:
    """What a train stage reports (``vitjob.outputs.STAGE_OUTPUTS``) from ``train``'s summary."""
    best = summary.get("best") or {}
    return {
        "best_checkpoint": str(Path(summary["output"]) / best["file"]) if best.get("file") else None,
        "best_step": best.get("step"),
        "best_val_accuracy": best.get("val_accuracy"),
        "val_accuracy": summary.get("val_accuracy"),
        "test_accuracy": summary.get("accuracy"),
        "steps": summary.get("steps"),
    }


# ----------------------------------------------------------------------------------------- eval/export


def _register_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="top-1 accuracy of a checkpoint on the whole test set")
    p.add_argument(
        "--ckpt",
        type=Path,
        required=True,
        help="checkpoint file, or a run directory (its best checkpoint, else the latest)",
    )
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--preset", help="architecture (default: from the run's state.json, else vit-b16)")
    p.add_argument("--device", choices=("cpu", "gpu", "ascend"), default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json-out", type=Path, help='write {"accuracy", "top1_correct", "samples"} here')
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    from vitjob.vit.evaluate import EvalOptions, evaluate

    result = evaluate(
        EvalOptions(
            ckpt=args.ckpt,
            data=args.data,
            preset=args.preset,
            device=args.device,
            batch_size=args.batch_size,
            json_out=args.json_out,
        )
    )
    print(
        f"accuracy {result['accuracy']:.4f} ({result['top1_correct']}/{result['samples']}) "
        f"checkpoint {result['checkpoint']}"
    )
    if args.json_out:
        print(json.dumps({k: result[k] for k in ("accuracy", "top1_correct", "samples")}))
    outputs.report("eval", {k: result[k] for k in ("accuracy", "top1_correct", "samples", "checkpoint")})
    return 0


def _register_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint to MINDIR, ONNX or AIR")
    p.add_argument("--ckpt", type=Path, required=True, help="checkpoint file or run directory")
    p.add_argument("--format", default="MINDIR", help="MINDIR, ONNX or AIR; comma-separated for several")
    p.add_argument("--output", type=Path, required=True, help="output file (suffix added per format)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--preset", help="architecture (default: from the run's state.json)")
    p.add_argument("--device", choices=("cpu", "gpu", "ascend"), default="cpu")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from vitjob.vit.export import export, parse_formats

    written = export(
        args.ckpt, args.output, parse_formats(args.format), args.device, args.batch_size, args.preset
    )
    for path in written:
        print(f"wrote {path}")
    mindir = next((Path(p) for p in written if str(p).endswith(".mindir")), None)
    if mindir is not None:
        outputs.report("export", {"mindir": str(mindir), "mindir_bytes": mindir.stat().st_size})
    return 0
