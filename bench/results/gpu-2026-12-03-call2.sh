#!/usr/bin/env bash
# 2026-12-03, call 2: main (8ee078d) against `fused-out-stage` (the output's own staging area at
# head_dim 64-256, so Q is released after an item's last Q K^T and the next item's Q loads
# under its last P V and epilogue: the Q wait was 4.4% of the sliding layer's warp samples in
# call 1) and `fused-pingpong-512` (that, plus ping-pong at 512 with the overlap), on the fused
# suite, three rounds each in turns; then the candidate's CUDA tests and compute-sanitizer over
# gpu_check's filter on both main and the candidate (issue 13's record on main as it stands).
set -uo pipefail
out="$1"; logs=/tmp/c2; rm -rf $logs; mkdir -p $logs
export PATH=/usr/local/cuda/bin:$PATH
eval "$(scripts/gpu/unpack_carry.sh)"
tar xzf build-py/deps.tgz
export LD_LIBRARY_PATH=$PWD/.deps/lib:$LD_LIBRARY_PATH
start=$SECONDS
trap 'tar czf $out/c2.tgz -C /tmp c2' EXIT
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $logs/env.txt
echo "== fused A/B"
ROUNDS=3 RUN_TIMEOUT=120 scripts/gpu/ab_bench.sh $logs/fused base=build-carry/bin/base/wideattn \
  cand=build-carry/bin/cand/wideattn pp=build-carry/bin/pp/wideattn -- --suite fused
echo "A/B done at $((SECONDS-start)) s"
echo "== candidate's CUDA tests (14 shards)"
TEST_TIMEOUT=200 scripts/gpu/sharded_tests.sh $logs/tests build-carry/bin/cand/wideattn_tests \
  '*cuda*:*Cuda*:*CUDA*:Planned*:Sanitizer*:Fp8*:Dispatch*:*Paged*:*FusedPrefill*:*Determinism*' 14 2>&1 | tail -12
echo "tests done at $((SECONDS-start)) s"
for b in base cand; do
  echo "== sanitizers ($b)"
  SKIP_BUILD=1 SKIP_TESTS=1 SKIP_PYTHON=1 SKIP_PEERS=1 SKIP_BENCH=1 BUILD_DIR=$PWD/build-carry/bin/$b \
    SANITIZER_TIMEOUT=90 scripts/gpu_check.sh $logs/gc-$b > /dev/null 2>&1; echo "gpu_check rc=$?"
  tail -5 $logs/gc-$b/summary.txt; grep -h "selects" $logs/gc-$b/gpu_check.log | head -2
done
echo "done at $((SECONDS-start)) s"
