"""Defining a pipeline: ``--then`` parsing, the stage order, the VitJob spec of a run, and each
stage's ``JobSpec`` and objects rendered from that spec (``stage_objects``: every store renders a stage
this way when the stage starts; nothing rendered is stored).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from vitjob import constants as c
from vitjob.api.checks import spec_error
from vitjob.api.model import ATTEMPT_KEYS, METADATA_KEYS, SPEC_KEYS
from vitjob.api.rules import stage_order_message
from vitjob.api.spec import JobSpec
from vitjob.errors import UsageError
from vitjob.outputs import gate_problems
from vitjob.pipeline.model import RUN_KEYS, PipelineDefinition, PipelineRecord, stages_of
from vitjob.render.manifests import render_objects


def parse_then(text: str, first_stage: str) -> tuple[str, ...]:
    """``--then eval,export`` → the stages after ``first_stage``, checked for order and names."""
    later = tuple(s.strip() for s in text.split(",") if s.strip())
    order = {stage: i for i, stage in enumerate(c.STAGES)}
    unknown = [s for s in later if s not in order]
    if unknown or not later:
        raise UsageError(
            f"--then {text!r}: expected stages from {', '.join(c.STAGES[1:])} separated by commas, "
            f"e.g. --then eval,export,infer310" + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    if not in_order((first_stage, *later)):
        raise UsageError(
            f"--then {text!r}: stages must follow --stage {first_stage} in the order "
            f"{' → '.join(c.STAGES)}, each once (e.g. --then eval,export,infer310)"
        )
    return later


def in_order(stages: Sequence[str]) -> bool:
    """Whether ``stages`` follow train → eval → export → infer310, each once (unknown ones: no)."""
    order = {stage: i for i, stage in enumerate(c.STAGES)}
    if any(s not in order for s in stages):
        return False
    return all(order[a] < order[b] for a, b in itertools.pairwise(stages))


def define_pipeline(
    spec: JobSpec, then: Sequence[str], gates: Sequence[str] = (), stage_retries: int = 0
) -> PipelineDefinition:
    """The pipeline of ``spec`` (its first stage) followed by the stages ``then``, with ``gates`` on
    stage outputs and ``stage_retries`` automatic retries of a failed stage, checked: the spec of every
    stage is made once, so a spec that cannot make one of them fails here, before anything is stored
    (``SpecError``). Nothing is rendered: a store renders each stage when it starts."""
    values = resource_spec(spec, then)
    if gates:
        values["gates"] = list(gates)
    if stage_retries:
        values["stage_retries"] = stage_retries
    problems = run_problems(values)
    if problems:
        raise spec_error(problems)
    definition = PipelineDefinition(spec.name, spec.namespace, spec.pipeline_name, values)
    for stage in definition.stages:
        dataclasses.replace(spec, stage=stage)  # re-validates
    return definition


def resource_spec(spec: JobSpec, then: Sequence[str]) -> dict[str, Any]:
    """The VitJob ``spec`` of a run: every spec key but name and namespace, plus ``then``."""
    skip = (*METADATA_KEYS, *ATTEMPT_KEYS)
    values = {k: v for k, v in dataclasses.asdict(spec).items() if k not in skip}
    values["then"] = list(then)
    return values


def run_problems(values: Mapping[str, Any]) -> list[str]:
    """What is wrong with the run keys of a VitJob spec (``gates``, ``retry``, ``stage_retries``,
    ``stage_retry_backoff_s``), one line each; the gates' stages and outputs are checked for meaning."""
    problems = []
    gates = values.get("gates") or []
    if not isinstance(gates, list):
        problems.append(f"gates: expected a list like ['eval.accuracy>=0.95'], got {gates!r}")
    else:
        problems += gate_problems(gates, stages_of(values))
    for key in ("retry", "stage_retries"):
        value = values.get(key, 0)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            problems.append(f"{key}: expected a whole number >= 0, got {value!r}")
    backoff = values.get("stage_retry_backoff_s", 0)
    number = isinstance(backoff, int | float) and not isinstance(backoff, bool)
    if backoff is not None and (not number or backoff < 0):
        problems.append(f"stage_retry_backoff_s: expected seconds >= 0, got {backoff!r}")
    return problems


def stage_spec(
    values: Mapping[str, Any], name: str, namespace: str, stage: str, attempt: int = 1
) -> JobSpec:
    """The ``JobSpec`` of attempt ``attempt`` of ``stage`` of the run ``name`` whose VitJob spec is
    ``values``.

    Raises:
        SpecError: the values do not make a valid job (every problem listed).
    """
    unknown = sorted(set(values) - set(SPEC_KEYS) - set(RUN_KEYS))
    if unknown:
        raise spec_error([f"unknown key {k!r}" for k in unknown])
    stages = stages_of(values)
    if not in_order(stages):
        raise spec_error([stage_order_message(" → ".join(stages))])
    problems = run_problems(values)
    if problems:
        raise spec_error(problems)
    fields = {k: v for k, v in values.items() if k not in (*RUN_KEYS, "stage", *METADATA_KEYS)}
    return JobSpec(**fields, name=name, namespace=namespace, stage=stage, attempt=attempt)


def stage_objects(record: PipelineRecord, stage: str) -> list[dict[str, Any]]:
    """The objects of ``stage`` of the stored pipeline ``record`` (supporting objects first, the Job
    last), rendered from its spec now: the one way every store makes a stage's objects. A record
    without a namespace (a local pipeline) renders in the default namespace, as ``submit`` does.

    Raises:
        SpecError: the stored spec does not make a valid job (every problem listed).
    """
    namespace = record.namespace or c.DEFAULT_NAMESPACE
    return render_objects(stage_spec(record.spec, record.name, namespace, stage, record.attempt(stage)))
