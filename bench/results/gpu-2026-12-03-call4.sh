#!/usr/bin/env bash
# 2026-12-03, call 4: main (6428466) against `fused-epilogue` (the epilogue's shared-memory
# accesses as LDS/STS at shared addresses instead of generic ones, row / packed as a shift, a
# thread's piece column hoisted: the copy loop held 9% of the sliding layer's warp samples in
# call 1's profile) on the fused suite, three rounds each in turns; the candidate's CUDA tests
# and compute-sanitizer over gpu_check's filter.
set -uo pipefail
out="$1"; logs=/tmp/c4; rm -rf $logs; mkdir -p $logs
export PATH=/usr/local/cuda/bin:$PATH
eval "$(scripts/gpu/unpack_carry.sh)"
tar xzf build-py/deps.tgz
export LD_LIBRARY_PATH=$PWD/.deps/lib:$LD_LIBRARY_PATH
start=$SECONDS
trap 'tar czf $out/c4.tgz -C /tmp c4' EXIT
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $logs/env.txt
echo "== fused A/B"
ROUNDS=3 RUN_TIMEOUT=120 scripts/gpu/ab_bench.sh $logs/fused base=build-carry/bin/base/wideattn \
  cand=build-carry/bin/cand/wideattn -- --suite fused
echo "A/B done at $((SECONDS-start)) s"
echo "== candidate's CUDA tests (14 shards)"
TEST_TIMEOUT=200 scripts/gpu/sharded_tests.sh $logs/tests build-carry/bin/cand/wideattn_tests \
  '*cuda*:*Cuda*:*CUDA*:Planned*:Sanitizer*:Fp8*:Dispatch*:*Paged*:*FusedPrefill*:*Determinism*' 14 2>&1 | tail -12
echo "tests done at $((SECONDS-start)) s"
echo "== sanitizers (cand)"
SKIP_BUILD=1 SKIP_TESTS=1 SKIP_PYTHON=1 SKIP_PEERS=1 SKIP_BENCH=1 BUILD_DIR=$PWD/build-carry/bin/cand \
  SANITIZER_TIMEOUT=90 scripts/gpu_check.sh $logs/gc-cand > /dev/null 2>&1; echo "gpu_check rc=$?"
tail -5 $logs/gc-cand/summary.txt; grep -h "selects" $logs/gc-cand/gpu_check.log | head -2
echo "done at $((SECONDS-start)) s"
