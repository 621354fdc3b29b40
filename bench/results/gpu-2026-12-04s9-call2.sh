#!/bin/bash
# Session 2026-12-04 (ninth) call 2: the split pass merging its own splits in the grid
# (decode_grid_merge.cuh). The CUDA decode tests (new: in-grid merge = merge kernel bit for bit,
# one kernel in a captured graph, replays), sanitizers over it, an A/B in one binary
# (WIDEATTN_TUNE_DECODE_GRID_MERGE=0: the merge kernel; 2: in-grid without the cooperative
# attribute), and the timeline of the trace build.
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
N=build-carry/bin/new T=build-carry/bin/trace
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
printf '#!/bin/bash\nWIDEATTN_TUNE_DECODE_GRID_MERGE=0 exec %s/wideattn "$@"\n' "$PWD/$N" > /tmp/kernel_merge.sh
printf '#!/bin/bash\nWIDEATTN_TUNE_DECODE_GRID_MERGE=2 exec %s/wideattn "$@"\n' "$PWD/$N" > /tmp/uncoop.sh
chmod +x /tmp/kernel_merge.sh /tmp/uncoop.sh
$N/wideattn_tests --gtest_filter='*GridMerge*' 2>&1 | grep -E "^\[  (PASSED|FAILED|  OK|SKIPPED) |Failure|error|expected|Which is" | head -20
echo "grid merge tests at $((SECONDS - start)) s"
ROUNDS=2 RUN_TIMEOUT=150 scripts/gpu/ab_bench.sh /tmp/c2/ab kernel_merge=/tmp/kernel_merge.sh grid=$N/wideattn uncoop=/tmp/uncoop.sh -- \
  --suite gpu --filter "decode b1|decode b8" 2>&1 | tail -1
cut -c1-230 /tmp/c2/ab/ab.md | tee $out/ab.md
echo "ab at $((SECONDS - start)) s"
timeout 60 $T/decode_check --no-check --no-sweep --only "b1 x kv32768" 2>&1 | grep -vE "^\s*$" | cut -c1-160 > $out/trace.txt
grep -E "auto |trace:|split CTA end|merge" $out/trace.txt | head -40
echo "trace at $((SECONDS - start)) s"
TEST_TIMEOUT=200 scripts/gpu/sharded_tests.sh /tmp/c2/t $N/wideattn_tests \
  '*cuda*:*Cuda*:*CUDA*:Planned*:Sanitizer*:Fp8*:Dispatch*:*Paged*:*Determinism*:*MixedBatch*:*HiddenRows*-*FusedPrefill*:*prefill_fused*' 16 2>&1 | tail -8
echo "tests at $((SECONDS - start)) s"
for tool in memcheck racecheck synccheck; do
  timeout 100 compute-sanitizer --tool $tool --error-exitcode 99 $N/wideattn_tests \
    --gtest_filter='CudaGraphTest.GridMergedDecodeIsOneKernelAndReplays:*SanitizerSmallProblems*ecode*' > /tmp/c2/$tool.txt 2>&1
  echo "$tool rc=$? at $((SECONDS - start)) s"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED" /tmp/c2/$tool.txt | head -4
done
tar czf $out/c2.tgz -C /tmp c2
