"""The VitJob CRD and the chart's values.schema.json (vitjob.api.schema) against independent facts.

- The committed files are what ``python -m vitjob.api.schema --write`` generates (no drift).
- The CRD is a valid apiextensions.k8s.io/v1 object (kubernetes-validate, strict) and its schema
  follows the structural-schema rules of the Kubernetes documentation ("Specifying a structural
  schema", "Defaulting and Nullable", list types), checked here node by node. The real API server
  accepting it is the e2e tier's (tests/e2e).
- Every spec the spec model accepts (the README's examples, the render tests' option set, values files)
  passes both schemas, and values the spec refuses for one field alone are refused by both schemas too.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from test_render import OPTIONS as RENDER_OPTIONS

from vitjob import constants as c
from vitjob import generate
from vitjob.api.checks import supported_k8s_versions
from vitjob.api.spec import JobSpec
from vitjob.api.values import load_spec
from vitjob.errors import RenderError, SpecError
from vitjob.generate import render_crd
from vitjob.render.manifests import template_environment

REPO = Path(__file__).resolve().parents[1]


# --- drift --------------------------------------------------------------------------------------
@pytest.mark.parametrize("rel", list(generate.generated_files()), ids=str)
def test_committed_files_are_the_generated_ones(rel: Path) -> None:
    path = REPO / rel
    assert path.exists(), f"{rel} is missing: run {generate.GENERATE_COMMAND}"
    assert path.read_text(encoding="utf-8") == generate.generated_files()[rel], (
        f"{rel} differs from what vitjob.api.schema generates from the spec model: run "
        f"{generate.GENERATE_COMMAND} and commit the result"
    )


def test_check_mode_reports_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert generate.main(["--write", "--root", str(tmp_path)]) == 0
    assert generate.main(["--check", "--root", str(tmp_path)]) == 0
    (tmp_path / generate.VALUES_SCHEMA_FILE).write_text("{}\n", encoding="utf-8")
    assert generate.main(["--check", "--root", str(tmp_path)]) == 1
    assert generate.GENERATE_COMMAND in capsys.readouterr().err


# --- the CRD ------------------------------------------------------------------------------------
def crd() -> dict[str, Any]:
    return yaml.safe_load(render_crd())


def version_of(obj: dict[str, Any]) -> dict[str, Any]:
    (version,) = obj["spec"]["versions"]
    return version


def test_crd_names_and_version_are_the_design_note_s() -> None:
    obj = crd()
    assert obj["apiVersion"] == "apiextensions.k8s.io/v1" and obj["kind"] == "CustomResourceDefinition"
    assert obj["metadata"]["name"] == "vitjobs.vitjob.io"
    assert obj["spec"]["group"] == "vitjob.io" and obj["spec"]["scope"] == "Namespaced"
    assert obj["spec"]["names"] == {
        "kind": "VitJob", "listKind": "VitJobList", "plural": "vitjobs", "singular": "vitjob",
        "shortNames": ["vit"],
    }
    version = version_of(obj)
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = {col["name"]: (col["type"], col["jsonPath"]) for col in version["additionalPrinterColumns"]}
    assert columns == {
        "Stage": ("string", ".status.stage"),
        "Phase": ("string", ".status.phase"),
        "Cards": ("integer", ".spec.cards"),
        "Hardware": ("string", ".spec.hw"),
        "Progress": ("number", ".status.progress.percent"),
        "ETA": ("string", ".status.progress.eta"),
        "Age": ("date", ".metadata.creationTimestamp"),
    }


@pytest.mark.parametrize("k8s", [c.DEFAULT_K8S_VERSION, supported_k8s_versions()[-1]])
def test_crd_is_a_valid_custom_resource_definition(k8s: str) -> None:
    kubernetes_validate.validate(crd(), k8s, strict=True)  # raises on any error or unknown field


def test_kubernetes_validate_would_catch_a_broken_crd() -> None:
    """Control: the validator is not vacuous for schema nodes."""
    bad = crd()
    version_of(bad)["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["cards"]["minimun"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, c.DEFAULT_K8S_VERSION, strict=True)


FORBIDDEN = {"$ref", "definitions", "$defs", "anyOf", "oneOf", "allOf", "not", "uniqueItems", "title"}


def structural_problems(node: dict[str, Any], where: str = "") -> list[str]:
    """The structural-schema rules (Kubernetes docs), for the schema features vitjob uses."""
    problems = []
    if "type" not in node and not node.get("x-kubernetes-int-or-string"):
        problems.append(f"{where}: no type")
    problems += [f"{where}: {key} is not allowed" for key in FORBIDDEN & set(node)]
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{where}: properties and additionalProperties together")
    if node.get("type") == "array" and "items" not in node:
        problems.append(f"{where}: array without items")
    if node.get("x-kubernetes-list-type") == "map":
        item = node["items"]
        for key in node["x-kubernetes-list-map-keys"]:
            if key not in item.get("required", []):
                problems.append(f"{where}: list-map key {key} is not required in the items")
    if node.get("x-kubernetes-list-type") == "set" and node["items"].get("type") in ("object", "array"):
        problems.append(f"{where}: a set of non-scalars")
    for name, child in node.get("properties", {}).items():
        problems += structural_problems(child, f"{where}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            problems += structural_problems(node[key], f"{where}[{key}]")
    for name in node.get("required", []):
        if name not in node.get("properties", {}):
            problems.append(f"{where}: required {name} is not a property")
    return problems


def test_crd_schema_is_structural() -> None:
    assert structural_problems(version_of(crd())["schema"]["openAPIV3Schema"]) == []


def test_structural_check_catches_an_untyped_node_and_an_anyof() -> None:
    """Control for the rule checker."""
    bad = {"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}]}, "b": {"type": "string"}}}
    assert len(structural_problems(bad)) == 2


def as_json_schema(node: Any) -> Any:
    """OpenAPI v3.0 (Kubernetes) → JSON Schema, for jsonschema: nullable adds the null type, a boolean
    exclusiveMinimum becomes the number, x-kubernetes-list-type set means unique items."""
    if isinstance(node, list):
        return [as_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: as_json_schema(v) for k, v in node.items() if k not in ("nullable", "format")}
    if node.get("nullable"):
        out["type"] = [node["type"], "null"]
    if node.get("exclusiveMinimum") is True:
        out["exclusiveMinimum"] = out.pop("minimum")
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    return out


def crd_spec_validator() -> jsonschema.Draft7Validator:
    spec = version_of(crd())["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return jsonschema.Draft7Validator(as_json_schema(spec))


def values_validator() -> jsonschema.Draft7Validator:
    import json

    text = (REPO / generate.VALUES_SCHEMA_FILE).read_text(encoding="utf-8")
    return jsonschema.Draft7Validator(json.loads(text))


def walk(node: dict[str, Any], where: str = ""):
    yield where, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{where}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from walk(node[key], f"{where}[{key}]")


def test_every_default_in_the_crd_is_valid_for_its_node() -> None:
    """The API server refuses a CRD whose defaults do not validate (and prunes unknown fields)."""
    root = version_of(crd())["schema"]["openAPIV3Schema"]
    defaults = [(where, node) for where, node in walk(root) if "default" in node]
    assert len(defaults) > 20
    for where, node in defaults:
        errors = list(jsonschema.Draft7Validator(as_json_schema(node)).iter_errors(node["default"]))
        assert not errors, f"{where}: {errors[0].message}"


def test_spec_has_every_jobspec_field_but_name_and_namespace_plus_then() -> None:
    properties = version_of(crd())["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    fields = [f.name for f in dataclasses.fields(JobSpec)]
    # attempt is set by a pipeline per stage attempt, never stored; the run keys are the pipeline's
    assert set(properties) == set(fields) - {"name", "namespace", "attempt"} | {
        "then", "gates", "retry", "stage_retries", "stage_retry_backoff_s", "suspend",
    }
    nullable = {key for key, prop in properties.items() if prop.get("nullable")}
    assert nullable == {"epochs", "batch_size", "lr", "ttl_seconds_after_finished", "cards_per_pod",
                        "run_as_user", "run_as_group", "fs_group", "stage_retry_backoff_s"}
    assert properties["then"]["items"]["enum"] == ["eval", "export", "infer310"]
    assert properties["node_selector"]["additionalProperties"] == {"type": "string", "nullable": True}
    assert set(properties["tolerations"]["items"]["properties"]) == {
        "key", "operator", "value", "effect", "tolerationSeconds",
    }


def test_status_has_phase_stages_and_conditions() -> None:
    status = version_of(crd())["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["phase"]["enum"] == ["Pending", "Running", "Completed", "Failed", "Suspended"]
    assert set(status) == {
        "phase", "stage", "reason", "observedGeneration", "retries", "stages", "conditions", "progress",
    }
    stage = status["stages"]["items"]["properties"]
    attempt = {"attempt", "job", "state", "phase", "reason", "startTime", "completionTime", "outputs"}
    assert set(stage) == attempt | {"name", "autoRetries", "earlierAttempts"}
    assert set(stage["earlierAttempts"]["items"]["properties"]) == attempt
    assert stage["state"]["enum"] == ["Created", "Completed", "Failed"]
    assert stage["startTime"]["format"] == "date-time"
    condition = status["conditions"]["items"]["properties"]
    assert set(condition) == {
        "type", "status", "reason", "message", "lastTransitionTime", "observedGeneration",
    }
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]


def test_a_status_as_a_controller_writes_it_validates() -> None:
    status = version_of(crd())["schema"]["openAPIV3Schema"]["properties"]["status"]
    written = {
        "phase": "Running",
        "stage": "eval",
        "reason": "",
        "observedGeneration": 1,
        "stages": [
            {"name": "train", "job": "vit-train", "state": "Completed", "phase": "Completed", "reason": "",
             "startTime": "2025-01-01T00:00:00Z", "completionTime": "2025-01-01T01:00:00Z"},
            {"name": "eval", "job": "vit-eval", "state": "Created", "phase": "Pending", "startTime": None},
        ],
        "conditions": [{"type": "Ready", "status": "False", "reason": "Running", "message": "eval runs",
                        "lastTransitionTime": "2025-01-01T01:00:00Z", "observedGeneration": 1}],
    }
    jsonschema.Draft7Validator(as_json_schema(status)).validate(written)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(as_json_schema(status)).validate({**written, "phase": "Done"})


# --- what the spec accepts, the schemas accept ---------------------------------------------------
# The README's examples (`vitjob render/submit` flags) and the render tests' option set.
README_SPECS = [
    {"hw": "ascend", "cards": 16, "name": "vit"},
    {"hw": "ascend", "cards": 8, "name": "vit"},
    {"hw": "cpu", "cards": 2, "name": "demo", "cards_per_pod": 1},
]
OPTIONS = RENDER_OPTIONS  # the spec with every optional key set that tests/test_render.py renders
EDGES = [
    {"name": "g", "hw": "gpu", "cards": 16, "gpus_per_pod": 4, "image": "registry.example.com:5000/ml/x:dev",
     "cpu": "24", "memory": "200Gi", "image_pull_policy": "Always", "output_pvc": "results.fast"},
    {"name": "c", "hw": "cpu", "cards": 4, "cards_per_pod": 2, "pipeline": "shared",
     "ttl_seconds_after_finished": None, "max_retry": 1, "lr": 1e-05, "sched_port": 1024, "rdzv_port": 65535,
     "cpu": "500m"},
    {"name": "e", "hw": "ascend", "cards": 8, "stage": "infer310", "ttl_seconds_after_finished": 0,
     "node_selector": {"accelerator": None},
     "tolerations": [{"operator": "Exists"}, {"key": "a", "effect": ""}],
     "gpus_per_pod": 64, "preset": "vit-tiny", "k8s_version": "v1.30.2", "queue": "", "epochs": 1,
     "batch_size": 2147483647},
]
VALUES_FILES = [
    "hw: gpu\ncards: 8\nqueue: from-file\nenv: {A: '1'}\n",  # tests/test_render.py's values file
    "hw: cpu\nlr: 1e-4\nepochs: 2\n",  # YAML 1.1 reads 1e-4 as a string; the spec reads it as a number
    "hw: ascend\ncards: 16\ntolerations:\n"
    "  - {key: huawei.com/Ascend910, operator: Exists, effect: NoSchedule}\n"
    "labels: {team: vision}\nextra_args: ['--save-every', '100']\n",
]


def spec_dict(spec: JobSpec) -> dict[str, Any]:
    """The VitJob spec of a JobSpec: every field but name and namespace."""
    out = dataclasses.asdict(spec)
    del out["name"], out["namespace"], out["attempt"]
    return out


def accepted_specs(tmp_path: Path) -> list[JobSpec]:
    specs = [JobSpec(**kwargs) for kwargs in (*README_SPECS, OPTIONS, *EDGES)]
    for i, text in enumerate(VALUES_FILES):
        path = tmp_path / f"values-{i}.yaml"
        path.write_text(text, encoding="utf-8")
        specs.append(load_spec({"name": "vit"}, path))
    specs.append(load_spec({"name": "vit", "hw": "cpu"}, None, ["lr=3e-4", "env.FOO=bar", "cards=2"]))
    return specs


def test_every_spec_the_model_accepts_passes_both_schemas(tmp_path: Path) -> None:
    crd_validator, values = crd_spec_validator(), values_validator()
    for spec in accepted_specs(tmp_path):
        doc = spec_dict(spec)
        later = list(c.STAGES[c.STAGES.index(spec.stage) + 1:])  # a then the stage order allows
        for then in ([], later):
            errors = list(crd_validator.iter_errors({**doc, "then": then}))
            assert not errors, f"CRD refuses {spec}: {errors[0].message}"
            errors = list(values.iter_errors({**doc, "then": then, "name": spec.name}))
            assert not errors, f"values.schema.json refuses {spec}: {errors[0].message}"


def test_the_chart_defaults_pass_and_hw_is_required_only_by_the_crd() -> None:
    values = yaml.safe_load((REPO / generate.CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    values_validator().validate(values)
    crd_validator = crd_spec_validator()
    crd_validator.validate({"hw": "cpu"})
    assert [e.validator for e in crd_validator.iter_errors({})] == ["required"]
    values_validator().validate({})


# One field the spec refuses on its own (base: a valid cpu spec); each schema refuses it too.
REFUSED = [
    ("hw", "tpu"),
    ("hw", ""),
    ("stage", "deploy"),
    ("image_pull_policy", "Sometimes"),
    ("cards", 0),
    ("cards", 2**31),
    ("max_retry", 0),
    ("ttl_seconds_after_finished", -1),
    ("epochs", 0),
    ("batch_size", -3),
    ("gpus_per_pod", 65),
    ("lr", 0.0),
    ("lr", -1.0),
    ("sched_port", 80),
    ("rdzv_port", 65536),
    ("preset", "Vit B16"),
    ("preset", ""),
    ("pipeline", "Not_A_Label"),
    ("data_pvc", ""),
    ("output_pvc", "UPPER"),
    ("queue", "a queue"),
    ("cpu", "lots"),
    ("memory", "1 Gi"),
    ("cards", "8"),
    ("env", {"A": 1}),
    ("node_selector", ["a"]),
    ("tolerations", [{"operator": "Sometimes"}]),
    ("tolerations", [{"effect": "NoRun"}]),
    ("tolerations", [{"tolerationSeconds": "60"}]),
    ("extra_args", [1]),
]


@pytest.mark.parametrize(("key", "value"), REFUSED, ids=[f"{k}={v!r}" for k, v in REFUSED])
def test_values_the_spec_refuses_are_refused_by_both_schemas(key: str, value: Any) -> None:
    base = {"name": "vit", "hw": "cpu", "cards": 2}
    with pytest.raises(SpecError):
        JobSpec(**{**base, key: value})
    doc = spec_dict(JobSpec(**base))
    bad = {**doc, key: value}
    assert list(crd_spec_validator().iter_errors(bad)), f"the CRD accepts {key}={value!r}"
    assert list(values_validator().iter_errors(bad)), f"values.schema.json accepts {key}={value!r}"


def test_then_accepts_later_stages_once_each() -> None:
    for validator in (crd_spec_validator(), values_validator()):
        assert list(validator.iter_errors({"hw": "cpu", "then": ["train"]}))
        assert list(validator.iter_errors({"hw": "cpu", "then": ["eval", "eval"]}))
        assert not list(validator.iter_errors({"hw": "cpu", "then": ["export"]}))


def test_values_schema_refuses_unknown_keys_and_metadata_keys() -> None:
    validator = values_validator()
    for bad in ({"cardz": 8}, {"namespace": "ml"}, {"controller": {"enabeld": True}},
                {"tolerations": [{"keyy": "a"}]}, {"name": "9vit"}, {"lr": "fast"}):
        assert list(validator.iter_errors(bad)), bad
    validator.validate({"lr": "3e-4", "name": "vit", "controller": {"enabled": False, "replicas": 1}})


def test_controller_values_are_the_render_options_and_their_defaults() -> None:
    import inspect

    from vitjob.render.manifests import build_controller_context

    controller = values_validator().schema["properties"]["controller"]["properties"]
    params = inspect.signature(build_controller_context).parameters
    assert set(controller) == {"enabled", "service_monitor"} | set(params) - {"namespace"}
    for name in set(params) - {"namespace"}:
        assert controller[name]["default"] == params[name].default


# --- the block filter that places the schema ------------------------------------------------------
def test_block_filter_round_trips_and_quotes_every_string() -> None:
    data = {"a": ["x", {"b": 1, "c": True, "d": None, "e": [], "f": {}}], "on": "y",
            "k:v": "line\nbreak \"q\""}
    text = template_environment().from_string("root:\n{{ data | block(2) }}\n").render(data=data)
    assert yaml.safe_load(text) == {"root": data}
    assert '"on": "y"' in text and '"k:v": "line\\u000abreak \\"q\\""' in text


def test_block_filter_writes_floats_that_read_back_as_floats() -> None:
    data = {"lr": 1e-05, "half": 0.5, "big": 3e20}
    text = template_environment().from_string("{{ data | block(0) }}\n").render(data=data)
    assert yaml.safe_load(text) == data  # PyYAML (YAML 1.1) reads a bare 1e-05 as a string
    assert "lr: 1.0e-05" in text


@pytest.mark.parametrize("bad", [{"a": float("nan")}, {1: "a"}, {}, "text"])
def test_block_filter_refuses_what_it_cannot_write_exactly(bad: Any) -> None:
    with pytest.raises(RenderError):
        template_environment().from_string("{{ data | block(0) }}").render(data=copy.deepcopy(bad))


def test_short_names_and_plural_are_not_taken_by_the_crds_installed_beside_vitjob() -> None:
    """`kubectl get <short name>` must reach VitJobs: Volcano's Job CRD already claims `vj`."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "crds"
    taken: dict[str, str] = {}
    for path in sorted(shared.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                names = doc["spec"]["names"]
                for name in [*names.get("shortNames", []), names["plural"], names.get("singular", "")]:
                    taken[name] = doc["metadata"]["name"]
    assert "vj" in taken, "the fact this test guards against: Volcano's Job CRD has the short name vj"
    names = crd()["spec"]["names"]
    for name in [*names["shortNames"], names["plural"], names["singular"]]:
        assert name not in taken, f"{name!r} is already {taken[name]}'s"
