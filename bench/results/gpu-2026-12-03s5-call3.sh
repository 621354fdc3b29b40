#!/bin/bash
# Session 2026-12-03 (fifth) call 3: the wgmma decode kernel's prologue and epilogue (branch
# decode-wgmma-prologue-epilogue: Q in 16-byte vectors, one round trip; the rows' state by one
# thread a row; results staged and stored by a rolled loop) against main's kernel (base: main's
# kernel with the branch's CLI, for the --filter alternatives): the candidate's fp8/wgmma tests,
# compute-sanitizer x 4 (the wide decode problems now reach 16 and 32 rows), the fp8 A/B (one
# round), then the candidate's fp8 rows next to the bf16 ones in one run.
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
B=build-carry/bin
TEST_FILTER='*Fp8*:*Wgmma*:*WideDecode*:*CudaGraph*:Sanitizer*:*Decode*cuda*' TEST_TIMEOUT=150 SANITIZER_TIMEOUT=90 \
  SANITIZER_TOOLS="memcheck racecheck synccheck initcheck" \
  SANITIZER_FILTER="SanitizerSmallProblems.WideDecode:SanitizerSmallProblems.Fp8Decode:Backends/Fp8KvTest.NanCodes*/cuda" \
  ROUNDS=1 RUN_TIMEOUT=100 timeout 420 scripts/gpu/candidate_check.sh /tmp/cc $B/base $B/candidate "--suite gpu --filter fp8" > $out/cc.log 2>&1
echo "candidate_check rc=$? at $((SECONDS - start)) s"
grep -vE "^\[|^$" $out/cc.log | tail -40
left=$((560 - (SECONDS - start)))
if [ $left -gt 60 ]; then
  timeout $left $B/candidate/wideattn bench --suite gpu --json $out/same-run.json \
    --filter "31B decode b32 kv 4K (32/4)|31B decode b1 kv 32K (32/4)|31B decode b1 kv 128K (32/4)|31B decode b8x4 kv 8K (32/4)|E4B decode b1 kv 32K|E4B decode b8x4|26B decode b1 kv 32K" > $out/same-run.txt 2>&1
  echo "same-run rc=$? at $((SECONDS - start)) s"; grep -E "^\[|ceiling" $out/same-run.txt | cut -c1-150
fi
tar czf $out/cc.tgz -C /tmp cc
