#!/bin/bash
# Session 2026-12-03 (eighth) call 3: split_merge with its merge spread over the warpgroup
# (row weights first, then four rows' loads in flight) against main d035272 (CLI built from that
# commit); kernel durations under Nsight Compute; d512 fused tests with every pair mode, NaN
# policy, memcheck and racecheck.
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
B=build-carry/bin/cand
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
mkdir -p /tmp/c3
ROUNDS=2 RUN_TIMEOUT=150 scripts/gpu/ab_bench.sh /tmp/c3/ab main=build-carry/bin/main/wideattn cand=$B/wideattn -- \
  --suite gpu --filter "prefill 1K|chunk 512 on 8K|d512 prefill 4K" 2>&1 | tail -1
cut -c1-200 /tmp/c3/ab/ab.md
echo "ab at $((SECONDS - start)) s"
NCU="$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)"
for v in "split_merge::" "merge_kernel:WIDEATTN_TUNE_FUSED_SPLIT_MERGE=0:--kv-splits 2" "alternate:WIDEATTN_TUNE_FUSED_SPLIT_MERGE=0:"; do
  IFS=: read name env extra <<<"$v"
  env $env timeout 60 "$NCU" --clock-control none --metrics gpu__time_duration.sum -c 6 $B/wideattn bench --suite gpu --backend cuda \
    --filter "E4B prefill 1K" --repeat 2 --warmup 1 --no-ceilings --check-rows 0 $extra > /tmp/c3/ncu-$name.txt 2>&1
  echo "== $name"; grep -E "fused_prefill_kernel|decode_merge|gpu__time_duration" /tmp/c3/ncu-$name.txt | sed 's/(wideattn::fused::FusedParams)//' | cut -c1-150 | tail -8
done
echo "ncu at $((SECONDS - start)) s"
TEST_TIMEOUT=200 scripts/gpu/sharded_tests.sh /tmp/c3/t $B/wideattn_tests \
  '*FusedPrefill*d512*:*prefill_fused*:Dispatch*:*Determinism*' 16 2>&1 | tail -6
echo "tests at $((SECONDS - start)) s"
for tool in memcheck racecheck synccheck; do
  timeout 100 compute-sanitizer --tool $tool --error-exitcode 99 $B/wideattn_tests --gtest_filter='*SanitizerSmallProblems.FusedPrefill*' > /tmp/c3/$tool.txt 2>&1
  echo "$tool rc=$? at $((SECONDS - start)) s"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED" /tmp/c3/$tool.txt | head -3
done
tar czf $out/c3.tgz -C /tmp c3
