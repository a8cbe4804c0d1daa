"""Client-side validation of rendered objects, before anything is printed or submitted.

This module owns two checks and the loading/caching of their schemas:

* Custom resources (the Volcano Job) against their CRD's ``openAPIV3Schema``, made strict: every
  object schema that lists ``properties`` rejects other keys, so a field the API server would
  silently prune is reported as an unknown field. The CRD comes from a file, a directory or CRD
  objects read from the cluster (``load_crds``).
* Pod templates embedded in those resources, their ``metadata``, and core objects (ConfigMap…)
  with the schemas of ``kubernetes-validate`` in strict mode for a chosen Kubernetes version.

Every problem is collected and raised once as a ``ValidationError`` (a ``RenderError``), one line per
problem with the object and the field path, e.g. ``spec.tasks[0].replicas``.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import yaml

from vitjob import constants as c
from vitjob.api.checks import (
    KUBERNETES_VALIDATE_PACKAGE,
    KUBERNETES_VALIDATE_SCHEMA_DIR,
    supported_k8s_versions,
)
from vitjob.errors import RenderError

log = logging.getLogger(__name__)

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_CRD_KIND = "CustomResourceDefinition"
_K8S_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?$")


class ValidationError(RenderError):
    """Rendered objects failed validation; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        super().__init__(
            f"rendered objects failed validation ({count}); nothing was printed or submitted:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


class ValidationInputError(RenderError):
    """The CRD source or Kubernetes version given for validation cannot be used (usage error: exit 2)."""

    exit_code = 2


@dataclass(frozen=True)
class CrdSet:
    """Strict JSON-schema validators of custom resources, keyed by (apiVersion, kind)."""

    source: str
    validators: Mapping[tuple[str, str], jsonschema.protocols.Validator] = field(default_factory=dict)

    def validator_for(self, api_version: str, kind: str) -> jsonschema.protocols.Validator | None:
        return self.validators.get((api_version, kind))


CrdSource = str | Path | CrdSet | Iterable[Mapping[str, Any]]


# --- entry point ------------------------------------------------------------------------------


def validate_objects(
    objects: Iterable[Mapping[str, Any]],
    crd_source: CrdSource | None = None,
    k8s_version: str = c.DEFAULT_K8S_VERSION,
) -> None:
    """Check every object; raise ``ValidationError`` listing every problem with its field path.

    Args:
        objects: parsed objects (``vitjob.render.manifests.render_objects``).
        crd_source: a CRD file or directory, CRD objects from the cluster, or a ``CrdSet``. With
            None, custom resources are checked only for their metadata and pod templates (a
            warning is logged); pass the Volcano CRD for the full check.
        k8s_version: the Kubernetes version (``1.30``) whose schemas check pod templates and core
            objects.

    Raises:
        ValidationError: one or more objects are invalid.
        RenderError: the CRD source or the Kubernetes version cannot be used.
    """
    version = schema_version(k8s_version)
    crds = crd_source if isinstance(crd_source, CrdSet) or crd_source is None else load_crds(crd_source)
    problems: list[str] = []
    for obj in objects:
        problems.extend(object_problems(obj, crds, version))
    if problems:
        # The CRD and kubernetes-validate both see a pod template: report a shared finding once.
        raise ValidationError(list(dict.fromkeys(problems)))


def object_problems(obj: Mapping[str, Any], crds: CrdSet | None, version: str) -> list[str]:
    """Problems of one object, each prefixed with ``Kind namespace/name``."""
    api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    metadata = obj.get("metadata")
    meta: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else {}
    label = f"{kind or '<no kind>'} {meta.get('namespace', '')}/{meta.get('name', '<no name>')}".replace(
        " /", " "
    )
    if not api_version or not kind:
        return [f"{label}: apiVersion and kind are required"]
    core = core_validator(api_version, kind, version)
    if core is not None:
        found = schema_problems(core, obj)
    elif _is_custom(api_version, kind, crds):
        found = custom_resource_problems(obj, crds, version)
    else:
        found = [
            f"no schema for {api_version} {kind}: it is neither a Kubernetes {version} kind nor in "
            f"the CRDs given ({crds.source if crds else 'none; pass --crd FILE|DIR'})"
        ]
    return [f"{label}: {p}" for p in found]


def _is_custom(api_version: str, kind: str, crds: CrdSet | None) -> bool:
    if crds is not None and crds.validator_for(api_version, kind) is not None:
        return True
    return api_version == c.VOLCANO_API_VERSION and kind == c.VOLCANO_KIND


def custom_resource_problems(obj: Mapping[str, Any], crds: CrdSet | None, version: str) -> list[str]:
    """CRD schema (when known), plus metadata and embedded pod templates with kubernetes-validate."""
    problems: list[str] = []
    api_version, kind = obj["apiVersion"], obj["kind"]
    validator = crds.validator_for(api_version, kind) if crds is not None else None
    if validator is not None:
        problems.extend(schema_problems(validator, obj))
    elif crds is not None:
        problems.append(
            f"no CRD for {api_version} {kind} in {crds.source}; pass the CRD file (for Volcano: "
            f"kubectl get crd {c.VOLCANO_CRD_NAME} -o yaml > jobs.yaml)"
        )
    else:
        log.warning(
            "%s %s was not checked against its CRD (no --crd given): only its metadata and pod "
            "templates were validated",
            api_version,
            kind,
        )
    problems.extend(schema_problems(kv_validator(version, "objectmeta-meta-v1"), obj.get("metadata"),
                                    prefix=("metadata",)))
    for path, template in embedded_pod_templates(obj):
        problems.extend(schema_problems(kv_validator(version, "podtemplatespec-v1"), template, prefix=path))
    return problems


def embedded_pod_templates(obj: Mapping[str, Any]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """``(path, template)`` of each pod template of a Volcano Job (``spec.tasks[i].template``)."""
    spec = obj.get("spec")
    tasks = spec.get("tasks") if isinstance(spec, Mapping) else None
    if not isinstance(tasks, list):
        return
    for index, task in enumerate(tasks):
        if isinstance(task, Mapping) and "template" in task:
            yield ("spec", "tasks", index, "template"), task["template"]


# --- reporting --------------------------------------------------------------------------------


def schema_problems(
    validator: jsonschema.protocols.Validator, instance: Any, prefix: tuple[Any, ...] = ()
) -> list[str]:
    """One line per violation; unknown fields are named one by one."""
    problems = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))):
        path = prefix + tuple(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
            known = set(error.schema.get("properties", {}))
            patterns = list(error.schema.get("patternProperties", {}))
            for extra in sorted(k for k in error.instance if k not in known):
                if not any(re.search(p, extra) for p in patterns):
                    problems.append(
                        f"{format_path((*path, extra))}: unknown field (the API server would drop it "
                        "silently or reject it)"
                    )
            continue
        message = error.message
        if error.context:
            best = jsonschema.exceptions.best_match(error.context)
            if best is not None:
                message = best.message
        problems.append(f"{format_path(path)}: {message}")
    return problems


def format_path(path: Iterable[Any]) -> str:
    """``("spec", "tasks", 0, "replicas")`` -> ``spec.tasks[0].replicas``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(object)"


# --- Kubernetes versions and kubernetes-validate schemas -------------------------------------


def schema_version(k8s_version: str) -> str:
    """The schema version used for ``k8s_version`` (``1.30`` or ``v1.30.2`` -> ``1.30``)."""
    match = _K8S_VERSION.fullmatch(k8s_version)
    versions = supported_k8s_versions()
    if match:
        wanted = f"{int(match[1])}.{int(match[2])}"
        if wanted in versions:
            return wanted
    raise ValidationInputError(
        f"Kubernetes version {k8s_version!r} cannot be validated: the installed kubernetes-validate "
        f"has schemas for {versions[0]} to {versions[-1]}; pass --k8s-version with one of them"
    )


def _kv_dir(version: str) -> Any:
    schemas = resources.files(KUBERNETES_VALIDATE_PACKAGE).joinpath(KUBERNETES_VALIDATE_SCHEMA_DIR)
    return schemas.joinpath(f"v{version}.0-local-strict")


@functools.cache
def _kv_registry(version: str) -> referencing.Registry:
    definitions = json.loads(_kv_dir(version).joinpath("_definitions.json").read_text(encoding="utf-8"))
    return referencing.Resource.from_contents(definitions) @ referencing.Registry()


@functools.cache
def kv_validator(version: str, schema_name: str) -> jsonschema.protocols.Validator:
    """A strict kubernetes-validate schema (e.g. ``podtemplatespec-v1``) for ``version``."""
    schema_file = _kv_dir(version).joinpath(f"{schema_name}.json")
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    registry = referencing.Resource.from_contents(schema) @ _kv_registry(version)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def core_validator(api_version: str, kind: str, version: str) -> jsonschema.protocols.Validator | None:
    """kubernetes-validate's strict schema for a core kind, or None for kinds it does not know."""
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    name = f"{kind.lower()}-{group_version}"
    if not _kv_dir(version).joinpath(f"{name}.json").is_file():
        return None
    validator = kv_validator(version, name)
    # kubernetes-validate strips the API group's domain: batch.volcano.sh/v1 would match batch/v1.
    enum = validator.schema.get("properties", {}).get("apiVersion", {}).get("enum")
    if enum and api_version not in enum:
        return None
    return validator


# --- CRDs -------------------------------------------------------------------------------------


def load_crds(source: CrdSource) -> CrdSet:
    """Strict validators for every served version of every CRD in ``source``.

    ``source``: a YAML/JSON file or a directory of them (other kinds in them are ignored), or CRD
    objects as the API serves them (camelCase dicts: ``kubectl get crd -o json``, or
    ``ApiClient().sanitize_for_serialization(ApiextensionsV1Api().read_custom_resource_definition(
    "jobs.batch.volcano.sh"))``; a model's ``to_dict()`` has snake_case keys and will not do).
    """
    if isinstance(source, CrdSet):
        return source
    if isinstance(source, str | Path):
        return _load_crd_path(str(Path(source).resolve()), _mtime_key(Path(source)))
    return CrdSet(source="CRD objects", validators=_validators_from_documents(list(source)))


def _mtime_key(path: Path) -> tuple[float, ...]:
    if path.is_dir():
        return tuple(sorted(p.stat().st_mtime for p in _crd_files(path)))
    return (path.stat().st_mtime,) if path.exists() else ()


@functools.lru_cache(maxsize=8)
def _load_crd_path(path_text: str, _mtimes: tuple[float, ...]) -> CrdSet:
    path = Path(path_text)
    if not path.exists():
        raise ValidationInputError(
            f"CRD source {path}: not found; pass a CRD file or a directory of them to --crd"
        )
    files = _crd_files(path) if path.is_dir() else [path]
    documents: list[Any] = []
    for file in files:
        try:
            documents.extend(yaml.load_all(file.read_text(encoding="utf-8"), Loader=_YAML_LOADER))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ValidationInputError(
                f"CRD file {file}: cannot be read as YAML ({exc}); pass a CRD file to --crd"
            ) from None
    validators = _validators_from_documents(documents)
    if not validators:
        raise ValidationInputError(
            f"CRD source {path}: contains no CustomResourceDefinition with an openAPIV3Schema; pass the "
            f"Volcano CRD (kubectl get crd {c.VOLCANO_CRD_NAME} -o yaml > jobs.yaml)"
        )
    log.debug("loaded %d CRD schemas from %s", len(validators), path)
    return CrdSet(source=str(path), validators=validators)


def _crd_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml", ".json") and p.is_file())


def _validators_from_documents(
    documents: Iterable[Any],
) -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    validators = {}
    for doc in documents:
        if not isinstance(doc, Mapping) or doc.get("kind") != _CRD_KIND:
            continue
        spec = doc.get("spec", {})
        group, kind = spec.get("group", ""), spec.get("names", {}).get("kind", "")
        for version in spec.get("versions", []):
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if schema and version.get("served", True):
                strict = strictify(copy.deepcopy(schema))
                validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft4Validator(strict)
    return validators


def strictify(schema: Any) -> Any:
    """Make a CRD schema reject unknown fields and honour ``nullable`` (in place; returns it).

    ``additionalProperties: false`` is added to each object schema that lists ``properties`` and
    neither sets ``additionalProperties`` nor ``x-kubernetes-preserve-unknown-fields``.
    ``metadata`` of the root stays open: it is checked against ObjectMeta separately.
    """
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                for prop in value.values():
                    strictify(prop)
            elif isinstance(value, dict | list):
                strictify(value)
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        if schema.pop("nullable", False) and "type" in schema:
            schema["type"] = [schema["type"], "null"]
    elif isinstance(schema, list):
        for item in schema:
            strictify(item)
    return schema
