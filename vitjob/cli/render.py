"""The ``vitjob render`` command and the job-spec flags ``vitjob submit`` reuses.

``add_spec_arguments`` declares one flag per common ``JobSpec`` key (kebab-case of the key) plus
``-f/--values FILE`` and ``--set KEY=VALUE``; ``spec_from_args`` turns the parsed flags into a
``JobSpec`` (values file < explicit flags < ``--set``). ``render`` validates every object before it
prints anything: on any error stdout stays empty and the exit code is 2 for bad input.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from vitjob import constants as c
from vitjob.api.spec import JobSpec
from vitjob.api.values import load_spec
from vitjob.errors import UsageError
from vitjob.render.manifests import object_file_name, render_documents, render_objects

log = logging.getLogger(__name__)

# (flag, spec key, type, metavar, help); every flag defaults to None = "not given".
_SPEC_FLAGS: tuple[tuple[str, str, type, str, str], ...] = (
    ("--stage", "stage", str, "{train,eval,export,infer310}", "stage to run (default train)"),
    ("--hw", "hw", str, "{ascend,gpu,cpu}", "hardware: Ascend NPUs, NVIDIA GPUs or CPU processes"),
    ("--cards", "cards", int, "N",
     "training cards (ascend: 1, 2, 4, 8 or a multiple of 8; eval/export/infer310 use 1)"),
    ("--name", "name", str, "NAME", "pipeline name; the job of stage S is NAME-S (e.g. vit-train)"),
    ("--namespace", "namespace", str, "NS", f"namespace (default {c.DEFAULT_NAMESPACE})"),
    ("--image", "image", str, "IMG", "container image (default: the vitjob image for --hw)"),
    ("--image-pull-policy", "image_pull_policy", str, "{IfNotPresent,Always,Never}", "image pull policy"),
    ("--data-pvc", "data_pvc", str, "PVC", f"PVC with the data set (default {c.DEFAULT_DATA_PVC})"),
    ("--data-subpath", "data_subpath", str, "PATH", "directory of the data set inside the data PVC"),
    ("--output-pvc", "output_pvc", str, "PVC", f"PVC for outputs (default {c.DEFAULT_OUTPUT_PVC})"),
    ("--queue", "queue", str, "Q", "Volcano queue (default: the cluster's default queue)"),
    ("--priority-class", "priority_class", str, "PC", "PriorityClass of the pods"),
    ("--preset", "preset", str, "P", f"model preset (default {c.DEFAULT_PRESET})"),
    ("--epochs", "epochs", int, "N", "training epochs (default: the preset's)"),
    ("--batch-size", "batch_size", int, "N", "batch size per card (default: the preset's)"),
    ("--lr", "lr", float, "LR", "learning rate (default: the preset's)"),
    ("--pretrained", "pretrained", str, "PATH",
     "pretrained weights: relative to the data directory, or an absolute path in the pod"),
    ("--max-retry", "max_retry", int, "N",
     f"the job fails on its N-th pod failure: N-1 whole-job restarts, 1 = never restart "
     f"(Volcano maxRetry; default {c.DEFAULT_MAX_RETRY})"),
    ("--ttl-seconds-after-finished", "ttl_seconds_after_finished", int, "SECONDS",
     "delete the finished job after SECONDS (default one week)"),
    ("--gpus-per-pod", "gpus_per_pod", int, "N", f"hw gpu: GPUs per pod (default {c.DEFAULT_GPUS_PER_POD})"),
    ("--cards-per-pod", "cards_per_pod", int, "N", "hw cpu: processes per pod (default: all in one pod)"),
    ("--cpu", "cpu", str, "QTY", "CPU request per pod (default: per card)"),
    ("--memory", "memory", str, "QTY", "memory request per pod (default: per card)"),
    ("--cpu-limit", "cpu_limit", str, "QTY", "CPU limit per pod (default: none)"),
    ("--memory-limit", "memory_limit", str, "QTY",
     "memory limit per pod; above it the kernel kills the pod (OOMKilled) (default: none)"),
    ("--pipeline", "pipeline", str, "NAME", "pipeline whose output directory the job uses (default NAME)"),
    ("--k8s-version", "k8s_version", str, "X.Y",
     f"Kubernetes version to validate for (default {c.DEFAULT_K8S_VERSION})"),
)
# Flags that switch a boolean spec key on (None = "not given", as above).
_SWITCH_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--publish-checkpoints", "publish_checkpoints",
     "train: rank 0 annotates its pod with its last checkpoint (vitjob.io/last-checkpoint: step, time); "
     "also creates the job's ServiceAccount, Role (get/patch of rank 0's pod only) and RoleBinding"),
)
SPEC_FLAG_KEYS: tuple[str, ...] = (
    *(key for _, key, _, _, _ in _SPEC_FLAGS), *(key for _, key, _ in _SWITCH_FLAGS)
)


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """The job-spec flags shared by ``render`` and ``submit``."""
    group = parser.add_argument_group(
        "job spec", "precedence, lowest first: defaults < values file (-f) < these flags < --set"
    )
    for flag, key, kind, metavar, help_text in _SPEC_FLAGS:
        names = [flag, "-n"] if flag == "--namespace" else [flag]
        group.add_argument(*names, dest=key, type=kind, metavar=metavar, default=None, help=help_text)
    for flag, key, help_text in _SWITCH_FLAGS:
        group.add_argument(flag, dest=key, action="store_const", const=True, default=None, help=help_text)
    group.add_argument(
        "-f", "--values", dest="values_file", metavar="FILE", default=None,
        help="YAML mapping of spec keys (cards: 8, env: {FOO: bar}, tolerations: [...])",
    )
    group.add_argument(
        "--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
        help="override a spec key (repeatable), e.g. --set epochs=3 --set env.FOO=bar",
    )


def spec_from_args(args: argparse.Namespace) -> JobSpec:
    """The ``JobSpec`` the spec flags of ``args`` describe (raises ``SpecError``: exit 2)."""
    cli_values = {key: getattr(args, key, None) for key in SPEC_FLAG_KEYS}
    return load_spec(cli_values, args.values_file, args.overrides)


def add_validation_arguments(parser: argparse.ArgumentParser) -> None:
    """``--validate/--no-validate`` and ``--crd``."""
    parser.add_argument(
        "--validate", action=argparse.BooleanOptionalAction, default=True,
        help="check every object before printing it (default on)",
    )
    parser.add_argument(
        "--crd", metavar="FILE|DIR", default=os.environ.get(c.ENV_CRD_PATH) or None,
        help=f"Volcano CRD file or directory to validate against (default ${c.ENV_CRD_PATH}); "
        f"without it the Job's spec is not checked against the CRD",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "render",
        help="print the Kubernetes objects of a job (Volcano Job) as YAML",
        description=(
            "Render the Volcano Job of one stage (train, eval, export, infer310) and print it as a "
            "multi-document YAML stream, or write one file per object into -o DIR. Every object is "
            "validated first (the Volcano CRD, kubernetes-validate strict)."
        ),
        epilog=(
            "Volcano labels every pod of a job with volcano.sh/job-name=<job>, so "
            "`kubectl logs -l volcano.sh/job-name=NAME-STAGE` follows a job's pods. "
            "Values files use the spec keys (snake_case: data_pvc, node_selector, tolerations…)."
        ),
    )
    add_spec_arguments(parser)
    add_validation_arguments(parser)
    parser.add_argument("-o", "--output-dir", metavar="DIR", default=None,
                        help="write <kind>-<name>.yaml files into DIR instead of printing")
    parser.set_defaults(func=run_render)


def run_render(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    documents = render_documents(spec)
    if args.validate:
        from vitjob.render.validate import validate_objects  # jsonschema: only when validating

        validate_objects(render_objects(spec), crd_source=args.crd, k8s_version=spec.k8s_version)
    if args.output_dir is None:
        sys.stdout.write("".join(f"---\n{text}" for text in documents))
        return 0
    for path in write_documents(documents, Path(args.output_dir)):
        print(path)
    return 0


def write_documents(documents: list[str], directory: Path) -> list[Path]:
    """Write each document to ``DIR/<kind>-<name>.yaml``; return the paths."""
    from vitjob.render.manifests import parse_document

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot create output directory {directory}: {exc.strerror}; pass another -o DIR"
        ) from None
    paths = []
    for text in documents:
        path = directory / object_file_name(parse_document(text))
        path.write_text(text, encoding="utf-8")
        log.debug("wrote %s", path)
        paths.append(path)
    return paths
