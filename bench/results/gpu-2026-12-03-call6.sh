#!/usr/bin/env bash
# 2026-12-03, call 6: `fused-ring-tree` (ring caches and speculative trees on the fused kernel, in
# a kRingOrTree variant; the plain kernel's walk reorganised) against main (2583867). The
# candidate's CUDA tests (the new RingCaches / SpeculativeTrees cases and every ring/tree case of
# the attention and NaN-policy suites now on the fused kernel) and compute-sanitizer; ring and
# tree problems through the CLI on both builds (main: the unfused pipeline; the candidate: the
# fused variant), each checked against the f64 oracle on sampled rows; then the fused suite A/B
# (the plain kernel's SASS differs in its item prologue: its speed must not move).
set -uo pipefail
out="$1"; logs=/tmp/c6; rm -rf $logs; mkdir -p $logs
export PATH=/usr/local/cuda/bin:$PATH
eval "$(scripts/gpu/unpack_carry.sh)"
start=$SECONDS
trap 'tar czf $out/c6.tgz -C /tmp c6' EXIT
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $logs/env.txt
echo "== candidate's CUDA tests (16 shards)"
TEST_TIMEOUT=200 scripts/gpu/sharded_tests.sh $logs/tests build-carry/bin/cand/wideattn_tests \
  '*cuda*:*Cuda*:*CUDA*:Planned*:Sanitizer*:Fp8*:Dispatch*:*Paged*:*FusedPrefill*:*FusedWalk*:*Determinism*' 16 2>&1 | tail -12
echo "tests done at $((SECONDS-start)) s"
echo "== sanitizers (cand)"
SKIP_BUILD=1 SKIP_TESTS=1 SKIP_PYTHON=1 SKIP_PEERS=1 SKIP_BENCH=1 BUILD_DIR=$PWD/build-carry/bin/cand \
  SANITIZER_TIMEOUT=90 scripts/gpu_check.sh $logs/gc-cand > /dev/null 2>&1; echo "gpu_check rc=$?"
tail -5 $logs/gc-cand/summary.txt
echo "sanitizers done at $((SECONDS-start)) s"
echo "== ring caches and trees (base: unfused; cand: fused)"
run() {
  local name="$1"; shift
  for b in base cand; do
    echo "-- $b: $name"
    timeout 60 build-carry/bin/$b/wideattn run --backend cuda "$@" > $logs/cli.txt 2>&1; echo "rc=$?"
    grep -E "kernel|time|accuracy|^ok|FAIL|error" $logs/cli.txt | grep -v reason | head -6
  done
}
{
run "sliding 2K on a 1K ring, offset 377 (16/8)" --q-heads 16 --kv-heads 8 --head-dim 256 --prefix 1024 --suffix 2048 --window 1024 --ring-length 1024 --ring-offset 377
run "sliding 2K on 1K contiguous, no ring (16/8)" --q-heads 16 --kv-heads 8 --head-dim 256 --prefix 1024 --suffix 2048 --window 1024
run "sliding 8K on a 1K ring, offset 500 (32/16)" --q-heads 32 --kv-heads 16 --head-dim 256 --prefix 1024 --suffix 8192 --window 1024 --ring-length 1024 --ring-offset 500
run "sliding 512 on a 1K ring, paged 16 (16/8)" --q-heads 16 --kv-heads 8 --head-dim 256 --prefix 1024 --suffix 512 --window 1024 --ring-length 1024 --ring-offset 100 --page-size 16
run "tree of 64 on 4K (31B 32/4)" --q-heads 32 --kv-heads 4 --head-dim 512 --prefix 4000 --suffix 64 --tree tree
run "tree of 256 on 8K (E4B 8/2)" --q-heads 8 --kv-heads 2 --head-dim 512 --prefix 8192 --suffix 256 --tree tree
run "tree of 64 on a 1K ring, window 1024 (16/8 d256)" --q-heads 16 --kv-heads 8 --head-dim 256 --prefix 1024 --suffix 64 --window 1024 --ring-length 1024 --ring-offset 3 --tree tree --sinks --lse
run "chain of 32 on 16K, batch 8 (d128 32/8)" --batch 8 --q-heads 32 --kv-heads 8 --head-dim 128 --prefix 16000 --suffix 32 --tree chain
} 2>&1 | tee $logs/ring-tree.txt
echo "ring/tree done at $((SECONDS-start)) s"
left=$((560 - (SECONDS-start)))
echo "== fused A/B (${left} s left)"
timeout $left env ROUNDS=2 RUN_TIMEOUT=120 scripts/gpu/ab_bench.sh $logs/fused base=build-carry/bin/base/wideattn \
  cand=build-carry/bin/cand/wideattn -- --suite fused
echo "done at $((SECONDS-start)) s"
