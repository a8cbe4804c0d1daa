"""Validation: golden outputs against the real Volcano CRD and kubernetes-validate strict (1.30, 1.37);
unknown fields, wrong types and enum violations reported with their field paths; schema loading."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from vitjob.api.checks import supported_k8s_versions
from vitjob.api.spec import JobSpec
from vitjob.render.manifests import render_objects
from vitjob.render.validate import (
    ValidationError,
    ValidationInputError,
    format_path,
    load_crds,
    schema_version,
    strictify,
    validate_objects,
)

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
CRDS = REPO.parent / "shared" / "crds"
JOB_CRD = CRDS / "batch.volcano.sh_jobs.yaml"
VERSIONS = ("1.30", "1.37")

pytestmark = pytest.mark.skipif(
    not JOB_CRD.is_file(), reason=f"Volcano CRD not found at {JOB_CRD} (../shared/crds next to the repo)"
)


def golden_objects(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def ascend_job() -> dict[str, Any]:
    return render_objects(JobSpec(name="vit", hw="ascend", cards=16))[-1]


def problems(objects: list[dict[str, Any]], crd: Any = JOB_CRD, version: str = "1.30") -> list[str]:
    with pytest.raises(ValidationError) as info:
        validate_objects(objects, crd_source=crd, k8s_version=version)
    return info.value.problems


def test_both_requested_kubernetes_versions_are_shipped_by_kubernetes_validate():
    assert {"1.30", "1.37"} <= set(supported_k8s_versions())


def test_the_golden_files_cover_the_matrix():
    assert len(list(GOLDEN.glob("*.yaml"))) == 4 * 8 + 1


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.yaml")), ids=lambda p: p.stem)
def test_golden_outputs_are_valid(path, version):
    objects = golden_objects(path)
    assert objects and objects[-1]["kind"] == "Job"
    validate_objects(objects, crd_source=CRDS, k8s_version=version)


def test_unknown_fields_are_reported_with_their_path():
    job = ascend_job()
    job["spec"]["minAvaliable"] = 2
    job["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["imagePulPolicy"] = "Always"
    job["spec"]["tasks"][0]["template"]["metadata"]["lables"] = {}
    assert problems([job]) == [
        "Job default/vit-train: spec.minAvaliable: unknown field (the API server would drop it silently or "
        "reject it)",
        "Job default/vit-train: spec.tasks[0].template.metadata.lables: unknown field (the API server would "
        "drop it silently or reject it)",
        "Job default/vit-train: spec.tasks[0].template.spec.containers[0].imagePulPolicy: unknown field (the "
        "API server would drop it silently or reject it)",
    ]


def test_every_problem_is_reported_at_once():
    job = ascend_job()
    job["spec"]["tasks"][0]["replicas"] = "2"
    job["spec"]["policies"][0]["event"] = "PodExploded"
    job["spec"]["tasks"][0]["name"] = "Worker_1"
    job["spec"]["minAvailable"] = -1
    del job["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["name"]
    found = problems([job])
    paths = [p.split(": ")[1] for p in found]
    assert paths == [
        "spec.minAvailable",
        "spec.policies[0].event",
        "spec.tasks[0].name",
        "spec.tasks[0].replicas",
        "spec.tasks[0].template.spec.containers[0]",
    ]
    assert "'PodExploded' is not one of" in found[1]
    assert "'name' is a required property" in found[4]


def test_pod_template_is_checked_against_the_kubernetes_version():
    job = ascend_job()
    container = job["spec"]["tasks"][0]["template"]["spec"]["containers"][0]
    container["resources"]["limits"]["cpu"] = [1]
    found = problems([job], crd=None)
    assert any("spec.tasks[0].template.spec.containers[0].resources.limits.cpu" in p for p in found)


def test_without_a_crd_metadata_and_pod_templates_are_still_checked(caplog):
    job = ascend_job()
    job["metadata"]["labelz"] = {}
    job["spec"]["tasks"][0]["template"]["spec"]["nodeSelectr"] = {}
    job["spec"]["unknownSpecField"] = 1  # only the CRD would see this one
    with caplog.at_level(logging.WARNING):
        found = problems([job], crd=None)
    assert [p.split(": ")[1] for p in found] == ["metadata.labelz", "spec.tasks[0].template.spec.nodeSelectr"]
    assert "not checked against its CRD" in caplog.text


def test_core_objects_use_kubernetes_validate_strict():
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "ml"},
                  "data": {"a": "b"}}
    validate_objects([config_map], crd_source=JOB_CRD)
    bad = copy.deepcopy(config_map)
    bad["dataa"] = {}
    assert problems([bad]) == [
        "ConfigMap ml/x: dataa: unknown field (the API server would drop it silently or reject it)"
    ]


def test_a_group_that_only_looks_like_a_core_group_is_not_checked_as_one():
    # kubernetes-validate strips the domain: batch.volcano.sh/v1 must not be checked as batch/v1 Job.
    job = ascend_job()
    job["apiVersion"] = "batch.volcano.sh/v1"
    (found,) = problems([job])
    assert "no schema for batch.volcano.sh/v1 Job: it is neither a Kubernetes 1.30 kind" in found


def test_unknown_kinds_are_errors_not_warnings():
    (found,) = problems([{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}])
    assert found.startswith("Widget w: no schema for example.com/v1 Widget")


def test_crds_can_come_from_objects_read_from_the_cluster():
    crd_objects = list(yaml.safe_load_all(JOB_CRD.read_text(encoding="utf-8")))
    crds = load_crds([d for d in crd_objects if d])
    validate_objects([ascend_job()], crd_source=crds)
    job = ascend_job()
    job["spec"]["queue"] = "Not A Queue"
    assert "spec.queue" in problems([job], crd=crds)[0]


@pytest.mark.parametrize("source", ["/nonexistent/crds", "missing.yaml"])
def test_missing_crd_source_is_a_usage_error(source):
    with pytest.raises(ValidationInputError, match="not found") as info:
        validate_objects([ascend_job()], crd_source=source)
    assert info.value.exit_code == 2


def test_a_directory_without_crds_is_a_usage_error(tmp_path):
    (tmp_path / "x.yaml").write_text("kind: ConfigMap\n")
    with pytest.raises(ValidationInputError, match="contains no CustomResourceDefinition"):
        load_crds(tmp_path)


def test_kubernetes_versions():
    assert schema_version("1.30") == schema_version("v1.30.4") == "1.30"
    with pytest.raises(ValidationInputError, match=r"schemas for 1\.25 to 1\.37"):
        schema_version("1.24")


def test_strictify_closes_objects_keeps_open_ones_and_honours_nullable():
    schema = strictify({
        "type": "object",
        "properties": {
            "a": {"type": "string", "nullable": True},
            "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {}},
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    })
    assert schema["additionalProperties"] is False
    assert schema["properties"]["a"]["type"] == ["string", "null"]
    assert "additionalProperties" not in schema["properties"]["open"]
    assert schema["properties"]["map"]["additionalProperties"] == {"type": "string"}


def test_format_path():
    assert format_path(("spec", "tasks", 0, "replicas")) == "spec.tasks[0].replicas"
    assert format_path(()) == "(object)"
