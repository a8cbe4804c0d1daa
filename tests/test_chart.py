"""The thin Helm chart charts/vitjob, with real pinned helm binaries (3 and 4).

``scripts/get-helm.sh`` (run by scripts/run-tests.sh) installs them into .tools/helm/<version>/helm;
``VITJOB_HELM=/path/to/helm`` tests another one. Without a helm binary these tests skip, except in CI
(CI=true), where they fail: there the install step must have worked.

The chart renders no job: one VitJob whose spec is the values (the controller renders its stages with
vitjob.render.manifests), the controller with its RBAC, and a test hook. What is checked, each against a fact
from outside the chart: the VitJob's spec is exactly the values given over values.yaml; the CRD in
crds/ is the generated one; the controller's objects are what ``vitjob controller --render`` prints;
Helm itself refuses bad values with values.schema.json; no template writes a Volcano Job; every pod
the chart creates passes the Pod Security Standard restricted (the documented rules,
tests/pod_security_standards.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pod_security_admission import verdicts
from pod_security_standards import RESTRICTED, pod_templates, violations
from test_schema import crd_spec_validator

from vitjob import constants as c
from vitjob.api.spec import JobSpec
from vitjob.generate import render_crd
from vitjob.images import default_image
from vitjob.pipeline.model import RUN_KEYS
from vitjob.render.manifests import (
    client_container_security_context,
    client_pod_security_context,
    parse_document,
    render_controller_documents,
)

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "vitjob"
HELM_CHART_LABEL = "helm.sh/chart"
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
CHART_ONLY_KEYS = ("name", "controller", "tests")


def _helm_binaries() -> list[Path]:
    if os.environ.get("VITJOB_HELM"):
        return [Path(os.environ["VITJOB_HELM"])]
    return sorted(p for p in (REPO / ".tools" / "helm").glob("v*/helm") if os.access(p, os.X_OK))


HELMS = _helm_binaries()


@pytest.fixture(params=HELMS or [None], ids=lambda p: p.parent.name if p else "no-helm")
def helm(request: pytest.FixtureRequest) -> Path:
    if request.param is None:
        reason = "no helm binary: run scripts/get-helm.sh (installs pinned helm 3 and 4 into .tools/helm)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return request.param


def helm_env(tmp: Path) -> dict[str, str]:
    """No kubeconfig, caches and config in a temp dir: nothing touches ~ or a cluster."""
    env = dict(os.environ, KUBECONFIG=str(tmp / "no-kubeconfig"))
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = str(tmp / var.lower())
    return env


def run_helm(helm: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, env=helm_env(tmp), timeout=120, check=False
    )


def template(helm: Path, tmp: Path, *args: str, values: dict[str, Any] | None = None,
             namespace: str = "default") -> subprocess.CompletedProcess[str]:
    extra: tuple[str, ...] = ()
    if values is not None:
        values_file = tmp / "values.json"  # JSON: no YAML 1.1 surprises
        values_file.write_text(json.dumps(values), encoding="utf-8")
        extra = ("-f", str(values_file))
    return run_helm(helm, tmp, "template", "vit", str(CHART), "-n", namespace, *extra, *args)


def objects_of(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [o for o in yaml.safe_load_all(result.stdout) if o]


def the_vitjob(objects: list[dict[str, Any]]) -> dict[str, Any]:
    vitjobs = [o for o in objects if o["kind"] == c.VITJOB_KIND]
    assert len(vitjobs) == 1, [o["kind"] for o in objects]
    (vitjob,) = vitjobs
    assert vitjob["apiVersion"] == c.VITJOB_API_VERSION
    return vitjob


def expected_spec(given: dict[str, Any]) -> dict[str, Any]:
    """values.yaml with the given values over it, without the chart's own keys."""
    spec = {k: v for k, v in DEFAULTS.items() if k not in CHART_ONLY_KEYS}
    spec.update({k: v for k, v in given.items() if k not in CHART_ONLY_KEYS})
    return spec


def job_spec_of(vitjob: dict[str, Any]) -> JobSpec:
    """The stage-1 JobSpec the controller builds from a VitJob (design note): spec + metadata."""
    spec = {k: v for k, v in vitjob["spec"].items() if k not in RUN_KEYS}
    return JobSpec(name=vitjob["metadata"]["name"], namespace=vitjob["metadata"]["namespace"], **spec)


# --- the VitJob ----------------------------------------------------------------------------------
def test_set_hw_and_cards_renders_one_vitjob_whose_spec_is_the_values(helm: Path, tmp_path: Path) -> None:
    """`helm install vit charts/vitjob --set hw=ascend --set cards=8` starts a run: one VitJob."""
    objects = objects_of(template(helm, tmp_path, "--set", "hw=ascend", "--set", "cards=8", "--skip-tests"))
    vitjob = the_vitjob(objects)
    assert vitjob["metadata"]["name"] == "vit" and vitjob["metadata"]["namespace"] == "default"
    assert vitjob["spec"] == expected_spec({"hw": "ascend", "cards": 8})
    assert job_spec_of(vitjob) == JobSpec(name="vit", hw="ascend", cards=8)
    crd_spec_validator().validate(vitjob["spec"])


OPTIONS = {
    "name": "run1",
    "hw": "ascend",
    "cards": 16,
    "then": ["eval", "export", "infer310"],
    "queue": "research",
    "priority_class": "high",
    "epochs": 3,
    "batch_size": 64,
    "lr": 1e-05,
    "pretrained": "weights/vit.npz",
    "data_subpath": "cifar10",
    "extra_args": ["--save-every", "100"],
    "max_retry": 5,
    "ttl_seconds_after_finished": None,
    "node_selector": {"accelerator": None, "accelerator-type": "module-910b-8"},
    "tolerations": [
        {"key": "huawei.com/Ascend910", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "spot", "value": "yes", "effect": "NoExecute", "tolerationSeconds": 60},
    ],
    "env": {"GLOG_v": "2"},
    "labels": {"team": "vision"},
    "annotations": {"note": "nightly run"},
    "image": "registry.example.com:5000/ml/vitjob-ascend:dev",
    "image_pull_policy": "Always",
    "cpu": "24",
    "memory": "200Gi",
    "sched_port": 9000,
    "rdzv_port": 9001,
    "controller": {"enabled": False},
}


def test_values_file_reaches_the_spec_unchanged(helm: Path, tmp_path: Path) -> None:
    """Every spec key of a values file, nulls included (Helm deletes a key set to null: the chart
    gives it back), is the VitJob's spec; name is its name and -n its namespace."""
    vitjob = the_vitjob(objects_of(template(helm, tmp_path, "--skip-tests", values=OPTIONS, namespace="ml")))
    assert vitjob["metadata"]["name"] == "run1" and vitjob["metadata"]["namespace"] == "ml"
    assert vitjob["spec"] == expected_spec(OPTIONS)
    assert vitjob["spec"]["ttl_seconds_after_finished"] is None
    crd_spec_validator().validate(vitjob["spec"])
    assert job_spec_of(vitjob).ttl_seconds_after_finished is None
    assert job_spec_of(vitjob).effective_node_selector == {"accelerator-type": "module-910b-8"}


def test_a_values_file_of_vitjob_render_is_a_values_file_of_the_chart(helm: Path, tmp_path: Path) -> None:
    """The same file for `vitjob render -f` and `helm -f`: the same JobSpec."""
    from vitjob.api.values import load_spec

    text = (
        "hw: gpu\ncards: 16\ngpus_per_pod: 4\nlr: 1e-4\nepochs: 2\ncards_per_pod: null\n"
        "tolerations:\n  - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}\n"
        "env: {NCCL_DEBUG: INFO}\n"
    )
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    vitjob = the_vitjob(objects_of(run_helm(helm, tmp_path, "template", "vit", str(CHART), "-f", str(path),
                                            "--skip-tests")))
    assert job_spec_of(vitjob) == load_spec({"name": "vit"}, path)


def test_set_lr_gives_a_number_and_set_null_a_null(helm: Path, tmp_path: Path) -> None:
    """`--set lr=3e-4` reaches Helm as the string "3e-4"; the spec's lr is a number."""
    vitjob = the_vitjob(objects_of(template(
        helm, tmp_path, "--skip-tests", "--set", "hw=cpu", "--set", "lr=3e-4",
        "--set", "ttl_seconds_after_finished=null", "--set", "epochs=2",
    )))
    assert vitjob["spec"]["lr"] == 3e-4 and isinstance(vitjob["spec"]["lr"], float)
    assert vitjob["spec"]["ttl_seconds_after_finished"] is None and vitjob["spec"]["epochs"] == 2
    want = JobSpec(name="vit", hw="cpu", lr=3e-4, epochs=2, ttl_seconds_after_finished=None)
    assert job_spec_of(vitjob) == want


def test_crd_is_in_crds_and_is_the_generated_one(helm: Path, tmp_path: Path) -> None:
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == ["vitjob.io_vitjobs.yaml"]
    result = run_helm(helm, tmp_path, "show", "crds", str(CHART))
    assert result.returncode == 0, result.stderr
    assert [d for d in yaml.safe_load_all(result.stdout) if d] == [yaml.safe_load(render_crd())]
    kinds = [o["kind"] for o in objects_of(template(helm, tmp_path, "--include-crds", "--skip-tests"))]
    assert kinds.count("CustomResourceDefinition") == 1


def test_lint_strict_is_clean(helm: Path, tmp_path: Path) -> None:
    other = {"hw": "gpu", "cards": 16, "then": ["eval", "export"], "controller": {"enabled": False}}
    for values in ({}, other):
        (tmp_path / "v.yaml").write_text(yaml.safe_dump(values), encoding="utf-8")
        result = run_helm(helm, tmp_path, "lint", "--strict", str(CHART), "-f", str(tmp_path / "v.yaml"))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


# --- the controller ------------------------------------------------------------------------------
def without_chart_label(obj: dict[str, Any]) -> dict[str, Any]:
    obj = json.loads(json.dumps(obj))
    for meta in (obj["metadata"], obj.get("spec", {}).get("template", {}).get("metadata", {})):
        meta.get("labels", {}).pop(HELM_CHART_LABEL, None)
    return obj


CONTROLLER_CASES = [
    ({}, {"namespace": "ml"}),
    (
        {"all_namespaces": True, "replicas": 1, "health_port": 9090, "image": "registry.example.com/c:dev",
         "image_pull_policy": "Always", "progress_interval_s": 7.5},
        {"namespace": "ml", "all_namespaces": True, "replicas": 1, "health_port": 9090,
         "image": "registry.example.com/c:dev", "image_pull_policy": "Always", "progress_interval_s": 7.5},
    ),
]


@pytest.mark.parametrize(("values", "options"), CONTROLLER_CASES, ids=["defaults", "all-namespaces"])
def test_controller_objects_are_what_vitjob_controller_render_prints(
    helm: Path, tmp_path: Path, values: dict, options: dict
) -> None:
    result = template(helm, tmp_path, "--skip-tests", values={"controller": values}, namespace="ml")
    got = {(o["kind"], o["metadata"]["name"]): without_chart_label(o)
           for o in objects_of(result) if o["kind"] != "VitJob"}
    want = {(o["kind"], o["metadata"]["name"]): o
            for o in (parse_document(d) for d in render_controller_documents(**options))}
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == want[key], f"{key} differs from `vitjob controller --render`"
    role_kind = "ClusterRole" if options.get("all_namespaces") else "Role"
    assert got[(role_kind, c.CONTROLLER_NAME)]["rules"] == want[(role_kind, c.CONTROLLER_NAME)]["rules"]


def test_controller_is_on_by_default_and_can_be_left_out(helm: Path, tmp_path: Path) -> None:
    assert DEFAULTS["controller"]["enabled"] is True
    kinds = {o["kind"] for o in objects_of(template(helm, tmp_path, "--skip-tests"))}
    assert kinds == {"VitJob", "ServiceAccount", "Role", "RoleBinding", "Deployment", "Service"}
    off = objects_of(template(helm, tmp_path, "--skip-tests", "--set", "controller.enabled=false"))
    assert [o["kind"] for o in off] == ["VitJob"]


def test_controller_defaults_are_the_render_defaults() -> None:
    import inspect

    from vitjob.render.manifests import build_controller_context

    params = inspect.signature(build_controller_context).parameters
    for key, value in DEFAULTS["controller"].items():
        if key not in ("enabled", "service_monitor"):  # chart-only keys
            assert params[key].default == value, key


def test_service_monitor_only_when_enabled(helm: Path, tmp_path: Path) -> None:
    """Off by default (the monitoring.coreos.com CRD may not exist); on, it is the rendered one, in the
    release namespace, selecting the controller's Service, whose port is the health port."""
    from vitjob.render.manifests import render_controller_service_monitor

    assert DEFAULTS["controller"]["service_monitor"]["enabled"] is False
    kinds = [o["kind"] for o in objects_of(template(helm, tmp_path, "--skip-tests"))]
    assert "ServiceMonitor" not in kinds and kinds.count("Service") == 1
    on = {"controller": {"service_monitor": {"enabled": True}, "health_port": 9090}}
    objects = objects_of(template(helm, tmp_path, "--skip-tests", values=on, namespace="ml"))
    [monitor] = [o for o in objects if o["kind"] == "ServiceMonitor"]
    [service] = [o for o in objects if o["kind"] == "Service"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert without_chart_label(monitor) == parse_document(render_controller_service_monitor(namespace="ml"))
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [{"port": "health", "path": "/metrics", "interval": "30s"}]
    assert service["spec"]["ports"][0]["port"] == 9090 and service["spec"]["ports"][0]["name"] == "health"
    off = {"controller": {"enabled": False, "service_monitor": {"enabled": True}}}
    assert [o["kind"] for o in objects_of(template(helm, tmp_path, "--skip-tests", values=off))] == ["VitJob"]


# --- Helm's own schema validation ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--set", "hw=tpu"), ["hw", "ascend"]),
        (("--set", "cards=0"), ["cards", "1"]),
        (("--set-string", "cards=eight"), ["cards", "integer"]),
        (("--set", "epochs=ten"), ["epochs", "integer"]),
        (("--set", "cardz=8"), ["cardz"]),
        (("--set", "namespace=ml"), ["namespace"]),
        (("--set", "then={train}"), ["then"]),
        (("--set", "tolerations[0].operator=Sometimes"), ["operator"]),
        (("--set", "env.FOO=1"), ["env", "string"]),
        (("--set", "sched_port=80"), ["sched_port"]),
        (("--set", "lr=fast"), ["lr"]),
        (("--set", "preset=Vit B16"), ["preset"]),
        (("--set", "controller.enabeld=true"), ["enabeld"]),
    ],
    ids=["hw", "cards-0", "cards-string", "epochs-string", "unknown-key", "namespace-key", "then-train",
         "toleration-operator", "env-number", "port", "lr-word", "preset", "controller-typo"],
)
def test_values_schema_refuses_bad_values(helm: Path, tmp_path: Path, args: tuple, words: list) -> None:
    result = template(helm, tmp_path, *args)
    assert result.returncode != 0, result.stdout
    assert "schema" in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


# --- what the chart is not ------------------------------------------------------------------------
def test_no_template_writes_a_volcano_job_or_validates_values() -> None:
    templates = sorted(p for p in (CHART / "templates").rglob("*") if p.is_file())
    names = {p.name for p in templates}
    assert not names & {"_job.tpl", "_validate.tpl", "job.yaml", "pipeline-configmap.yaml"}
    for path in templates:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*kind:\s*\"?Job\"?\s*$", text, re.MULTILINE), path
        assert not re.search(r"^\s*tasks:", text, re.MULTILINE), path
        assert "batch.volcano.sh/v1alpha1" not in text and "fail " not in text and "(fail" not in text, path


def test_every_rendered_object_validates(helm: Path, tmp_path: Path) -> None:
    """Built-in kinds (the hooks too) with kubernetes-validate strict; the VitJob against the CRD."""
    for values in ({}, {"controller": {"all_namespaces": True}}, OPTIONS):
        for obj in objects_of(template(helm, tmp_path, values=values)):
            if obj["kind"] == c.VITJOB_KIND:
                crd_spec_validator().validate(obj["spec"])
            else:
                kubernetes_validate.validate(obj, c.DEFAULT_K8S_VERSION, strict=True)


# --- values.yaml, NOTES and the test hook ----------------------------------------------------------
def test_values_yaml_documents_every_key() -> None:
    text = (CHART / "values.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*[a-z_]+:", line) and not line.rstrip().endswith(":"):
            above = lines[i - 1].strip()
            assert above.startswith("#"), f"values.yaml line {i + 1} ({line.strip()}) has no comment above"


def notes_of(helm: Path, tmp: Path, *args: str, namespace: str = "default") -> str:
    """NOTES.txt as rendered (helm 3's `install --dry-run=client` still calls the cluster, and `helm
    template` skips NOTES): a copy of the chart whose NOTES are a define that a ConfigMap prints."""
    import shutil
    import tempfile

    chart = Path(tempfile.mkdtemp(dir=tmp)) / "chart"
    shutil.copytree(CHART, chart)
    notes = chart / "templates" / "NOTES.txt"
    define = '{{- define "probe.notes" -}}\n' + notes.read_text(encoding="utf-8") + "{{- end -}}\n"
    (chart / "templates" / "_notes.tpl").write_text(define, encoding="utf-8")
    notes.unlink()
    (chart / "templates" / "probe.yaml").write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n'
        '  notes: {{ include "probe.notes" . | toJson }}\n',
        encoding="utf-8",
    )
    result = run_helm(helm, tmp, "template", "vit", str(chart), "-n", namespace, "--skip-tests",
                      "--show-only", "templates/probe.yaml", *args)
    (cm,) = objects_of(result)
    return cm["data"]["notes"]


def test_notes_say_how_to_watch_the_run(helm: Path, tmp_path: Path) -> None:
    notes = notes_of(helm, tmp_path, "--set", "hw=gpu", "--set", "cards=16", "--set", "then={eval,export}",
                     namespace="ml")
    for line in (
        "VitJob vit in namespace ml: hw gpu, 16 card(s), stages train, eval, export.",
        "The vitjob controller of this release runs its stages",
        "kubectl get vitjob -n ml vit -w",
        "vitjob pipeline status -n ml vit",
        "kubectl logs -n ml -l volcano.sh/job-name=vit-train --prefix -f",
        "helm test -n ml vit",
    ):
        assert line in notes, notes
    assert "controller.enabled is false" in notes_of(helm, tmp_path, "--set", "controller.enabled=false")


def test_helm_test_pod_runs_pipeline_status_with_read_only_rights(helm: Path, tmp_path: Path) -> None:
    hook = "templates/tests/pipeline-status.yaml"
    result = template(helm, tmp_path, "--set", "hw=cpu", "--show-only", hook)
    objects = {o["kind"]: o for o in objects_of(result)}
    assert set(objects) == {"ServiceAccount", "Role", "RoleBinding", "Pod"}
    for obj in objects.values():
        assert obj["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = objects["Pod"]["spec"]["containers"]
    assert container["command"][:4] == ["vitjob", "pipeline", "status", "vit"]
    assert container["image"] == default_image("cpu")
    rules = objects["Role"]["rules"]
    assert {v for rule in rules for v in rule["verbs"]} <= {"get", "list"}, "the test pod only reads"
    (vitjobs,) = [r for r in rules if r["apiGroups"] == ["vitjob.io"]]
    assert vitjobs["resources"] == ["vitjobs"] and vitjobs["resourceNames"] == ["vit"]
    readable = {(g, r) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}
    assert readable >= {("batch.volcano.sh", "jobs"), ("", "pods"), ("", "pods/log"), ("", "events")}


def test_every_pod_of_the_chart_passes_restricted(helm: Path, tmp_path: Path, psacheck: Path) -> None:
    """The controller Deployment and the helm test pod, for both install scopes, by the documented rules
    and by the real admission checks; the test pod's security contexts are vitjob.render.manifests's (the
    generated vitjob.clientPodSecurity)."""
    for values in ({}, {"controller": {"all_namespaces": True, "replicas": 1}}):
        pods = [pod for obj in objects_of(template(helm, tmp_path, "--set", "hw=cpu", values=values))
                for pod in pod_templates(obj)]
        assert sorted(where for where, _, _ in pods) == ["Deployment vitjob-controller", "Pod vit-test"]
        real = verdicts(psacheck, pods)
        for where, metadata, pod in pods:
            assert violations(metadata, pod, RESTRICTED) == [], where
            assert real[where] == {"baseline": [], "restricted": []}, where
            assert pod["securityContext"] == client_pod_security_context(), where
            (container,) = pod["containers"]
            assert container["securityContext"] == client_container_security_context(), where
