"""The Helm chart charts/vitjob against `vitjob render`, with real pinned helm binaries (3 and 4).

``scripts/get-helm.sh`` (run by scripts/run-tests.sh) installs them into .tools/helm/<version>/helm;
``VITJOB_HELM=/path/to/helm`` tests another one. Without a helm binary these tests skip, except in CI
(CI=true), where they fail: there the install step must have worked.

Parity: for each case the chart's objects (``helm template --skip-tests``) equal the objects vitjob
renders from the same settings (the Job, the pipeline ConfigMap of ``then``, the controller's objects),
compared as parsed objects after removing only the ``helm.sh/chart`` label, Helm's own. The ConfigMap's
``stages`` (JSON) and ``<stage>.yaml`` (YAML) data are compared parsed too. ``helm template`` always
renders revision 1, where the chart's base name is the plain name; revision N is checked through a probe
chart that renders the same helpers with ``.Release.Revision`` = 3, against ``vitjob render --name NAME-r3``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from vitjob.errors import SpecError
from vitjob.render import render_objects, render_yaml
from vitjob.spec import JobSpec

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "vitjob"
CRDS = REPO.parent / "shared" / "crds"
HELM_CHART_LABEL = "helm.sh/chart"


def _helm_binaries() -> list[Path]:
    if os.environ.get("VITJOB_HELM"):
        return [Path(os.environ["VITJOB_HELM"])]
    return sorted(p for p in (REPO / ".tools" / "helm").glob("v*/helm") if os.access(p, os.X_OK))


HELMS = _helm_binaries()


@pytest.fixture(params=HELMS or [None], ids=lambda p: p.parent.name if p else "no-helm")
def helm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
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


def template(
    helm: Path,
    tmp: Path,
    values: dict[str, Any],
    *,
    release: str = "vit",
    namespace: str = "default",
    chart: Path = CHART,
    extra: tuple[str, ...] = ("--skip-tests",),
) -> subprocess.CompletedProcess[str]:
    values_file = tmp / "values.json"  # JSON: no YAML 1.1 surprises (PyYAML writes y unquoted, Go reads true)
    values_file.write_text(json.dumps(values), encoding="utf-8")
    return run_helm(
        helm, tmp, "template", release, str(chart), "-n", namespace, "-f", str(values_file), *extra
    )


def objects_of(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [o for o in yaml.safe_load_all(result.stdout) if o]


# --- the settings: spec keys (vitjob render) -> chart values ------------------------------------
# Spec keys whose chart value has another path; every other key is the same name at the top level.
VALUE_PATHS = {
    "data_pvc": "data.pvc",
    "data_subpath": "data.subpath",
    "output_pvc": "output.pvc",
    "priority_class": "priorityClass",
    "batch_size": "batchSize",
    "extra_args": "extraArgs",
    "max_retry": "maxRetry",
    "ttl_seconds_after_finished": "ttlSecondsAfterFinished",
    "node_selector": "nodeSelector",
    "gpus_per_pod": "gpusPerPod",
    "cards_per_pod": "cardsPerPod",
    "cpu": "resources.cpu",
    "memory": "resources.memory",
    "sched_port": "schedPort",
    "rdzv_port": "rdzvPort",
    "image_pull_policy": "imagePullPolicy",
}
NOT_VALUES = ("namespace",)  # helm template -n


def chart_values(spec: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in spec.items():
        if key in NOT_VALUES:
            continue
        *parents, leaf = VALUE_PATHS.get(key, key).split(".")
        node = values
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return values


OPTIONS = {
    "name": "vit",
    "hw": "ascend",
    "cards": 16,
    "namespace": "ml",
    "queue": "research",
    "priority_class": "high",
    "epochs": 3,
    "batch_size": 64,
    "lr": 3e-4,
    "pretrained": "weights/vit.npz",
    "data_subpath": "cifar10",
    "extra_args": ["--save-every", "100"],
    "max_retry": 5,
    "ttl_seconds_after_finished": 3600,
    "node_selector": {"accelerator-type": "module-910b-8"},
    "tolerations": [
        {"key": "huawei.com/Ascend910", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "spot", "value": "yes", "effect": "NoExecute", "tolerationSeconds": 60},
    ],
    "env": {"GLOG_v": "2"},
    "labels": {"team": "vision"},
    "annotations": {"note": "nightly run"},
}
GPU_CUSTOM = {
    "name": "vg",
    "hw": "gpu",
    "cards": 16,
    "gpus_per_pod": 4,
    "queue": "gpu-q",
    "priority_class": "batch-low",
    "node_selector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
    "image_pull_policy": "Always",
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "image": "registry.example.com:5000/ml/vitjob-gpu:dev",
    "cpu": "24",
    "memory": "200Gi",
    "env": {"A_FIRST": "1", "NCCL_DEBUG": "INFO"},
    "output_pvc": "results.fast",
    "data_pvc": "cifar",
}
CPU_CUSTOM = {
    "name": "vc",
    "hw": "cpu",
    "cards": 4,
    "cards_per_pod": 2,
    "pipeline": "shared",
    "data_subpath": "cifar10",
    "ttl_seconds_after_finished": None,
    "max_retry": 1,
    "epochs": 1,
    "batch_size": 8,
    "lr": 1e-05,
    "pretrained": "/weights/vit.npz",
    "sched_port": 9000,
    "rdzv_port": 9001,
}

# (id, spec keys, then, controller values, release name)
CASES: list[tuple[str, dict[str, Any], list[str], dict[str, Any] | None, str]] = [
    *[
        (f"{hw}-{n}", {"name": "vit", "hw": hw, "cards": n}, [], None, "vit")
        for hw, n in [
            ("ascend", 1),
            ("ascend", 8),
            ("ascend", 16),
            ("ascend", 64),
            ("gpu", 1),
            ("gpu", 8),
            ("gpu", 16),
            ("cpu", 2),
        ]
    ],
    ("ascend-16-options", OPTIONS, [], None, "vit"),
    ("gpu-16-custom", GPU_CUSTOM, [], None, "vg"),
    ("cpu-4-custom", CPU_CUSTOM, [], None, "vc"),
    ("ascend-8-then", {"name": "p8", "hw": "ascend", "cards": 8}, ["eval", "export", "infer310"], None, "p8"),
    (
        "gpu-8-then-controller",
        {"name": "g8", "hw": "gpu", "cards": 8, "queue": "q1"},
        ["eval", "export", "infer310"],
        {"enabled": True},
        "g8",
    ),
    (
        "cpu-2-then-controller-all-ns",
        {"name": "c2", "hw": "cpu", "cards": 2, "namespace": "team-a"},
        ["eval"],
        {
            "enabled": True,
            "allNamespaces": True,
            "replicas": 1,
            "healthPort": 9090,
            "image": "registry.example.com/vitjob-cpu:dev",
        },
        "c2",
    ),
    (
        "ascend-eval-then-export",
        {"name": "ev", "hw": "ascend", "cards": 8, "stage": "eval"},
        ["export"],
        None,
        "ev",
    ),
    ("gpu-infer310", {"name": "gi", "hw": "gpu", "cards": 8, "stage": "infer310"}, [], None, "gi"),
    (
        "ascend-selector-null",
        {
            "name": "sn",
            "hw": "ascend",
            "cards": 8,
            "node_selector": {"accelerator": None, "accelerator-type": "card-910b-2"},
        },
        [],
        None,
        "sn",
    ),
    # name from a 53-character release name (Helm's maximum), truncated so that vit…-train-worker-7 fits in 63
    ("release-name-truncated", {"name": "r" * 48, "hw": "ascend", "cards": 64}, [], None, "r" * 53),
]


def expected_objects(spec: dict[str, Any], then: list[str], controller: dict[str, Any] | None) -> list[dict]:
    """What vitjob makes for the same settings: render, the pipeline record, `vitjob controller`."""
    job_spec = JobSpec(**spec)
    expected = render_objects(job_spec)
    if then:
        from vitjob.pipeline import configmap_name
        from vitjob.render import render_pipeline_configmap

        stages = [(s, render_yaml(JobSpec(**{**spec, "stage": s}))) for s in (job_spec.stage, *then)]
        expected.append(
            render_pipeline_configmap(
                name=configmap_name(job_spec.name),
                namespace=job_spec.namespace,
                part_of=job_spec.pipeline_name,
                stages=stages,
                phase="Pending",
            )
        )
    if controller:
        from vitjob.render import parse_document, render_controller_documents

        options = {
            "namespace": job_spec.namespace,
            "all_namespaces": controller.get("allNamespaces", False),
            "image": controller.get("image", ""),
            "replicas": controller.get("replicas", 2),
            "health_port": controller.get("healthPort", 8080),
        }
        expected += [parse_document(d) for d in render_controller_documents(**options)]
    return expected


def comparable(obj: Any) -> Any:
    """Drop helm.sh/chart from every labels mapping; parse pipeline ConfigMap data (JSON, YAML)."""
    if isinstance(obj, list):
        return [comparable(o) for o in obj]
    if not isinstance(obj, dict):
        return obj
    out = {k: comparable(v) for k, v in obj.items() if not (k == "labels" and not isinstance(v, dict))}
    for key, value in obj.items():
        if key == "labels" and isinstance(value, dict):
            out[key] = {k: v for k, v in value.items() if k != HELM_CHART_LABEL}
    if obj.get("kind") == "ConfigMap" and "stages" in obj.get("data", {}):
        data = obj["data"]
        out["data"] = {
            k: json.loads(v)
            if k == "stages"
            else [comparable(d) for d in yaml.safe_load_all(v) if d]
            if k.endswith(".yaml")
            else v
            for k, v in data.items()
        }
    return out


def by_identity(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    keyed = {(o["kind"], o["metadata"]["name"]): comparable(o) for o in objects}
    assert len(keyed) == len(objects), "two objects share a kind and name"
    return keyed


def case_values(
    spec: dict[str, Any], then: list[str], controller: dict[str, Any] | None, release: str
) -> dict:
    values = chart_values(spec)
    if values.get("name") == release or release.startswith(values.get("name", "\0")):
        values.pop("name")  # the default: the release name (truncated when too long)
    if then:
        values["then"] = then
    if controller:
        values["controller"] = controller
    return values


@pytest.mark.parametrize(
    ("spec", "then", "controller", "release"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_chart_objects_equal_vitjob_render(
    helm: Path, tmp_path: Path, spec: dict, then: list, controller: dict | None, release: str
) -> None:
    values = case_values(spec, then, controller, release)
    result = template(helm, tmp_path, values, release=release, namespace=spec.get("namespace", "default"))
    got = by_identity(objects_of(result))
    want = by_identity(expected_objects(spec, then, controller))
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == want[key], f"{key} differs from what vitjob renders"
    for obj in objects_of(result):
        assert obj["metadata"]["labels"][HELM_CHART_LABEL] == "vitjob-0.1.0", "Helm's own label is there"


def test_lr_from_set_is_a_string_and_renders_like_the_cli(helm: Path, tmp_path: Path) -> None:
    """`--set lr=3e-4` reaches the chart as the string "3e-4"; the job gets `--lr 0.0003` as from the CLI."""
    result = run_helm(
        helm,
        tmp_path,
        "template",
        "vit",
        str(CHART),
        "--skip-tests",
        "--set",
        "hw=gpu",
        "--set",
        "lr=3e-4",
        "--set",
        "epochs=2",
    )
    (job,) = objects_of(result)
    assert comparable(job) == comparable(render_objects(JobSpec(name="vit", hw="gpu", lr=3e-4, epochs=2))[0])


def test_lint_strict_is_clean(helm: Path, tmp_path: Path) -> None:
    for values in (
        {},
        {"hw": "gpu", "cards": 16, "then": ["eval", "export"], "controller": {"enabled": True}},
    ):
        (tmp_path / "v.yaml").write_text(yaml.safe_dump(values), encoding="utf-8")
        result = run_helm(helm, tmp_path, "lint", "--strict", str(CHART), "-f", str(tmp_path / "v.yaml"))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.skipif(not CRDS.is_dir(), reason=f"Volcano CRDs not found at {CRDS} (../shared/crds)")
def test_every_object_validates(helm: Path, tmp_path: Path) -> None:
    """The Job against the Volcano CRD, everything else (hooks included) with kubernetes-validate strict."""
    from vitjob.validate import validate_objects

    kinds = set()
    for _, spec, then, controller, release in CASES:
        values = case_values(spec, then, controller, release)
        objects = objects_of(template(helm, tmp_path, values, release=release, extra=()))
        validate_objects(objects, crd_source=CRDS, k8s_version="1.30")
        kinds |= {o["kind"] for o in objects}
    assert kinds >= {
        "Job",
        "ConfigMap",
        "Deployment",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "Pod",
    }


# --- bad values -------------------------------------------------------------------------------
def cli_problems(spec: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        JobSpec(**spec)
    return caught.value.problems  # type: ignore[attr-defined]


CLI_TO_CHART_WORDS = {
    "gpus_per_pod": "gpusPerPod",
    "cards_per_pod": "cardsPerPod",
    "node_selector": "nodeSelector",
    "rdzv_port": "rdzvPort",
    "sched_port": "schedPort",
}


def chart_wording(problem: str) -> str:
    for cli, chart in CLI_TO_CHART_WORDS.items():
        problem = problem.replace(cli, chart)
    return problem


TEMPLATE_RULES = [
    ("ascend-cards-3", {"name": "vit", "hw": "ascend", "cards": 3}),
    ("gpu-cards-12", {"name": "vit", "hw": "gpu", "cards": 12}),
    ("gpu-cards-6-per-4", {"name": "vit", "hw": "gpu", "cards": 6, "gpus_per_pod": 4}),
    ("cards-per-pod-on-gpu", {"name": "vit", "hw": "gpu", "cards": 2, "cards_per_pod": 1}),
    ("cards-per-pod-divides", {"name": "vit", "hw": "cpu", "cards": 4, "cards_per_pod": 3}),
    ("name-not-dns1035", {"name": "9vit", "hw": "cpu"}),
    ("name-too-long", {"name": "v" * 50, "hw": "ascend", "cards": 64}),
    ("node-selector", {"name": "vit", "hw": "cpu", "node_selector": {"bad key": "x", "ok": "not ok!"}}),
    (
        "tolerations",
        {
            "name": "vit",
            "hw": "cpu",
            "tolerations": [{"operator": "Exists", "value": "x"}, {"key": "-bad-", "effect": "NoSchedule"}],
        },
    ),
    ("image", {"name": "vit", "hw": "cpu", "image": "Registry/UPPER:tag"}),
    ("ports", {"name": "vit", "hw": "cpu", "sched_port": 9000, "rdzv_port": 9000}),
    ("env", {"name": "vit", "hw": "cpu", "env": {"VITJOB_DATA_DIR": "/x", "RANK_ID": "0"}}),
    (
        "labels-annotations",
        {
            "name": "vit",
            "hw": "cpu",
            "labels": {"app.kubernetes.io/x": "y", "t": "-no-"},
            "annotations": {"bad key": "v"},
        },
    ),
]


@pytest.mark.parametrize("spec", [r[1] for r in TEMPLATE_RULES], ids=[r[0] for r in TEMPLATE_RULES])
def test_template_rules_fail_with_the_cli_wording(helm: Path, tmp_path: Path, spec: dict) -> None:
    result = template(helm, tmp_path, chart_values(spec), extra=("--skip-tests", "--skip-schema-validation"))
    assert result.returncode != 0, result.stdout
    assert "invalid values (" in result.stderr, result.stderr
    listed = [line.removeprefix("  - ") for line in result.stderr.splitlines() if line.startswith("  - ")]
    # Same lines; Helm walks mappings (env, labels…) in key order, the CLI in the order given.
    assert sorted(listed) == sorted(chart_wording(p) for p in cli_problems(spec))


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"hw": "ascend", "cards": 3}, ["cards: 3 is not allowed for hw ascend", "multiple of 8"]),
        ({"hw": "tpu"}, ["hw", "ascend", "gpu", "cpu"]),
        ({"cards": "eight"}, ["cards", "integer"]),
        ({"epochs": "ten"}, ["epochs", "integer"]),
        ({"nodeSelector": ["a"]}, ["nodeSelector", "object"]),
        ({"tolerations": [{"operator": "Sometimes"}]}, ["tolerations", "Equal", "Exists"]),
        ({"env": {"FOO": 1}}, ["env", "string"]),
        ({"cardz": 8}, ["cardz"]),
        ({"then": ["train"]}, ["then", "eval"]),
        ({"stage": "export", "then": ["eval"]}, ["then", "train → eval → export → infer310"]),
    ],
    ids=[
        "ascend-cards-3",
        "unknown-hw",
        "cards-string",
        "epochs-string",
        "selector-list",
        "toleration-operator",
        "env-number",
        "unknown-key",
        "then-train",
        "then-order",
    ],
)
def test_bad_values_fail_helm_template_clearly(helm: Path, tmp_path: Path, values: dict, words: list) -> None:
    result = template(helm, tmp_path, values)
    assert result.returncode != 0, result.stdout
    for word in words:
        assert word in result.stderr, result.stderr


# --- revisions, NOTES and the test hook ----------------------------------------------------------
def probe_chart(tmp: Path, probe: str, notes_as_define: bool = False) -> Path:
    """A copy of the chart whose only template is ``probe`` (the helpers stay)."""
    chart = tmp / "chart"
    shutil.copytree(CHART, chart)
    for path in (chart / "templates").rglob("*"):
        if path.is_file() and not path.name.startswith("_"):
            if notes_as_define and path.name == "NOTES.txt":
                path.with_name("_notes.tpl").write_text(
                    '{{- define "probe.notes" -}}\n' + path.read_text(encoding="utf-8") + "{{- end -}}\n",
                    encoding="utf-8",
                )
            path.unlink()
    (chart / "templates" / "probe.yaml").write_text(probe, encoding="utf-8")
    return chart


REVISION_3 = '{{- $root := merge (dict "Release" (dict "Revision" 3)) (deepCopy .) -}}\n'


def test_revision_3_renders_new_jobs_named_like_vitjob_render_name_r3(helm: Path, tmp_path: Path) -> None:
    """`helm upgrade` to revision 3 creates <name>-r3-<stage> (never patches the revision-1 job)."""
    chart = probe_chart(
        tmp_path, REVISION_3 + '{{ include "vitjob.job" (dict "root" $root "stage" "train") }}\n'
    )
    (job,) = objects_of(template(helm, tmp_path, {"hw": "ascend", "cards": 16}, chart=chart))
    assert comparable(job) == render_objects(JobSpec(name="vit-r3", hw="ascend", cards=16))[0]


def test_revision_suffix_keeps_the_release_name_within_the_pod_name_limit(helm: Path, tmp_path: Path) -> None:
    chart = probe_chart(
        tmp_path, REVISION_3 + '{{ include "vitjob.job" (dict "root" $root "stage" "train") }}\n'
    )
    (job,) = objects_of(
        template(helm, tmp_path, {"hw": "ascend", "cards": 64}, chart=chart, release="r" * 53)
    )
    assert job["metadata"]["name"] == "r" * 45 + "-r3-train"  # + "-worker-7" = 63 characters


def test_notes_tell_how_to_watch_the_job(helm: Path, tmp_path: Path) -> None:
    chart = probe_chart(
        tmp_path,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
        '  notes: {{ include "probe.notes" . | toJson }}\n',
        notes_as_define=True,
    )
    (cm,) = objects_of(
        template(helm, tmp_path, {"hw": "gpu", "cards": 16, "then": ["eval"]}, chart=chart, namespace="ml")
    )
    notes = cm["data"]["notes"]
    for line in (
        "kubectl get vcjob -n ml vit-train -w",
        "kubectl logs -n ml -l volcano.sh/job-name=vit-train --prefix -f",
        "vitjob status -n ml vit-train",
        "helm test -n ml vit",
        "vitjob pipeline run -n ml vit --wait",
        "vit-r2-<stage>",
    ):
        assert line in notes, notes
    assert "2 pod(s)" in notes and "16 card(s)" in notes


def test_helm_test_pod_reports_the_job_with_read_only_rights(helm: Path, tmp_path: Path) -> None:
    result = run_helm(
        helm,
        tmp_path,
        "template",
        "vit",
        str(CHART),
        "--set",
        "hw=cpu",
        "--show-only",
        "templates/tests/job-status.yaml",
    )
    objects = {o["kind"]: o for o in objects_of(result)}
    assert set(objects) == {"ServiceAccount", "Role", "RoleBinding", "Pod"}
    for obj in objects.values():
        assert obj["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = objects["Pod"]["spec"]["containers"]
    assert container["command"][:3] == ["vitjob", "status", "vit-train"]
    verbs = {v for rule in objects["Role"]["rules"] for v in rule["verbs"]}
    assert verbs <= {"get", "list"}, "the test pod only reads"
    assert objects["Role"]["rules"][0]["resourceNames"] == ["vit-train"]
