#!/bin/bash
# Session 2026-12-04 (ninth) call 6: the submission's kernels after the cooperative launch's
# failure path became a fallback (launch.h): the CUDA decode suite again, and E4B b1 x 32K.
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
N=build-carry/bin/new
TEST_TIMEOUT=150 scripts/gpu/sharded_tests.sh /tmp/c6/t $N/wideattn_tests \
  '*cuda*:*Cuda*:*CUDA*:Planned*:Sanitizer*:Fp8*:Dispatch*:*Paged*:*Determinism*:*MixedBatch*-*FusedPrefill*:*prefill_fused*' 16 2>&1 | tail -6
$N/wideattn_tests --gtest_filter='*GridMerge*' 2>&1 | grep -E "^\[  (PASSED|FAILED|  OK) |Failure" | head -6
echo "tests at $((SECONDS - start)) s"
timeout 40 $N/wideattn run --backend cuda --q-heads 8 --kv-heads 2 --kv-length 32768 --suffix 1 --repeat 30 2>&1 | grep -E "time|kernel" | head -3
