"""The checks of a ``JobSpec``: every problem of a spec, one line each with what to do, found at once
(``spec_problems``; ``JobSpec`` runs them when it is made and raises ``spec_error``). Types are checked
by pydantic in strict mode, values against the tables of ``vitjob.api.rules``, then the rules across
fields (card counts, pod-name length, security settings)."""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from vitjob import constants as c
from vitjob.api.rules import (
    CHOICES,
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    ENV_NAME,
    IMAGE_REF,
    INT_RANGES,
    K8S_VERSION,
    LABEL_VALUE,
    MAX_ANNOTATIONS_BYTES,
    NAME_RULE,
    NUMBER_EXCLUSIVE_MINIMUMS,
    PATH_SEGMENT,
    QUALIFIED_NAME,
    RESERVED_ENV_NAMES,
    TEXT_RULES,
    TOLERATION_EFFECTS,
    TOLERATION_FIELDS,
    TOLERATION_KEYS,
    TOLERATION_OPERATORS,
    ascend_cards_message,
    cards_per_pod_divides_message,
    cards_per_pod_hw_message,
    gpu_cards_message,
    ports_message,
)
from vitjob.errors import SpecError
from vitjob.images import USER_ID

if TYPE_CHECKING:
    from vitjob.api.model import SpecModel

# Kubernetes versions whose schemas the installed kubernetes-validate has (render.validate reads them).
KUBERNETES_VALIDATE_PACKAGE = "kubernetes_validate"
KUBERNETES_VALIDATE_SCHEMA_DIR = "kubernetes-json-schema"
SCHEMA_VERSION_DIR = re.compile(r"^v(\d+)\.(\d+)\.\d+-local-strict$")


@functools.cache
def supported_k8s_versions() -> tuple[str, ...]:
    """``major.minor`` versions with strict schemas in the installed kubernetes-validate."""
    root = resources.files(KUBERNETES_VALIDATE_PACKAGE).joinpath(KUBERNETES_VALIDATE_SCHEMA_DIR)
    found = []
    for entry in root.iterdir():
        match = SCHEMA_VERSION_DIR.fullmatch(entry.name)
        if match:
            found.append((int(match[1]), int(match[2])))
    return tuple(f"{major}.{minor}" for major, minor in sorted(found))


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


def spec_problems(spec: SpecModel) -> list[str]:
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
def field_types(spec_class: Any) -> dict[str, Any]:
    """The resolved type of each field of ``spec_class`` (``JobSpec``; annotations are strings under
    PEP 563)."""
    return typing.get_type_hints(spec_class)


@functools.cache
def field_validators(spec_class: Any) -> dict[str, Any]:
    """A pydantic ``TypeAdapter`` per field of ``spec_class`` (built once; about 30 ms)."""
    from pydantic import TypeAdapter

    return {name: TypeAdapter(hint) for name, hint in field_types(spec_class).items()}


def type_problems(spec: SpecModel) -> list[str]:
    """Each field's value against its type hint, checked by pydantic in strict mode (no coercion: a
    string is not an integer, a boolean is not a number), reported in our words."""
    from pydantic import ValidationError

    spec_class: Any = type(spec)  # JobSpec or its SpecModel, resolved from their own modules
    hints, validators = field_types(spec_class), field_validators(spec_class)
    problems = []
    for f in dataclasses.fields(spec):
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


def name_problems(spec: SpecModel) -> list[str]:
    problems = []
    if not spec.name:
        problems.append("name: required; pass --name NAME (e.g. --name vit-b16)")
    elif not NAME_RULE.accepts(spec.name):
        problems.append(
            f"name: {spec.name!r} is not a DNS-1035 label: use lower-case letters, digits and '-', "
            "starting with a letter and ending with a letter or digit (e.g. vit-b16)"
        )
    if not DNS1123_LABEL.fullmatch(spec.namespace) or len(spec.namespace) > c.MAX_NAME_LENGTH:
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


def pod_name_problems(spec: SpecModel) -> list[str]:
    """The longest name Kubernetes will see is the last pod's: ``<name>-<stage>-worker-<n-1>``."""
    if isinstance(spec.attempt, int) and spec.attempt < 1:
        return [f"attempt: {spec.attempt} is not a stage attempt (1, 2, …)"]
    last = spec.pod_name(spec.num_pods - 1)
    if len(last) <= c.MAX_NAME_LENGTH:
        return []
    excess = len(last) - c.MAX_NAME_LENGTH
    return [
        f"name: {spec.name!r} makes pod name {last!r} {len(last)} characters long; Kubernetes allows "
        f"at most {c.MAX_NAME_LENGTH}: shorten --name by {excess} character{'s' if excess > 1 else ''}"
    ]


def choice_problems(spec: SpecModel) -> list[str]:
    problems = []
    for key, allowed in CHOICES.items():
        value = getattr(spec, key)
        if value not in allowed:
            hint = "required; " if value == "" else f"{value!r} is not allowed; "
            problems.append(f"{key}: {hint}use one of {', '.join(allowed)}")
    return problems


def cards_problems(spec: SpecModel) -> list[str]:
    """Card counts each hardware kind can run (checked on ``cards``, the training card count)."""
    cards = spec.cards
    low, high = INT_RANGES["cards"]
    if cards < low or cards > high:
        return [f"cards: {cards} is not allowed; use a positive number of cards"]
    problems = []
    if spec.hw == "ascend" and not (
        cards in c.ASCEND_SINGLE_POD_CARDS or cards % c.ASCEND_CARDS_PER_NODE == 0
    ):
        problems.append(ascend_cards_message(str(cards)))
    low, high = INT_RANGES["gpus_per_pod"]
    if spec.gpus_per_pod < low or spec.gpus_per_pod > high:
        problems.append(
            f"gpus_per_pod: {spec.gpus_per_pod} is not allowed; use {low} to {high} "
            f"(default {c.DEFAULT_GPUS_PER_POD})"
        )
    elif spec.hw == "gpu" and cards > spec.gpus_per_pod and cards % spec.gpus_per_pod:
        g = spec.gpus_per_pod
        problems.append(gpu_cards_message(str(cards), str(g), str(g * (cards // g + 1))))
    if spec.cards_per_pod is not None:
        if spec.hw != "cpu":
            problems.append(cards_per_pod_hw_message())
        elif spec.cards_per_pod < INT_RANGES["cards_per_pod"][0] or cards % spec.cards_per_pod:
            problems.append(cards_per_pod_divides_message(str(spec.cards_per_pod), str(cards)))
    return problems


def text_problems(spec: SpecModel, keys: Sequence[str], advice: Callable[[str], str]) -> list[str]:
    """``<key>: <value> is not …`` for each of ``keys`` whose value its ``TEXT_RULES`` entry refuses;
    ``advice(key)`` says what the value must be."""
    refused = [(key, getattr(spec, key)) for key in keys if not TEXT_RULES[key].accepts(getattr(spec, key))]
    return [f"{key}: {value!r} is not {advice(key)}" for key, value in refused]


def storage_problems(spec: SpecModel) -> list[str]:
    problems = text_problems(
        spec,
        ("data_pvc", "output_pvc"),
        lambda _: "a PersistentVolumeClaim name (DNS-1123 subdomain: lower-case letters, digits, '-' and "
        "'.', at most 253 characters)",
    )
    if spec.data_subpath and not _is_relative_path(spec.data_subpath):
        problems.append(
            f"data_subpath: {spec.data_subpath!r} is not a relative path inside the data volume; use "
            "segments of letters, digits, '.', '_' and '-' separated by '/', without '..' (e.g. cifar10)"
        )
    return problems


def scheduling_problems(spec: SpecModel) -> list[str]:
    problems = text_problems(
        spec,
        ("queue", "priority_class"),
        lambda _: "a DNS-1123 subdomain (lower-case letters, digits, '-' and '.'); leave it empty for the "
        "cluster default",
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
    problems += text_problems(
        spec,
        ("cpu", "memory", "cpu_limit", "memory_limit"),
        lambda key: "a Kubernetes quantity (e.g. cpu 16 or 500m, memory 64Gi); leave it empty for "
        + ("no limit" if key.endswith("_limit") else "the default per card"),
    )
    problems.extend(limit_problems(spec))
    return problems


def limit_problems(spec: SpecModel) -> list[str]:
    """A limit below its request is refused by the API server; say it before submitting."""
    from kubernetes.utils import parse_quantity  # the Kubernetes client's own quantity parser

    problems = []
    limits = (("cpu", spec.cpu_limit, "--cpu"), ("memory", spec.memory_limit, "--memory"))
    for resource, limit, flag in limits:
        if not limit or not TEXT_RULES[f"{resource}_limit"].accepts(limit):
            continue
        if spec.job_hw not in c.DEFAULT_CPU_PER_CARD:
            continue  # an unknown hw is reported on its own; there is no default request to compare
        request = spec.cpu_request if resource == "cpu" else spec.memory_request
        if TEXT_RULES[resource].accepts(request) and parse_quantity(request) > parse_quantity(limit):
            problems.append(
                f"{resource}_limit: {limit} is below the {resource} request {request}: "
                f"raise the limit or lower the request ({flag})"
            )
    return problems


def toleration_problems(toleration: Mapping[str, Any]) -> list[str]:
    problems = []
    for key, value in toleration.items():
        if key not in TOLERATION_KEYS:
            problems.append(f"unknown key {key!r}; use {', '.join(TOLERATION_KEYS)}")
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


def training_problems(spec: SpecModel) -> list[str]:
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


def container_problems(spec: SpecModel) -> list[str]:
    problems = []
    if spec.image and not IMAGE_REF.fullmatch(spec.image):
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
        problems.append(ports_message(str(spec.rdzv_port)))
    for key in spec.env:
        if not ENV_NAME.fullmatch(key):
            problems.append(f"env: {key!r} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
        elif key in RESERVED_ENV_NAMES or key.startswith(c.RESERVED_ENV_PREFIXES):
            problems.append(
                f"env: {key} is reserved for vitjob, Volcano and MindSpore's launcher (names starting "
                f"with {', '.join(c.RESERVED_ENV_PREFIXES)} and {', '.join(sorted(RESERVED_ENV_NAMES))}); "
                "pick another name, or set ports with sched_port/rdzv_port"
            )
    return problems


def security_problems(spec: SpecModel) -> list[str]:
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


def metadata_problems(spec: SpecModel) -> list[str]:
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
    if size > MAX_ANNOTATIONS_BYTES:
        problems.append(f"annotations: {size} bytes in total; Kubernetes allows at most 256 KiB")
    problems.extend(k8s_version_problems(spec.k8s_version))
    return problems


def k8s_version_problems(version: str) -> list[str]:
    """The version must have schemas in the installed kubernetes-validate (1.25 to 1.37)."""
    match = K8S_VERSION.fullmatch(version)
    supported = supported_k8s_versions()
    if match and f"{int(match[1])}.{int(match[2])}" in supported:
        return []
    return [
        f"k8s_version: {version!r} is not supported; use one of {supported[0]} to {supported[-1]} "
        f"(default {c.DEFAULT_K8S_VERSION})"
    ]


def _is_subdomain(value: str) -> bool:
    return bool(DNS1123_SUBDOMAIN.fullmatch(value)) and len(value) <= c.MAX_SUBDOMAIN_LENGTH


def _is_qualified_name(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or not _is_subdomain(prefix)):
        return False
    return bool(QUALIFIED_NAME.fullmatch(name)) and len(name) <= c.MAX_NAME_LENGTH


def _is_label_value(value: str) -> bool:
    return bool(LABEL_VALUE.fullmatch(value)) and len(value) <= c.MAX_NAME_LENGTH


def _is_relative_path(path: str) -> bool:
    segments = path.split("/")
    return all(PATH_SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments)
