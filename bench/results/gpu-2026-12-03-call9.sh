#!/usr/bin/env bash
# 2026-12-03, call 9: main (c107621, ring caches and trees fused) against `fused-nan-policy`: an
# inspector warp (warp 1 of the producer warpgroup) takes the boundary V tiles between their
# arrival and the consumers (the stale rows past kv_length cleared there, no longer by the
# producer, which now never waits for a V tile) and flags tiles holding inf or NaN; the consumers
# run a flagged tile's P V key by key, leaving out keys of probability 0 (head_dim 64-256; the
# pair at 512 keeps the documented limitation). The candidate's CUDA tests (the NaN-policy tests
# now run prefill_fused at d64 and d256 with longer sequences, and check that rows seeing a
# poisoned V row hold its class exactly there), compute-sanitizer, then the fused suite A/B.
set -uo pipefail
out="$1"; logs=/tmp/c9; rm -rf $logs; mkdir -p $logs
export PATH=/usr/local/cuda/bin:$PATH
eval "$(scripts/gpu/unpack_carry.sh)"
start=$SECONDS
trap 'tar czf $out/c9.tgz -C /tmp c9' EXIT
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $logs/env.txt
echo "== candidate's CUDA tests (16 shards)"
TEST_TIMEOUT=150 scripts/gpu/sharded_tests.sh $logs/tests build-carry/bin/cand/wideattn_tests \
  '*cuda*:*Cuda*:*CUDA*:Planned*:Sanitizer*:Fp8*:Dispatch*:*Paged*:*FusedPrefill*:*FusedWalk*:*Determinism*' 16 2>&1 | tail -14
echo "tests done at $((SECONDS-start)) s"
echo "== sanitizers (cand)"
SKIP_BUILD=1 SKIP_TESTS=1 SKIP_PYTHON=1 SKIP_PEERS=1 SKIP_BENCH=1 BUILD_DIR=$PWD/build-carry/bin/cand \
  SANITIZER_TIMEOUT=60 scripts/gpu_check.sh $logs/gc > /dev/null 2>&1; echo "gpu_check rc=$?"
tail -5 $logs/gc/summary.txt
echo "sanitizers done at $((SECONDS-start)) s"
left=$((330 - (SECONDS-start)))
echo "== fused A/B (${left} s left)"
timeout $left env ROUNDS=1 RUN_TIMEOUT=150 scripts/gpu/ab_bench.sh $logs/fused base=build-carry/bin/base/wideattn \
  cand=build-carry/bin/cand/wideattn -- --suite fused
echo "done at $((SECONDS-start)) s"
