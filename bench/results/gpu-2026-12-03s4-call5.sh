#!/bin/bash
# Session 2026-12-03 (fourth) call 5: the fp8 tests of main + the wgmma decode through a plan from bounds.
out=$1
timeout 150 build-carry/wideattn_tests --gtest_filter='*Fp8Kv*:SanitizerSmallProblems.WideDecode:SanitizerSmallProblems.Fp8Decode' > $out/tests.txt 2>&1
echo "rc=$?" >> $out/tests.txt
grep -E "^\[ +(OK|FAILED|PASSED|SKIPPED) +\]|rc=|Failure" $out/tests.txt | tail -30
