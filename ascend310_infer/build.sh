#!/usr/bin/env bash
# Builds the Ascend-310 inference program into ascend310_infer/out/ (out/main).
#
#   ./build.sh            build main against the MindSpore C++ inference SDK (MindSpore Lite
#                         cloud-inference runtime), found from $MINDSPORE_PATH or $LITE_HOME/runtime
#   ./build.sh --test     build the SDK-free library and its unit tests into build/ and run ctest
#
# Without an SDK, ./build.sh fails with a message saying where it looked.
set -euo pipefail
cd "$(dirname "$0")"
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

die() { echo "ascend310_infer/build.sh: error: $*" >&2; exit 1; }

command -v cmake >/dev/null 2>&1 || die "cmake is not installed (apt-get install cmake)"

if [ "${1:-}" = "--test" ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Debug
  cmake --build build -j "$JOBS"
  exec ctest --test-dir build --output-on-failure
fi
[ $# -eq 0 ] || die "unknown argument '$1' (usage: build.sh [--test])"

find_sdk() {
  local cand
  for cand in "${MINDSPORE_PATH:-}" "${LITE_HOME:+$LITE_HOME/runtime}"; do
    if [ -n "$cand" ] && [ -f "$cand/include/api/model.h" ]; then
      echo "$cand"
      return 0
    fi
  done
  return 1
}

sdk=$(find_sdk) || die "no MindSpore C++ inference SDK: set MINDSPORE_PATH to a directory with include/api/model.h \
and lib/libmindspore-lite.so (the 'runtime' directory of the MindSpore Lite cloud-inference package), or LITE_HOME \
to the unpacked package (MINDSPORE_PATH='${MINDSPORE_PATH:-}', LITE_HOME='${LITE_HOME:-}')"

# Match the SDK's libstdc++ ABI when it can be read from the library's symbols.
abi=""
lib="$sdk/lib/libmindspore-lite.so"
if [ -f "$lib" ] && command -v nm >/dev/null 2>&1; then
  syms=$(nm -D --defined-only "$lib" 2>/dev/null || true)
  if grep -q '__cxx11' <<<"$syms"; then abi=1; else abi=0; fi
fi

echo "ascend310_infer/build.sh: SDK $sdk${abi:+ (libstdc++ CXX11 ABI $abi)}" >&2
cmake -S . -B out -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DMINDSPORE_PATH="$sdk" \
  -DVITJOB_GLIBCXX_USE_CXX11_ABI="$abi"
cmake --build out -j "$JOBS" --target main
echo "ascend310_infer/build.sh: built $(pwd)/out/main" >&2
