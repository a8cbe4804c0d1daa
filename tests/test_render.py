"""Rendering: golden outputs for the hardware x cards x stage matrix, the pod contract asserted on the
parsed objects, injection payloads, the template guard, and the ``vitjob render`` command.

Regenerate the golden files after an intended change with:
    VITJOB_UPDATE_GOLDEN=1 python -m pytest tests/test_render.py
and review the diff.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from vitjob import constants as c
from vitjob.cli import main
from vitjob.errors import RenderError, SpecError
from vitjob.images import default_image
from vitjob.render import (
    manifests_dir,
    render_documents,
    render_objects,
    render_yaml,
    template_environment,
    yaml_quote,
)
from vitjob.spec import JobSpec

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
CRDS = REPO.parent / "shared" / "crds"
UPDATE = os.environ.get("VITJOB_UPDATE_GOLDEN") == "1"

MATRIX = [("ascend", n) for n in (1, 8, 16, 64)] + [("gpu", n) for n in (1, 8, 16)] + [("cpu", 2)]
CASES = [(stage, hw, cards) for stage in c.STAGES for hw, cards in MATRIX]
# A spec with every optional key set, rendered next to the matrix.
OPTIONS = {
    "name": "vit", "hw": "ascend", "cards": 16, "namespace": "ml", "queue": "research",
    "priority_class": "high", "epochs": 3, "batch_size": 64, "lr": 3e-4, "pretrained": "weights/vit.npz",
    "data_subpath": "cifar10", "extra_args": ["--save-every", "100"], "max_retry": 5,
    "ttl_seconds_after_finished": 3600, "node_selector": {"accelerator-type": "module-910b-8"},
    "tolerations": [{"key": "huawei.com/Ascend910", "operator": "Exists", "effect": "NoSchedule"},
                    {"key": "spot", "value": "yes", "effect": "NoExecute", "tolerationSeconds": 60}],
    "env": {"GLOG_v": "2"}, "labels": {"team": "vision"}, "annotations": {"note": "nightly run"},
}


def golden_path(stage: str, hw: str, cards: int) -> Path:
    return GOLDEN / f"{stage}-{hw}-{cards}.yaml"


def check_golden(path: Path, text: str) -> None:
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path.name} missing: run VITJOB_UPDATE_GOLDEN=1 pytest tests/test_render.py"
    assert text == path.read_text(encoding="utf-8"), f"{path.name} differs: review, then regenerate"


def job_hw(stage: str, hw: str) -> str:
    """infer310 of a gpu pipeline has no GPU runner: it is a CPU job."""
    return "cpu" if (stage, hw) == ("infer310", "gpu") else hw


def the_job(spec: JobSpec) -> dict[str, Any]:
    objects = render_objects(spec)
    assert objects[-1]["kind"] == "Job", "the Volcano Job comes last"
    return objects[-1]


def pod_of(job: dict[str, Any]) -> dict[str, Any]:
    (task,) = job["spec"]["tasks"]
    return task["template"]


def container_of(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_of(job)["spec"]["containers"]
    return container


def env_of(job: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container_of(job)["env"]}


# --- golden files -----------------------------------------------------------------------------


@pytest.mark.parametrize(("stage", "hw", "cards"), CASES)
def test_golden_matrix(stage, hw, cards):
    spec = JobSpec(name="vit", hw=hw, cards=cards, stage=stage)
    check_golden(golden_path(stage, hw, cards), render_yaml(spec))


def test_golden_with_every_option():
    check_golden(GOLDEN / "train-ascend-16-options.yaml", render_yaml(JobSpec(**OPTIONS)))


def test_no_stale_golden_files():
    expected = {golden_path(*case).name for case in CASES} | {"train-ascend-16-options.yaml"}
    assert {p.name for p in GOLDEN.glob("*.yaml")} == expected


def test_yaml_stream_and_objects_agree():
    spec = JobSpec(**OPTIONS)
    text = render_yaml(spec)
    assert text.startswith("---\n")
    assert list(yaml.safe_load_all(text)) == render_objects(spec)
    assert [yaml.safe_load(d) for d in render_documents(spec)] == render_objects(spec)


# --- the pod contract, asserted on parsed objects ---------------------------------------------


@pytest.mark.parametrize(("stage", "hw", "cards"), CASES)
def test_gang_names_labels_and_volcano_semantics(stage, hw, cards):
    spec = JobSpec(name="vit", hw=hw, cards=cards, stage=stage)
    job = the_job(spec)
    pods = spec.num_pods
    (task,) = job["spec"]["tasks"]
    assert (job["apiVersion"], job["kind"]) == ("batch.volcano.sh/v1alpha1", "Job")
    assert job["metadata"]["name"] == f"vit-{stage}"
    # Gang: every pod or none.
    assert job["spec"]["minAvailable"] == task["replicas"] == task["minAvailable"] == pods
    assert job["spec"]["schedulerName"] == "volcano"
    assert job["spec"]["maxRetry"] == 3
    assert job["spec"]["ttlSecondsAfterFinished"] == c.DEFAULT_TTL_SECONDS_AFTER_FINISHED
    assert "queue" not in job["spec"] and "priorityClassName" not in job["spec"]
    assert job["spec"]["policies"] == [
        {"event": "PodEvicted", "action": "RestartJob"},
        {"event": "PodFailed", "action": "RestartJob"},
    ]
    assert task["policies"] == [{"event": "TaskCompleted", "action": "CompleteJob"}]
    assert job["spec"]["plugins"] == {"env": [], "svc": ["--publish-not-ready-addresses=true"]}
    assert task["name"] == "worker"
    assert pod_of(job)["spec"]["restartPolicy"] == "Never"
    assert container_of(job)["name"] == "vitjob"
    # Pod names Volcano will create all fit the 63-character limit.
    assert all(len(f"vit-{stage}-worker-{i}") <= 63 for i in range(pods))
    labels = job["metadata"]["labels"]
    assert pod_of(job)["metadata"]["labels"] == labels
    expected_cards = cards if stage == "train" else 1
    assert {k: v for k, v in labels.items() if k != c.RING_CONTROLLER_LABEL} == {
        "app.kubernetes.io/name": "vitjob",
        "app.kubernetes.io/instance": f"vit-{stage}",
        "app.kubernetes.io/component": stage,
        "app.kubernetes.io/managed-by": "vitjob",
        "app.kubernetes.io/part-of": "vit",
        "vitjob.io/hw": job_hw(stage, hw),
        "vitjob.io/cards": str(expected_cards),
    }
    # `kubectl logs -l volcano.sh/job-name=vit-train` works because Volcano labels each pod with the
    # Job's metadata.name; vitjob must not set volcano.sh/* labels itself.
    assert not any(k.startswith("volcano.sh/") for k in labels)


@pytest.mark.parametrize(("stage", "hw", "cards"), CASES)
def test_launch_command_env_ports_and_volumes(stage, hw, cards):
    spec = JobSpec(name="vit", hw=hw, cards=cards, stage=stage)
    job = the_job(spec)
    container = container_of(job)
    per_pod = spec.pod_cards
    run_hw = job_hw(stage, hw)
    assert container["command"] == ["vitjob", "launch", "--hw", run_hw, "--cards-per-pod", str(per_pod), "--"]
    assert env_of(job) == {
        "VITJOB_JOB_NAME": f"vit-{stage}",
        "VITJOB_TASK": "worker",
        "VITJOB_HW": run_hw,
        "VITJOB_STAGE": stage,
        "VITJOB_CARDS_PER_POD": str(per_pod),
        "VITJOB_NUM_PODS": str(spec.num_pods),
        "VITJOB_DATA_DIR": "/data",
        "VITJOB_OUTPUT_DIR": "/output/vit",
        "MS_SCHED_PORT": "8118",
        "VITJOB_RDZV_PORT": "29400",
        "PYTHONUNBUFFERED": "1",
    }
    ports = [(p["name"], p["containerPort"]) for p in container["ports"]]
    assert ports == [("ms-sched", 8118), ("rdzv", 29400)]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_of(job)["spec"]["volumes"]}
    assert mounts["/data"]["readOnly"] is True and "readOnly" not in mounts["/output"]
    assert volumes[mounts["/data"]["name"]]["persistentVolumeClaim"] == {"claimName": "vitjob-data"}
    assert volumes[mounts["/output"]["name"]]["persistentVolumeClaim"] == {"claimName": "vitjob-output"}
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"] == {"medium": "Memory"}
    assert set(volumes) == {m["name"] for m in container["volumeMounts"]}


STAGE_ARGS = {
    "train": ["vitjob", "train", "--preset", "vit-b16", "--data", "$(VITJOB_DATA_DIR)",
              "--output", "$(VITJOB_OUTPUT_DIR)/train", "--device", "{hw}"],
    "eval": ["vitjob", "eval", "--ckpt", "$(VITJOB_OUTPUT_DIR)/train", "--data", "$(VITJOB_DATA_DIR)",
             "--preset", "vit-b16", "--device", "{hw}",
             "--json-out", "$(VITJOB_OUTPUT_DIR)/train/metrics.json"],
    "export": ["vitjob", "export", "--ckpt", "$(VITJOB_OUTPUT_DIR)/train", "--preset", "vit-b16",
               "--device", "{hw}", "--format", "{format}",
               "--output", "$(VITJOB_OUTPUT_DIR)/export/vit_base.mindir"],
    "infer310": ["vitjob", "infer310", "run", "--mindir", "$(VITJOB_OUTPUT_DIR)/export/vit_base.mindir",
                 "--data", "$(VITJOB_DATA_DIR)", "--workdir", "$(VITJOB_OUTPUT_DIR)/infer310",
                 "--runner", "{runner}"],
}


@pytest.mark.parametrize(("stage", "hw", "cards"), CASES)
def test_stage_commands(stage, hw, cards):
    job = the_job(JobSpec(name="vit", hw=hw, cards=cards, stage=stage))
    fill = {"hw": hw, "format": "MINDIR,AIR" if hw == "ascend" else "MINDIR",
            "runner": "ascend310" if hw == "ascend" else "cpu"}
    assert container_of(job)["args"] == [a.format(**fill) for a in STAGE_ARGS[stage]]


def accelerator_totals(job: dict[str, Any]) -> tuple[dict[str, int], dict[str, int]]:
    """Sum of requests and limits over all pods of the job, per extended resource."""
    replicas = job["spec"]["tasks"][0]["replicas"]
    resources = container_of(job)["resources"]
    sums: list[dict[str, int]] = []
    for part in ("requests", "limits"):
        sums.append({k: int(v) * replicas for k, v in resources.get(part, {}).items() if "/" in k})
    return sums[0], sums[1]


@pytest.mark.parametrize(("hw", "cards"), [m for m in MATRIX if m[0] == "ascend"])
def test_ascend_910_training_pods(hw, cards):
    spec = JobSpec(name="vit", hw=hw, cards=cards)
    job = the_job(spec)
    pod = pod_of(job)["spec"]
    requests, limits = accelerator_totals(job)
    assert requests == limits == {"huawei.com/Ascend910": cards}
    assert int(container_of(job)["resources"]["limits"]["huawei.com/Ascend910"]) <= 8
    assert pod["nodeSelector"] == {"accelerator": "huawei-Ascend910"}
    assert job["metadata"]["labels"]["ring-controller.atlas"] == "ascend-910"
    # One pod per node: the anti-affinity selector matches this job's own pods.
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    (expr,) = term["labelSelector"]["matchExpressions"]
    assert expr["operator"] == "In" and pod_of(job)["metadata"]["labels"][expr["key"]] in expr["values"]
    assert expr["values"] == ["vit-train"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container_of(job)["volumeMounts"]}
    podinfo = volumes[mounts["/etc/vitjob/podinfo"]["name"]]["downwardAPI"]["items"]
    assert podinfo == [{"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                       {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]
    assert volumes[mounts["/etc/hccn.conf"]["name"]]["hostPath"] == {"path": "/etc/hccn.conf", "type": "File"}
    driver = mounts["/usr/local/Ascend/driver"]
    assert driver["readOnly"] is True
    assert volumes[driver["name"]]["hostPath"]["path"] == "/usr/local/Ascend/driver"
    assert container_of(job)["image"] == default_image("ascend")


@pytest.mark.parametrize(("hw", "cards"), [m for m in MATRIX if m[0] == "gpu"])
def test_gpu_training_pods(hw, cards):
    job = the_job(JobSpec(name="vit", hw=hw, cards=cards))
    requests, limits = accelerator_totals(job)
    assert requests == {} and limits == {"nvidia.com/gpu": cards}
    assert "nodeSelector" not in pod_of(job)["spec"] and "affinity" not in pod_of(job)["spec"]
    assert container_of(job)["image"] == default_image("gpu")


def test_gpus_per_pod_is_configurable():
    job = the_job(JobSpec(name="vit", hw="gpu", cards=16, gpus_per_pod=4))
    assert job["spec"]["minAvailable"] == 4
    assert container_of(job)["resources"]["limits"] == {"nvidia.com/gpu": "4"}


def test_cpu_pods_have_requests_only_and_honour_cards_per_pod():
    job = the_job(JobSpec(name="vit", hw="cpu", cards=6, cards_per_pod=3))
    assert container_of(job)["resources"] == {"requests": {"cpu": "6", "memory": "24Gi"}}
    assert job["spec"]["minAvailable"] == 2
    assert container_of(job)["command"][4:6] == ["--cards-per-pod", "3"]


def test_infer310_on_ascend_targets_310_nodes():
    job = the_job(JobSpec(name="vit", hw="ascend", stage="infer310", cards=64))
    pod = pod_of(job)["spec"]
    assert container_of(job)["resources"]["limits"] == {"huawei.com/Ascend310": "1"}
    assert container_of(job)["resources"]["requests"]["huawei.com/Ascend310"] == "1"
    assert pod["nodeSelector"] == {"accelerator": "huawei-Ascend310"}
    assert container_of(job)["image"] == default_image("ascend310")
    assert c.RING_CONTROLLER_LABEL not in job["metadata"]["labels"]
    assert "affinity" not in pod
    assert {m["mountPath"] for m in container_of(job)["volumeMounts"]} == {
        "/data", "/output", "/dev/shm", "/usr/local/Ascend/driver"}


@pytest.mark.parametrize("hw", ["gpu", "cpu"])
def test_infer310_without_ascend_uses_the_cpu_runner_and_no_accelerator(hw):
    job = the_job(JobSpec(name="vit", hw=hw, stage="infer310"))
    assert "limits" not in container_of(job)["resources"]
    assert "nodeSelector" not in pod_of(job)["spec"]
    assert container_of(job)["args"][-2:] == ["--runner", "cpu"]
    assert container_of(job)["command"][2:4] == ["--hw", "cpu"]
    assert job["metadata"]["labels"]["vitjob.io/hw"] == "cpu"
    assert container_of(job)["image"] == default_image("cpu")


@pytest.mark.parametrize("stage", ["eval", "export"])
def test_single_card_stages_on_ascend_use_one_910_card(stage):
    job = the_job(JobSpec(name="vit", hw="ascend", stage=stage, cards=64))
    assert job["spec"]["minAvailable"] == 1
    assert container_of(job)["resources"]["limits"] == {"huawei.com/Ascend910": "1"}
    assert job["metadata"]["labels"]["vitjob.io/cards"] == "1"


def test_every_option_reaches_the_job():
    job = the_job(JobSpec(**OPTIONS))
    pod = pod_of(job)["spec"]
    assert job["metadata"]["namespace"] == "ml"
    assert (job["spec"]["queue"], job["spec"]["priorityClassName"]) == ("research", "high")
    assert (job["spec"]["maxRetry"], job["spec"]["ttlSecondsAfterFinished"]) == (5, 3600)
    assert container_of(job)["args"][10:] == [
        "--epochs", "3", "--batch-size", "64", "--lr", "0.0003",
        "--pretrained", "$(VITJOB_DATA_DIR)/weights/vit.npz", "--save-every", "100"]
    assert env_of(job)["VITJOB_DATA_DIR"] == "/data/cifar10"
    assert env_of(job)["GLOG_v"] == "2"
    assert pod["nodeSelector"] == {"accelerator": "huawei-Ascend910", "accelerator-type": "module-910b-8"}
    assert pod["tolerations"] == [
        {"operator": "Exists", "key": "huawei.com/Ascend910", "effect": "NoSchedule"},
        {"operator": "Equal", "key": "spot", "value": "yes", "effect": "NoExecute", "tolerationSeconds": 60}]
    for meta in (job["metadata"], pod_of(job)["metadata"]):
        assert meta["labels"]["team"] == "vision"
        assert meta["annotations"] == {"note": "nightly run"}


def test_absolute_pretrained_path_is_kept_and_ttl_can_be_unset():
    job = the_job(JobSpec(name="vit", hw="cpu", cards=2, pretrained="/output/vit/w.npz",
                          ttl_seconds_after_finished=None))
    assert container_of(job)["args"][-2:] == ["--pretrained", "/output/vit/w.npz"]
    assert "ttlSecondsAfterFinished" not in job["spec"]


def test_pipeline_sets_part_of_and_the_output_directory():
    job = the_job(JobSpec(name="vit2", hw="cpu", stage="eval", pipeline="vit"))
    assert job["metadata"]["name"] == "vit2-eval"
    assert job["metadata"]["labels"]["app.kubernetes.io/part-of"] == "vit"
    assert env_of(job)["VITJOB_OUTPUT_DIR"] == "/output/vit"


# --- injection --------------------------------------------------------------------------------

PAYLOADS = [
    'quote " and \' quote',
    "line\nbreak\r\nand\ttab",
    "{{ 7 * 7 }}",
    "{% if true %}x{% endif %}",
    "key: value",
    "# comment",
    "&anchor value",
    "*alias",
    "!!python/object:os.system",
    "- list item",
    "---",
    "...",
    "back\\slash \\n",
    "unicode é ü 中文 😀 \u2028 \u2029 \x85 \ufeff",
    "\x01\x07\x1b[31m",
    "  leading and trailing  ",
    "",
    "null",
    "true",
    "0x1F",
    "1e3",
    "]: {[",
    "value\n  injected: field",
    '"}\n---\nkind: Secret',
]


def key_paths(obj: Any, prefix: str = "") -> set[str]:
    """Every mapping key path of a parsed object (list items collapse to [])."""
    if isinstance(obj, dict):
        return {p for k, v in obj.items() for p in {f"{prefix}.{k}"} | key_paths(v, f"{prefix}.{k}")}
    if isinstance(obj, list):
        return {p for v in obj for p in key_paths(v, f"{prefix}[]")}
    return set()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_in_env_annotations_and_args_round_trip_exactly(payload):
    spec = JobSpec(name="vit", hw="ascend", cards=8, env={"PAYLOAD": payload},
                   annotations={"vitjob.io/note": payload}, extra_args=[payload, "--x"],
                   pretrained=f"/abs/{payload}".replace("\n", "").replace("\r", ""))
    benign = JobSpec(name="vit", hw="ascend", cards=8, env={"PAYLOAD": "x"},
                     annotations={"vitjob.io/note": "x"},
                     extra_args=["x", "--x"], pretrained="/abs/x")
    job = the_job(spec)
    assert env_of(job)["PAYLOAD"] == payload
    assert job["metadata"]["annotations"]["vitjob.io/note"] == payload
    assert pod_of(job)["metadata"]["annotations"]["vitjob.io/note"] == payload
    assert container_of(job)["args"][-2:] == [payload, "--x"]
    assert spec.pretrained in container_of(job)["args"]
    # Never an extra field or document.
    assert len(render_objects(spec)) == 1
    assert key_paths(job) == key_paths(the_job(benign))


# key -> (place the payload in spec kwargs, a harmless value, read it back from the job, rejection message)
PLACES: dict[str, tuple[Any, str, Any, str]] = {
    "name": (lambda v: {"name": v}, "vit", lambda j: j["metadata"]["name"].removesuffix("-train"),
             "is not a DNS-1035 label"),
    "namespace": (lambda v: {"namespace": v}, "default", lambda j: j["metadata"]["namespace"],
                  "is not a DNS-1123 label"),
    "image": (lambda v: {"image": v}, "busybox", lambda j: container_of(j)["image"],
              "is not an image reference"),
    "preset": (lambda v: {"preset": v}, "vit-b16", lambda j: container_of(j)["args"][3],
               "is not a preset name"),
    "queue": (lambda v: {"queue": v}, "q", lambda j: j["spec"]["queue"], "is not a DNS-1123 subdomain"),
    "data_pvc": (lambda v: {"data_pvc": v}, "pvc",
                 lambda j: pod_of(j)["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
                 "is not a PersistentVolumeClaim name"),
    "label": (lambda v: {"labels": {"team": v}}, "x", lambda j: j["metadata"]["labels"]["team"],
              "is not a label value"),
    "label_key": (lambda v: {"labels": {v: "x"}}, None, lambda j: next(
        k for k in j["metadata"]["labels"] if not k.startswith(("app.", "vitjob.", "ring-"))),
        "is not a label key"),
    "env_name": (lambda v: {"env": {v: "x"}}, None, lambda j: container_of(j)["env"][-1]["name"],
                 "is not an environment variable name"),
}


@pytest.mark.parametrize("payload", [p for p in PAYLOADS if p])  # "" means "use the default"
@pytest.mark.parametrize("key", list(PLACES))
def test_payloads_in_names_labels_and_image_are_rejected_or_round_trip(payload, key):
    place, harmless, read_back, message = PLACES[key]
    try:
        spec = JobSpec(hw="ascend", **{"name": "vit", **place(payload)})
    except SpecError as exc:
        assert message in str(exc) or "required" in str(exc)
        return
    # Accepted (e.g. "null" is a fine queue name): it must come back exactly, with no extra field.
    job = the_job(spec)
    assert read_back(job) == payload
    if harmless is not None:
        benign = JobSpec(hw="ascend", **{"name": "vit", **place(harmless)})
        assert key_paths(job) == key_paths(the_job(benign))


def test_yaml_quote_round_trips_random_strings():
    rng = random.Random(1234)
    alphabet = [chr(i) for i in range(1, 0x250)] + list("\u2028\u2029\ufeff\ufffe😀𝄞中") + ["\x85"]
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        quoted = str(yaml_quote(text))
        assert "\n" not in quoted
        assert yaml.safe_load(quoted) == text
        assert yaml.load(quoted, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) == text


# --- the template guard -----------------------------------------------------------------------


def test_unfiltered_template_output_is_refused():
    env = template_environment()
    with pytest.raises(RenderError, match="without the q or num filter"):
        env.from_string("x: {{ value }}").render(value="a\nb: c")
    with pytest.raises(RenderError, match="not a string"):
        env.from_string("x: {{ value | q }}").render(value=3)
    with pytest.raises(RenderError, match="not an int"):
        env.from_string("x: {{ value | num }}").render(value=True)
    with pytest.raises(jinja2.UndefinedError, match="'missing' is undefined"):
        env.from_string("x: {{ missing | q }}").render()


def test_templates_ship_as_package_data():
    names = {p.name for p in manifests_dir().iterdir() if p.name.endswith(".j2")}
    assert names == {p.name for p in (REPO / "manifests").glob("*.j2")}
    assert "volcano-job.yaml.j2" in names


# --- vitjob render ----------------------------------------------------------------------------

needs_crds = pytest.mark.skipif(
    not CRDS.is_dir(), reason=f"Volcano CRDs not found at {CRDS} (../shared/crds next to the repo)"
)


@needs_crds
def test_render_prints_the_validated_stream(capsys):
    rc = main(["render", "--hw", "ascend", "--cards", "16", "--name", "vit", "--crd", str(CRDS)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out == render_yaml(JobSpec(name="vit", hw="ascend", cards=16))


@needs_crds
def test_render_writes_one_file_per_object(tmp_path, capsys):
    rc = main(["render", "--hw", "gpu", "--cards", "8", "--name", "vit", "--stage", "eval",
               "--crd", str(CRDS), "-o", str(tmp_path / "out")])
    out, _ = capsys.readouterr()
    assert rc == 0
    assert out.splitlines() == [str(tmp_path / "out" / "job-vit-eval.yaml")]
    written = yaml.safe_load((tmp_path / "out" / "job-vit-eval.yaml").read_text())
    assert written == render_objects(JobSpec(name="vit", hw="gpu", cards=8, stage="eval"))[-1]


def test_render_flags_values_file_and_set(tmp_path, capsys):
    values = tmp_path / "v.yaml"
    values.write_text("hw: gpu\ncards: 8\nqueue: from-file\nenv: {A: '1'}\n")
    rc = main(["render", "--no-validate", "--name", "vit", "-f", str(values), "--cards", "16",
               "--set", "queue=from-set", "--set", "env.B=2", "--epochs", "2"])
    out, _ = capsys.readouterr()
    assert rc == 0
    (job,) = list(yaml.safe_load_all(out))
    assert job["spec"]["queue"] == "from-set"
    assert job["spec"]["minAvailable"] == 2
    assert env_of(job)["A"] == "1" and env_of(job)["B"] == "2"
    assert "--epochs" in container_of(job)["args"]


def test_render_without_crd_warns_and_still_checks_pod_templates(capsys, caplog, monkeypatch):
    monkeypatch.delenv(c.ENV_CRD_PATH, raising=False)
    rc = main(["render", "--hw", "cpu", "--cards", "2", "--name", "vit"])
    out, _ = capsys.readouterr()
    assert rc == 0 and out.startswith("---\n")
    assert "not checked against its CRD" in caplog.text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hw", "ascend", "--cards", "3"], "cards: 3 is not allowed for hw ascend; use 1, 2, 4, 8"),
        (["--hw", "cpu", "--cards", "0"], "cards: 0 is not allowed"),
        (["--hw", "tpu"], "hw: 'tpu' is not allowed; use one of ascend, gpu, cpu"),
        (["--hw", "cpu", "--name", "Vit_B"], "name: 'Vit_B' is not a DNS-1035 label"),
        (["--hw", "cpu", "--name", "v" * 50], "characters long; Kubernetes allows at most 63"),
        (["--hw", "cpu", "--set", "epoch=3"], "did you mean 'epochs'?"),
        (["--hw", "cpu", "--set", "env.X=a", "--set", "labels.a=b c"],
         "labels.a: 'b c' is not a label value"),
        (["--hw", "cpu", "--image", "x\n  injected: true"], "is not an image reference"),
        (["--hw", "cpu", "--k8s-version", "1.20"], "k8s_version: '1.20' is not supported"),
        (["--hw", "cpu", "--crd", "/nonexistent/crds"], "CRD source /nonexistent/crds: not found"),
        (["--hw", "cpu", "--cards", "x"], "invalid int value"),
    ],
)
def test_bad_input_exits_2_with_nothing_on_stdout(argv, message, capsys):
    if "--name" not in argv:
        argv = [*argv, "--name", "vit"]
    rc, out, err = run_cli(["render", *argv], capsys)
    assert rc == 2
    assert out == ""
    assert message in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cards: [8\n", "line 2, column 1"),
        ("name: a\nname: b\n", "duplicate key 'name'"),
        ("[1, 2]\n", "mapping"),
    ],
)
def test_malformed_values_file_exits_2_with_nothing_on_stdout(tmp_path, capsys, text, message):
    values = tmp_path / "v.yaml"
    values.write_text(text)
    rc, out, err = run_cli(["render", "--hw", "cpu", "--name", "vit", "-f", str(values)], capsys)
    assert (rc, out) == (2, "")
    assert message in err and str(values) in err


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``vitjob ARGV`` (argparse errors raise SystemExit)."""
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err
