"""``vitjob infer310``: the seed's Ascend-310 offline inference pipeline (preprocess, run, postprocess).

See ``vitjob.infer310`` for the ``.bin`` layout shared with the C++ program in ``ascend310_infer/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vitjob import infer310, outputs


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "infer310",
        help="offline inference of an exported MINDIR on preprocessed .bin files (Ascend 310 or CPU)",
        description=(
            "The seed's Ascend-310 inference pipeline: preprocess the test split into .bin files, run the "
            "MINDIR on them (C++ program on an Ascend 310, or MindSpore on the CPU), compute top-1 accuracy."
        ),
    )
    sub = parser.add_subparsers(dest="infer310_command", metavar="STEP", required=True)

    pre = sub.add_parser(
        "preprocess", help="write the test split as float32 NCHW image and int32 label .bin files"
    )
    pre.add_argument("--data", type=Path, required=True, help="data directory (CIFAR-10 binary layout)")
    pre.add_argument("--out", type=Path, required=True, help="output directory (gets img_data/ and label/)")
    pre.add_argument(
        "--image-size",
        type=_positive_int,
        default=infer310.DEFAULT_IMAGE_SIZE,
        help="side of the square model input (default %(default)s)",
    )
    pre.add_argument(
        "--force", action="store_true", help="replace .bin files already in the output directories"
    )
    pre.set_defaults(func=_preprocess)

    post = sub.add_parser("postprocess", help="top-1 accuracy of result .bin files against label .bin files")
    post.add_argument("--results", type=Path, required=True, help="directory of <name>_0.bin logits")
    post.add_argument("--labels", type=Path, required=True, help="directory of <name>.bin int32 labels")
    post.add_argument(
        "--acc-log",
        type=Path,
        default=Path(infer310.ACC_LOG),
        help="file for the accuracy line (default %(default)s)",
    )
    post.set_defaults(func=_postprocess)

    run = sub.add_parser("run", help="preprocess, infer and postprocess in one work directory")
    run.add_argument(
        "--mindir", type=Path, required=True, help="exported model (batch 1, float32 NCHW input)"
    )
    run.add_argument("--data", type=Path, required=True, help="data directory (CIFAR-10 binary layout)")
    run.add_argument(
        "--workdir",
        type=Path,
        required=True,
        help="work directory: gets preprocess_Result/, result_Files/, time_Result/, acc.log",
    )
    run.add_argument(
        "--runner",
        choices=infer310.RUNNERS,
        default="cpu",
        help="cpu: MindSpore in this process; ascend310: the C++ program (default %(default)s)",
    )
    run.add_argument(
        "--image-size",
        type=_positive_int,
        default=None,
        help=f"input side when the MINDIR's shape cannot be read (default {infer310.DEFAULT_IMAGE_SIZE})",
    )
    run.add_argument("--device-id", type=_non_negative_int, default=0, help="Ascend device id (default 0)")
    run.add_argument(
        "--infer-binary",
        type=Path,
        default=None,
        help=f"the C++ program (default ${infer310.INFER_BINARY_ENV} or ascend310_infer/out/main)",
    )
    run.set_defaults(func=_run)


def _preprocess(args: argparse.Namespace) -> int:
    count = infer310.preprocess(args.data, args.out, args.image_size, overwrite=args.force)
    print(f"wrote {count} samples to {args.out / infer310.IMAGE_DIR} and {args.out / infer310.LABEL_DIR}")
    return 0


def _postprocess(args: argparse.Namespace) -> int:
    accuracy = infer310.postprocess(args.results, args.labels, args.acc_log)
    print(accuracy.line())
    return 0


def _run(args: argparse.Namespace) -> int:
    result = infer310.run(
        args.mindir,
        args.data,
        args.workdir,
        runner=args.runner,
        image_size=args.image_size,
        device_id=args.device_id,
        binary=args.infer_binary,
    )
    print(result.timing.line())
    print(result.accuracy.line())
    outputs.report(
        "infer310",
        {
            "accuracy": result.accuracy.acc,
            "top1_correct": result.accuracy.top1_correct,
            "total": result.accuracy.total,
            "mean_ms": result.timing.mean_ms,
            "timed_images": result.timing.count,
        },
    )
    return 0
