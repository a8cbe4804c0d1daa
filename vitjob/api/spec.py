"""The job spec: what one vitjob stage job is, where its values come from, and when it is valid.

``JobSpec`` is a frozen dataclass holding what the user asked for (raw values, no defaults filled
from other fields) plus properties that derive the job's shape: job name, pod count, cards per pod,
image, node selector and resources. Constructing one validates it and raises ``SpecError`` listing
every problem at once, one per line, each with the allowed values.

Naming rule: ``name`` is the pipeline's base name and the job for stage S is always ``<name>-<S>``
(``--name vit --stage train`` gives the Volcano Job ``vit-train``, pods ``vit-train-worker-<i>``), so
the stages of one pipeline never collide. ``pipeline`` (default: ``name``) is the ``part-of`` label
and the output directory ``/output/<pipeline>``; set it to run a stage on another pipeline's output.

Strings in ``env`` values, ``extra_args`` and ``pretrained`` reach the container as given; Kubernetes
then expands ``$(VAR)`` references to the container's variables in them (write ``$$(`` for a literal
``$(``), which is how the stage commands receive ``$(VITJOB_DATA_DIR)``.

Pod security: the pods pass the Kubernetes Pod Security Standard ``restricted`` (non-root, seccomp
RuntimeDefault, no privilege escalation, every capability dropped, a read-only root filesystem); the
keys ``run_as_user``, ``run_as_group``, ``fs_group``, ``supplemental_groups`` and
``read_only_root_filesystem`` tune it (defaults: the image's user, ``vitjob.images.USER_ID``). Only
``hw: ascend`` with ``ascend_host_mounts`` (the default) mounts node paths (hostPath), which needs the
``privileged`` level (``vitjob.render.pod_security_level``).

``load_spec`` merges, lowest precedence first: built-in defaults < values file (``-f FILE``) <
explicit CLI flags < ``--set key=value`` (the last word, as in Helm). ``--set`` reaches mapping fields
with a dot: ``--set env.FOO=bar``, ``--set node_selector.accelerator-type=module-910b-8``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vitjob import constants as c
from vitjob.errors import SpecError
from vitjob.images import USER_ID, default_image

log = logging.getLogger(__name__)

# DNS-1123 label (namespaces, hostnames) and DNS-1035 label (Service names: start with a letter).
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Label/annotation key: optional DNS subdomain prefix + "/" + name of at most 63 characters.
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PRESET = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")
_K8S_VERSION = re.compile(r"^v?(\d+)\.(\d+)(\.\d+)?$")
# Kubernetes resource quantity (apimachinery resource.Quantity).
_QUANTITY = re.compile(r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$")
# Container image reference (distribution/reference grammar, without IPv6 hosts).
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_REF = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"(?::[0-9]+)?/)?"
    rf"{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
# A toleration's keys and the type of each value (the Kubernetes core/v1 Toleration fields).
TOLERATION_FIELDS: dict[str, type] = {
    "key": str,
    "operator": str,
    "value": str,
    "effect": str,
    "tolerationSeconds": int,
}
_TOLERATION_KEYS = tuple(TOLERATION_FIELDS)
TOLERATION_OPERATORS: tuple[str, ...] = ("Equal", "Exists")
TOLERATION_EFFECTS: tuple[str, ...] = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# Environment variables vitjob launch and MindSpore set themselves.
_RESERVED_ENV_NAMES = frozenset(
    {
        c.ENV_SCHED_PORT,
        c.ENV_PYTHONUNBUFFERED,
        "MS_ROLE",
        "MS_SCHED_HOST",
        "MS_WORKER_NUM",
        "MS_NODE_ID",
        "RANK_TABLE_FILE",
        "RANK_ID",
        "RANK_SIZE",
        "DEVICE_ID",
    }
)
_MAX_ANNOTATIONS_BYTES = 256 * 1024


# --- constraint tables: the checks below and the schemas of vitjob.api.schema (CRD, values.schema.json)
# read the same facts, so a schema can never allow less than the spec accepts.
# Fields whose value must be one of a fixed set.
CHOICES: dict[str, tuple[str, ...]] = {
    "hw": c.HW_KINDS,
    "stage": c.STAGES,
    "image_pull_policy": c.IMAGE_PULL_POLICIES,
}
# Integer fields and their inclusive range (an optional field may also be null).
INT_RANGES: dict[str, tuple[int, int]] = {
    "cards": (1, c.MAX_INT32),
    "gpus_per_pod": (1, c.MAX_GPUS_PER_POD),
    "cards_per_pod": (1, c.MAX_INT32),  # and it divides cards (a rule across fields: only the spec checks it)
    "max_retry": (1, c.MAX_INT32),
    "ttl_seconds_after_finished": (0, c.MAX_INT32),
    "epochs": (1, c.MAX_INT32),
    "batch_size": (1, c.MAX_INT32),
    "sched_port": (c.MIN_PORT, c.MAX_PORT),
    "rdzv_port": (c.MIN_PORT, c.MAX_PORT),
    # Never 0 (root): the pods must run as non-root (runAsNonRoot). Groups may be 0.
    "run_as_user": (1, c.MAX_INT32),
    "run_as_group": (0, c.MAX_INT32),
    "fs_group": (0, c.MAX_INT32),
    "supplemental_groups": (0, c.MAX_INT32),  # each item
}
# Number fields that must be greater than this bound (and finite).
NUMBER_EXCLUSIVE_MINIMUMS: dict[str, float] = {"lr": 0.0}


@dataclass(frozen=True)
class TextRule:
    """A string field's form: it matches ``pattern`` whole, has at most ``max_length`` characters (0:
    no limit), and may be ``""`` when ``empty_ok`` (the field's default then applies)."""

    pattern: re.Pattern[str]
    max_length: int = 0
    empty_ok: bool = False

    def accepts(self, value: str) -> bool:
        if value == "" and self.empty_ok:
            return True
        return bool(self.pattern.fullmatch(value)) and (not self.max_length or len(value) <= self.max_length)


TEXT_RULES: dict[str, TextRule] = {
    "pipeline": TextRule(_DNS1123_LABEL, c.MAX_NAME_LENGTH, empty_ok=True),
    "data_pvc": TextRule(_DNS1123_SUBDOMAIN, c.MAX_SUBDOMAIN_LENGTH),
    "output_pvc": TextRule(_DNS1123_SUBDOMAIN, c.MAX_SUBDOMAIN_LENGTH),
    "queue": TextRule(_DNS1123_SUBDOMAIN, c.MAX_SUBDOMAIN_LENGTH, empty_ok=True),
    "priority_class": TextRule(_DNS1123_SUBDOMAIN, c.MAX_SUBDOMAIN_LENGTH, empty_ok=True),
    "preset": TextRule(_PRESET, c.MAX_NAME_LENGTH),
    "cpu": TextRule(_QUANTITY, empty_ok=True),
    "memory": TextRule(_QUANTITY, empty_ok=True),
}
# The pipeline's base name (JobSpec.name; a VitJob's metadata.name): a DNS-1035 label. Its length is
# limited by the longest pod name, <name>-<stage>-worker-<n-1> (pod_name_problems).
NAME_RULE = TextRule(_DNS1035_LABEL)

# One line per field: the schemas' descriptions (`kubectl explain vitjob.api.spec`, values.schema.json).
FIELD_DOCS: dict[str, str] = {
    "name": "Pipeline base name: the job of stage S is <name>-<S>, its pods <name>-<S>-worker-<i>.",
    "hw": "Hardware: ascend (Ascend 910 NPUs), gpu (NVIDIA) or cpu (CPU processes).",
    "stage": "The first stage: train, eval, export or infer310.",
    "cards": "Training cards (ascend: 1, 2, 4, 8 or a multiple of 8; gpu: at most gpus_per_pod or a "
    "multiple of it); eval, export and infer310 use 1.",
    "namespace": "Namespace of the jobs.",
    "image": "Container image; empty: the default image of the hardware.",
    "image_pull_policy": "Image pull policy: IfNotPresent, Always or Never.",
    "data_pvc": "PersistentVolumeClaim holding the data set (mounted read-only at /data).",
    "data_subpath": "Directory of the data set inside the claim (relative, e.g. cifar10).",
    "output_pvc": "PersistentVolumeClaim for checkpoints and results (mounted at /output).",
    "queue": "Volcano queue; empty: the cluster's default queue.",
    "priority_class": "PriorityClass of the pods; empty: none.",
    "preset": f"Model preset (default {c.DEFAULT_PRESET}).",
    "epochs": "Training epochs; null: the preset's.",
    "batch_size": "Batch size per card; null: the preset's.",
    "lr": "Learning rate; null: the preset's.",
    "pretrained": "Pretrained weights: relative to the data directory, or an absolute path in the pod.",
    "extra_args": "Extra arguments appended to the stage command.",
    "max_retry": "The job fails on its N-th pod failure (1: never restart).",
    "ttl_seconds_after_finished": "Volcano deletes a finished job after this many seconds; null keeps it.",
    "node_selector": "Node selector merged over the hardware's default; a null value removes a default key.",
    "tolerations": "Tolerations of the pods (key, operator, value, effect, tolerationSeconds).",
    "cpu": "CPU request per pod (a quantity); empty: a default per card.",
    "memory": "Memory request per pod (a quantity); empty: a default per card.",
    "gpus_per_pod": "hw gpu: GPUs per pod.",
    "cards_per_pod": "hw cpu: processes per pod (a divisor of cards); null: all in one pod.",
    "pipeline": "Output directory /output/<pipeline> and part-of label; empty: the name.",
    "k8s_version": "Kubernetes version the pod templates are validated for.",
    "env": "Extra environment variables of the container.",
    "labels": "Extra labels of the jobs and their pods.",
    "annotations": "Extra annotations of the jobs and their pods.",
    "sched_port": "MindSpore scheduler port (MS_SCHED_PORT).",
    "rdzv_port": "Rank-table rendezvous port.",
    "run_as_user": "UID of the pods' processes (runAsUser; never 0); null: the image's USER.",
    "run_as_group": "Primary GID of the pods' processes (runAsGroup); null: the image's.",
    "fs_group": "GID that owns the pods' volumes (fsGroup: the output volume becomes group-writable; "
    "hostPath PersistentVolumes ignore it); null: none.",
    "supplemental_groups": "Extra GIDs of the pods' processes (e.g. the node's HwHiAiUser group for Ascend "
    "device files).",
    "read_only_root_filesystem": "Read-only container root filesystem (scratch: emptyDirs at /tmp and the "
    "home directory, also the working directory).",
    "ascend_host_mounts": "hw ascend: mount the NPU driver and /etc/hccn.conf from the node (hostPath: the "
    "namespace must allow Pod Security level privileged); false where the Ascend Docker Runtime mounts "
    "the driver: the pods then pass restricted.",
}


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """One stage job of the ViT workflow, as the user asked for it (see the module docstring)."""

    name: str
    hw: str
    stage: str = "train"
    cards: int = 1
    namespace: str = c.DEFAULT_NAMESPACE
    image: str = ""  # "" -> vitjob.images.default_image for the hardware
    image_pull_policy: str = "IfNotPresent"
    data_pvc: str = c.DEFAULT_DATA_PVC
    data_subpath: str = ""
    output_pvc: str = c.DEFAULT_OUTPUT_PVC
    queue: str = ""  # "" -> Volcano's default queue
    priority_class: str = ""
    preset: str = c.DEFAULT_PRESET
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    pretrained: str = ""  # relative -> under the data directory; absolute -> kept
    extra_args: list[str] = field(default_factory=list)
    max_retry: int = c.DEFAULT_MAX_RETRY
    ttl_seconds_after_finished: int | None = c.DEFAULT_TTL_SECONDS_AFTER_FINISHED
    node_selector: dict[str, str | None] = field(default_factory=dict)  # merged over the hw default
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    cpu: str = ""  # CPU request per pod; "" -> DEFAULT_CPU_PER_CARD x cards in the pod
    memory: str = ""  # memory request per pod; "" -> DEFAULT_MEMORY_GI_PER_CARD x cards in the pod
    gpus_per_pod: int = c.DEFAULT_GPUS_PER_POD
    cards_per_pod: int | None = None  # hw cpu only; None -> all processes in one pod
    pipeline: str = ""  # "" -> name
    k8s_version: str = c.DEFAULT_K8S_VERSION
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    sched_port: int = c.DEFAULT_SCHED_PORT
    rdzv_port: int = c.DEFAULT_RDZV_PORT
    run_as_user: int | None = USER_ID  # None -> the image's USER (runAsNonRoot still holds)
    run_as_group: int | None = USER_ID
    fs_group: int | None = USER_ID  # None -> no fsGroup (volumes keep their owners)
    supplemental_groups: list[int] = field(default_factory=list)
    read_only_root_filesystem: bool = True
    ascend_host_mounts: bool = True  # hw ascend: hostPath driver and hccn.conf (Pod Security privileged)

    def __post_init__(self) -> None:
        problems = spec_problems(self)
        if problems:
            raise spec_error(problems)

    # --- derived shape ------------------------------------------------------------------------
    @property
    def job_name(self) -> str:
        """The Volcano Job's name: ``<name>-<stage>``."""
        return f"{self.name}-{self.stage}"

    @property
    def pipeline_name(self) -> str:
        """The ``part-of`` label and output directory name (``pipeline`` or else ``name``)."""
        return self.pipeline or self.name

    @property
    def total_cards(self) -> int:
        """Cards this job uses: ``cards`` for training, 1 for eval/export/infer310."""
        return 1 if self.stage in c.SINGLE_CARD_STAGES else self.cards

    @property
    def pod_cards(self) -> int:
        """Cards (processes) in each pod; ``vitjob launch`` starts one process per card."""
        return pod_cards_for(self.job_hw, self.total_cards, self.gpus_per_pod, self.cards_per_pod)

    @property
    def num_pods(self) -> int:
        """Pods of the job: all of them must run at once (gang scheduling)."""
        return max(1, self.total_cards // self.pod_cards)

    @property
    def runs_on_ascend310(self) -> bool:
        return self.stage == "infer310" and self.hw == "ascend"

    @property
    def runs_on_ascend910(self) -> bool:
        return self.hw == "ascend" and not self.runs_on_ascend310

    @property
    def job_hw(self) -> str:
        """The hardware the job's pods run on: ``hw``, except infer310 of a gpu pipeline, which has no
        GPU runner and runs as a CPU job (CPU image, CPU runner, no GPU requested)."""
        return "cpu" if self.hw == "gpu" and self.stage == "infer310" else self.hw

    @property
    def uses_gpu(self) -> bool:
        return self.job_hw == "gpu"

    @property
    def effective_image(self) -> str:
        if self.image:
            return self.image
        return default_image(c.ASCEND310_IMAGE_KIND if self.runs_on_ascend310 else self.job_hw)

    @property
    def effective_node_selector(self) -> dict[str, str]:
        """The hw default (``accelerator: huawei-Ascend910``…) with ``node_selector`` merged over it;
        a ``null`` value in the values file removes a default key."""
        merged: dict[str, str | None] = dict(default_node_selector(self))
        merged.update(self.node_selector)
        return {key: value for key, value in merged.items() if value is not None}

    @property
    def cpu_request(self) -> str:
        return self.cpu or str(c.DEFAULT_CPU_PER_CARD[self.job_hw] * self.pod_cards)

    @property
    def memory_request(self) -> str:
        return self.memory or f"{c.DEFAULT_MEMORY_GI_PER_CARD[self.job_hw] * self.pod_cards}Gi"

    def pod_name(self, index: int) -> str:
        """Volcano's name for pod ``index`` of this job."""
        return c.VOLCANO_POD_NAME_FORMAT.format(job=self.job_name, task=c.TASK_NAME, index=index)


def pod_cards_for(hw: str, cards: int, gpus_per_pod: int, cards_per_pod: int | None) -> int:
    """Cards in each pod for a job of ``cards`` cards (no validation: see ``cards_problems``)."""
    if hw == "ascend":
        return min(cards, c.ASCEND_CARDS_PER_NODE)
    if hw == "gpu":
        return min(cards, max(gpus_per_pod, 1))
    return min(cards, cards_per_pod or cards) or 1


def default_node_selector(spec: JobSpec) -> dict[str, str]:
    if spec.runs_on_ascend310:
        return {c.ACCELERATOR_NODE_LABEL: c.ASCEND310_NODE_VALUE}
    if spec.runs_on_ascend910:
        return {c.ACCELERATOR_NODE_LABEL: c.ASCEND910_NODE_VALUE}
    return {}


# --- validation -------------------------------------------------------------------------------


def spec_error(problems: Sequence[str]) -> SpecError:
    """One ``SpecError`` for every problem found; ``.problems`` keeps the list."""
    count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
    lines = "\n".join(f"  - {p}" for p in problems)
    error = SpecError(
        f"invalid job spec ({count}); fix each with its flag, the values file (-f) or --set KEY=VALUE:\n"
        f"{lines}"
    )
    error.problems = list(problems)  # type: ignore[attr-defined]
    return error


def spec_problems(spec: JobSpec) -> list[str]:
    """Every problem of ``spec``, one line each; types first, then values, then the job's shape."""
    problems = type_problems(spec)
    if problems:
        return problems
    checks = (
        name_problems,
        choice_problems,
        cards_problems,
        storage_problems,
        scheduling_problems,
        training_problems,
        container_problems,
        security_problems,
        metadata_problems,
    )
    for check in checks:
        problems.extend(check(spec))
    if not problems:
        problems.extend(pod_name_problems(spec))
    return problems


@functools.cache
def field_types() -> dict[str, Any]:
    """The resolved type of each ``JobSpec`` field (annotations are strings under PEP 563)."""
    return typing.get_type_hints(JobSpec)


@functools.cache
def field_validators() -> dict[str, Any]:
    """A pydantic ``TypeAdapter`` per ``JobSpec`` field (built once; about 30 ms)."""
    from pydantic import TypeAdapter

    return {name: TypeAdapter(hint) for name, hint in field_types().items()}


def type_problems(spec: JobSpec) -> list[str]:
    """Each field's value against its type hint, checked by pydantic in strict mode (no coercion: a
    string is not an integer, a boolean is not a number), reported in our words."""
    from pydantic import ValidationError

    hints, validators = field_types(), field_validators()
    problems = []
    for f in dataclasses.fields(JobSpec):
        value = getattr(spec, f.name)
        try:
            validators[f.name].validate_python(value, strict=True)
        except ValidationError:
            problems.append(f"{f.name}: expected {_type_name(hints[f.name])}, got {_describe(value)}")
        else:
            problems.extend(f"{f.name}: {p}" for p in _text_problems(value))
    return problems


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", type(None): "null"}
    if hint in names:
        return names[hint]
    if origin is list:
        return f"a list of {_type_name(typing.get_args(hint)[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return "a mapping of strings"
    return "a mapping"


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:120]


def _text_problems(value: Any) -> list[str]:
    """Strings anywhere in ``value`` must be valid Unicode text without NUL characters."""
    if isinstance(value, str):
        if "\x00" in value:
            return [f"{value!r} contains a NUL character, which Kubernetes and argv cannot carry"]
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
            return [f"{value!r} contains a lone surrogate (invalid Unicode)"]
        return []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _text_problems(k) + _text_problems(v)]
    if isinstance(value, list):
        return [p for v in value for p in _text_problems(v)]
    return []


def name_problems(spec: JobSpec) -> list[str]:
    problems = []
    if not spec.name:
        problems.append("name: required; pass --name NAME (e.g. --name vit-b16)")
    elif not NAME_RULE.accepts(spec.name):
        problems.append(
            f"name: {spec.name!r} is not a DNS-1035 label: use lower-case letters, digits and '-', "
            "starting with a letter and ending with a letter or digit (e.g. vit-b16)"
        )
    if not _DNS1123_LABEL.fullmatch(spec.namespace) or len(spec.namespace) > c.MAX_NAME_LENGTH:
        problems.append(
            f"namespace: {spec.namespace!r} is not a DNS-1123 label (lower-case letters, digits, '-', "
            f"at most {c.MAX_NAME_LENGTH} characters)"
        )
    if not TEXT_RULES["pipeline"].accepts(spec.pipeline):
        problems.append(
            f"pipeline: {spec.pipeline!r} is not a DNS-1123 label (lower-case letters, digits, '-', "
            f"at most {c.MAX_NAME_LENGTH} characters); leave it empty to use the name"
        )
    return problems


def pod_name_problems(spec: JobSpec) -> list[str]:
    """The longest name Kubernetes will see is the last pod's: ``<name>-<stage>-worker-<n-1>``."""
    last = spec.pod_name(spec.num_pods - 1)
    if len(last) <= c.MAX_NAME_LENGTH:
        return []
    excess = len(last) - c.MAX_NAME_LENGTH
    return [
        f"name: {spec.name!r} makes pod name {last!r} {len(last)} characters long; Kubernetes allows "
        f"at most {c.MAX_NAME_LENGTH}: shorten --name by {excess} character{'s' if excess > 1 else ''}"
    ]


def choice_problems(spec: JobSpec) -> list[str]:
    problems = []
    for key, allowed in CHOICES.items():
        value = getattr(spec, key)
        if value not in allowed:
            hint = "required; " if value == "" else f"{value!r} is not allowed; "
            problems.append(f"{key}: {hint}use one of {', '.join(allowed)}")
    return problems


def cards_problems(spec: JobSpec) -> list[str]:
    """Card counts each hardware kind can run (checked on ``cards``, the training card count)."""
    cards = spec.cards
    low, high = INT_RANGES["cards"]
    if cards < low or cards > high:
        return [f"cards: {cards} is not allowed; use a positive number of cards"]
    problems = []
    if spec.hw == "ascend" and not (
        cards in c.ASCEND_SINGLE_POD_CARDS or cards % c.ASCEND_CARDS_PER_NODE == 0
    ):
        allowed = ", ".join(map(str, c.ASCEND_SINGLE_POD_CARDS))
        problems.append(
            f"cards: {cards} is not allowed for hw ascend; use {allowed} (one pod) or a multiple of "
            f"{c.ASCEND_CARDS_PER_NODE} such as {c.ASCEND_CARDS_PER_NODE * 2} "
            f"({c.ASCEND_CARDS_PER_NODE} cards per pod, one pod per node)"
        )
    low, high = INT_RANGES["gpus_per_pod"]
    if spec.gpus_per_pod < low or spec.gpus_per_pod > high:
        problems.append(
            f"gpus_per_pod: {spec.gpus_per_pod} is not allowed; use {low} to {high} "
            f"(default {c.DEFAULT_GPUS_PER_POD})"
        )
    elif spec.hw == "gpu" and cards > spec.gpus_per_pod and cards % spec.gpus_per_pod:
        g = spec.gpus_per_pod
        problems.append(
            f"cards: {cards} is not allowed for hw gpu with {g} GPUs per pod; use at most {g} (one pod) "
            f"or a multiple of {g} such as {g * (cards // g + 1)}, or set gpus_per_pod"
        )
    if spec.cards_per_pod is not None:
        if spec.hw != "cpu":
            problems.append(
                "cards_per_pod: applies to hw cpu only; ascend uses up to 8 cards per pod and gpu uses "
                "gpus_per_pod; remove it"
            )
        elif spec.cards_per_pod < INT_RANGES["cards_per_pod"][0] or cards % spec.cards_per_pod:
            problems.append(
                f"cards_per_pod: {spec.cards_per_pod} does not divide cards={cards}; use a divisor of "
                f"{cards} such as {cards} (one pod)"
            )
    return problems


def storage_problems(spec: JobSpec) -> list[str]:
    problems = []
    for key in ("data_pvc", "output_pvc"):
        value = getattr(spec, key)
        if not TEXT_RULES[key].accepts(value):
            problems.append(
                f"{key}: {value!r} is not a PersistentVolumeClaim name (DNS-1123 subdomain: lower-case "
                "letters, digits, '-' and '.', at most 253 characters)"
            )
    if spec.data_subpath and not _is_relative_path(spec.data_subpath):
        problems.append(
            f"data_subpath: {spec.data_subpath!r} is not a relative path inside the data volume; use "
            "segments of letters, digits, '.', '_' and '-' separated by '/', without '..' (e.g. cifar10)"
        )
    return problems


def scheduling_problems(spec: JobSpec) -> list[str]:
    problems = []
    for key in ("queue", "priority_class"):
        value = getattr(spec, key)
        if not TEXT_RULES[key].accepts(value):
            problems.append(
                f"{key}: {value!r} is not a DNS-1123 subdomain (lower-case letters, digits, '-' and '.'); "
                "leave it empty for the cluster default"
            )
    low, high = INT_RANGES["max_retry"]
    if not low <= spec.max_retry <= high:
        # Volcano's mutating webhook turns maxRetry 0 into 3 (mutate_job.go patchDefaultMaxRetry), and its
        # controller fails the job when the retry count reaches maxRetry: 1 is "never restart".
        problems.append(
            f"max_retry: {spec.max_retry} is not allowed; use 1 or more: the job fails on its N-th pod "
            "failure (1 = never restart; Volcano's webhook would turn 0 into 3)"
        )
    ttl = spec.ttl_seconds_after_finished
    low, high = INT_RANGES["ttl_seconds_after_finished"]
    if ttl is not None and not low <= ttl <= high:
        problems.append(f"ttl_seconds_after_finished: {ttl} is not allowed; use 0 or more, or null to keep")
    for key, value in spec.node_selector.items():
        if not _is_qualified_name(key):
            problems.append(f"node_selector: key {key!r} is not a valid label key (e.g. accelerator-type)")
        if value is not None and not _is_label_value(value):
            problems.append(f"node_selector.{key}: {value!r} is not a valid label value")
    for index, toleration in enumerate(spec.tolerations):
        problems.extend(f"tolerations[{index}]: {p}" for p in toleration_problems(toleration))
    for key in ("cpu", "memory"):
        value = getattr(spec, key)
        if not TEXT_RULES[key].accepts(value):
            problems.append(
                f"{key}: {value!r} is not a Kubernetes quantity (e.g. cpu 16 or 500m, memory 64Gi); "
                "leave it empty for the default per card"
            )
    return problems


def toleration_problems(toleration: Mapping[str, Any]) -> list[str]:
    problems = []
    for key, value in toleration.items():
        if key not in _TOLERATION_KEYS:
            problems.append(f"unknown key {key!r}; use {', '.join(_TOLERATION_KEYS)}")
        elif TOLERATION_FIELDS[key] is int:
            if not isinstance(value, int) or isinstance(value, bool):
                problems.append(f"{key}: expected an integer, got {_describe(value)}")
        elif not isinstance(value, str):
            problems.append(f"{key}: expected a string, got {_describe(value)}")
    operator = toleration.get("operator", "Equal")
    if operator not in TOLERATION_OPERATORS:
        problems.append(f"operator: {operator!r} is not allowed; use {' or '.join(TOLERATION_OPERATORS)}")
    if operator == "Exists" and toleration.get("value"):
        problems.append("value: must be empty with operator Exists; use operator Equal to match a value")
    effect = toleration.get("effect", "")
    if effect and effect not in TOLERATION_EFFECTS:
        problems.append(f"effect: {effect!r} is not allowed; use {', '.join(TOLERATION_EFFECTS)}")
    if isinstance(toleration.get("key", ""), str) and toleration.get("key") and not _is_qualified_name(
        toleration["key"]
    ):
        problems.append(f"key: {toleration['key']!r} is not a valid taint key")
    return problems


def training_problems(spec: JobSpec) -> list[str]:
    problems = []
    if not TEXT_RULES["preset"].accepts(spec.preset):
        problems.append(
            f"preset: {spec.preset!r} is not a preset name (lower-case letters, digits, '.', '_', '-'; "
            f"default {c.DEFAULT_PRESET})"
        )
    for key in ("epochs", "batch_size"):
        value = getattr(spec, key)
        low, high = INT_RANGES[key]
        if value is not None and not low <= value <= high:
            problems.append(f"{key}: {value} is not allowed; use a positive integer")
    if spec.lr is not None and not (math.isfinite(spec.lr) and spec.lr > NUMBER_EXCLUSIVE_MINIMUMS["lr"]):
        problems.append(f"lr: {spec.lr} is not allowed; use a positive number such as 0.0003")
    if spec.pretrained and any(ch in spec.pretrained for ch in "\n\r"):
        problems.append(f"pretrained: {spec.pretrained!r} contains a line break; give a file path")
    return problems


def container_problems(spec: JobSpec) -> list[str]:
    problems = []
    if spec.image and not _IMAGE_REF.fullmatch(spec.image):
        problems.append(
            f"image: {spec.image!r} is not an image reference such as registry.example.com/vitjob:0.1.0; "
            "leave it empty for the default image of the hardware"
        )
    for key in ("sched_port", "rdzv_port"):
        port = getattr(spec, key)
        low, high = INT_RANGES[key]
        if not low <= port <= high:
            problems.append(f"{key}: {port} is not allowed; use a port from {low} to {high}")
    if spec.sched_port == spec.rdzv_port:
        problems.append(f"rdzv_port: {spec.rdzv_port} is also sched_port; use two different ports")
    for key in spec.env:
        if not _ENV_NAME.fullmatch(key):
            problems.append(f"env: {key!r} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
        elif key in _RESERVED_ENV_NAMES or key.startswith(c.RESERVED_ENV_PREFIXES):
            problems.append(
                f"env: {key} is reserved for vitjob, Volcano and MindSpore's launcher (names starting "
                f"with {', '.join(c.RESERVED_ENV_PREFIXES)} and {', '.join(sorted(_RESERVED_ENV_NAMES))}); "
                "pick another name, or set ports with sched_port/rdzv_port"
            )
    return problems


def security_problems(spec: JobSpec) -> list[str]:
    """The pods' user and groups: ``INT_RANGES`` (a UID of 0 would be root, which runAsNonRoot refuses)."""
    problems = []
    for key in ("run_as_user", "run_as_group", "fs_group"):
        value = getattr(spec, key)
        low, high = INT_RANGES[key]
        if value is not None and not low <= value <= high:
            what = "a non-root UID" if key == "run_as_user" else "a GID"
            problems.append(
                f"{key}: {value} is not allowed; use {what} from {low} to {high} (default {USER_ID}, the "
                "image's user), or null for the image's"
            )
    low, high = INT_RANGES["supplemental_groups"]
    bad = [g for g in spec.supplemental_groups if not low <= g <= high]
    if bad:
        listed = ", ".join(map(str, bad))
        problems.append(f"supplemental_groups: {listed} not allowed; use GIDs from {low} to {high}")
    return problems


def metadata_problems(spec: JobSpec) -> list[str]:
    problems = []
    for key, value in spec.labels.items():
        if not _is_qualified_name(key):
            problems.append(
                f"labels: {key!r} is not a label key ([prefix/]name, name at most 63 characters of "
                "letters, digits, '-', '_', '.')"
            )
        elif key.startswith(c.RESERVED_LABEL_PREFIXES):
            problems.append(f"labels: {key} is set by vitjob or Volcano; choose another key")
        if not _is_label_value(value):
            problems.append(
                f"labels.{key}: {value!r} is not a label value (at most 63 letters, digits, '-', '_', '.', "
                "starting and ending with a letter or digit)"
            )
    for key in spec.annotations:
        if not _is_qualified_name(key):
            problems.append(f"annotations: {key!r} is not an annotation key ([prefix/]name)")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in spec.annotations.items())
    if size > _MAX_ANNOTATIONS_BYTES:
        problems.append(f"annotations: {size} bytes in total; Kubernetes allows at most 256 KiB")
    problems.extend(k8s_version_problems(spec.k8s_version))
    return problems


def k8s_version_problems(version: str) -> list[str]:
    """The version must have schemas in the installed kubernetes-validate (1.25 to 1.37)."""
    from vitjob.render.validate import supported_k8s_versions  # imports jsonschema: only when checking

    match = _K8S_VERSION.fullmatch(version)
    supported = supported_k8s_versions()
    if match and f"{int(match[1])}.{int(match[2])}" in supported:
        return []
    return [
        f"k8s_version: {version!r} is not supported; use one of {supported[0]} to {supported[-1]} "
        f"(default {c.DEFAULT_K8S_VERSION})"
    ]


def _is_subdomain(value: str) -> bool:
    return bool(_DNS1123_SUBDOMAIN.fullmatch(value)) and len(value) <= c.MAX_SUBDOMAIN_LENGTH


def _is_qualified_name(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or not _is_subdomain(prefix)):
        return False
    return bool(_QUALIFIED_NAME.fullmatch(name)) and len(name) <= c.MAX_NAME_LENGTH


def _is_label_value(value: str) -> bool:
    return bool(_LABEL_VALUE.fullmatch(value)) and len(value) <= c.MAX_NAME_LENGTH


def _is_relative_path(path: str) -> bool:
    segments = path.split("/")
    return all(_PATH_SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments)


# --- loading: values file, CLI flags, --set ----------------------------------------------------

SPEC_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(JobSpec))
# Spec keys a VitJob keeps in its metadata instead of its spec (vitjob.api.schema, vitjob.pipeline).
METADATA_KEYS: tuple[str, ...] = ("name", "namespace")
_MAPPING_KEYS = ("node_selector", "env", "labels", "annotations")
_LIST_KEYS = ("tolerations", "extra_args", "supplemental_groups")
_TRUE_WORDS = ("true", "yes", "on")
_FALSE_WORDS = ("false", "no", "off")
_NULL_WORDS = ("null", "~", "")


def load_spec(
    cli_values: Mapping[str, Any],
    values_file: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> JobSpec:
    """Build a ``JobSpec``: defaults < values file < explicit CLI flags < ``--set`` overrides.

    Args:
        cli_values: spec keys from explicit CLI flags; ``None`` values mean "flag not given".
        values_file: a YAML mapping of spec keys (``cards: 8``, ``env: {FOO: bar}``), or None.
        overrides: ``KEY=VALUE`` strings; ``KEY`` may be ``MAPPING.SUBKEY`` for mapping keys.

    Raises:
        SpecError: listing every problem (unknown keys with the nearest known one, bad values).
    """
    merged: dict[str, Any] = {}
    problems: list[str] = []
    if values_file is not None:
        file_values = read_values_file(values_file)
        problems.extend(_unknown_key_problems(file_values, f"values file {values_file}"))
        merged.update({k: _coerce_file_value(k, v) for k, v in file_values.items() if k in SPEC_KEYS})
    for key, value in cli_values.items():
        if value is None:
            continue
        if key not in SPEC_KEYS:
            raise ValueError(f"CLI value {key!r} is not a JobSpec field")  # programming error
        merged[key] = value
    for override in overrides:
        problems.extend(apply_override(merged, override))
    merged.setdefault("name", "")
    merged.setdefault("hw", "")
    try:
        spec = JobSpec(**merged)
    except SpecError as exc:
        raise spec_error(problems + list(getattr(exc, "problems", [str(exc)]))) from None
    if problems:
        raise spec_error(problems)
    log.debug("job spec: %s", spec)
    return spec


def read_values_file(path: str | Path) -> dict[str, Any]:
    """Read a values file: a YAML mapping of spec keys. Duplicate keys and YAML tags are errors."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"values file {path}: not found; check the path given to -f") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"values file {path}: cannot be read ({exc})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" line {mark.line + 1}, column {mark.column + 1}:"
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(
            f"values file {path}:{where} {problem}; write a YAML mapping of spec keys such as "
            "'cards: 8' (see vitjob render --help)"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise SpecError(
            f"values file {path}: expected a mapping of spec keys (e.g. 'cards: 8'), got "
            f"{type(data).__name__}"
        )
    return data


class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML has no type information
    """SafeLoader that rejects duplicate mapping keys instead of keeping the last one."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def apply_override(merged: dict[str, Any], override: str) -> list[str]:
    """Apply one ``--set KEY=VALUE`` to ``merged``; return the problems (empty when applied)."""
    key, eq, raw = override.partition("=")
    key = key.strip()
    if not eq or not key:
        return [f"--set {override!r}: expected KEY=VALUE (e.g. --set cards=8)"]
    top, dot, sub = key.partition(".")
    if top not in SPEC_KEYS:
        return [f"--set {key}: unknown key{_suggestion(top)}"]
    if dot:
        if top not in _MAPPING_KEYS or not sub:
            return [f"--set {key}: only {', '.join(_MAPPING_KEYS)} take a sub-key (e.g. --set env.FOO=bar)"]
        mapping = dict(merged.get(top) or {})
        mapping[sub] = raw
        merged[top] = mapping
        return []
    if top in _MAPPING_KEYS:
        return [f"--set {key}: a mapping; use --set {top}.KEY=VALUE or the values file (-f)"]
    if top in _LIST_KEYS:
        return [f"--set {key}: a list; set it in the values file (-f)"]
    hint = field_types()[top]
    try:
        merged[top] = convert_scalar(raw, hint)
    except ValueError as exc:
        return [f"--set {key}: {exc}"]
    return []


def convert_scalar(raw: str, hint: Any) -> Any:
    """Convert a ``--set`` string to a field's type (``null`` clears an optional field)."""
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    if optional and raw.strip() in _NULL_WORDS:
        return None
    if base is bool:
        word = raw.strip().lower()
        if word in _TRUE_WORDS or word in _FALSE_WORDS:
            return word in _TRUE_WORDS
        raise ValueError(f"{raw!r} is not a boolean; use true or false")
    if base is int:
        try:
            return int(raw, 10)
        except ValueError:
            raise ValueError(f"{raw!r} is not an integer") from None
    if base is float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
    return raw


def _coerce_file_value(key: str, value: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` as a string: accept it for number keys such as ``lr``."""
    if isinstance(value, str) and float in typing.get_args(field_types()[key]):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _unknown_key_problems(values: Mapping[str, Any], source: str) -> list[str]:
    return [f"{source}: unknown key {key!r}{_suggestion(key)}" for key in values if key not in SPEC_KEYS]


def _suggestion(key: str) -> str:
    normalised = key.replace("-", "_").lower()
    if normalised in SPEC_KEYS:
        return f"; did you mean {normalised!r}?"
    close = difflib.get_close_matches(normalised, SPEC_KEYS, n=1, cutoff=0.5)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known keys: {', '.join(SPEC_KEYS)}"
