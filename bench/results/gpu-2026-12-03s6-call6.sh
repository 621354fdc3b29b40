#!/bin/bash
# Session 2026-12-03 (sixth) call 6: the submission (main + the L2 tuning aid in the wgmma
# decode kernel's producer, the bench filter's $, the fp8 alignment test) on the GPU: the fp8,
# wgmma, graph and wide-decode tests, the new refusal of unaligned fp8 query rows,
# compute-sanitizer memcheck over the wide decode problem, and the fp8 rows once.
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
B=build-carry/bin/cand
TEST_TIMEOUT=150 scripts/gpu/sharded_tests.sh /tmp/t6 $B/wideattn_tests '*Fp8*:*Wgmma*:*WideDecode*:*CudaGraph*:*Dispatch*' 16 2>&1 | tail -12
echo "tests at $((SECONDS - start)) s"
timeout 100 compute-sanitizer --tool memcheck $B/wideattn_tests \
  --gtest_filter='SanitizerSmallProblems.WideDecode:Backends/Fp8KvTest.UnalignedQueryRows*/cuda' 2>&1 | grep -E "OK|FAILED|ERROR SUMMARY" | head
echo "memcheck at $((SECONDS - start)) s"
timeout 120 $B/wideattn bench --suite gpu --filter "31B decode b32 kv 4K (32/4) fp8$|31B decode b8x4 kv 8K (32/4) fp8$|E4B decode b1 kv 32K (8/2) fp8$" 2>&1 | grep -E "^\||ceiling|fp8" | cut -c1-160 | tee $out/fp8.txt
echo "done at $((SECONDS - start)) s"
