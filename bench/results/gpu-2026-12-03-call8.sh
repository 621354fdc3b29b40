#!/usr/bin/env bash
# 2026-12-03, call 8: `fused-ring-tree` with the interval test on the ring/tree variant's
# boundary tiles (tiles wholly in the suffix, or in the prefix without the ring's wrap point; call
# 7 ran every boundary tile key by key, and the 2K sliding chunk on a ring ran at 66% of the
# contiguous cache's rate). Its CUDA tests; the ring/tree CLI problems of call 7 on the candidate
# (the fused variant) with the contiguous sliding chunk for reference; then gpu_check on the
# candidate: the Python package built from source here and its pytest suite, and compute-sanitizer.
set -uo pipefail
out="$1"; logs=/tmp/c8; rm -rf $logs; mkdir -p $logs
export PATH=/usr/local/cuda/bin:$PATH
eval "$(scripts/gpu/unpack_carry.sh)"
tar xzf build-py/deps.tgz
start=$SECONDS
trap 'tar czf $out/c8.tgz -C /tmp c8' EXIT
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $logs/env.txt
echo "== candidate's CUDA tests (16 shards)"
TEST_TIMEOUT=150 scripts/gpu/sharded_tests.sh $logs/tests build-carry/bin/cand/wideattn_tests \
  '*cuda*:*Cuda*:*CUDA*:Planned*:Sanitizer*:Fp8*:Dispatch*:*Paged*:*FusedPrefill*:*FusedWalk*:*Determinism*' 16 2>&1 | tail -12
echo "tests done at $((SECONDS-start)) s"
echo "== ring caches and trees (the fused variant)"
run() {
  local name="$1"; shift
  echo "-- $name"
  timeout 30 build-carry/bin/cand/wideattn run --backend cuda "$@" > $logs/cli.txt 2>&1; echo "rc=$?"
  grep -E "kernel|time|accuracy|^ok|FAIL|error" $logs/cli.txt | grep -v reason | head -6
}
{
run "sliding 2K on a 1K ring, offset 377 (16/8)" --q-heads 16 --kv-heads 8 --head-dim 256 --prefix 1024 --suffix 2048 --window 1024 --ring-length 1024 --ring-offset 377
run "sliding 2K on 1K contiguous, no ring (16/8)" --q-heads 16 --kv-heads 8 --head-dim 256 --prefix 1024 --suffix 2048 --window 1024
run "sliding 8K on a 1K ring, offset 500 (32/16)" --q-heads 32 --kv-heads 16 --head-dim 256 --prefix 1024 --suffix 8192 --window 1024 --ring-length 1024 --ring-offset 500
run "sliding 8K on 1K contiguous, no ring (32/16)" --q-heads 32 --kv-heads 16 --head-dim 256 --prefix 1024 --suffix 8192 --window 1024
run "sliding 512 on a 1K ring, paged 16 (16/8)" --q-heads 16 --kv-heads 8 --head-dim 256 --prefix 1024 --suffix 512 --window 1024 --ring-length 1024 --ring-offset 100 --page-size 16
run "tree of 64 on 4K (31B 32/4)" --q-heads 32 --kv-heads 4 --head-dim 512 --prefix 4000 --suffix 64 --tree tree
run "tree of 256 on 8K (E4B 8/2)" --q-heads 8 --kv-heads 2 --head-dim 512 --prefix 8192 --suffix 256 --tree tree
run "tree of 64 on a 1K ring, window 1024 (16/8 d256)" --q-heads 16 --kv-heads 8 --head-dim 256 --prefix 1024 --suffix 64 --window 1024 --ring-length 1024 --ring-offset 3 --tree tree --sinks --lse
} 2>&1 | tee $logs/ring-tree.txt
echo "ring/tree done at $((SECONDS-start)) s"
echo "== gpu_check on the candidate: Python source build + pytest, sanitizers"
SKIP_BUILD=1 SKIP_TESTS=1 SKIP_PEERS=1 SKIP_BENCH=1 BUILD_DIR=$PWD/build-carry/bin/cand \
  SANITIZER_TIMEOUT=75 timeout $((560 - (SECONDS-start))) scripts/gpu_check.sh $logs/gc > /dev/null 2>&1; echo "gpu_check rc=$?"
cat $logs/gc/summary.txt; tail -3 $logs/gc/python-tests.log 2>/dev/null
echo "done at $((SECONDS-start)) s"
