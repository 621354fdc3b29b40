#!/usr/bin/env bash
# The fused prefill kernels on the GPU machine: build (CUDA on), their tests, then their
# benchmark problems (wideattn bench --suite fused). PYTHON=1: build the Python package from
# source here and run its tests and bench/host_overhead.py; PEERS=1: bench/peers.py on the
# head_dim 128/256 problems (PEERS_CASES, PEERS_LIST). Logs under OUT_DIR.
# usage: scripts/gpu/fused_check.sh OUT_DIR [GTEST_FILTER]
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
timeout "${TEST_TIMEOUT:-300}" "$BUILD_DIR/wideattn_tests" --gtest_filter="$FILTER" --gtest_brief=1 >"$OUT_DIR/tests.log" 2>&1 || status=1
grep -E "FAILED|PASSED|SKIPPED|error|Failure" "$OUT_DIR/tests.log" | head -n 40
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  echo "== bench --suite fused"
  timeout 300 "$BUILD_DIR/wideattn" bench --suite fused --backend cuda --json "$OUT_DIR/bench-fused.json" \
    ${BENCH_ARGS:-} >"$OUT_DIR/bench-fused.log" 2>&1 || status=1
  sed -n '/^| problem/,$p' "$OUT_DIR/bench-fused.log"
  grep -iE "ceiling|error" "$OUT_DIR/bench-fused.log" | head -n 5
fi
if [ "${PYTHON:-0}" = 1 ] || [ "${PEERS:-0}" = 1 ]; then
  # The package built from source on this machine, as a user here would (issue 11): the
  # machine's python3 (PyTorch's environment, which has scikit-build-core and nanobind), into a
  # target folder.
  site="$BUILD_DIR/python-site"
  py=(env PYTHONPATH="$site:${PYTHONPATH:-}" python3)
  echo "== python source build"
  if CMAKE_ARGS="-DBLAS_LIBRARIES=$REPO_ROOT/.deps/lib/libopenblas.so -DWIDEATTN_CBLAS_INCLUDE=$REPO_ROOT/.deps/include" \
     WIDEATTN_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" python3 -m pip install -v --no-index \
     --no-deps --no-build-isolation --upgrade --target "$site" -C build-dir="$BUILD_DIR/python-source" "$REPO_ROOT" \
     >"$OUT_DIR/python-build.log" 2>&1; then
    grep -E "exports PyInit__wideattn only" "$OUT_DIR/python-build.log" | head -n 1
    if [ "${PYTHON:-0}" = 1 ]; then
      echo "== pytest python/tests"
      (cd "$REPO_ROOT" && "${py[@]}" -m pytest -q python/tests >"$OUT_DIR/pytest.log" 2>&1) || status=1
      tail -n 3 "$OUT_DIR/pytest.log"
      echo "== host overhead"
      (cd "$REPO_ROOT" && PYTHONUNBUFFERED=1 "${py[@]}" bench/host_overhead.py \
        --json "$OUT_DIR/host_overhead.json" >"$OUT_DIR/host_overhead.log" 2>&1) || status=1
      tail -n 15 "$OUT_DIR/host_overhead.log"
    fi
    if [ "${PEERS:-0}" = 1 ]; then
      echo "== peers (${PEERS_CASES:-d=128,d=256})"
      (cd "$REPO_ROOT" && PYTHONUNBUFFERED=1 "${py[@]}" bench/peers.py "$OUT_DIR/peers" \
        --cases "${PEERS_CASES:-d=128,d=256}" --peers "${PEERS_LIST:-wideattn,sdpa_cudnn,flex}" \
        --budget-ms "${PEERS_BUDGET_MS:-150}" >"$OUT_DIR/peers.log" 2>&1) || status=1
      sed -n '/^| case/,$p' "$OUT_DIR/peers/peers.md" 2>/dev/null
    fi
  else
    echo "python source build failed"; tail -n 30 "$OUT_DIR/python-build.log"; status=1
  fi
fi
exit $status
