"""Packaging metadata that installs without warnings: the license is a PEP 639 SPDX expression.

setuptools (≥77, pinned 80.9.0 as the build backend) prints a deprecation banner for every build
when ``project.license`` is a TOML table, and PEP 639 forbids a license classifier beside an
expression.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.licenses import canonicalize_license_expression

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def test_license_is_an_spdx_expression_without_a_license_classifier():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert isinstance(project["license"], str), "use license = \"<SPDX expression>\", not a table"
    assert canonicalize_license_expression(project["license"]) == project["license"] == "Apache-2.0"
    assert not [c for c in project.get("classifiers", []) if c.startswith("License ::")]
