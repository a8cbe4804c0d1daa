#!/usr/bin/env bash
# Runs every test suite of the project (called by ./dev.sh test, inside the venv).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest "$@"
