#!/usr/bin/env bash
# One GPU call for the serving work (issues 10, 12, 13) on binaries carried from the CPU
# machine (scripts/gpu/unpack_carry.sh): the CUDA tests in shards, compute-sanitizer memcheck
# over the serving small problems, the decode suite called three ways (host metadata, a plan
# from bounds, graph replay), and the runs past 2^31 elements. Logs go to OUT_DIR/logs.tgz; the
# summary is printed.
# usage: scripts/gpu/serving_check.sh OUT_DIR
# environment: TEST_FILTER, SKIP_TESTS=1, SKIP_SANITIZER=1, SKIP_BENCH=1, SKIP_LARGE=1, BENCH_FILTER
set -uo pipefail
cd "$(dirname "$0")/../.."
out="$(mkdir -p "$1" && cd "$1" && pwd)"
logs=/tmp/serving-logs; rm -rf "$logs"; mkdir -p "$logs"
export PATH=/usr/local/cuda/bin:$PATH
eval "$(scripts/gpu/unpack_carry.sh)"
bin=build-carry/bin
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$logs/env.txt"
start=$SECONDS
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  echo "== CUDA tests"
  scripts/gpu/sharded_tests.sh "$logs/tests" "$bin/wideattn_tests" \
    "${TEST_FILTER:-*cuda*:*Cuda*:*CUDA*:Planned*:Sanitizer*:Fp8*:Dispatch*:*Paged*}" 16
  echo "tests rc=$? ($((SECONDS - start)) s)"
fi
if [ "${SKIP_SANITIZER:-0}" != 1 ]; then
  echo "== compute-sanitizer memcheck (serving small problems)"
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 99 "$bin/wideattn_tests" \
    --gtest_filter='SanitizerSmallProblems.PlannedDecode:SanitizerSmallProblems.MixedBatch:SanitizerSmallProblems.*Decode*' \
    >"$logs/memcheck.log" 2>&1
  echo "memcheck rc=$? ($((SECONDS - start)) s): $(grep 'ERROR SUMMARY' "$logs/memcheck.log" | tail -1)"
fi
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  for call in attention planned graph; do
    echo "== decode suite, --call $call"
    extra=(); [ "$call" != attention ] && extra=(--no-ceilings)
    timeout 200 "$bin/wideattn" bench --suite gpu --filter "${BENCH_FILTER:-decode}" --call "$call" \
      "${extra[@]}" --json "$out/decode-$call.json" >"$logs/decode-$call.txt" 2>"$logs/decode-$call.err"
    echo "rc=$? ($((SECONDS - start)) s)"; cat "$logs/decode-$call.txt"
  done
fi
if [ "${SKIP_LARGE:-0}" != 1 ]; then
  echo "== past 2^31 elements"
  timeout 240 scripts/gpu/large_shapes.sh "$logs/large" "$bin/wideattn"
  echo "large rc=$? ($((SECONDS - start)) s)"
fi
tar czf "$out/logs.tgz" -C /tmp serving-logs
