"""Refusal at admission: the VitJob CRD's CEL rules (generated from vitjob.api.rules.CROSS_RULES) on the
real kube-apiserver say what the spec's own checks say, in the same words.

The independent fact is the API server: each spec of tests/admission_cases.py is sent as a VitJob with a
server-side dry run, and the API server must refuse exactly the specs the spec's checks refuse, with each
of their messages, and accept the others. A refused VitJob is not stored, and ``vitjob render`` prints the
same line."""

from __future__ import annotations

import json
from typing import Any

from admission_cases import CASES, spec_problems_of
from cluster_testing import Kube, Vitjob

from vitjob import constants as c


def vitjob_object(name: str, namespace: str, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{c.VITJOB_GROUP}/{c.VITJOB_VERSION}",
        "kind": c.VITJOB_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": values,
    }


def apply(kube: Kube, obj: dict[str, Any], *extra: str) -> tuple[int, str]:
    proc = kube.kubectl("apply", *extra, "-f", "-", input_text=json.dumps(obj), check=False)
    return proc.returncode, proc.stderr


def test_api_server_refuses_what_the_spec_refuses_with_its_words(kube: Kube, namespace: str) -> None:
    disagreements = []
    for case in CASES:
        problems = spec_problems_of(case.values, "adm", namespace)
        assert bool(problems) == bool(case.breaks), (case.id, problems)  # the table means what it says
        rc, err = apply(kube, vitjob_object("adm", namespace, case.values), "--dry-run=server")
        refused = rc != 0
        missing = [p for p in problems if p not in err]
        if refused != bool(problems) or missing or (refused and err.count("Invalid value") != len(problems)):
            disagreements.append(f"{case.id}: spec says {problems}; API server (rc {rc}) says {err.strip()}")
    assert not disagreements, "\n".join(disagreements)


def test_refused_vitjob_is_not_stored_and_render_says_the_same(
    kube: Kube, namespace: str, vitjob: Vitjob
) -> None:
    rc, err = apply(kube, vitjob_object("vit", namespace, {"hw": "ascend", "cards": 3}))
    assert rc != 0, "the API server stored a VitJob with hw ascend and 3 cards"
    assert kube.get_or_none("vitjob", "vit", namespace) is None
    render = vitjob("render", "--hw", "ascend", "--cards", "3", "--name", "vit", backend=False)
    assert render.returncode == 2, render.stderr
    line = next(ln.strip().removeprefix("- ") for ln in render.stderr.splitlines() if "cards: 3" in ln)
    assert line.startswith("cards: 3 is not allowed for hw ascend;"), render.stderr
    assert f"spec.cards: Invalid value: {line}" in err, err
