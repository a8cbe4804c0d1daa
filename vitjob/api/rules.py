"""The rules of each spec field, as tables: allowed choices, integer ranges, string forms
(``TextRule``), toleration fields, reserved names and one line of documentation per field. The checks
(``vitjob.api.checks``) and the published schemas (``vitjob.api.schema``: the CRD, values.schema.json)
read the same tables, so a schema can never allow less than the spec accepts."""

from __future__ import annotations

import re
from dataclasses import dataclass

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
}
