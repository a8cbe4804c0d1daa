"""Shared fixtures: the digits data set (written once per session), paths to ../shared, the venv on PATH."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

# msrun-style workers and `vitjob launch` children start `python`/`vitjob` from PATH: the venv first.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ.setdefault("GLOG_v", "2")


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vitjob.vit.data import write_digits

    out = tmp_path_factory.mktemp("digits")
    write_digits(out)
    return out


@pytest.fixture(scope="session")
def npz_key_table() -> Path:
    path = SHARED / "reference" / "vit_b16_npz_keys.tsv"
    if not path.is_file():
        pytest.skip(f"{path} is absent: the npz key table lives in ../shared/reference (present in CI)")
    return path
