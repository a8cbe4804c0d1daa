"""The rules across spec fields as the chart's values.schema.json says them (``if``/``then``, generated
from vitjob.api.rules.CROSS_RULES), checked by real helm 3 and 4 against the spec's own checks.

For each spec of tests/admission_cases.py, ``helm template`` must refuse the values exactly when the spec
breaks a rule that has a JSON Schema form (the others are left to the API server's CEL rules: see
tests/e2e/test_e2e_admission.py), before anything is installed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from admission_cases import CASES, Case, spec_problems_of
from test_chart import CHART, helm, run_helm  # noqa: F401  (helm: the fixture of helm 3 and 4)

from vitjob.api.rules import CROSS_RULES

JSON_RULES = {rule.name for rule in CROSS_RULES if rule.json_schema is not None}


def test_every_rule_is_in_the_table_broken_and_kept() -> None:
    broken = {name for case in CASES for name in case.breaks}
    assert broken == {rule.name for rule in CROSS_RULES}
    assert {"ascend-cards", "cards-per-pod-cpu-only", "stage-order"} == JSON_RULES
    for case in CASES:  # the table says what the spec's own checks say
        assert bool(spec_problems_of(case.values)) == bool(case.breaks), case.id


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_helm_refuses_the_values_the_schema_can_refuse(helm: Path, tmp_path: Path, case: Case) -> None:  # noqa: F811
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"name": "adm", **case.values}), encoding="utf-8")
    proc = run_helm(helm, tmp_path, "template", "adm", str(CHART), "-f", str(values))
    expect_refusal = bool(set(case.breaks) & JSON_RULES)
    assert (proc.returncode != 0) == expect_refusal, (case.id, proc.returncode, proc.stderr[-2000:])
    if expect_refusal:
        assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr


@pytest.mark.parametrize(("settings", "ok"), [("hw=ascend,cards=3", False), ("hw=ascend,cards=16", True),
                                               ("hw=cpu,cards=3", True)])
def test_helm_template_set_ascend_cards(helm: Path, tmp_path: Path, settings: str, ok: bool) -> None:  # noqa: F811
    proc = run_helm(helm, tmp_path, "template", "vit", str(CHART), "--set", settings)
    assert (proc.returncode == 0) == ok, proc.stderr
    if not ok:
        assert "cards" in proc.stderr, proc.stderr
