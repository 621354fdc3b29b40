#!/usr/bin/env bash
# One GPU call that decides whether a candidate build may replace the base: the candidate's CUDA
# tests (sharded), compute-sanitizer over its small problems (gpu_check.sh's sanitizer step),
# then each benchmark suite of both builds in turns (ab_bench.sh) with the side-by-side tables.
# A failed test or sanitizer is reported loudly and the benchmarks still run (STOP_ON_FAILURE=1
# stops instead); the script then exits 1.
# Each folder holds wideattn and wideattn_tests built from one tree (built elsewhere and carried,
# or on the GPU machine). Logs and records: OUT/tests, OUT/sanitizers, OUT/benchN/ab.md (N: the
# suite's place in BENCH_ARGS).
# On the device, give an OUT outside the call's $OUT and pack it into $OUT afterwards (tar czf
# $OUT/cc.tgz -C /tmp cc): a call brings back only a handful of loose files (2026-12-02: 8 of 57).
# usage: scripts/gpu/candidate_check.sh OUT BASE_DIR CANDIDATE_DIR [BENCH_ARGS ...]
#   BENCH_ARGS: one quoted argument list per suite, e.g.
#   "--suite gpu --filter decode" "--suite fused" '--suite gpu --filter "decode b"'
#   (default: the first two)
# environment: TEST_FILTER (gtest filter of the candidate's tests; default the CUDA suite),
#   SHARDS (default 16: the GPU machine's cores; the CPU oracle dominates), SKIP_SANITIZER=1,
#   ALSO_WITH=VAR=value (the tests again with that variable set; ALSO_FILTER narrows them),
#   ROUNDS (ab_bench, default 2)
set -uo pipefail
cd "$(dirname "$0")/../.."
out="$1" base="$2" candidate="$3"
shift 3
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=("--suite gpu --filter decode" "--suite fused")
mkdir -p "$out"
start=$SECONDS
filter="${TEST_FILTER:-*cuda*:*Cuda*:*CUDA*:Planned*:Sanitizer*:Fp8*:Dispatch*:*Paged*:*FusedPrefill*:*Determinism*}"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$out/env.txt"
echo "== candidate's tests"
TEST_TIMEOUT="${TEST_TIMEOUT:-300}" scripts/gpu/sharded_tests.sh "$out/tests" "$candidate/wideattn_tests" "$filter" \
  "${SHARDS:-16}" 2>&1 | tail -25
tests_rc=${PIPESTATUS[0]}
echo "tests rc=$tests_rc at $((SECONDS - start)) s"
if [ -n "${ALSO_WITH:-}" ]; then
  # The same tests again under a tuning switch (e.g. WIDEATTN_TUNE_DECODE_KEY_SETS=1), so that
  # both sides of it are checked: ALSO_FILTER narrows them (default: the same filter).
  echo "== candidate's tests with $ALSO_WITH"
  env "$ALSO_WITH" TEST_TIMEOUT="${TEST_TIMEOUT:-300}" scripts/gpu/sharded_tests.sh "$out/tests-also" \
    "$candidate/wideattn_tests" "${ALSO_FILTER:-$filter}" "${SHARDS:-16}" 2>&1 | tail -12
  [ "${PIPESTATUS[0]}" = 0 ] || tests_rc=1
  echo "tests with $ALSO_WITH done at $((SECONDS - start)) s"
fi
sanitizer_rc=0
if [ "${SKIP_SANITIZER:-0}" != 1 ]; then
  echo "== sanitizers (candidate)"
  SKIP_BUILD=1 SKIP_TESTS=1 SKIP_PYTHON=1 SKIP_PEERS=1 SKIP_BENCH=1 BUILD_DIR="$candidate" \
    SANITIZER_TIMEOUT="${SANITIZER_TIMEOUT:-120}" scripts/gpu_check.sh "$out/sanitizers" > /dev/null 2>&1
  sanitizer_rc=$?
  tail -8 "$out/sanitizers/summary.txt" 2>/dev/null
  echo "sanitizers rc=$sanitizer_rc at $((SECONDS - start)) s"
fi
failed=0
if [ "$tests_rc" != 0 ] || [ "$sanitizer_rc" != 0 ]; then
  failed=1
  echo "candidate_check: THE CANDIDATE FAILED ITS TESTS OR SANITIZERS (see above)"
  # Its other kernels' speed still counts (each result row is checked against the oracle and
  # flagged ERROR when off); STOP_ON_FAILURE=1 skips the benchmarks instead.
  [ "${STOP_ON_FAILURE:-0}" = 1 ] && exit 1
fi
i=0
for args in "${suites[@]}"; do
  i=$((i + 1))
  echo "== benchmarks: $args"
  eval "bench_args=($args)"  # shell quoting inside one suite's list: --filter "decode b"
  scripts/gpu/ab_bench.sh "$out/bench$i" base="$base/wideattn" candidate="$candidate/wideattn" -- "${bench_args[@]}"
  echo "bench $i done at $((SECONDS - start)) s"
done
exit "$failed"
