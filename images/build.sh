#!/usr/bin/env bash
# Builds (and optionally pushes) the vitjob container images.
#
#   images/build.sh [--push] [--dry-run] [--platform PLATFORM] [--kind KIND]... [REGISTRY [TAG]]
#
# Image names and the default REGISTRY/TAG come from vitjob/images.py (`python -m vitjob.images`),
# the same place the manifests and the chart take them from. Base images and versions come from
# images/versions.env (a variable set in the environment wins). KIND: ascend, gpu, cpu, ascend310
# (default: all). --dry-run prints the docker commands without running them.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
PYTHON=${PYTHON:-python3}

die() { echo "images/build.sh: error: $*" >&2; exit 2; }

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }

push=0
dry_run=0
platform=""
kinds=()
positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    --push) push=1 ;;
    --dry-run) dry_run=1 ;;
    --platform) [ $# -ge 2 ] || die "--platform needs a value"; platform=$2; shift ;;
    --platform=*) platform=${1#--platform=} ;;
    --kind) [ $# -ge 2 ] || die "--kind needs a value"; kinds+=("$2"); shift ;;
    --kind=*) kinds+=("${1#--kind=}") ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) positional+=("$1") ;;
  esac
  shift
done
[ ${#positional[@]} -le 2 ] || die "too many arguments: REGISTRY and TAG at most (see --help)"

# KIND=IMAGE lines from the single source of image names.
declare -A image_of=()
while IFS='=' read -r kind image; do
  [ -n "$kind" ] && image_of[$kind]=$image
done < <(cd "$ROOT" && PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m vitjob.images "${positional[@]}")
[ ${#image_of[@]} -gt 0 ] || die "python -m vitjob.images printed no images"

dockerfile_dir() {
  case "$1" in
    ascend) echo ascend ;;
    gpu) echo gpu ;;
    cpu) echo cpu ;;
    ascend310) echo ascend310-infer ;;
    *) return 1 ;;
  esac
}

# Pinned values: the environment first, then versions.env.
declare -A pinned=()
while IFS= read -r line; do
  case "$line" in ''|'#'*) continue ;; esac
  key=${line%%=*}
  value=${line#*=}
  if [ -n "${!key+x}" ]; then value=${!key}; fi
  pinned[$key]=$value
done < "$HERE/versions.env"

explicit=1
if [ ${#kinds[@]} -eq 0 ]; then
  explicit=0
  kinds=(ascend gpu cpu ascend310)
fi

# Check every requested image before building any: the build arguments each Dockerfile declares.
declare -A build_args=()
selected=()
for kind in "${kinds[@]}"; do
  [ -n "${image_of[$kind]:-}" ] || die "unknown kind '$kind' (known: ${!image_of[*]})"
  dir=$(dockerfile_dir "$kind") || die "no Dockerfile directory for kind '$kind'"
  dockerfile="$HERE/$dir/Dockerfile"
  [ -f "$dockerfile" ] || die "$dockerfile is missing"
  args=""
  missing=""
  while read -r name; do
    [ -n "${pinned[$name]+x}" ] || continue
    if [ -z "${pinned[$name]}" ]; then
      missing="$missing $name"
    else
      args="$args --build-arg $name=${pinned[$name]}"
    fi
  done < <(sed -n 's/^ARG \([A-Z0-9_]*\).*/\1/p' "$dockerfile" | sort -u)
  if [ -n "$missing" ]; then
    msg="the $kind image needs${missing}: set them in images/versions.env or the environment"
    [ "$explicit" = 0 ] || die "$msg"
    echo "images/build.sh: skipping $kind: $msg" >&2
    continue
  fi
  build_args[$kind]=$args
  selected+=("$kind")
done

run() {
  if [ "$dry_run" = 1 ]; then
    printf '%q ' "$@"; echo
  else
    "$@"
  fi
}

if [ "$dry_run" = 0 ]; then
  command -v docker >/dev/null 2>&1 || die "docker is not installed here (use --dry-run to see the commands)"
fi

for kind in "${selected[@]}"; do
  dockerfile="$HERE/$(dockerfile_dir "$kind")/Dockerfile"
  image=${image_of[$kind]}
  # Values never contain spaces (image references, versions, URLs, hashes): split on whitespace.
  read -r -a args <<<"${build_args[$kind]}"
  [ -z "$platform" ] || args+=(--platform "$platform")
  echo "images/build.sh: $kind -> $image" >&2
  run env DOCKER_BUILDKIT=1 docker build -f "$dockerfile" -t "$image" "${args[@]}" "$ROOT"
  [ "$push" = 0 ] || run docker push "$image"
done
