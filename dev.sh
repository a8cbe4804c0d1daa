#!/usr/bin/env bash
# One entry point for set-up, the demo and the tests. Usage:
#   ./dev.sh demo   set up .venv, then run the local pipeline on the embedded digits data
#   ./dev.sh test   set up .venv, then run ruff and every test (what CI runs)
#   ./dev.sh setup  only create/refresh .venv
#   ./dev.sh cluster up|down|status
#                   a real Kubernetes v1.35.3 + Volcano v1.15.1 control plane with KWOK nodes on this
#                   machine (built from pinned Go modules once); `up` prints KUBECONFIG=<path> last
# Works on a fresh Debian machine with Python 3.11: everything else comes from the package registries.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
VENV=${VITJOB_VENV:-$ROOT/.venv}

find_python() {
  for cand in python3.11 python3 python; do
    if command -v "$cand" >/dev/null 2>&1 &&
       "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
      command -v "$cand"; return 0
    fi
  done
  echo "dev.sh: Python 3.11 is required (MindSpore 2.10 wheels); install it (apt-get install python3.11 python3.11-venv)" >&2
  return 1
}

setup() {
  local stamp="$VENV/.vitjob-installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt requirements.lock ]; then
    return 0
  fi
  local py; py=$(find_python)
  if [ ! -x "$VENV/bin/python" ]; then
    echo "dev.sh: creating $VENV" >&2
    "$py" -m venv "$VENV"
  fi
  echo "dev.sh: installing vitjob and its pinned dependencies (MindSpore is ~800 MB the first time)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade "pip==26.3"
  "$VENV/bin/python" -m pip install -q -c requirements.lock -e ".[dev]"
  touch "$stamp"
}

# msrun and MindSpore's dynamic-cluster workers start `python` from PATH: the venv must come first.
activate() { export PATH="$VENV/bin:$PATH" VIRTUAL_ENV="$VENV"; }

cmd=${1:-help}; shift || true
case "$cmd" in
  setup) setup ;;
  demo)
    setup; activate
    exec vitjob demo "$@" ;;
  test)
    setup; activate
    ruff check .
    exec bash scripts/run-tests.sh "$@" ;;
  cluster)
    exec python3 devcluster/cluster.py "$@" ;;
  *) sed -n '2,9p' "$0"; exit 2 ;;
esac
