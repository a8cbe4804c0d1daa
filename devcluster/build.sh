#!/usr/bin/env bash
# Builds the control-plane binaries of `./dev.sh cluster up` from the pinned Go modules in this folder
# and prints the directory that holds them. Nothing prebuilt is downloaded: every binary is compiled here
# from modules the Go module proxy serves, verified against the committed go.sum files.
#
# The binaries are cached outside the repository in $VITJOB_CLUSTER_CACHE (default ~/.cache/vitjob/devcluster),
# in a folder keyed by the hash of the wrapper modules, the compat overlay and BUILD_FORMAT (bump it when
# this script's output changes), so a second run (or CI on the same machine) reuses them and a change of
# any pin rebuilds.
#
#   kube/  kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, and the real node's kubelet and
#          kube-proxy (Kubernetes v1.35.3), etcd (v3.6.5), vc-controller-manager, vc-scheduler,
#          vc-webhook-manager (Volcano v1.15.1); pause (the pod sandbox's process, from the Kubernetes
#          module's build/pause/linux/pause.c, gcc -static)
#   kwok/  kwok, kwokctl (v0.8.0)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${VITJOB_CLUSTER_CACHE:-$HOME/.cache/vitjob/devcluster}
BUILD_FORMAT=3
key=$( (echo "$BUILD_FORMAT"; cat "$here/kube/go.mod" "$here/kube/go.sum" "$here/kwok/go.mod" "$here/kwok/go.sum" "$here/apis-compat/"*.go) |
  sha256sum | cut -c1-16)
bin=$cache/bin-$key
if [ -f "$bin/.complete" ]; then
  echo "$bin"
  exit 0
fi

# Go >= 1.26 (KWOK v0.8.0's go.mod says 1.26.0).
# shellcheck source=devcluster/go-toolchain.sh
. "$here/go-toolchain.sh"
ensure_go 26 build.sh
mkdir -p "$bin"
# Build in a private copy of the wrapper (in the cache, never in the repository), where volcano.sh/apis
# v1.14.0 (verified against kube/go.sum) plus apis-compat/ stands in for v1.15.1, which the module proxy
# does not serve. -mod=readonly: a missing go.sum entry fails the build instead of editing anything.
export GOFLAGS="-mod=readonly -trimpath"
work=$cache/work-$key
rm -rf "$work"; mkdir -p "$work"
cp "$here"/kube/go.mod "$here"/kube/go.sum "$here"/kube/tools.go "$work/"
apis=$(cd "$here/kube" && go mod download -json volcano.sh/apis@v1.14.0 | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
cp -r "$apis" "$work/apis"; chmod -R u+w "$work/apis"
cp "$here/apis-compat/zz_vitjob_compat.go" "$work/apis/pkg/apis/scheduling/v1beta1/"
(cd "$work" && go mod edit -replace volcano.sh/apis=./apis)
k8s_version=v1.35.3
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  # kwokctl reads each binary's --version to pick flags; an unstamped build says v0.0.0-master.
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=35"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

start=$(date +%s)
echo "build.sh: building Kubernetes $k8s_version, etcd, Volcano v1.15.1 and KWOK v0.8.0 into $bin" >&2
echo "build.sh: this takes a while the first time (about 20-30 minutes on 2 cores); later runs reuse the cache" >&2
(
  cd "$work"
  go build -ldflags "$ldflags" -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
  # One invocation per group lets go link one program while it compiles the next.
  mkdir -p "$bin/tmp"
  go build -ldflags "-s -w" -o "$bin/tmp/" go.etcd.io/etcd/server/v3 volcano.sh/volcano/cmd/controller-manager \
    volcano.sh/volcano/cmd/scheduler volcano.sh/volcano/cmd/webhook-manager
  mv "$bin/tmp/server" "$bin/etcd"
  for c in controller-manager scheduler webhook-manager; do mv "$bin/tmp/$c" "$bin/vc-$c"; done
  rmdir "$bin/tmp"
)
(
  cd "$here/kwok"
  go build -ldflags "-s -w" -o "$bin/" sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl
)
# Data of the exact versions built, from their modules: Volcano's CRDs and the scheduler/admission
# configurations of its release installer (and that Helm chart, whose webhook configurations cluster.py
# renders), and KWOK's default node stages and pod ready/delete stages.
# The sandbox ("pause") process of every pod on the real node, from the exact Kubernetes version built;
# cluster.py packs it into the OCI image the node's containerd uses as its sandbox image.
k8s=$(cd "$work" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
command -v gcc >/dev/null 2>&1 || { echo "build.sh: gcc is needed for the pause binary: apt-get install gcc" >&2; exit 1; }
gcc -Os -Wall -Werror -static -DVERSION=v3.10-vitjob -o "$bin/pause" "$k8s/build/pause/linux/pause.c"
vc=$(cd "$work" && go list -m -f '{{.Dir}}' volcano.sh/volcano)
kw=$(cd "$here/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
mkdir -p "$bin/volcano-crds" "$bin/kwok-stages"
cp "$vc"/config/crd/volcano/bases/*.yaml "$vc"/config/crd/jobflow/bases/*.yaml "$bin/volcano-crds/"
cp -r "$vc"/installer/helm/chart/volcano "$bin/volcano-chart"
cp "$vc"/installer/helm/chart/volcano/config/volcano-scheduler.conf "$vc"/installer/helm/chart/volcano/config/volcano-admission.conf "$bin/"
cp "$kw"/kustomize/stage/node/fast/node-initialize.yaml "$kw"/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
  "$kw"/kustomize/stage/pod/fast/pod-ready.yaml "$kw"/kustomize/stage/pod/fast/pod-delete.yaml "$bin/kwok-stages/"
chmod -R u+w "$bin"
rm -rf "$work"
touch "$bin/.complete"
echo "build.sh: built in $(( $(date +%s) - start )) s" >&2
echo "$bin"
