#!/usr/bin/env bash
# Fast GPU iteration: build with the bundled deps (scripts/gpu/bundle_deps.sh, carried as .deps),
# run the CUDA tests and the decode harness. Logs go to $1 (default $OUT).
# usage: scripts/gpu/quick_check.sh OUT_DIR [gtest_filter] [decode_check args]
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${1:-${OUT:-/tmp/out}}"; mkdir -p "$out"
filter="${2:-*cuda*}"
export PATH=/usr/local/cuda/bin:$PATH LD_LIBRARY_PATH="$PWD/.deps/lib:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$out/env.txt"
start=$SECONDS
cmake -S . -B build-gpu -G Ninja -DGTEST_ROOT="$PWD/.deps" -DBLAS_LIBRARIES="$PWD/.deps/lib/libopenblas.so" \
  -DWIDEATTN_CBLAS_INCLUDE="$PWD/.deps/include" >"$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
ninja -C build-gpu ${TARGETS:-} >"$out/build.log" 2>&1 || { grep -E "error|Error" "$out/build.log" | head -40; exit 1; }
echo "build: $((SECONDS - start)) s"
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  timeout ${TEST_TIMEOUT:-300} ./build-gpu/wideattn_tests --gtest_filter="$filter" >"$out/tests.log" 2>&1
  echo "tests rc=$? ($((SECONDS - start)) s)"; grep -E "^\[  (FAILED|PASSED) |tests ran" "$out/tests.log" | head -40
  grep -B2 -A12 "Failure" "$out/tests.log" | head -120
fi
if [ "${SKIP_DECODE:-0}" != 1 ] && [ -x build-gpu/bench/decode_check ]; then
  shift 2 2>/dev/null
  timeout ${DECODE_TIMEOUT:-240} ./build-gpu/bench/decode_check "$@" >"$out/decode_check.log" 2>&1
  echo "decode_check rc=$? ($((SECONDS - start)) s)"; grep -vE " ok$" "$out/decode_check.log" | tail -70
fi
