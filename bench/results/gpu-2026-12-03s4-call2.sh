#!/bin/bash
# Session 2026-12-03 (fourth) call 2: the library's wgmma decode kernel (branch decode-wgmma-kernel).
out=$1
B=build-carry
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $out/gpu.txt
export WIDEATTN_TEST_SEED=${WIDEATTN_TEST_SEED:-}
timeout 240 $B/wideattn_tests --gtest_filter='*Fp8*:*WideDecode*:*Wgmma*' > $out/tests.txt 2>&1; echo "tests rc=$?" >> $out/tests.txt
tail -25 $out/tests.txt
for tool in memcheck racecheck synccheck; do
  timeout 120 compute-sanitizer --tool $tool --error-exitcode 9 $B/wideattn_tests --gtest_filter='SanitizerSmallProblems.WideDecode:Backends/Fp8KvTest.NanCodes*/cuda' > $out/san-$tool.txt 2>&1
  echo "$tool rc=$? $(grep -E 'ERROR SUMMARY|PASSED|FAILED' $out/san-$tool.txt | tr '\n' ' ')"
done
timeout 200 $B/wideattn bench --suite gpu --filter decode --json $out/bench-wgmma.json > $out/bench-wgmma.txt 2>&1; echo "bench rc=$?"
WIDEATTN_DECODE_WGMMA=0 timeout 100 $B/wideattn bench --suite gpu --filter fp8 --json $out/bench-mma.json > $out/bench-mma.txt 2>&1; echo "bench mma rc=$?"
grep -E "fp8|31B decode|copy" $out/bench-wgmma.txt | head -40
echo ---; grep -E "fp8|copy" $out/bench-mma.txt
