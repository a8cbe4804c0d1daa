"""Specs across the rules of ``vitjob.api.rules.CROSS_RULES``, for the tests that compare the spec's own
checks with the forms the cluster and Helm check: the VitJob CRD's CEL rules on the real API server
(tests/e2e/test_e2e_admission.py) and values.schema.json under real helm (tests/test_admission.py).

Each case is a VitJob spec (values-file keys without name and namespace, plus ``then``) and the rules
it breaks, by name; every rule is broken by at least one case and kept by others."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vitjob.errors import SpecError
from vitjob.pipeline.define import stage_spec


@dataclass(frozen=True)
class Case:
    id: str
    values: dict[str, Any]
    breaks: tuple[str, ...] = ()


CASES: tuple[Case, ...] = (
    Case("ascend-3", {"hw": "ascend", "cards": 3}, ("ascend-cards",)),
    Case("ascend-12", {"hw": "ascend", "cards": 12}, ("ascend-cards",)),
    Case("ascend-4", {"hw": "ascend", "cards": 4}),
    Case("ascend-16", {"hw": "ascend", "cards": 16}),
    Case("ascend-3-eval", {"hw": "ascend", "cards": 3, "stage": "eval"}, ("ascend-cards",)),
    Case("gpu-12-of-8", {"hw": "gpu", "cards": 12, "gpus_per_pod": 8}, ("gpu-cards",)),
    Case("gpu-10-of-4", {"hw": "gpu", "cards": 10, "gpus_per_pod": 4}, ("gpu-cards",)),
    Case("gpu-6-of-8", {"hw": "gpu", "cards": 6, "gpus_per_pod": 8}),
    Case("gpu-24-of-8", {"hw": "gpu", "cards": 24}),
    Case("cpu-3-per-pod-of-4", {"hw": "cpu", "cards": 4, "cards_per_pod": 3},
         ("cards-per-pod-divides-cards",)),
    Case("cpu-2-per-pod-of-4", {"hw": "cpu", "cards": 4, "cards_per_pod": 2}),
    Case("cpu-null-per-pod", {"hw": "cpu", "cards": 3, "cards_per_pod": None}),
    Case("gpu-with-cards-per-pod", {"hw": "gpu", "cards": 2, "cards_per_pod": 1},
         ("cards-per-pod-cpu-only",)),
    Case("ascend-3-with-cards-per-pod", {"hw": "ascend", "cards": 3, "cards_per_pod": 1},
         ("ascend-cards", "cards-per-pod-cpu-only")),
    Case("same-ports", {"hw": "cpu", "sched_port": 30000, "rdzv_port": 30000}, ("distinct-ports",)),
    Case("ports-differ", {"hw": "cpu", "sched_port": 30000, "rdzv_port": 30001}),
    Case("then-export-eval", {"hw": "cpu", "then": ["export", "eval"]}, ("stage-order",)),
    Case("eval-then-eval", {"hw": "cpu", "stage": "eval", "then": ["eval"]}, ("stage-order",)),
    Case("export-then-eval", {"hw": "cpu", "stage": "export", "then": ["eval", "infer310"]},
         ("stage-order",)),
    Case("eval-then-export-infer310", {"hw": "cpu", "stage": "eval", "then": ["export", "infer310"]}),
    Case("then-all", {"hw": "ascend", "cards": 8, "then": ["eval", "export", "infer310"]}),
)


def spec_problems_of(values: dict[str, Any], name: str = "adm", namespace: str = "default") -> list[str]:
    """What the spec's own checks say of a VitJob spec (as the controller reads it): every problem."""
    try:
        stage_spec(values, name, namespace, str(values.get("stage") or "train"))
    except SpecError as exc:
        problems: list[str] = exc.problems  # type: ignore[attr-defined]
        return problems
    return []



