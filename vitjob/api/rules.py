"""The rules of each spec field, as tables: allowed choices, integer ranges, string forms
(``TextRule``), toleration fields, reserved names and one line of documentation per field. The checks
(``vitjob.api.checks``) and the published schemas (``vitjob.api.schema``: the CRD, values.schema.json)
read the same tables, so a schema can never allow less than the spec accepts."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vitjob import constants as c

# DNS-1123 label (namespaces, hostnames) and DNS-1035 label (Service names: start with a letter).
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Label/annotation key: optional DNS subdomain prefix + "/" + name of at most 63 characters.
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PRESET = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
PATH_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")
K8S_VERSION = re.compile(r"^v?(\d+)\.(\d+)(\.\d+)?$")
# Kubernetes resource quantity (apimachinery resource.Quantity).
QUANTITY = re.compile(r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$")
# Container image reference (distribution/reference grammar, without IPv6 hosts).
IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REF = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"(?::[0-9]+)?/)?"
    rf"{IMAGE_COMPONENT}(?:/{IMAGE_COMPONENT})*"
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
TOLERATION_KEYS = tuple(TOLERATION_FIELDS)
TOLERATION_OPERATORS: tuple[str, ...] = ("Equal", "Exists")
TOLERATION_EFFECTS: tuple[str, ...] = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# Environment variables vitjob launch and MindSpore set themselves.
RESERVED_ENV_NAMES = frozenset(
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
MAX_ANNOTATIONS_BYTES = 256 * 1024


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
    "pipeline": TextRule(DNS1123_LABEL, c.MAX_NAME_LENGTH, empty_ok=True),
    "data_pvc": TextRule(DNS1123_SUBDOMAIN, c.MAX_SUBDOMAIN_LENGTH),
    "output_pvc": TextRule(DNS1123_SUBDOMAIN, c.MAX_SUBDOMAIN_LENGTH),
    "queue": TextRule(DNS1123_SUBDOMAIN, c.MAX_SUBDOMAIN_LENGTH, empty_ok=True),
    "priority_class": TextRule(DNS1123_SUBDOMAIN, c.MAX_SUBDOMAIN_LENGTH, empty_ok=True),
    "preset": TextRule(PRESET, c.MAX_NAME_LENGTH),
    "cpu": TextRule(QUANTITY, empty_ok=True),
    "memory": TextRule(QUANTITY, empty_ok=True),
    "cpu_limit": TextRule(QUANTITY, empty_ok=True),
    "memory_limit": TextRule(QUANTITY, empty_ok=True),
}
# The pipeline's base name (JobSpec.name; a VitJob's metadata.name): a DNS-1035 label. Its length is
# limited by the longest pod name, <name>-<stage>-worker-<n-1> (pod_name_problems).
NAME_RULE = TextRule(DNS1035_LABEL)

# One line per field: the schemas' descriptions (`kubectl explain vitjob.api.spec`, values.schema.json).
FIELD_DOCS: dict[str, str] = {
    "name": "Pipeline base name: the job of stage S is <name>-<S>, its pods <name>-<S>-worker-<i>.",
    "hw": "Hardware: ascend (Ascend 910 NPUs), gpu (NVIDIA) or cpu (CPU processes).",
    "stage": "The first stage: train, eval, export or infer310.",
    "attempt": "Set by a pipeline, not in a spec: attempt n > 1 of a stage is the job <name>-<stage>-r<n>.",
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
    "cpu_limit": "CPU limit per pod (a quantity, at least the request); empty: no limit.",
    "memory_limit": "Memory limit per pod (a quantity, at least the request; above it the kernel kills the "
    "pod: OOMKilled); empty: no limit.",
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
    "publish_checkpoints": "train: rank 0 sets its pod's vitjob.io/last-checkpoint annotation (step, time) "
    "each time it writes a checkpoint; submit then also creates the job's ServiceAccount, and a Role "
    "that may get and patch only rank 0's pod, and their RoleBinding.",
}


# --- rules across fields, as the API server and Helm check them ------------------------------------
# The spec's checks (vitjob.api.checks, vitjob.pipeline.define.stage_spec) stay code, but their messages
# come from the functions below, and each rule that CEL can say is published here: the VitJob CRD carries
# it as an x-kubernetes-validations rule whose messageExpression builds the same text (so `kubectl apply`
# is refused with the words `vitjob render` prints), and values.schema.json carries its if/then form where
# JSON Schema can say it. tests/e2e/test_e2e_admission.py shows the API server and the checks agree on a
# table of specs; tests/test_admission.py does the same for helm and values.schema.json.
STAGE_ORDER = " → ".join(c.STAGES)


def ascend_cards_message(cards: str) -> str:
    allowed = ", ".join(map(str, c.ASCEND_SINGLE_POD_CARDS))
    return (
        f"cards: {cards} is not allowed for hw ascend; use {allowed} (one pod) or a multiple of "
        f"{c.ASCEND_CARDS_PER_NODE} such as {c.ASCEND_CARDS_PER_NODE * 2} "
        f"({c.ASCEND_CARDS_PER_NODE} cards per pod, one pod per node)"
    )


def gpu_cards_message(cards: str, gpus_per_pod: str, suggestion: str) -> str:
    g = gpus_per_pod
    return (
        f"cards: {cards} is not allowed for hw gpu with {g} GPUs per pod; use at most {g} (one pod) "
        f"or a multiple of {g} such as {suggestion}, or set gpus_per_pod"
    )


def cards_per_pod_hw_message() -> str:
    return (
        "cards_per_pod: applies to hw cpu only; ascend uses up to 8 cards per pod and gpu uses "
        "gpus_per_pod; remove it"
    )


def cards_per_pod_divides_message(cards_per_pod: str, cards: str) -> str:
    return (
        f"cards_per_pod: {cards_per_pod} does not divide cards={cards}; use a divisor of "
        f"{cards} such as {cards} (one pod)"
    )


def ports_message(rdzv_port: str) -> str:
    return f"rdzv_port: {rdzv_port} is also sched_port; use two different ports"


def stage_order_message(stages: str) -> str:
    return f"then: stages {stages} must follow the order {STAGE_ORDER}, each once"


@dataclass(frozen=True)
class CrossRule:
    """One rule across spec fields in the forms the cluster and Helm check.

    ``cel`` holds for a valid VitJob ``spec`` (``self``); ``message`` is the function the spec's own check
    words its problem with, and ``cel_args`` gives, for each of its parameters, a CEL expression (its
    value printed with ``%s``), so that the CRD's messageExpression is that same text. ``field`` is the
    key the message is about (the error's fieldPath). ``json_schema``: the rule as a draft-07 subschema
    of the chart's values (an ``if``/``then``), or None where JSON Schema cannot compare two fields."""

    name: str
    field: str
    cel: str
    message: Callable[..., str]
    cel_args: Mapping[str, str] = dataclasses.field(default_factory=dict)
    json_schema: Mapping[str, Any] | None = None


def _cel_list(values: Sequence[object]) -> str:
    return "[" + ", ".join(f"'{v}'" if isinstance(v, str) else str(v) for v in values) + "]"


def _ordered_then(first: str) -> list[list[str]]:
    """Every ``then`` allowed after stage ``first``: the later stages, in order, each at most once."""
    later = c.STAGES[c.STAGES.index(first) + 1:]
    return [[s for i, s in enumerate(later) if mask >> i & 1] for mask in range(2 ** len(later))]


_STAGE_INDEX = "{" + ", ".join(f"'{s}': {i}" for i, s in enumerate(c.STAGES)) + "}"
_HAS_CARDS_PER_POD = "has(self.cards_per_pod)"

CROSS_RULES: tuple[CrossRule, ...] = (
    CrossRule(
        "ascend-cards",
        "cards",
        f"self.hw != 'ascend' || self.cards in {_cel_list(c.ASCEND_SINGLE_POD_CARDS)} || "
        f"self.cards % {c.ASCEND_CARDS_PER_NODE} == 0",
        ascend_cards_message,
        {"cards": "self.cards"},
        {
            "if": {"properties": {"hw": {"const": "ascend"}}, "required": ["hw"]},
            "then": {"properties": {"cards": {"anyOf": [
                {"enum": list(c.ASCEND_SINGLE_POD_CARDS)},
                {"multipleOf": c.ASCEND_CARDS_PER_NODE},
            ]}}},
        },
    ),
    CrossRule(
        "gpu-cards",
        "cards",
        "self.hw != 'gpu' || self.gpus_per_pod < 1 || self.cards <= self.gpus_per_pod || "
        "self.cards % self.gpus_per_pod == 0",
        gpu_cards_message,
        {
            "cards": "self.cards",
            "gpus_per_pod": "self.gpus_per_pod",
            "suggestion": "self.gpus_per_pod * (self.cards / self.gpus_per_pod + 1)",
        },
    ),
    CrossRule(
        "cards-per-pod-cpu-only",
        "cards_per_pod",
        f"!({_HAS_CARDS_PER_POD}) || self.hw == 'cpu'",
        cards_per_pod_hw_message,
        {},
        {
            "if": {"properties": {"cards_per_pod": {"type": "integer"}}, "required": ["cards_per_pod"]},
            "then": {"properties": {"hw": {"const": "cpu"}}},
        },
    ),
    CrossRule(
        "cards-per-pod-divides-cards",
        "cards_per_pod",
        f"!({_HAS_CARDS_PER_POD}) || self.hw != 'cpu' || (self.cards_per_pod >= 1 && "
        "self.cards % self.cards_per_pod == 0)",
        cards_per_pod_divides_message,
        {"cards_per_pod": "self.cards_per_pod", "cards": "self.cards"},
    ),
    CrossRule(
        "distinct-ports",
        "rdzv_port",
        "self.sched_port != self.rdzv_port",
        ports_message,
        {"rdzv_port": "self.rdzv_port"},
    ),
    CrossRule(
        "stage-order",
        "then",
        f"!has(self.then) || (self.then.all(s, {_STAGE_INDEX}[s] > {_STAGE_INDEX}[self.stage]) && "
        f"{list(range(len(c.STAGES) - 2))}.all(i, i + 1 >= size(self.then) || "
        f"{_STAGE_INDEX}[self.then[i]] < {_STAGE_INDEX}[self.then[i + 1]]))",
        stage_order_message,
        # [stage, *then].join(' → ') in CEL terms: join's cost estimate is unbounded, indexing is not
        {"stages": "'" + "%s" * len(c.STAGES) + "'.format([self.stage, " + ", ".join(
            f"has(self.then) && size(self.then) > {i} ? ' → ' + self.then[{i}] : ''"
            for i in range(len(c.STAGES) - 1)
        ) + "])"},
        {"allOf": [
            {
                "if": {"properties": {"stage": {"const": stage}}, "required": ["stage"]},
                "then": {"properties": {"then": {"enum": _ordered_then(stage)}}},
            }
            for stage in c.STAGES
        ]},
    ),
)
