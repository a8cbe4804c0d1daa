"""JobSpec: job shape per hardware, validation messages, and loading from values file/flags/--set."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from vitjob.api.rules import INT_RANGES
from vitjob.api.spec import JobSpec
from vitjob.api.values import load_spec
from vitjob.errors import SpecError
from vitjob.images import default_image


def problems_of(**kwargs) -> list[str]:
    kwargs.setdefault("name", "vit")
    kwargs.setdefault("hw", "ascend")
    with pytest.raises(SpecError) as info:
        JobSpec(**kwargs)
    return info.value.problems


# --- shape ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hw", "cards", "extra", "pods", "per_pod"),
    [
        ("ascend", 1, {}, 1, 1),
        ("ascend", 2, {}, 1, 2),
        ("ascend", 4, {}, 1, 4),
        ("ascend", 8, {}, 1, 8),
        ("ascend", 16, {}, 2, 8),
        ("ascend", 64, {}, 8, 8),
        ("gpu", 1, {}, 1, 1),
        ("gpu", 8, {}, 1, 8),
        ("gpu", 16, {}, 2, 8),
        ("gpu", 6, {}, 1, 6),
        ("gpu", 16, {"gpus_per_pod": 4}, 4, 4),
        ("cpu", 2, {}, 1, 2),
        ("cpu", 7, {}, 1, 7),
        ("cpu", 6, {"cards_per_pod": 2}, 3, 2),
    ],
)
def test_pods_and_cards_per_pod(hw, cards, extra, pods, per_pod):
    spec = JobSpec(name="vit", hw=hw, cards=cards, **extra)
    assert (spec.num_pods, spec.pod_cards) == (pods, per_pod)
    assert spec.num_pods * spec.pod_cards == cards


@pytest.mark.parametrize("stage", ["eval", "export", "infer310"])
@pytest.mark.parametrize("hw", ["ascend", "gpu", "cpu"])
def test_single_card_stages_use_one_card_whatever_the_training_cards(stage, hw):
    spec = JobSpec(name="vit", hw=hw, stage=stage, cards=16)
    assert (spec.total_cards, spec.num_pods, spec.pod_cards) == (1, 1, 1)


def test_job_and_pod_names_follow_the_naming_rule():
    spec = JobSpec(name="vit", hw="ascend", stage="train", cards=64)
    assert spec.job_name == "vit-train"
    assert spec.pod_name(7) == "vit-train-worker-7"
    assert JobSpec(name="vit", hw="cpu", stage="eval").job_name == "vit-eval"
    assert spec.pipeline_name == "vit"
    assert JobSpec(name="vit2", hw="cpu", pipeline="vit").pipeline_name == "vit"


def test_default_and_explicit_images():
    assert JobSpec(name="v", hw="ascend").effective_image == default_image("ascend")
    assert JobSpec(name="v", hw="gpu").effective_image == default_image("gpu")
    assert JobSpec(name="v", hw="ascend", stage="infer310").effective_image == default_image("ascend310")
    assert JobSpec(name="v", hw="cpu", image="r.example.com:5000/x/y:1").effective_image == (
        "r.example.com:5000/x/y:1"
    )


def test_node_selector_defaults_merge_and_removal():
    assert JobSpec(name="v", hw="ascend").effective_node_selector == {"accelerator": "huawei-Ascend910"}
    assert JobSpec(name="v", hw="ascend", stage="infer310").effective_node_selector == {
        "accelerator": "huawei-Ascend310"
    }
    assert JobSpec(name="v", hw="gpu").effective_node_selector == {}
    merged = JobSpec(name="v", hw="ascend", node_selector={"accelerator-type": "module-910b-8"})
    assert merged.effective_node_selector == {
        "accelerator": "huawei-Ascend910",
        "accelerator-type": "module-910b-8",
    }
    removed = JobSpec(name="v", hw="ascend", node_selector={"accelerator": None})
    assert removed.effective_node_selector == {}


def test_default_requests_scale_with_cards_in_the_pod_and_can_be_overridden():
    spec = JobSpec(name="v", hw="ascend", cards=16)
    assert (spec.cpu_request, spec.memory_request) == ("64", "256Gi")
    spec = JobSpec(name="v", hw="cpu", cards=2, cpu="3", memory="5Gi")
    assert (spec.cpu_request, spec.memory_request) == ("3", "5Gi")


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize("cards", [3, 5, 6, 7, 12, 20, 65])
def test_ascend_card_counts_that_do_not_fit_nodes_are_rejected_with_the_allowed_counts(cards):
    (problem,) = problems_of(cards=cards)
    assert problem.startswith(f"cards: {cards} is not allowed for hw ascend")
    assert "1, 2, 4, 8" in problem and "multiple of 8" in problem


@pytest.mark.parametrize("cards", [0, -1])
def test_non_positive_cards_are_rejected(cards):
    expected = f"cards: {cards} is not allowed; use a positive number of cards"
    assert problems_of(cards=cards, hw="cpu") == [expected]


def test_gpu_cards_must_fill_pods():
    (problem,) = problems_of(hw="gpu", cards=12)
    assert "at most 8" in problem and "multiple of 8" in problem and "16" in problem


def test_cards_per_pod_is_cpu_only_and_must_divide_cards():
    assert problems_of(hw="gpu", cards_per_pod=2)[0].startswith("cards_per_pod: applies to hw cpu only")
    assert problems_of(hw="cpu", cards=6, cards_per_pod=4)[0].startswith("cards_per_pod: 4 does not divide")


def test_every_problem_is_reported_at_once_with_allowed_values():
    problems = problems_of(
        name="Bad_Name", hw="tpu", stage="serve", namespace="NS", data_pvc="a b", epochs=0, lr=-1.0,
        image_pull_policy="Sometimes",
    )
    fields = [p.split(":")[0] for p in problems]
    assert fields == ["name", "namespace", "hw", "stage", "image_pull_policy", "data_pvc", "epochs", "lr"]
    assert "use one of ascend, gpu, cpu" in problems[2]
    assert "use one of train, eval, export, infer310" in problems[3]


def test_the_message_lists_one_problem_per_line_and_says_how_to_fix():
    with pytest.raises(SpecError) as info:
        JobSpec(name="vit", hw="tpu", cards=0)
    lines = str(info.value).splitlines()
    assert "2 problems" in lines[0] and "--set KEY=VALUE" in lines[0]
    assert lines[1:] == ["  - hw: 'tpu' is not allowed; use one of ascend, gpu, cpu",
                         "  - cards: 0 is not allowed; use a positive number of cards"]


def test_missing_name_and_hw_say_which_flag_to_pass():
    problems = problems_of(name="", hw="")
    assert problems[0].startswith("name: required; pass --name")
    assert problems[1] == "hw: required; use one of ascend, gpu, cpu"


@pytest.mark.parametrize(
    "name", ["Vit", "vit_b16", "1vit", "vit-", "-vit", "vi t", 'v"it', "vit\n", "{{ x }}", "a: b", "&a", "*a"]
)
def test_names_that_are_not_dns_labels_are_rejected(name):
    (problem,) = problems_of(name=name)
    assert problem.startswith(f"name: {name!r} is not a DNS-1035 label")


def test_pod_name_limit_uses_the_computed_pod_name():
    # "<name>-train-worker-7" is len(name) + 15 characters.
    ok = "a" * 48
    assert JobSpec(name=ok, hw="ascend", cards=64).pod_name(7) == ok + "-train-worker-7"
    assert len(ok + "-train-worker-7") == 63
    (problem,) = problems_of(name=ok + "b", cards=64)
    assert f"'{ok}b-train-worker-7' 64 characters long" in problem
    assert "at most 63" in problem and "shorten --name by 1 character" in problem
    # 11 pods: the last pod's index has two digits.
    (problem,) = problems_of(name=ok, cards=88)
    assert f"'{ok}-train-worker-10' 64 characters long" in problem


def test_wrong_types_are_reported_not_coerced():
    assert problems_of(cards="8") == ["cards: expected an integer, got str '8'"]
    assert problems_of(cards=True) == ["cards: expected an integer, got bool True"]
    assert problems_of(env={"A": 1})[0].startswith("env: expected a mapping of strings")


@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b"])
def test_nul_and_lone_surrogates_are_rejected(bad):
    (problem,) = problems_of(env={"FOO": bad})
    assert problem.startswith("env: ")


@pytest.mark.parametrize(
    "image",
    [default_image("ascend"), "busybox", "r.example.com:5000/team/vitjob:1.0-rc1",
     "ghcr.io/a/b@sha256:" + "a" * 64, "localhost/x_y__z:latest"],
)
def test_good_image_references_pass(image):
    assert JobSpec(name="v", hw="cpu", image=image).effective_image == image


@pytest.mark.parametrize(
    "image", ["Busybox", "a b", 'x"y', "x\ny", "x:{{ y }}", "x#y", "x: y", "&a", "!!python/object:x", "x:"]
)
def test_bad_image_references_are_rejected(image):
    (problem,) = problems_of(hw="cpu", image=image)
    assert problem.startswith(f"image: {image!r} is not an image reference")


def test_env_names_must_be_valid_and_not_reserved():
    problems = problems_of(env={"1X": "a", "VITJOB_DATA_DIR": "b", "VC_TASK_INDEX": "c", "RANK_ID": "d"})
    assert len(problems) == 4
    assert "not an environment variable name" in problems[0]
    assert all("is reserved" in p for p in problems[1:])
    assert JobSpec(name="v", hw="cpu", env={"MS_DEV_X": "1", "GLOG_v": "2"}).env == {
        "MS_DEV_X": "1", "GLOG_v": "2"}


def test_labels_keys_and_values_are_checked_and_reserved_keys_refused():
    problems = problems_of(labels={"team": "a b", "app.kubernetes.io/name": "x", "bad key": "v"})
    assert problems[0].startswith("labels.team: 'a b' is not a label value")
    assert problems[1] == "labels: app.kubernetes.io/name is set by vitjob or Volcano; choose another key"
    assert problems[2].startswith("labels: 'bad key' is not a label key")


def test_tolerations_are_checked():
    problems = problems_of(tolerations=[{"key": "k", "operator": "Maybe", "colour": "x"},
                                        {"operator": "Exists", "value": "v", "effect": "Never"}])
    assert problems == [
        "tolerations[0]: unknown key 'colour'; use key, operator, value, effect, tolerationSeconds",
        "tolerations[0]: operator: 'Maybe' is not allowed; use Equal or Exists",
        "tolerations[1]: value: must be empty with operator Exists; use operator Equal to match a value",
        "tolerations[1]: effect: 'Never' is not allowed; use NoSchedule, PreferNoSchedule, NoExecute",
    ]


@pytest.mark.parametrize("version", ["1.24", "1.38", "abc", ""])
def test_unsupported_kubernetes_versions_name_the_supported_range(version):
    (problem,) = problems_of(k8s_version=version)
    assert problem.startswith(f"k8s_version: {version!r} is not supported; use one of 1.25 to 1.37")


def test_kubernetes_version_with_v_prefix_and_patch_is_accepted():
    assert JobSpec(name="v", hw="cpu", k8s_version="v1.30.2").k8s_version == "v1.30.2"


@pytest.mark.parametrize("subpath", ["/abs", "../up", "a/../b", "a//b", "a b", "a\nb"])
def test_data_subpath_must_stay_inside_the_volume(subpath):
    (problem,) = problems_of(data_subpath=subpath)
    assert problem.startswith(f"data_subpath: {subpath!r} is not a relative path")


def test_ports_must_differ_and_be_unprivileged():
    assert problems_of(sched_port=80)[0].startswith("sched_port: 80 is not allowed")
    assert problems_of(rdzv_port=8118) == ["rdzv_port: 8118 is also sched_port; use two different ports"]


def test_replace_revalidates():
    spec = JobSpec(name="vit", hw="ascend", cards=8)
    with pytest.raises(SpecError, match="cards: 3 is not allowed"):
        dataclasses.replace(spec, cards=3)


# --- loading ----------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_precedence_is_file_then_flags_then_set(tmp_path):
    values = write(tmp_path, "name: from-file\nhw: gpu\ncards: 8\nepochs: 5\nqueue: file-q\n")
    spec = load_spec({"cards": 16, "epochs": None}, values, ["cards=1", "hw=cpu"])
    assert (spec.name, spec.hw, spec.cards, spec.epochs, spec.queue) == ("from-file", "cpu", 1, 5, "file-q")
    spec = load_spec({"cards": 16}, values, [])
    assert spec.cards == 16


def test_set_reaches_mapping_keys_and_merges_with_the_file(tmp_path):
    values = write(tmp_path, "env: {A: '1', B: '2'}\n")
    spec = load_spec({"name": "v", "hw": "cpu"}, values, ["env.B=3", "env.C=x=y", "node_selector.pool=a"])
    assert spec.env == {"A": "1", "B": "3", "C": "x=y"}
    assert spec.node_selector == {"pool": "a"}


def test_set_converts_to_the_field_type_and_null_clears_optional_fields():
    overrides = ["lr=3e-4", "epochs=2", "ttl_seconds_after_finished=null"]
    spec = load_spec({"name": "v", "hw": "cpu"}, None, overrides)
    assert (spec.lr, spec.epochs, spec.ttl_seconds_after_finished) == (3e-4, 2, None)


def test_values_file_numbers_written_as_1e_minus_4_are_read_as_numbers(tmp_path):
    spec = load_spec({"name": "v", "hw": "cpu"}, write(tmp_path, "lr: 1e-4\n"), [])
    assert spec.lr == 1e-4


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("epoch=3", "--set epoch: unknown key; did you mean 'epochs'?"),
        ("data-pvc=x", "--set data-pvc: unknown key; did you mean 'data_pvc'?"),
        ("prioritty_class=x", "--set prioritty_class: unknown key; did you mean 'priority_class'?"),
        ("cards", "--set 'cards': expected KEY=VALUE (e.g. --set cards=8)"),
        ("cards=eight", "--set cards: 'eight' is not an integer"),
        ("lr=fast", "--set lr: 'fast' is not a number"),
        ("cards.x=1",
         "--set cards.x: only node_selector, env, labels, annotations take a sub-key "
         "(e.g. --set env.FOO=bar)"),
        ("tolerations=x", "--set tolerations: a list; set it in the values file (-f)"),
        ("env=x", "--set env: a mapping; use --set env.KEY=VALUE or the values file (-f)"),
    ],
)
def test_bad_set_overrides_are_explained(override, expected):
    with pytest.raises(SpecError) as info:
        load_spec({"name": "v", "hw": "cpu"}, None, [override])
    assert info.value.problems == [expected]


def test_override_problems_and_spec_problems_are_reported_together():
    with pytest.raises(SpecError) as info:
        load_spec({"name": "v", "hw": "ascend", "cards": 3}, None, ["epoch=1"])
    assert [p.split(":")[0] for p in info.value.problems] == ["--set epoch", "cards"]


def test_values_file_unknown_key_suggests_the_nearest(tmp_path):
    with pytest.raises(SpecError) as info:
        load_spec({"hw": "cpu", "name": "v"}, write(tmp_path, "cardz: 8\n"), [])
    source = f"values file {tmp_path / 'values.yaml'}"
    assert info.value.problems == [f"{source}: unknown key 'cardz'; did you mean 'cards'?"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("cards: [8\n", "line 2, column 1"),
        ("cards: 8\ncards: 4\n", "duplicate key 'cards'"),
        ("- cards\n", "expected a mapping of spec keys"),
        ("name: !!python/object/apply:os.system [echo]\n", "could not determine a constructor"),
        ("a: &x 1\nb: *y\n", "found undefined alias"),
        ("name: 'unterminated\n", "line "),
    ],
)
def test_malformed_values_files_are_rejected_with_the_place(tmp_path, text, fragment):
    with pytest.raises(SpecError) as info:
        load_spec({}, write(tmp_path, text), [])
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"values file {tmp_path / 'values.yaml'}:")


def test_missing_values_file_says_so(tmp_path):
    with pytest.raises(SpecError, match="not found; check the path given to -f"):
        load_spec({}, tmp_path / "nope.yaml", [])


def test_empty_values_file_is_allowed(tmp_path):
    assert load_spec({"name": "v", "hw": "cpu"}, write(tmp_path, "# nothing\n"), []).cards == 1


def test_values_file_sets_structured_keys(tmp_path):
    text = (
        "name: vit\nhw: ascend\ncards: 16\n"
        "tolerations:\n  - {key: huawei.com/Ascend910, operator: Exists, effect: NoSchedule}\n"
        "labels: {team: vision}\nextra_args: ['--save-every', '100']\n"
    )
    spec = load_spec({}, write(tmp_path, text), [])
    assert spec.tolerations == [{"key": "huawei.com/Ascend910", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec.extra_args == ["--save-every", "100"]
    assert spec.num_pods == 2


CHART_VALUES = Path(__file__).resolve().parents[1] / "charts" / "vitjob" / "values.yaml"


def test_spec_defaults_are_the_helm_charts_defaults():
    # The chart's values are the VitJob spec: the spec's keys (snake_case, as in a values file), and
    # every default the chart documents to its users is the spec's own.
    values = yaml.safe_load(CHART_VALUES.read_text(encoding="utf-8"))
    spec = JobSpec(name="v", hw="cpu")
    fields = {f.name for f in dataclasses.fields(JobSpec)} - {"attempt"}  # a pipeline sets attempt
    # name and namespace are the VitJob's metadata (name: the release name; namespace: helm -n).
    run_keys = {"then", "gates", "retry", "stage_retries", "stage_retry_backoff_s"}
    assert set(values) == fields - {"namespace"} | run_keys | {"controller", "tests"}
    assert (values["gates"], values["retry"], values["stage_retries"]) == ([], 0, 0)
    assert values["name"] == "" and values["then"] == []
    # hw is required by the spec; the chart defaults it to the platform the workflow targets.
    assert values["hw"] == "ascend"
    for key in fields - {"name", "namespace", "hw"}:
        assert getattr(spec, key) == values[key], f"{key}: {getattr(spec, key)!r}, chart: {values[key]!r}"
    assert spec.namespace == "default"  # Kubernetes' own default namespace
    assert (spec.sched_port, spec.rdzv_port) == (8118, 29400)  # the chart README's table


def test_constraint_tables_name_real_fields():
    from vitjob.api import rules

    fields = {f.name for f in dataclasses.fields(JobSpec)}
    for table in (rules.CHOICES, rules.INT_RANGES, rules.NUMBER_EXCLUSIVE_MINIMUMS, rules.TEXT_RULES,
                  rules.FIELD_DOCS):
        assert set(table) <= fields
    assert set(rules.FIELD_DOCS) == fields, "every field is documented (CRD descriptions, kubectl explain)"


@pytest.mark.parametrize("key", sorted(INT_RANGES))
def test_int_ranges_are_the_bounds_the_spec_checks(key):
    low, high = INT_RANGES[key]
    base = {"name": "vit", "hw": "cpu", "cards": 1}
    if key == "cards_per_pod":
        base["cards"] = low
    if key in ("sched_port", "rdzv_port"):
        base["rdzv_port" if key == "sched_port" else "sched_port"] = 5000
    def value(n: int) -> int | list[int]:  # a list field's range is its items'
        return [n] if key == "supplemental_groups" else n

    JobSpec(**{**base, key: value(low)})  # accepted
    with pytest.raises(SpecError):
        JobSpec(**{**base, key: value(low - 1)})
    if key not in ("cards", "cards_per_pod"):  # cards of 2**31-1 processes: other rules join in
        JobSpec(**{**base, key: value(high)})
    with pytest.raises(SpecError):
        JobSpec(**{**base, key: value(high + 1)})
