#!/bin/bash
# Session 2026-12-03 (seventh) call 3: the candidate (alternate_keys chosen by the walk rule,
# non-overlap schedule) against whole tiles on every d512 prefill row of 1K/4K/chunks (same
# binary, WIDEATTN_TUNE_FUSED_ALTERNATE=0 for "off"), the d512 fused and dispatch tests, and the
# C++ context-parallel tests on one GPU with PyTorch's NCCL (issue 14).
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
B=build-carry/bin/cand
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
printf '#!/bin/bash\nWIDEATTN_TUNE_FUSED_ALTERNATE=0 exec %s "$@"\n' "$PWD/$B/wideattn" > /tmp/alt0.sh
chmod +x /tmp/alt0.sh
ROUNDS=2 RUN_TIMEOUT=200 scripts/gpu/ab_bench.sh $out/ab auto=$B/wideattn off=/tmp/alt0.sh -- \
  --suite gpu --filter "prefill 1K|prefill 4K|chunk 512 on 8K (8/2)|chunk 512 on 8K (16/2)|chunk 512 on 8K (32/4)|chunk 512 on 8K (16/4)$" 2>&1 | tail -2
cut -c1-200 $out/ab/ab.md
echo "bench at $((SECONDS - start)) s"
lib="$(python3 -c 'import glob, os, torch; print((glob.glob(os.path.join(os.path.dirname(torch.__file__), "..", "nvidia", "nccl", "lib", "libnccl.so*")) + [""])[0])')"
echo "nccl: $lib"
NCCL_NVLS_ENABLE=0 WIDEATTN_NCCL_LIBRARY="$lib" timeout 120 $B/wideattn_tests --gtest_filter='*ContextParallel*' 2>&1 | grep -E "OK \]|FAILED|PASSED|SKIPPED|tests ran" | tee $out/cp-tests.txt | tail -25
echo "cp at $((SECONDS - start)) s"
TEST_TIMEOUT=200 scripts/gpu/sharded_tests.sh /tmp/t3 $B/wideattn_tests '*FusedPrefill*d512*:Dispatch*:*SanitizerSmallProblems.FusedPrefill*' 16 2>&1 | tail -10
echo "tests at $((SECONDS - start)) s"
