"""The real Pod Security admission checks for tests: ``tests/psacheck`` (Go), built offline.

``build(directory)`` compiles tests/psacheck (k8s.io/pod-security-admission v0.35.3, the library the API
server's PodSecurity plugin runs) with ``GOPROXY=off`` from the module cache that devcluster/build.sh
fills; ``verdicts(binary, pods)`` gives, per pod, the forbidden reasons at the baseline and restricted
levels of Kubernetes ``VERSION`` (an empty list: allowed). The ``psacheck`` fixture (conftest.py) builds
it once per session.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().parent / "psacheck"
VERSION = "v1.35"  # the Kubernetes version of the dev cluster (devcluster: v1.35.3)


def go_toolchain() -> str | None:
    return shutil.which("go")


def build(directory: Path) -> Path:
    """The checker binary in ``directory``; AssertionError with Go's output when it does not build."""
    go = go_toolchain()
    assert go is not None, "no go toolchain"
    binary = directory / "psacheck"
    env = dict(os.environ, GOPROXY="off", GOFLAGS="-mod=readonly -buildvcs=false", GOWORK="off",
               GOTOOLCHAIN="local")
    result = subprocess.run([go, "build", "-o", str(binary), "."], cwd=SOURCE, env=env, capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0, (
        "building tests/psacheck failed (its modules come from the module cache: run devcluster/build.sh, "
        f"or `cd tests/psacheck && go mod download` where the Go proxy is reachable):\n{result.stderr}")
    return binary


def verdicts(binary: Path, pods: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """``{name: {"baseline": [reason…], "restricted": [reason…]}}`` for (name, metadata, spec) pods."""
    given = [{"name": name, "metadata": metadata, "spec": spec, "version": VERSION}
             for name, metadata, spec in pods]
    assert len({p["name"] for p in given}) == len(given), "pod names must be unique"
    result = subprocess.run([str(binary)], input=json.dumps(given), capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
