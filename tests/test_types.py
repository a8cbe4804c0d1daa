"""The type checker over ``vitjob/``: mypy, pinned in pyproject.toml's ``dev`` extra and requirements.lock,
configured in ``[tool.mypy]`` (every module checked; ``vitjob.kube``, ``vitjob.api``,
``vitjob.pipeline`` and the modules built over them under --strict's per-module flags). CI runs it
through this test."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STRICT_PACKAGES = {"vitjob.kube.*", "vitjob.api.*", "vitjob.pipeline.*"}


def _pinned_mypy() -> str:
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    pins = [d.split("==")[1] for d in dev if d.startswith("mypy==")]
    assert pins, "pyproject.toml's dev extra must pin mypy (mypy==X.Y.Z)"
    return pins[0]


def test_the_pinned_mypy_runs_and_the_config_is_strict_where_it_must_be() -> None:
    import mypy.version

    assert mypy.version.__version__ == _pinned_mypy(), "the venv's mypy is not the pinned one: ./dev.sh setup"
    lock = (ROOT / "requirements.lock").read_text()
    assert f"mypy=={_pinned_mypy()}" in lock.splitlines(), "requirements.lock pins another mypy"
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["files"] == ["vitjob"]
    strict = [o for o in config["overrides"] if set(o["module"]) >= STRICT_PACKAGES]
    assert strict and all(strict[0][flag] for flag in ("disallow_untyped_defs", "disallow_any_generics",
                                                       "warn_return_any", "disallow_untyped_calls"))


def test_vitjob_type_checks() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, f"mypy found problems:\n{result.stdout}{result.stderr}"
    assert re.search(r"Success: no issues found in \d+ source files", result.stdout)


def test_mypy_would_catch_a_type_error_in_a_strict_package(tmp_path: Path) -> None:
    """The check can fail: an untyped function in a strict package is an error."""
    bad = tmp_path / "vitjob" / "kube"
    bad.mkdir(parents=True)
    (tmp_path / "vitjob" / "__init__.py").write_text("")
    (bad / "__init__.py").write_text("")
    (bad / "bad.py").write_text("def f(x):\n    return x + 1\n\n\ny: int = 'text'\n")
    config = (ROOT / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(config)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental"], cwd=tmp_path, capture_output=True, text=True,
        timeout=600,
    )
    assert result.returncode == 1
    assert "Function is missing a type annotation" in result.stdout
    assert 'expression has type "str", variable has type "int"' in result.stdout
