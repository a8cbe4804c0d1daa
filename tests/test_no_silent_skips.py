"""Under CI a skipped test fails with its reason (tests/conftest.py); elsewhere it stays a skip.

A throw-away test directory gets a copy of this suite's conftest.py and tests that skip in each way
pytest allows (a skipif marker, ``pytest.skip`` in a fixture and in the test body; a whole module through
``pytest.importorskip`` or ``pytest.skip(allow_module_level=True)``); pytest runs it in a subprocess with
and without ``CI``.
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
# Modules that skip themselves while pytest imports them (collection, not a test's run).
MODULE_SKIPS = {
    "test_needs_module.py": 'import pytest\nnumpy_like = pytest.importorskip("vitjob_no_such_module")\n'
    "def test_uses_it():\n    pass\n",
    "test_needs_cmake.py": 'import pytest\npytest.skip("cmake is absent", allow_module_level=True)\n'
    "def test_builds():\n    pass\n",
    "test_passes.py": "def test_passes():\n    pass\n",
}


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


def _suite(directory: Path, files: dict[str, str]) -> Path:
    for name in ("conftest.py", "ci_env.py"):
        shutil.copy(TESTS / name, directory / name)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    return _suite(tmp_path, {"test_skipping.py": SKIPPING})


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


@pytest.mark.parametrize("ci", ["true", None])
def test_a_module_that_skips_itself_fails_under_ci_only(tmp_path: Path, ci: str | None) -> None:
    proc = _pytest(_suite(tmp_path, MODULE_SKIPS), ci)
    out = proc.stdout + proc.stderr
    if ci is None:
        assert proc.returncode == 0, out
        assert "1 passed, 2 skipped" in out.splitlines()[-1], out
        return
    assert proc.returncode != 0 and "2 errors" in out.splitlines()[-1], out  # collection stops the run
    for module, reason in (
        ("test_needs_module.py", "could not import 'vitjob_no_such_module'"),
        ("test_needs_cmake.py", "cmake is absent"),
    ):
        (line,) = [ln for ln in out.splitlines() if ln.startswith(f"ERROR {module}")]
        assert f"which allows no skip: {reason}" in line, out
