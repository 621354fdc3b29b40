#!/bin/bash
# Session 2026-12-03 (sixth) call 1: the wgmma decode kernel over 16-bit caches (branch
# wgmma-16bit: both operands from shared memory, K K-major and V^T MN-major as the chunks land)
# against the mma.sync kernel, one binary: WIDEATTN_DECODE_WGMMA=all sends 16-bit caches to the
# wgmma kernel. A smoke run first; then the bf16 decode A/B (one round each, in turns); then the
# CUDA suite with the switch on (every decode test at 512 then runs the new path) and
# compute-sanitizer over the wide decode problem with it.
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
B=build-carry/bin
mkdir -p $B/all
for b in wideattn wideattn_tests; do
  printf '#!/bin/bash\nWIDEATTN_DECODE_WGMMA=all exec %s "$@"\n' "$PWD/$B/cand/$b" > $B/all/$b
  chmod +x $B/all/$b
done
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
for s in "--batch 32 --q-heads 32 --kv-heads 4 --kv-length 4096" "--batch 8 --q-heads 32 --kv-heads 4 --kv-length 8192 --suffix 4" \
         "--batch 1 --q-heads 8 --kv-heads 2 --kv-length 32768"; do
  timeout 60 $B/all/wideattn run $s --repeat 5 --warmup 2 2>&1 | grep -E "kernel|reason|median|accuracy|error" | cut -c1-200
done
echo "smoke done at $((SECONDS - start)) s"
F='31B decode b32 kv 4K (32/4)$|31B decode b1 kv 32K (32/4)$|31B decode b1 kv 128K (32/4)$|31B decode b8x4 kv 8K (32/4)$|E4B decode b1 kv 32K (8/2)$|E4B decode b8x4 kv 8K (8/2)$|26B decode b1 kv 32K (16/2)$|26B decode b8x4 kv 8K (16/2)$|E2B decode b1 kv 32K (8/1)$|31B decode b8x4 kv 8K (32/4) paged 16$|31B decode b32 kv 4K (32/4) paged 16$|31B decode b1 kv 32K (32/4) paged 64$'
ROUNDS=1 RUN_TIMEOUT=150 scripts/gpu/ab_bench.sh /tmp/ab mma=$B/cand/wideattn wgmma=$B/all/wideattn -- --suite gpu --filter "$F" > $out/ab.log 2>&1
echo "ab done at $((SECONDS - start)) s"; cat /tmp/ab/ab.md
left=$((540 - (SECONDS - start)))
TEST_TIMEOUT=$((left > 260 ? 230 : left - 30)) scripts/gpu/sharded_tests.sh /tmp/tests $B/all/wideattn_tests \
  '*cuda*:*Cuda*:*CUDA*:Planned*:Sanitizer*:Fp8*:Dispatch*:*Paged*:*Determinism*:*Nan*' 16 2>&1 | tail -30
echo "tests done at $((SECONDS - start)) s"
left=$((560 - (SECONDS - start)))
if [ $left -gt 40 ]; then
  WIDEATTN_DECODE_WGMMA=all timeout $left compute-sanitizer --tool memcheck $B/cand/wideattn_tests \
    --gtest_filter='SanitizerSmallProblems.WideDecode' 2>&1 | tail -4
  echo "memcheck done at $((SECONDS - start)) s"
fi
tar czf $out/logs.tgz -C /tmp ab tests
