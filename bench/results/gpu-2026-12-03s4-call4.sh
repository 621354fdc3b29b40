#!/bin/bash
# Session 2026-12-03 (fourth) call 4: three consumer warpgroups at 8 rows (branch decode-wgmma-three)
# (hand-over buffer of its own) against main's wgmma kernel (two): the candidate's CUDA tests and sanitizers, the fp8 decode A/B.
out=$1
eval "$(scripts/gpu/unpack_carry.sh)"
TEST_TIMEOUT=230 SANITIZER_TIMEOUT=100 SANITIZER_TOOLS="memcheck racecheck synccheck initcheck" SANITIZER_FILTER="SanitizerSmallProblems.WideDecode:SanitizerSmallProblems.Fp8Decode:Backends/Fp8KvTest.NanCodes*/cuda" ROUNDS=2 timeout 570 scripts/gpu/candidate_check.sh /tmp/cc \
  build-carry/bin/base build-carry/bin/candidate "--suite gpu --filter fp8" > $out/cc.log 2>&1
echo "rc=$?" >> $out/cc.log
tar czf $out/cc.tgz -C /tmp cc
grep -vE "^\[|^$" $out/cc.log | tail -60
