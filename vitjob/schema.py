"""The OpenAPI and JSON schemas of vitjob, derived from the spec model (``vitjob.spec``).

This module owns every schema vitjob publishes: the VitJob custom resource's ``spec`` and ``status``
(structural OpenAPI v3, as Kubernetes requires of a CRD) and the Helm chart's values
(``charts/vitjob/values.schema.json``, JSON Schema draft-07). Nothing here is written by hand per
field: the types come from ``JobSpec``'s type hints (``str``/``int``/``float``/``bool``, ``X | None``
nullable, ``list[...]``, ``dict[str, ...]``), the defaults from its dataclass fields, and the
constraints from the tables next to the spec (``CHOICES``, ``INT_RANGES``, ``NUMBER_EXCLUSIVE_MINIMUMS``,
``TEXT_RULES``, ``TOLERATION_*``, ``FIELD_DOCS``), which the spec's own checks use. A schema therefore
never refuses a value the spec accepts; the rules across fields (Ascend card counts, ``cards_per_pod``
dividing ``cards``, pod-name length…) stay in the spec alone, and the controller reports them.

``python -m vitjob.schema --write`` regenerates the committed files (the CRD with ``render_crd``
through ``vitjob.render``'s templates, and the chart's generated templates); ``--check`` exits 1 when
they differ from what this module generates.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import inspect
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

from vitjob import constants as c
from vitjob import spec as s

# Stages `then` may list (the stages after train; vitjob.pipeline.parse_then checks their order).
THEN_STAGES: tuple[str, ...] = c.STAGES[1:]
# Committed generated files, relative to the repository root.
CHART_DIR = Path("charts") / "vitjob"
CRD_FILE = CHART_DIR / "crds" / f"{c.VITJOB_GROUP}_{c.VITJOB_PLURAL}.yaml"
VALUES_SCHEMA_FILE = CHART_DIR / "values.schema.json"
# A chart helper naming the spec keys that may be null (templates cannot read values.schema.json).
NULLABLE_TEMPLATE_FILE = CHART_DIR / "templates" / "_nullable.tpl"
CONTROLLER_OBJECTS_FILE = CHART_DIR / "templates" / "_controller_objects.tpl"
REGENERATE_COMMAND = "python -m vitjob.schema --write"
# kubectl get vitjobs: the run's current stage and phase, its size and hardware.
PRINTER_COLUMNS: tuple[dict[str, str], ...] = (
    {"name": "Stage", "type": "string", "jsonPath": ".status.stage"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Cards", "type": "integer", "jsonPath": ".spec.cards"},
    {"name": "Hardware", "type": "string", "jsonPath": ".spec.hw"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)


# --- from type hints and tables to OpenAPI (the structural form is the primary one) --------------


def _type_schema(hint: Any, where: str) -> dict[str, Any]:
    """The schema of one type hint; ``X | None`` adds ``nullable``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        others = [a for a in args if a is not type(None)]
        if len(others) != 1:
            raise TypeError(f"{where}: no schema for the union {hint!r} (only X | None)")
        return {**_type_schema(others[0], where), "nullable": True}
    scalars = {str: "string", bool: "boolean", int: "integer", float: "number"}
    if hint in scalars:
        return {"type": scalars[hint]}
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0], f"{where}[]")}
    if origin is dict and args[0] is str and args[1] is not Any:
        return {"type": "object", "additionalProperties": _type_schema(args[1], f"{where}.*")}
    raise TypeError(f"{where}: no schema for {hint!r}; add one to vitjob.schema")


def _pattern(rule: s.TextRule) -> str:
    source = rule.pattern.pattern
    if not (source.startswith("^") and source.endswith("$")):
        raise ValueError(f"pattern {source!r} must be anchored with ^ and $")
    return f"^(?:{source[1:-1]})?$" if rule.empty_ok else source


def _text_constraints(rule: s.TextRule) -> dict[str, Any]:
    out: dict[str, Any] = {"pattern": _pattern(rule)}
    if rule.max_length:
        out["maxLength"] = rule.max_length
    if not rule.empty_ok:
        out["minLength"] = 1
    return out


def toleration_schema() -> dict[str, Any]:
    """One toleration: the Kubernetes Toleration fields, typed and with their enums."""
    properties: dict[str, Any] = {key: _type_schema(t, f"tolerations[].{key}") for key, t in
                                  s.TOLERATION_FIELDS.items()}
    properties["operator"]["enum"] = list(s.TOLERATION_OPERATORS)
    properties["effect"]["enum"] = ["", *s.TOLERATION_EFFECTS]  # "": every effect
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
    f = next(f for f in dataclasses.fields(s.JobSpec) if f.name == name)
    hint = s.field_types()[name]
    if name in _ITEM_SCHEMAS:
        schema = {"type": "array", "items": _ITEM_SCHEMAS[name]()}
    else:
        schema = _type_schema(hint, name)
    if name in s.FIELD_DOCS:
        schema["description"] = s.FIELD_DOCS[name]
    if name in s.CHOICES:
        schema["enum"] = list(s.CHOICES[name])
    if name in s.INT_RANGES:  # a list of integers: each item's range
        ranged = schema["items"] if schema["type"] == "array" else schema
        ranged["minimum"], ranged["maximum"] = s.INT_RANGES[name]
    if name in s.NUMBER_EXCLUSIVE_MINIMUMS:
        schema["minimum"] = _exact(s.NUMBER_EXCLUSIVE_MINIMUMS[name])
        schema["exclusiveMinimum"] = True
    if name in s.TEXT_RULES:
        schema.update(_text_constraints(s.TEXT_RULES[name]))
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
        "items": {"type": "string", "enum": list(THEN_STAGES)},
        "x-kubernetes-list-type": "set",
        "default": [],
    }


def spec_fields() -> tuple[str, ...]:
    """The VitJob spec keys: every JobSpec field but name and namespace, in the dataclass's order."""
    return tuple(f.name for f in dataclasses.fields(s.JobSpec) if f.name not in s.METADATA_KEYS)


def spec_schema() -> dict[str, Any]:
    """The VitJob ``spec``: structural OpenAPI v3 (every node typed, no $ref, nullable, no anyOf)."""
    properties = {name: field_schema(name) for name in spec_fields()}
    properties["then"] = then_schema()
    required = [f.name for f in dataclasses.fields(s.JobSpec)
                if f.name not in s.METADATA_KEYS and _default(f) is dataclasses.MISSING]
    return {
        "type": "object",
        "description": "The run: the keys of a values file (`vitjob render -f`), without name and namespace "
        "(the VitJob's metadata), plus `then`.",
        "required": required,
        "properties": properties,
    }


def _time() -> dict[str, Any]:
    return {"type": "string", "format": "date-time", "nullable": True}


def status_schema() -> dict[str, Any]:
    """The VitJob ``status``, written by the controller and the CLI through the status subresource."""
    from vitjob.jobstatus import PipelinePhase, StageState

    stage = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "description": "The stage (train, eval, export, infer310)."},
            "job": {"type": "string", "description": "Its Volcano Job (<name>-<stage>)."},
            "state": {"type": "string", "enum": [m.value for m in StageState],
                      "description": "What the run recorded: the job was Created, Completed or Failed."},
            "phase": {"type": "string", "description": "The Volcano Job's phase."},
            "reason": {"type": "string"},
            "startTime": _time(),
            "completionTime": _time(),
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
            "stage": {"type": "string", "description": "The current stage."},
            "reason": {"type": "string"},
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
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


def _controller_schema() -> dict[str, Any]:
    """``controller``: ``enabled`` plus the options of ``vitjob controller --render``
    (``vitjob.render.build_controller_context``, its defaults included), but the namespace."""
    from vitjob.render import build_controller_context

    hints = typing.get_type_hints(build_controller_context)
    properties: dict[str, Any] = {
        "enabled": {"type": "boolean", "default": True,
                    "description": "Install the vitjob controller (Deployment, ServiceAccount, RBAC)."},
    }
    for name, param in inspect.signature(build_controller_context).parameters.items():
        if name == "namespace":
            continue  # the release namespace
        properties[name] = {**_type_schema(hints[name], f"controller.{name}"), "default": param.default}
    properties["image_pull_policy"]["enum"] = list(s.CHOICES["image_pull_policy"])
    properties["replicas"]["minimum"] = 0
    properties["health_port"].update(minimum=1, maximum=c.MAX_PORT)
    return {"type": "object", "properties": properties}


def values_schema() -> dict[str, Any]:
    """``charts/vitjob/values.schema.json``: the spec keys, ``name``, ``then``, ``controller``, ``tests``.

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
        "description": s.FIELD_DOCS["name"] + " Empty: the release name.",
        "maxLength": c.MAX_NAME_LENGTH,
        "pattern": _pattern(dataclasses.replace(s.NAME_RULE, empty_ok=True)),
        "default": "",
    }
    properties = {
        "name": name,
        **spec["properties"],
        "controller": _controller_schema(),
        "tests": {"type": "object", "properties": {
            "image": {"type": "string", "default": "",
                      "description": "Image of the `helm test` pod; empty: the vitjob cpu image."}}},
    }
    out = _draft7({"type": "object", "properties": properties})
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "vitjob chart values: the VitJob spec (generated by vitjob.schema from vitjob.spec)",
        "description": f"Do not edit: {REGENERATE_COMMAND}. Rules across fields are checked by the "
        "controller (the VitJob's status says what to fix).",
        **out,
    }


# --- the committed files ---------------------------------------------------------------------


def nullable_spec_keys() -> list[str]:
    """Spec keys whose value may be null (``X | None`` fields)."""
    return [key for key, prop in spec_schema()["properties"].items() if prop.get("nullable")]


def nullable_template() -> str:
    """``templates/_nullable.tpl``: Helm deletes a key set to null, and templates/vitjob.yaml gives
    these keys back as null."""
    keys = json.dumps(nullable_spec_keys())
    return (
        f"{{{{- /* Generated by vitjob.schema from the spec model: do not edit; {REGENERATE_COMMAND}.\n"
        "The spec keys that may be null (templates/vitjob.yaml). */ -}}\n"
        f'{{{{- define "vitjob.nullableKeys" -}}}}{keys}{{{{- end -}}}}\n'
    )


# --- the VitJob custom resource definition -----------------------------------------------------
CRD_TEMPLATE = "vitjob-crd.yaml.j2"


def build_crd_context() -> dict[str, Any]:
    """Values of the CRD template (``manifests/vitjob-crd.yaml.j2``)."""
    return {
        "crd_name": c.VITJOB_CRD_NAME,
        "labels": {c.LABEL_NAME: c.APP_NAME, c.LABEL_MANAGED_BY: c.APP_NAME},
        "group": c.VITJOB_GROUP,
        "version": c.VITJOB_VERSION,
        "kind": c.VITJOB_KIND,
        "list_kind": c.VITJOB_KIND + "List",
        "plural": c.VITJOB_PLURAL,
        "singular": c.VITJOB_SINGULAR,
        "short_names": list(c.VITJOB_SHORT_NAMES),
        "printer_columns": list(PRINTER_COLUMNS),
        "schema": crd_schema(),
    }


def render_crd() -> str:
    """The VitJob CRD as YAML (``---`` first): ``charts/vitjob/crds/vitjob.io_vitjobs.yaml``."""
    from vitjob.render import render_templates

    return "".join(f"---\n{d}" for d in render_templates((CRD_TEMPLATE,), build_crd_context()))


# What the chart fills in of the controller's objects (charts/vitjob/templates/controller/objects.yaml).
NAMESPACE_PLACEHOLDER = "@RELEASE_NAMESPACE@"


def controller_objects_template() -> str:
    """``templates/_controller_objects.tpl``: the controller's objects as ``vitjob controller --render``
    renders them (manifests/controller-*.yaml.j2), for the namespace-scoped and the cluster-scoped
    install, with ``@RELEASE_NAMESPACE@`` where the release namespace goes. The chart fills in only what
    its values choose: the namespace, image, pull policy, replicas, health port and command. A second
    define, ``vitjob.clientPodSecurity``, holds the pod and container security contexts of the chart's
    other pod, the ``helm test`` pod (``vitjob.render.client_*_security_context``, the controller's)."""
    from vitjob.render import (
        client_container_security_context,
        client_pod_security_context,
        parse_document,
        render_controller_documents,
    )

    variants = {
        scope: [
            parse_document(d)
            for d in render_controller_documents(namespace=NAMESPACE_PLACEHOLDER, all_namespaces=cluster)
        ]
        for scope, cluster in (("namespaced", False), ("cluster", True))
    }
    objects = json.dumps(variants, ensure_ascii=True, sort_keys=True)
    security = {"pod": client_pod_security_context(), "container": client_container_security_context()}
    security_json = json.dumps(security, ensure_ascii=True, sort_keys=True)
    return (
        f"{{{{- /* Generated by vitjob.schema from manifests/controller-*.yaml.j2: do not edit; "
        f"{REGENERATE_COMMAND}.\nThe controller's objects (templates/controller/objects.yaml) and the "
        f"security contexts of the helm test pod (templates/tests/pipeline-status.yaml). */ -}}}}\n"
        f'{{{{- define "vitjob.controllerObjects" -}}}}{objects}{{{{- end -}}}}\n'
        f'{{{{- define "vitjob.clientPodSecurity" -}}}}{security_json}{{{{- end -}}}}\n'
    )


def generated_files() -> dict[Path, str]:
    """Each committed generated file (relative to the repository root) and its expected text."""
    return {
        CRD_FILE: render_crd(),
        VALUES_SCHEMA_FILE: json.dumps(values_schema(), indent=2, ensure_ascii=True) + "\n",
        NULLABLE_TEMPLATE_FILE: nullable_template(),
        CONTROLLER_OBJECTS_FILE: controller_objects_template(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitjob.schema", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write the generated files")
    mode.add_argument("--check", action="store_true", help="exit 1 if a committed file differs")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    stale = []
    for rel, text in generated_files().items():
        path = args.root / rel
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(rel)
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {rel}")
    if args.check and stale:
        print(f"stale: {', '.join(map(str, stale))}; run {REGENERATE_COMMAND}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
