#!/usr/bin/env bash
# Builds (and optionally pushes or exports) the vitjob container images.
#
#   images/build.sh [--builder docker|buildah] [--base auto|registry|local] [--oci-archive] [--no-cache]
#                   [--push] [--dry-run] [--platform PLATFORM] [--kind KIND]... [REGISTRY [TAG]]
#
# Image names and the default REGISTRY/TAG come from vitjob/images.py (`python -m vitjob.images`),
# the same place the manifests and the chart take them from. Base images and versions come from
# images/versions.env (a variable set in the environment wins). KIND: ascend, gpu, cpu, ascend310
# (default: all).
#   --builder    docker where a Docker engine answers (`docker info`), buildah otherwise (default).
#   buildah      runs as root; missing Debian packages (buildah, debootstrap) are installed with apt-get.
#                Finished images are cached by the hash of their inputs in $VITJOB_IMAGE_CACHE
#                (default ~/.cache/vitjob/images): the same inputs again take seconds.
#   --base       (cpu, buildah) registry: the pinned CPU_BASE_IMAGE; local: Debian 12 + python3 made
#                here with debootstrap (cached too); auto (default): registry if it can be had, else local.
#   --oci-archive  build with buildah if needed; the LAST stdout line is the cached OCI archive's
#                absolute path (for `ctr -n k8s.io images import FILE`; the image keeps its name).
#   --no-cache   rebuild the base and the image, ignoring every cache.
#   --dry-run    print the build commands without running them (auto base: the registry one).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
PYTHON=${PYTHON:-python3}
export LC_ALL=C

die() { echo "images/build.sh: error: $*" >&2; exit 2; }
note() { echo "images/build.sh: $*" >&2; }

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

push=0
dry_run=0
platform=""
builder=""
base_mode=auto
oci_archive=0
no_cache=0
kinds=()
positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    --push) push=1 ;;
    --dry-run) dry_run=1 ;;
    --oci-archive) oci_archive=1 ;;
    --no-cache) no_cache=1 ;;
    --platform) [ $# -ge 2 ] || die "--platform needs a value"; platform=$2; shift ;;
    --platform=*) platform=${1#--platform=} ;;
    --kind) [ $# -ge 2 ] || die "--kind needs a value"; kinds+=("$2"); shift ;;
    --kind=*) kinds+=("${1#--kind=}") ;;
    --builder) [ $# -ge 2 ] || die "--builder needs a value"; builder=$2; shift ;;
    --builder=*) builder=${1#--builder=} ;;
    --base) [ $# -ge 2 ] || die "--base needs a value"; base_mode=$2; shift ;;
    --base=*) base_mode=${1#--base=} ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) positional+=("$1") ;;
  esac
  shift
done
[ ${#positional[@]} -le 2 ] || die "too many arguments: REGISTRY and TAG at most (see --help)"
case "$builder" in ''|docker|buildah) ;; *) die "--builder is docker or buildah, not '$builder'" ;; esac
case "$base_mode" in auto|registry|local) ;; *) die "--base is auto, registry or local, not '$base_mode'" ;; esac
if [ "$oci_archive" = 1 ]; then
  [ "$builder" != docker ] || die "--oci-archive is made by the buildah builder: drop --builder docker"
  builder=buildah
fi
if [ -z "$builder" ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then builder=docker; else builder=buildah; fi
fi
if [ "$builder" = docker ]; then
  [ "$base_mode" = auto ] || die "--base is for the buildah builder (docker pulls the pinned base)"
  [ "$no_cache" = 0 ] || die "--no-cache is for the buildah builder"
fi

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
    note "skipping $kind: $msg"
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

# ------------------------------------------------------------------------------------------ docker
build_with_docker() {
  local kind=$1 dockerfile image args
  dockerfile="$HERE/$(dockerfile_dir "$kind")/Dockerfile"
  image=${image_of[$kind]}
  # Values never contain spaces (image references, versions, URLs, hashes): split on whitespace.
  read -r -a args <<<"${build_args[$kind]}"
  [ -z "$platform" ] || args+=(--platform "$platform")
  note "$kind -> $image (docker)"
  run env DOCKER_BUILDKIT=1 docker build -f "$dockerfile" -t "$image" "${args[@]}" "$ROOT"
  [ "$push" = 0 ] || run docker push "$image"
}

# ------------------------------------------------------------------------------------------ buildah
# Everything below is the buildah builder: as root, daemonless, cached by input hash.
CACHE=${VITJOB_IMAGE_CACHE:-$HOME/.cache/vitjob/images}
BUILDAH_FLAGS=(--isolation chroot --network host)
# The local base: what defines it (make_local_base below uses these and its own text is hashed too).
BASE_SUITE=bookworm
BASE_VARIANT=minbase
BASE_PACKAGES=ca-certificates,netbase,python3,python3-venv,tzdata
BASE_PYTHON=3.11
# Like Debian's slim images: no documentation but the copyright files, no man pages, no translations.
BASE_DPKG_EXCLUDES='path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*'
BASE_APT_CLEAN='DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";'
secrets_dir=""
declare -a secret_flags=()

sha() { sha256sum | cut -d' ' -f1; }

ensure_packages() {  # COMMAND:PACKAGE...: install the Debian packages of the missing commands
  local pair missing=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "${missing[*]} missing: run as root on Debian to have them installed, or apt-get install ${missing[*]}"
  fi
  note "installing ${missing[*]} (apt-get, Debian's versions)"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

prepare_buildah() {
  [ "$dry_run" = 1 ] && return 0
  [ "$(id -u)" = 0 ] || die "the buildah builder runs as root (rootless buildah is not set up by this script)"
  ensure_packages buildah:buildah
  mkdir -p "$CACHE/tmp"
  CACHE=$(cd "$CACHE" && pwd)
}

# The build machine's pip/apt settings as build secrets (images/buildenv.py), for this run only.
make_secrets() {
  [ -z "$secrets_dir" ] || return 0
  if [ "$dry_run" = 1 ]; then
    secrets_dir=DRYRUN
    echo "# plus the --secret flags of: python3 images/buildenv.py secrets DIR (this machine's pip and apt settings)"
    return 0
  fi
  secrets_dir=$(mktemp -d "$CACHE/tmp/secrets.XXXXXX")
  local kind_ id src
  while IFS=$'\t' read -r kind_ id src _; do
    case "$kind_" in
      secret) secret_flags+=(--secret "id=$id,src=$src") ;;
      volume) secret_flags+=(--volume "$id:$id:ro"); note "mounting pip's find-links $id (its empty mount point stays in the image)" ;;
      *) die "images/buildenv.py printed '$kind_'" ;;
    esac
  done < <("$PYTHON" "$HERE/buildenv.py" secrets "$secrets_dir/files" || echo "fail")
}
cleanup() {
  [ -z "$secrets_dir" ] || [ "$dry_run" = 1 ] || rm -rf "$secrets_dir"
  [ -z "${base_ctr:-}" ] || buildah rm "$base_ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT

image_present() { buildah inspect --type image "$1" >/dev/null 2>&1; }
image_label() { buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$2\"}}" "$1" 2>/dev/null; }
image_id() { buildah inspect --type image --format '{{.FromImageID}}' "$1"; }

# Save IMAGE as an OCI archive FILE whose index names it IMAGE (org.opencontainers.image.ref.name).
save_archive() {
  local image=$1 file=$2 tmp
  tmp="$CACHE/tmp/$(basename "$file").$$"
  run buildah push --quiet "$image" "oci-archive:$tmp:$image" >&2
  run mv -f "$tmp" "$file"
}
# Load FILE (written by save_archive) into buildah's storage as IMAGE.
load_archive() {
  local image=$1 file=$2 id
  id=$(buildah pull --quiet "oci-archive:$file")
  buildah tag "$id" "$image"
}

# Keep the two newest archives of PREFIX (older inputs are rebuilt from buildah's layer cache).
prune_cache() {
  local prefix=$1 old
  [ "$dry_run" = 0 ] || return 0
  # shellcheck disable=SC2012  # names are ours: PREFIX-<hex>.oci.tar
  ls -1t "$CACHE/$prefix"-*.oci.tar 2>/dev/null | tail -n +3 | while read -r old; do
    note "pruning $old"
    rm -f "$old" "${old%.oci.tar}.inputs"
  done
}

# ---- the local Debian base
base_definition() {
  local mirror=$1 sources=$2
  echo "suite=$BASE_SUITE variant=$BASE_VARIANT packages=$BASE_PACKAGES python=$BASE_PYTHON"
  echo "debootstrap=$(dpkg-query -W -f '${Version}' debootstrap 2>/dev/null || echo none)"
  echo "mirror=$mirror"
  echo "sources:"; echo "$sources"
  echo "dpkg excludes:"; echo "$BASE_DPKG_EXCLUDES"
  echo "apt clean:"; echo "$BASE_APT_CLEAN"
  declare -f make_local_base
}

make_local_base() {  # REF MIRROR SOURCES HASH: debootstrap into a scratch container, commit REF
  local ref=$1 mirror=$2 sources=$3 hash=$4 mnt log t
  base_ctr=$(buildah from scratch)
  mnt=$(buildah mount "$base_ctr")
  case "$mnt" in /?*/?*) ;; *) die "buildah mount gave '$mnt'" ;; esac
  log="$CACHE/tmp/debootstrap.$$.log"
  note "debootstrap $BASE_SUITE ($BASE_VARIANT + $BASE_PACKAGES) from $mirror (log: $log)"
  debootstrap --variant="$BASE_VARIANT" --components=main --include="$BASE_PACKAGES" \
    "$BASE_SUITE" "$mnt" "$mirror" >"$log" 2>&1 || { tail -n 20 "$log" >&2; die "debootstrap failed (log: $log)"; }
  rm -f "$log"
  # The base's own apt sources: the machine's Debian mirror(s) for the suite, -updates and -security.
  rm -f "$mnt/etc/apt/sources.list"
  printf '%s\n' "$sources" >"$mnt/etc/apt/sources.list"
  mkdir -p "$mnt/etc/dpkg/dpkg.cfg.d"
  printf '%s\n' "$BASE_DPKG_EXCLUDES" >"$mnt/etc/dpkg/dpkg.cfg.d/vitjob-slim"
  printf '%s\n' "$BASE_APT_CLEAN" >"$mnt/etc/apt/apt.conf.d/docker-clean"
  # Security and point-release updates through the machine's apt settings (the secrets, copied in
  # for this one step and removed before the commit).
  for t in apt.conf:/etc/apt/apt.conf.d/99vitjob-build apt-sources.list:/run/vitjob-apt-sources.list ca.crt:/run/vitjob-ca.crt; do
    [ ! -f "$secrets_dir/files/${t%%:*}" ] || cp "$secrets_dir/files/${t%%:*}" "$mnt${t#*:}"
  done
  buildah run "${BUILDAH_FLAGS[@]}" "$base_ctr" -- sh -c \
    'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get -y -q upgrade && apt-get clean' >&2
  rm -f "$mnt/etc/apt/apt.conf.d/99vitjob-build" "$mnt/run/vitjob-apt-sources.list" "$mnt/run/vitjob-ca.crt"
  buildah run "${BUILDAH_FLAGS[@]}" "$base_ctr" -- python3 -c \
    "import sys, venv, ensurepip; assert '%d.%d' % sys.version_info[:2] == '$BASE_PYTHON', sys.version" ||
    die "the local base's python3 is not $BASE_PYTHON"
  # Slim and machine-neutral: no apt lists, docs, logs, device nodes; no host name or resolver.
  rm -rf "${mnt:?}"/var/lib/apt/lists/* "${mnt:?}"/var/cache/apt/* "${mnt:?}"/var/cache/debconf/*-old \
    "${mnt:?}"/dev/* "${mnt:?}"/usr/share/man/* "${mnt:?}"/usr/share/info/* "${mnt:?}"/usr/share/locale/* \
    "${mnt:?}"/usr/share/lintian/* "${mnt:?}"/var/log/bootstrap.log "${mnt:?}"/etc/hostname
  find "$mnt/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$mnt/usr/share/doc" -mindepth 1 -type d -empty -delete
  find "$mnt/var/log" -type f -exec truncate -s 0 {} +
  : >"$mnt/etc/resolv.conf"
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd python3 --label "vitjob.base.definition-sha256=$hash" \
    --label "org.opencontainers.image.description=Debian $BASE_SUITE $BASE_VARIANT + python3 (images/build.sh, debootstrap)" \
    "$base_ctr"
  buildah commit --quiet --format docker --rm "$base_ctr" "$ref" >/dev/null
  base_ctr=""
}

# Prints the local base's reference; builds it (or loads its cached archive) when missing.
local_base() {
  local mirror sources def hash ref file start
  mirror=$("$PYTHON" "$HERE/buildenv.py" debian-mirror "$BASE_SUITE") || die "no Debian $BASE_SUITE mirror in apt's sources"
  sources=$("$PYTHON" "$HERE/buildenv.py" debian-sources "$BASE_SUITE") || die "cannot read apt's sources"
  def=$(base_definition "$mirror" "$sources")
  hash=$(printf '%s\n' "$def" | sha)
  ref="localhost/vitjob-base:$BASE_SUITE-${hash:0:16}"
  file="$CACHE/base-$BASE_SUITE-${hash:0:16}.oci.tar"
  if [ "$dry_run" = 1 ]; then
    echo "# local base $ref: debootstrap --variant=$BASE_VARIANT --include=$BASE_PACKAGES $BASE_SUITE ROOTFS $mirror, apt-get upgrade, commit"
  elif [ "$no_cache" = 0 ] && image_present "$ref"; then
    note "local base $ref (cached)"
  elif [ "$no_cache" = 0 ] && [ -f "$file" ]; then
    note "local base $ref from $file"
    load_archive "$ref" "$file" >/dev/null
  else
    ensure_packages debootstrap:debootstrap
    make_secrets
    start=$SECONDS
    make_local_base "$ref" "$mirror" "$sources" "$hash"
    printf '%s\n' "$def" >"${file%.oci.tar}.inputs"
    save_archive "$ref" "$file"
    prune_cache "base-$BASE_SUITE"
    note "local base $ref made in $((SECONDS - start)) s"
  fi
  base_ref=$ref
  base_identity="local $hash"
}

# Sets base_ref and base_identity for KIND's Dockerfile: the pinned base (pulled if missing) or local.
resolve_base() {
  local kind=$1 pinned_ref=$2 err
  if [ "$base_mode" = local ]; then
    [ "$kind" = cpu ] || die "--base local makes the cpu image's base only (Debian 12 + python3)"
    local_base; return 0
  fi
  if [ "$dry_run" = 1 ]; then
    base_ref=$pinned_ref; base_identity="registry $pinned_ref"; return 0
  fi
  if image_present "$pinned_ref" || err=$(buildah pull --quiet --retry 0 "$pinned_ref" 2>&1 >/dev/null); then
    base_ref=$pinned_ref; base_identity="registry $pinned_ref $(image_id "$pinned_ref")"; return 0
  fi
  if [ "$base_mode" = registry ] || [ "$kind" != cpu ]; then
    die "cannot pull $pinned_ref: ${err##*: }"
  fi
  note "cannot pull $pinned_ref (${err##*: }): using the local Debian base instead"
  local_base
}

# Files the Dockerfile copies from the context (COPY without --from), relative to the repository.
copied_files() {
  local dockerfile=$1 sources=() line word words
  while IFS= read -r line; do
    read -r -a words <<<"$line"
    for word in "${words[@]:1:${#words[@]}-2}"; do
      case "$word" in --*) ;; *) sources+=("$word") ;; esac
    done
  done < <(grep -E '^COPY ' "$dockerfile" | grep -v -- '--from=')
  [ ${#sources[@]} -gt 0 ] || return 0
  (cd "$ROOT" && find "${sources[@]}" -name __pycache__ -prune -o \( -type f -o -type l \) ! -name '*.pyc' -print) | sort -u
}

# The cache key's text: everything the finished image is made of.
image_inputs() {
  local kind=$1 dockerfile=$2 ignorefile=$3 f
  shift 3
  echo "kind=$kind image=${image_of[$kind]} platform=$platform"
  echo "base=$base_identity"
  echo "buildah=$(buildah --version 2>/dev/null || echo none)"
  local command="$*"
  echo "command: ${command//"$ROOT"/.}"
  for f in "${dockerfile#"$ROOT"/}" "${ignorefile#"$ROOT"/}" $(copied_files "$dockerfile"); do
    if [ -L "$ROOT/$f" ]; then
      echo "link $f -> $(readlink "$ROOT/$f")"
    else
      echo "file $f $(stat -c %a "$ROOT/$f") $(sha <"$ROOT/$f")"
    fi
  done
}

build_with_buildah() {
  local kind=$1 dir dockerfile ignorefile image base_var args=() bud=() key inputs file start
  dir=$HERE/$(dockerfile_dir "$kind")
  dockerfile=$dir/Dockerfile
  ignorefile=$dir/Dockerfile.dockerignore
  image=${image_of[$kind]}
  read -r -a args <<<"${build_args[$kind]}"
  base_var=$(sed -n 's/^ARG \([A-Z0-9_]*_BASE_IMAGE\).*/\1/p' "$dockerfile" | head -n 1)
  [ -n "$base_var" ] || die "$dockerfile declares no *_BASE_IMAGE argument"
  resolve_base "$kind" "${pinned[$base_var]}"
  args=("${args[@]/#"$base_var="*/$base_var=$base_ref}")
  bud=(buildah bud "${BUILDAH_FLAGS[@]}" --format docker --layers --pull=never -f "$dockerfile"
       --ignorefile "$ignorefile" -t "$image" "${args[@]}")
  [ -z "$platform" ] || bud+=(--platform "$platform")
  inputs=$(image_inputs "$kind" "$dockerfile" "$ignorefile" "${bud[@]}" "$ROOT")
  key=$(printf '%s\n' "$inputs" | sha)
  file="$CACHE/$kind-${key:0:16}.oci.tar"
  note "$kind -> $image (buildah, base $base_ref, inputs ${key:0:16})"
  if [ "$dry_run" = 1 ]; then
    make_secrets
    [ "$no_cache" = 0 ] || bud+=(--no-cache)
    run "${bud[@]}" --label "vitjob.image.inputs-sha256=$key" "${secret_flags[@]}" "$ROOT"
    echo "# cached as $file"
  elif [ "$no_cache" = 0 ] && [ -f "$file" ]; then
    if [ "$(image_label "$image" vitjob.image.inputs-sha256)" != "$key" ]; then
      note "loading $file"
      load_archive "$image" "$file" >/dev/null
    fi
    note "$kind: cached ($file)"
  else
    make_secrets
    [ "$no_cache" = 0 ] || bud+=(--no-cache)
    start=$SECONDS
    "${bud[@]}" --label "vitjob.image.inputs-sha256=$key" "${secret_flags[@]}" "$ROOT" >&2
    note "$kind: built in $((SECONDS - start)) s; saving $file"
    printf '%s\n' "$inputs" >"${file%.oci.tar}.inputs"
    save_archive "$image" "$file"
    prune_cache "$kind"
  fi
  [ "$push" = 0 ] || run buildah push "$image" "docker://$image" >&2
  archives+=("$file")
}

archives=()
[ "$builder" = docker ] || prepare_buildah
for kind in "${selected[@]}"; do
  if [ "$builder" = docker ]; then build_with_docker "$kind"; else build_with_buildah "$kind"; fi
done
if [ "$oci_archive" = 1 ]; then
  printf '%s\n' "${archives[@]}"
fi
