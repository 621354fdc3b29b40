#!/bin/bash
# Session 2026-12-03 (seventh) call 4: the submission (alternate_keys, the shared normalisation
# helpers) against main eb9ac69 (CLI built from that commit) on the fused suite and the d512
# prefill rows of the gpu suite, in turns; then the fused prefill and NaN-policy tests at every
# head_dim and the sanitizer's fused problems on the submission's binary.
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
ROUNDS=2 RUN_TIMEOUT=200 scripts/gpu/ab_bench.sh $out/fused main=build-carry/bin/main/wideattn cand=build-carry/bin/cand/wideattn -- \
  --suite fused 2>&1 | tail -2
cut -c1-200 $out/fused/ab.md
echo "fused at $((SECONDS - start)) s"
ROUNDS=2 RUN_TIMEOUT=200 scripts/gpu/ab_bench.sh $out/gpu main=build-carry/bin/main/wideattn cand=build-carry/bin/cand/wideattn -- \
  --suite gpu --filter "E4B prefill 1K|E2B prefill 1K|26B prefill 1K|31B prefill 1K|E4B prefill 4K|26B prefill 4K" 2>&1 | tail -2
cut -c1-200 $out/gpu/ab.md
echo "gpu at $((SECONDS - start)) s"
TEST_TIMEOUT=240 scripts/gpu/sharded_tests.sh /tmp/t4 build-carry/bin/cand/wideattn_tests '*FusedPrefill*:*prefill_fused*:Dispatch*' 16 2>&1 | tail -10
echo "tests at $((SECONDS - start)) s"
timeout 100 compute-sanitizer --tool memcheck build-carry/bin/cand/wideattn_tests --gtest_filter='SanitizerSmallProblems.FusedPrefill' 2>&1 | grep -E "OK \]|FAILED|ERROR SUMMARY" | head -3
echo "done at $((SECONDS - start)) s"
