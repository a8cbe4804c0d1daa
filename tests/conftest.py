"""Shared fixtures: the digits data set (written once per session), paths to ../shared, the venv on PATH.

Under CI (``CI`` set to anything but ``false``/``0``) a skipped test is a failure: whatever a test
needs (``../shared``, cmake, helm, a compiler, an importable module) must be there, and the report gives
the skip's reason. That holds for a skip anywhere: a marker, a fixture, a test body, a whole module.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from ci_env import in_ci

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

# msrun-style workers and `vitjob launch` children start `python`/`vitjob` from PATH: the venv first.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ.setdefault("GLOG_v", "2")


def _fail_a_skip_under_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Make a skipped ``report`` a failure that gives the skip's reason, when under CI."""
    if report.skipped and in_ci() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"skipped under CI={os.environ['CI']}, which allows no skip: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """Under CI, turn every skip (marker, ``pytest.skip`` in a fixture or test) into a failure."""
    outcome = yield
    _fail_a_skip_under_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    """Under CI, a module that skips itself (``pytest.importorskip``, ``pytest.skip(...,
    allow_module_level=True)``) fails to collect, with the skip's reason; pytest then stops the run
    as it does for a module that cannot be imported."""
    outcome = yield
    _fail_a_skip_under_ci(outcome.get_result())


@pytest.fixture(scope="session")
def psacheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Pod Security admission checks (tests/psacheck, Go), built once: pod_security_admission."""
    import pod_security_admission

    if pod_security_admission.go_toolchain() is None:
        reason = "no go toolchain: tests/psacheck (the real Pod Security checks) is a Go program"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    return pod_security_admission.build(tmp_path_factory.mktemp("psacheck"))


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vitjob.vit.data import write_digits

    out = tmp_path_factory.mktemp("digits")
    write_digits(out)
    return out


@pytest.fixture(scope="session")
def straight_run(digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted vit-tiny run (``tiny_vit.train_cmd``): what resumed and data-parallel runs
    are compared with. Its run directory; the summary is ``run-summary.json`` next to it."""
    import subprocess

    from tiny_vit import train_cmd

    out = tmp_path_factory.mktemp("straight") / "run"
    proc = subprocess.run(train_cmd(digits_dir, out), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def npz_key_table() -> Path:
    path = SHARED / "reference" / "vit_b16_npz_keys.tsv"
    if not path.is_file():
        pytest.skip(f"{path} is absent: the npz key table lives in ../shared/reference (present in CI)")
    return path
