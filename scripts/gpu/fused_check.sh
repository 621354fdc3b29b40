#!/usr/bin/env bash
# The fused prefill kernels on the GPU machine: build (CUDA on), their tests, then their
# benchmark problems (wideattn bench --suite fused) and, with PEERS=1, bench/peers.py on the same
# problems. Logs under OUT_DIR.  usage: scripts/gpu/fused_check.sh OUT_DIR [GTEST_FILTER]
set -uo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT_DIR="$(mkdir -p "$1" && cd "$1" && pwd)"
FILTER="${2:-*FusedPrefill*:Dispatch*:*PrefillTest*cuda*}"
BUILD_DIR="${BUILD_DIR:-$REPO_ROOT/build-gpu}"
JOBS="${JOBS:-$(nproc)}"
export PATH="/usr/local/cuda/bin:$PATH"
DEPS=()
if [ -d "$REPO_ROOT/.deps/lib" ]; then
  DEPS=(-DGTEST_ROOT="$REPO_ROOT/.deps" -DBLAS_LIBRARIES="$REPO_ROOT/.deps/lib/libopenblas.so"
        -DWIDEATTN_CBLAS_INCLUDE="$REPO_ROOT/.deps/include")
  export LD_LIBRARY_PATH="$REPO_ROOT/.deps/lib:${LD_LIBRARY_PATH:-}"
fi
status=0
{ cmake -S "$REPO_ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWIDEATTN_CUDA=ON "${DEPS[@]}" &&
  ninja -C "$BUILD_DIR" -j "$JOBS" wideattn_tests wideattn_cli; } >"$OUT_DIR/build.log" 2>&1 || {
  echo "build failed"; tail -n 40 "$OUT_DIR/build.log"; exit 1; }
grep -E "spill|Performance Loss" "$OUT_DIR/build.log" | sort -u | head -n 10
echo "== tests ($FILTER)"
"$BUILD_DIR/wideattn_tests" --gtest_filter="$FILTER" --gtest_brief=1 >"$OUT_DIR/tests.log" 2>&1 || status=1
grep -E "FAILED|PASSED|SKIPPED|error|Failure" "$OUT_DIR/tests.log" | head -n 40
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  echo "== bench --suite fused"
  "$BUILD_DIR/wideattn" bench --suite fused --backend cuda --json "$OUT_DIR/bench-fused.json" \
    ${BENCH_ARGS:-} >"$OUT_DIR/bench-fused.log" 2>&1 || status=1
  sed -n '/^| problem/,$p' "$OUT_DIR/bench-fused.log"
  grep -iE "ceiling|error" "$OUT_DIR/bench-fused.log" | head -n 5
fi
exit $status
