"""Under CI a skipped test fails with its reason (tests/conftest.py); elsewhere it stays a skip.

A throw-away test directory gets a copy of this suite's conftest.py and tests that skip in each way
pytest allows (a skipif marker, ``pytest.skip`` in a fixture and in the test body); pytest runs it in a
subprocess with and without ``CI``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

SKIPPING = '''
import pytest

@pytest.fixture
def needs_tool():
    pytest.skip("tool-x is not installed")

@pytest.mark.skipif(True, reason="../shared/crds is absent")
def test_marker():
    pass

def test_fixture(needs_tool):
    pass

def test_body():
    pytest.skip("no compiler here")

@pytest.mark.xfail(reason="known bug", strict=True)
def test_expected_failure():
    assert False

def test_passes():
    pass
'''


def _pytest(directory: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-q", str(directory)],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    for name in ("conftest.py", "ci_env.py"):
        shutil.copy(TESTS / name, tmp_path / name)
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    return tmp_path


@pytest.mark.parametrize("ci", ["true", "1"])
def test_every_skip_fails_under_ci_with_its_reason(suite: Path, ci: str) -> None:
    proc = _pytest(suite, ci)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "1 passed" in out and "1 xfailed" in out and "skipped" not in out.splitlines()[-1], out
    for reason in ("../shared/crds is absent", "tool-x is not installed", "no compiler here"):
        assert f"which allows no skip: {reason}" in out, out
    lines = [line for line in out.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    failed = {line.split("::")[1].split()[0] for line in lines}
    assert failed == {"test_marker", "test_fixture", "test_body"}, out


@pytest.mark.parametrize("ci", [None, "false", "0"])
def test_skips_stay_skips_outside_ci(suite: Path, ci: str | None) -> None:
    proc = _pytest(suite, ci)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "1 passed, 3 skipped, 1 xfailed" in out.splitlines()[-1], out
