#!/usr/bin/env bash
# Runs every test suite of the project (called by ./dev.sh test, inside the venv).
set -euo pipefail
cd "$(dirname "$0")/.."
# Pinned, checksum-verified helm 3 and 4 for tests/test_chart.py (a no-op once installed).
PYTHON=python scripts/get-helm.sh
python -m pytest "$@"
