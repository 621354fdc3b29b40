#!/bin/bash
# Session 2026-12-03 (seventh) call 2: the alternate kernel without the overlap schedule; alternate_keys (head_dim 512's 64-row tiles, the two
# warpgroups taking key tiles in turn) on the H200: the fused/NaN/dispatch/sanitizer tests with
# both pair kernels, compute-sanitizer over the forced modes, then the 1K rows A/B: auto (the
# plan chooses) vs off vs on (forced, also on the chunk rows that split keys today).
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
B=build-carry/bin/cand
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
for mode in 0 1; do
  printf '#!/bin/bash\nWIDEATTN_TUNE_FUSED_ALTERNATE=%s exec %s "$@"\n' $mode "$PWD/$B/wideattn" > /tmp/alt$mode.sh
  chmod +x /tmp/alt$mode.sh
done
ROUNDS=2 RUN_TIMEOUT=150 scripts/gpu/ab_bench.sh $out/ab auto=$B/wideattn off=/tmp/alt0.sh on=/tmp/alt1.sh -- \
  --suite gpu --filter "E4B prefill 1K|E2B prefill 1K|26B prefill 1K|31B prefill 1K|E4B chunk 512|26B chunk 512|E4B prefill 4K" 2>&1 | tail -3
cat $out/ab/ab.md 2>/dev/null | cut -c1-200
echo "bench at $((SECONDS - start)) s"
TEST_TIMEOUT=200 scripts/gpu/sharded_tests.sh /tmp/t1 $B/wideattn_tests '*FusedPrefill*d512*:*prefill_fused*' 16 2>&1 | tail -14
echo "tests at $((SECONDS - start)) s"
for tool in memcheck racecheck; do
  timeout 150 compute-sanitizer --tool $tool $B/wideattn_tests --gtest_filter='SanitizerSmallProblems.FusedPrefill' 2>&1 | grep -E "OK \]|FAILED|ERROR SUMMARY|RACECHECK SUMMARY" | head -4
  echo "$tool at $((SECONDS - start)) s"
done
