#!/usr/bin/env bash
# Builds the add-ons of the dev cluster's real node from the pinned Go modules in this folder and prints
# the directory that holds them on its last stdout line. Nothing prebuilt is downloaded: every binary is
# compiled from modules the Go module proxy serves, verified against the committed go.sum files.
#
#   coredns                     CoreDNS v1.14.3 with a compile-time plugin selection (coredns/main.go)
#   ascend-test-device-plugin   fake huawei.com/Ascend910 chips on the kubelet's device-plugin API
#   Corefile.tmpl               the cluster DNS Corefile, placeholders documented in its header
#
# Cached like ../build.sh: in $VITJOB_CLUSTER_CACHE (default ~/.cache/vitjob/devcluster), in a folder
# keyed by the hash of this script and of every input of the two builds (go.mod, go.sum, the non-test .go
# files, the Corefile template), so a second run returns at once and any change rebuilds. It shares the
# Go module and build caches with the control-plane build (same -trimpath flags, the same Kubernetes
# v0.35.3 client modules), so only CoreDNS and the device plugin's own packages compile on a warm cache.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${VITJOB_CLUSTER_CACHE:-$HOME/.cache/vitjob/devcluster}
inputs=$(cd "$here" && find coredns ascend-device-plugin -type f \( -name go.mod -o -name go.sum -o -name '*.go' \
  -o -name Corefile.tmpl \) ! -name '*_test.go' | LC_ALL=C sort)
key=$( (cd "$here" && cat build.sh && for f in $inputs; do echo "== $f"; cat "$f"; done) | sha256sum | cut -c1-16)
out=$cache/addons-$key
if [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi

# Go >= 1.25 (both go.mod files say 1.25.0).
# shellcheck source=devcluster/go-toolchain.sh
. "$here/../go-toolchain.sh"
ensure_go 25 addons/build.sh
# -mod=readonly: a missing go.sum entry fails the build instead of editing anything.
export GOFLAGS="-mod=readonly -trimpath -buildvcs=false"
start=$(date +%s)
tmp=$out.tmp.$$
rm -rf "$tmp"; mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
echo "addons/build.sh: building CoreDNS and the test device plugin into $out" >&2
(cd "$here/coredns" && go build -ldflags "-s -w" -o "$tmp/coredns" .)
(cd "$here/ascend-device-plugin" && go build -ldflags "-s -w" -o "$tmp/ascend-test-device-plugin" .)
cp "$here/coredns/Corefile.tmpl" "$tmp/"
touch "$tmp/.complete"
rm -rf "$out"; mv "$tmp" "$out"
trap - EXIT
echo "addons/build.sh: built in $(( $(date +%s) - start )) s" >&2
echo "$out"
