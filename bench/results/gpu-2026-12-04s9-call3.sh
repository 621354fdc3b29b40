#!/bin/bash
# Session 2026-12-04 (ninth) call 3: the in-grid merge with a one-atomic barrier (64-bit word:
# arrivals and generation) and only where each CTA merges at most one item (batch-1 decode):
# its tests, sanitizers, the A/B in one binary (WIDEATTN_TUNE_DECODE_GRID_MERGE=0: the merge
# kernel) and the timeline of the trace build.
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
N=build-carry/bin/new T=build-carry/bin/trace
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
printf '#!/bin/bash\nWIDEATTN_TUNE_DECODE_GRID_MERGE=0 exec %s/wideattn "$@"\n' "$PWD/$N" > /tmp/kernel_merge.sh
chmod +x /tmp/kernel_merge.sh
timeout 60 $T/decode_check --no-check --no-sweep --only "b1 x kv32768" 2>&1 | grep -vE "^\s*$" | cut -c1-160 > $out/trace.txt
grep -E "auto |trace:|split CTA end|merge" $out/trace.txt | head -40
echo "trace at $((SECONDS - start)) s"
ROUNDS=2 RUN_TIMEOUT=150 scripts/gpu/ab_bench.sh /tmp/c3/ab kernel_merge=/tmp/kernel_merge.sh grid=$N/wideattn -- \
  --suite gpu --filter "decode b1 kv 32K|decode b1 kv 128K \(|31B decode b8x4" 2>&1 | tail -1
cut -c1-230 /tmp/c3/ab/ab.md | tee $out/ab.md
echo "ab at $((SECONDS - start)) s"
TEST_TIMEOUT=200 scripts/gpu/sharded_tests.sh /tmp/c3/t $N/wideattn_tests \
  '*cuda*:*Cuda*:*CUDA*:Planned*:Sanitizer*:Fp8*:Dispatch*:*Paged*:*Determinism*:*MixedBatch*:*HiddenRows*-*FusedPrefill*:*prefill_fused*' 16 2>&1 | tail -8
$N/wideattn_tests --gtest_filter='*GridMerge*' 2>&1 | grep -E "^\[  (PASSED|FAILED|  OK) |Failure|expected|Which is" | head -8
echo "tests at $((SECONDS - start)) s"
for tool in memcheck racecheck synccheck; do
  timeout 100 compute-sanitizer --tool $tool --error-exitcode 99 $N/wideattn_tests \
    --gtest_filter='CudaGraphTest.GridMergedDecodeIsOneKernelAndReplays:*SanitizerSmallProblems*ecode*' > /tmp/c3/$tool.txt 2>&1
  echo "$tool rc=$? at $((SECONDS - start)) s"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED" /tmp/c3/$tool.txt | head -4
done
tar czf $out/c3.tgz -C /tmp c3
