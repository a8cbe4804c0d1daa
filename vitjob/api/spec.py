"""The job spec: ``JobSpec``, the model of ``vitjob.api.model`` checked when it is made.

Constructing a ``JobSpec`` runs every check of ``vitjob.api.checks`` and raises ``SpecError`` listing every
problem at once, one per line, each with the allowed values. The fields, their meaning and the shape
derived from them are ``vitjob.api.model.SpecModel``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from vitjob.api.checks import spec_error, spec_problems
from vitjob.api.model import SpecModel


@dataclass(frozen=True, kw_only=True)
class JobSpec(SpecModel):
    """One stage job of the ViT workflow, as the user asked for it, and valid."""

    def __post_init__(self) -> None:
        problems = spec_problems(self)
        if problems:
            raise spec_error(problems)
