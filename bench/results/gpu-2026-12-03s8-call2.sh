#!/bin/bash
# Session 2026-12-03 (eighth) call 2: split_merge (a pair's tile in two parts that meet in the
# kernel) against the same binary with it off (WIDEATTN_TUNE_FUSED_SPLIT_MERGE=0: main's plans);
# the fused/dispatch/determinism/NaN tests with the new PairModes; memcheck and racecheck.
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
B=build-carry/bin/cand
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
mkdir -p /tmp/c2
printf '#!/bin/bash\nWIDEATTN_TUNE_FUSED_SPLIT_MERGE=0 exec %s "$@"\n' "$PWD/$B/wideattn" > /tmp/sm0.sh; chmod +x /tmp/sm0.sh
ROUNDS=2 RUN_TIMEOUT=150 scripts/gpu/ab_bench.sh /tmp/c2/ab auto=$B/wideattn off=/tmp/sm0.sh -- \
  --suite gpu --filter "prefill 1K|chunk 512 on 8K|prefill 4K" 2>&1 | tail -1
cut -c1-200 /tmp/c2/ab/ab.md
echo "ab at $((SECONDS - start)) s"
$B/wideattn run --backend cuda --q-heads 8 --kv-heads 2 --head-dim 512 --suffix 1024 --repeat 3 2>&1 | grep -i -E "plan|reason|error" | head -3
TEST_TIMEOUT=200 scripts/gpu/sharded_tests.sh /tmp/c2/t $B/wideattn_tests \
  '*FusedPrefill*d512*:*prefill_fused*:Dispatch*:*Determinism*:*ContextParallel*' 16 2>&1 | tail -8
echo "tests at $((SECONDS - start)) s"
for tool in memcheck racecheck; do
  timeout 150 compute-sanitizer --tool $tool --error-exitcode 99 $B/wideattn_tests --gtest_filter='*SanitizerSmallProblems.FusedPrefill*' > /tmp/c2/$tool.txt 2>&1
  echo "$tool rc=$? at $((SECONDS - start)) s"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED" /tmp/c2/$tool.txt | head -4
done
tar czf $out/c2.tgz -C /tmp c2
