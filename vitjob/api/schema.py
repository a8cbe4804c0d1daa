"""The OpenAPI and JSON schemas of vitjob, derived from the spec model (``vitjob.api.spec``) and its
field tables (``vitjob.api.rules``).

This module owns every schema vitjob publishes: the VitJob custom resource's ``spec`` and ``status``
(structural OpenAPI v3, as Kubernetes requires of a CRD) and the Helm chart's values
(``charts/vitjob/values.schema.json``, JSON Schema draft-07). Nothing here is written by hand per
field: the types come from ``JobSpec``'s type hints (``str``/``int``/``float``/``bool``, ``X | None``
nullable, ``list[...]``, ``dict[str, ...]``), the defaults from its dataclass fields, and the
constraints from the tables next to the spec (``CHOICES``, ``INT_RANGES``, ``NUMBER_EXCLUSIVE_MINIMUMS``,
``TEXT_RULES``, ``TOLERATION_*``, ``FIELD_DOCS``), which the spec's own checks use. A schema therefore
never refuses a value the spec accepts. The rules across fields that CEL can say (``CROSS_RULES``: Ascend
and GPU card counts, ``cards_per_pod``, distinct ports, the stage order) are the CRD's
``x-kubernetes-validations``, with the spec's own messages (``cel_validation``), and those JSON Schema
can say are ``if``/``then`` subschemas of the values' schema; the others (pod-name length, limits below
requests, tolerations, annotation size) stay in the spec alone, and the controller reports them.

The committed files built from these schemas (the CRD, ``values.schema.json``, the chart's generated
templates) are written by ``vitjob.generate`` (``python -m vitjob.generate --write``).
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from typing import Any

from vitjob import constants as c
from vitjob.api.checks import field_types
from vitjob.api.model import ATTEMPT_KEYS, METADATA_KEYS
from vitjob.api.rules import (
    CHOICES,
    CROSS_RULES,
    FIELD_DOCS,
    INT_RANGES,
    NAME_RULE,
    NUMBER_EXCLUSIVE_MINIMUMS,
    TEXT_RULES,
    TOLERATION_EFFECTS,
    TOLERATION_FIELDS,
    TOLERATION_OPERATORS,
    CrossRule,
    TextRule,
)
from vitjob.api.spec import JobSpec
from vitjob.progress import EVENTS, READING_FIELDS

# Stages `then` may list (the stages after train; vitjob.pipeline.define.parse_then checks their order).
THEN_STAGES: tuple[str, ...] = c.STAGES[1:]
# kubectl get vitjobs: the run's current stage and phase, its size and hardware.
PRINTER_COLUMNS: tuple[dict[str, str], ...] = (
    {"name": "Stage", "type": "string", "jsonPath": ".status.stage"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Cards", "type": "integer", "jsonPath": ".spec.cards"},
    {"name": "Hardware", "type": "string", "jsonPath": ".spec.hw"},
    # the train stage: percent of its steps done and the time left (status.progress, the controller's)
    {"name": "Progress", "type": "number", "jsonPath": ".status.progress.percent"},
    {"name": "ETA", "type": "string", "jsonPath": ".status.progress.eta"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)


# --- from type hints and tables to OpenAPI (the structural form is the primary one) --------------


def type_schema(hint: Any, where: str) -> dict[str, Any]:
    """The schema of one type hint; ``X | None`` adds ``nullable``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        others = [a for a in args if a is not type(None)]
        if len(others) != 1:
            raise TypeError(f"{where}: no schema for the union {hint!r} (only X | None)")
        return {**type_schema(others[0], where), "nullable": True}
    scalars = {str: "string", bool: "boolean", int: "integer", float: "number"}
    if hint in scalars:
        return {"type": scalars[hint]}
    if origin is list:
        return {"type": "array", "items": type_schema(args[0], f"{where}[]")}
    if origin is dict and args[0] is str and args[1] is not Any:
        return {"type": "object", "additionalProperties": type_schema(args[1], f"{where}.*")}
    raise TypeError(f"{where}: no schema for {hint!r}; add one to vitjob.api.schema")


def _pattern(rule: TextRule) -> str:
    source = rule.pattern.pattern
    if not (source.startswith("^") and source.endswith("$")):
        raise ValueError(f"pattern {source!r} must be anchored with ^ and $")
    return f"^(?:{source[1:-1]})?$" if rule.empty_ok else source


def _text_constraints(rule: TextRule) -> dict[str, Any]:
    out: dict[str, Any] = {"pattern": _pattern(rule)}
    if rule.max_length:
        out["maxLength"] = rule.max_length
    if not rule.empty_ok:
        out["minLength"] = 1
    return out


def toleration_schema() -> dict[str, Any]:
    """One toleration: the Kubernetes Toleration fields, typed and with their enums."""
    properties: dict[str, Any] = {key: type_schema(t, f"tolerations[].{key}") for key, t in
                                  TOLERATION_FIELDS.items()}
    properties["operator"]["enum"] = list(TOLERATION_OPERATORS)
    properties["effect"]["enum"] = ["", *TOLERATION_EFFECTS]  # "": every effect
    return {"type": "object", "properties": properties}


# Fields whose items the type hint leaves open (dict[str, Any]).
_ITEM_SCHEMAS = {"tolerations": toleration_schema}


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def field_schema(name: str) -> dict[str, Any]:
    """The OpenAPI schema of ``JobSpec`` field ``name``: type, constraints, default, description."""
    f = next(f for f in dataclasses.fields(JobSpec) if f.name == name)
    hint = field_types(JobSpec)[name]
    schema: dict[str, Any]
    if name in _ITEM_SCHEMAS:
        schema = {"type": "array", "items": _ITEM_SCHEMAS[name]()}
    else:
        schema = type_schema(hint, name)
    if name in FIELD_DOCS:
        schema["description"] = FIELD_DOCS[name]
    if name in CHOICES:  # maxLength too: the CEL rules' cost estimate needs a bound on every string
        schema["enum"] = list(CHOICES[name])
        schema["maxLength"] = max(map(len, CHOICES[name]))
    if name in INT_RANGES:  # a list of integers: each item's range
        ranged = schema["items"] if schema["type"] == "array" else schema
        ranged["minimum"], ranged["maximum"] = INT_RANGES[name]
    if name in NUMBER_EXCLUSIVE_MINIMUMS:
        schema["minimum"] = _exact(NUMBER_EXCLUSIVE_MINIMUMS[name])
        schema["exclusiveMinimum"] = True
    if name in TEXT_RULES:
        schema.update(_text_constraints(TEXT_RULES[name]))
    default = _default(f)
    if default is not dataclasses.MISSING and default is not None:
        schema["default"] = default
    return schema


def _exact(number: float) -> int | float:
    """A whole number as an int (YAML and JSON write it without a fraction)."""
    return int(number) if float(number).is_integer() else number


def then_schema() -> dict[str, Any]:
    return {
        "type": "array",
        "description": "Stages run after `stage` completes, in the order train, eval, export, infer310.",
        "items": {"type": "string", "enum": list(THEN_STAGES), "maxLength": max(map(len, THEN_STAGES))},
        "maxItems": len(THEN_STAGES),
        "x-kubernetes-list-type": "set",
        "default": [],
    }


def run_schemas() -> dict[str, Any]:
    """The VitJob spec keys about the run as a whole (``vitjob.pipeline.model.RUN_KEYS`` but ``then``):
    gates on stage outputs (``vitjob.outputs``), the retry counter, automatic stage retries."""
    from vitjob.outputs import GATE_PATTERN, STAGE_OUTPUTS

    outputs = "; ".join(f"{stage}: {', '.join(names)}" for stage, names in STAGE_OUTPUTS.items())
    return {
        "gates": {
            "type": "array",
            "description": "A stage starts only if each gate on an earlier stage's outputs holds, e.g. "
            f"eval.accuracy>=0.95 (STAGE.OUTPUT OP NUMBER, OP one of >= <= > < == !=; outputs: {outputs}); "
            "a gate that fails ends the run Failed with the measured value.",
            "items": {"type": "string", "pattern": GATE_PATTERN, "maxLength": 256},
            "default": [],
        },
        "retry": {
            "type": "integer",
            "minimum": 0,
            "default": 0,
            "description": "Retry counter: set it one above status.retries (`vitjob pipeline retry NAME` "
            "does it) "
            "and a Failed run reruns its first stage not Completed as a new job <name>-<stage>-r<n>, then "
            "goes on; Completed stages are not rerun.",
        },
        "stage_retries": {
            "type": "integer",
            "minimum": 0,
            "default": 0,
            "description": "Automatic retries of a failed stage, each as a new job <name>-<stage>-r<n>.",
        },
        "suspend": {
            "type": "boolean",
            "default": False,
            "description": "true: the running stage's Volcano Job is aborted (its pods deleted; phase "
            "Suspended, no further stage starts); false again: Volcano resumes that job and training "
            "continues from its last checkpoint (Volcano counts it in the job's retryCount).",
        },
        "stage_retry_backoff_s": {
            "type": "number",
            "minimum": 0,
            "nullable": True,
            "description": "Seconds before the first automatic retry of a stage, doubled for each further "
            "one (null: 10).",
        },
    }


def spec_fields() -> tuple[str, ...]:
    """The VitJob spec keys: every JobSpec field but name and namespace, in the dataclass's order."""
    return tuple(
        f.name for f in dataclasses.fields(JobSpec) if f.name not in (*METADATA_KEYS, *ATTEMPT_KEYS)
    )


def spec_schema() -> dict[str, Any]:
    """The VitJob ``spec``: structural OpenAPI v3 (every node typed, no $ref, nullable, no anyOf)."""
    properties = {name: field_schema(name) for name in spec_fields()}
    properties["then"] = then_schema()
    properties.update(run_schemas())
    required = [f.name for f in dataclasses.fields(JobSpec)
                if f.name not in METADATA_KEYS and _default(f) is dataclasses.MISSING]
    return {
        "type": "object",
        "description": "The run: the keys of a values file (`vitjob render -f`), without name and namespace "
        "(the VitJob's metadata), plus `then`, `gates`, `retry`, `stage_retries`, "
        "`stage_retry_backoff_s` and `suspend`.",
        "required": required,
        "properties": properties,
        "x-kubernetes-validations": [cel_validation(rule) for rule in CROSS_RULES],
    }


def _cel_string(text: str) -> str:
    """``text`` as a CEL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def cel_message(rule: CrossRule) -> str:
    """The CEL messageExpression of ``rule``: its Python message as a ``format`` string whose ``%s`` are
    ``rule.cel_args`` (``rule.message`` is called with markers where the arguments go), so the API
    server's text is the spec check's. ``format``, not ``+``: the API server estimates a concatenation
    with ``string()`` as unbounded and refuses the CRD."""
    names = list(rule.cel_args)
    marks = {name: f"\x00{i}\x00" for i, name in enumerate(names)}
    parts = re.split(r"\x00(\d+)\x00", rule.message(**marks))
    text = "".join(part.replace("%", "%%") if i % 2 == 0 else "%s" for i, part in enumerate(parts))
    args = ", ".join(rule.cel_args[names[int(part)]] for part in parts[1::2])
    return f"{_cel_string(text)}.format([{args}])"


def cel_validation(rule: CrossRule) -> dict[str, Any]:
    """One ``x-kubernetes-validations`` entry of the VitJob spec."""
    out: dict[str, Any] = {"rule": rule.cel, "fieldPath": f".{rule.field}", "reason": "FieldValueInvalid"}
    if rule.cel_args:
        out["messageExpression"] = cel_message(rule)
    else:
        out["message"] = rule.message()
    return out


def _time() -> dict[str, Any]:
    return {"type": "string", "format": "date-time", "nullable": True}


def progress_schema() -> dict[str, Any]:
    """``status.progress``: the train stage's progress as rank 0 last reported it
    (``vitjob.progress.ProgressReading.to_status``, written by the controller)."""
    number = {"type": "number"}
    count = {"type": "integer", "minimum": 0}
    fields: dict[str, dict[str, Any]] = {
        "epoch": {**count, "description": "The epoch being trained (1-based)."},
        "epochs": {**count, "description": "Epochs planned."},
        "step": {**count, "description": "Global steps done."},
        "totalSteps": {**count, "description": "Global steps planned."},
        "percent": {**number, "minimum": 0, "description": "Steps done of the total, in percent."},
        "loss": {**number, "description": "Mean training loss since the previous report."},
        "accuracy": {**number, "description": "The last validation accuracy (0 to 1)."},
        "imgPerSecond": {**number, "description": "Training images per second, every rank together."},
        "etaSeconds": {**number, "description": "Seconds of training left at that speed."},
        "eta": {"type": "string", "description": "The same as people write it (1m35s); absent once final."},
        "event": {"type": "string", "enum": list(EVENTS),
                  "description": "What rank 0 reported: a periodic step, an epoch end or a resume."},
        "time": {**_time(), "description": "When the controller read it."},
        "final": {"type": "boolean", "description": "The train stage has ended: these are its last values."},
    }
    missing = {key for _, _, key in READING_FIELDS} ^ set(fields)
    if missing:
        raise AssertionError(f"status.progress schema and vitjob.progress.READING_FIELDS differ: {missing}")
    return {
        "type": "object",
        "description": "The train stage's progress, read from rank 0's log by the controller at most once "
        "per --progress-interval while it runs, and once more (final) when it ends.",
        "required": ["epoch", "epochs", "step", "totalSteps"],
        "properties": fields,
    }


def status_schema() -> dict[str, Any]:
    """The VitJob ``status``, written by the controller and the CLI through the status subresource."""
    from vitjob.api.status import PipelinePhase, StageState

    attempt = {
        "attempt": {"type": "integer", "minimum": 1,
                    "description": "Which attempt of the stage this is (1; n > 1 after a retry)."},
        "job": {"type": "string", "description": "Its Volcano Job (<name>-<stage>, <name>-<stage>-r<n>)."},
        "state": {"type": "string", "enum": [m.value for m in StageState],
                  "description": "What the run recorded: the job was Created, Completed or Failed."},
        "phase": {"type": "string", "description": "The Volcano Job's phase."},
        "reason": {"type": "string"},
        "startTime": _time(),
        "completionTime": _time(),
        "outputs": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                    "description": "What the stage reported it produced (its pod's termination message)."},
    }
    stage = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "description": "The stage (train, eval, export, infer310)."},
            **attempt,
            "autoRetries": {"type": "integer", "minimum": 0,
                            "description": "Automatic retries (stage_retries) since the last retry by hand."},
            "earlierAttempts": {"type": "array", "description": "The stage's earlier attempts, oldest first.",
                                "items": {"type": "object", "properties": dict(attempt)}},
        },
    }
    condition = {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string", "maxLength": 316},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string", "maxLength": 1024},
            "message": {"type": "string", "maxLength": 32768},
            "lastTransitionTime": _time(),
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
        },
    }
    return {
        "type": "object",
        "properties": {
            "phase": {"type": "string", "enum": [m.value for m in PipelinePhase]},
            "progress": progress_schema(),
            "stage": {"type": "string", "description": "The current stage."},
            "reason": {"type": "string"},
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
            "retries": {"type": "integer", "minimum": 0,
                        "description": "Retries asked for by spec.retry and carried out."},
            "stages": {"type": "array", "items": stage, "x-kubernetes-list-type": "map",
                       "x-kubernetes-list-map-keys": ["name"]},
            "conditions": {"type": "array", "items": condition, "x-kubernetes-list-type": "map",
                           "x-kubernetes-list-map-keys": ["type"]},
        },
    }


def crd_schema() -> dict[str, Any]:
    """The CRD version's ``openAPIV3Schema``."""
    return {
        "type": "object",
        "description": "One run of the ViT workflow: the train stage and its follow-up stages.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
    }


# --- values.schema.json: the same schema in JSON Schema draft-07, plus the chart's own keys -------


def _draft7(node: Any) -> Any:
    """OpenAPI (Kubernetes) → JSON Schema draft-07: nullable → a null type, boolean exclusiveMinimum →
    a number, list-type set → uniqueItems, objects with properties refuse unknown keys."""
    if isinstance(node, list):
        return [_draft7(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _draft7(v) for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if node.get("nullable"):
        out["type"] = [node["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if node.get("exclusiveMinimum") is True:
        out["exclusiveMinimum"] = out.pop("minimum")
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if "properties" in node:
        out["additionalProperties"] = False
    return out


def values_schema(controller: dict[str, Any]) -> dict[str, Any]:
    """``charts/vitjob/values.schema.json``: the spec keys, ``name``, ``then``, ``controller`` (the
    schema of the controller's options, ``controller``: ``vitjob.generate`` derives it from the
    controller's renderer), ``tests``.

    Differences from the CRD's spec, both Helm's: ``hw`` is not required (values.yaml defaults it), and
    ``lr`` may also be a numeric string (``--set lr=0.0003`` gives one; the chart converts it)."""
    spec = copy.deepcopy(spec_schema())
    spec["properties"]["lr"] = {
        "description": spec["properties"]["lr"]["description"],
        "anyOf": [
            _draft7(spec["properties"]["lr"]),
            {"type": "string", "pattern": r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"},
        ],
    }
    # name: empty takes the release name; any name the spec accepts is shorter than a label (pod names).
    name = {
        "type": "string",
        "description": FIELD_DOCS["name"] + " Empty: the release name.",
        "maxLength": c.MAX_NAME_LENGTH,
        "pattern": _pattern(dataclasses.replace(NAME_RULE, empty_ok=True)),
        "default": "",
    }
    properties = {
        "name": name,
        **spec["properties"],
        "controller": controller,
        "tests": {"type": "object", "properties": {
            "image": {"type": "string", "default": "",
                      "description": "Image of the `helm test` pod; empty: the vitjob cpu image."}}},
    }
    out = _draft7({"type": "object", "properties": properties})
    out["allOf"] = [dict(rule.json_schema) for rule in CROSS_RULES if rule.json_schema is not None]
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "vitjob chart values: the VitJob spec (from vitjob.api.spec)",
        "description": "Rules across fields: those JSON Schema can say are in allOf (Ascend card counts, "
        "cards_per_pod for hw cpu only, the stage order); the API server checks every rule CEL can say "
        "(the VitJob CRD's x-kubernetes-validations), the controller the rest (the VitJob's status says "
        "what to fix).",
        **out,
    }


# --- the committed files ---------------------------------------------------------------------


def nullable_spec_keys() -> list[str]:
    """Spec keys whose value may be null (``X | None`` fields)."""
    return [key for key, prop in spec_schema()["properties"].items() if prop.get("nullable")]
