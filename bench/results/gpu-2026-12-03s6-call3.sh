#!/bin/bash
# Session 2026-12-03 (sixth) call 3: the wgmma decode kernel with four producer warps (each
# issues every fourth chunk; call 2 showed one thread issuing every load was its limit), against
# main c488f42 (one producer thread) in the same run: fp8 rows (default dispatch), bf16 rows on
# the mma kernel (main) and on the wgmma kernel (WIDEATTN_DECODE_WGMMA=all), and each wgmma run
# again with its bytes from L2 (WIDEATTN_TUNE_DECODE_WGMMA_L2=1: the kernel without the DRAM's
# share; results wrong). Then the candidate's fp8/wgmma/graph tests, default and with =all.
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
C=$PWD/build-carry/bin/cand M=$PWD/build-carry/bin/main
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
FB='31B decode b32 kv 4K (32/4)$|31B decode b1 kv 32K (32/4)$|31B decode b1 kv 128K (32/4)$|31B decode b8x4 kv 8K (32/4)$|E4B decode b1 kv 32K (8/2)$|E4B decode b8x4 kv 8K (8/2)$|26B decode b1 kv 32K (16/2)$|26B decode b8x4 kv 8K (16/2)$|E2B decode b1 kv 32K (8/1)$|31B decode b32 kv 4K (32/4) paged 16$|31B decode b8x4 kv 8K (32/4) paged 16$|31B decode b1 kv 32K (32/4) paged 64$'
FF='31B decode b32 kv 4K (32/4) fp8$|31B decode b1 kv 32K (32/4) fp8$|31B decode b1 kv 128K (32/4) fp8$|31B decode b8x4 kv 8K (32/4) fp8$|E4B decode b1 kv 32K (8/2) fp8$|31B decode b32 kv 4K (32/4) paged 16 fp8$'
run() {  # NAME BINARY FILTER ENV...
  local name=$1 binary=$2 filter=$3; shift 3
  env "$@" timeout 150 $binary/wideattn bench --suite gpu --filter "$filter" --check-rows 2 --json /tmp/r/$name.json > /tmp/r/$name.txt 2>&1
  echo "$name rc=$? at $((SECONDS - start)) s"
}
mkdir -p /tmp/r
run mma-1 $M "$FB" X=1
run w16-1 $C "$FB" WIDEATTN_DECODE_WGMMA=all
run w16l2 $C "$FB" WIDEATTN_DECODE_WGMMA=all WIDEATTN_TUNE_DECODE_WGMMA_L2=1
run main8-1 $M "$FF" X=1
run cand8-1 $C "$FF" X=1
run cand8l2 $C "$FF" WIDEATTN_TUNE_DECODE_WGMMA_L2=1
run mma-2 $M "$FB" X=1
run w16-2 $C "$FB" WIDEATTN_DECODE_WGMMA=all
run main8-2 $M "$FF" X=1
run cand8-2 $C "$FF" X=1
python3 bench/compare_runs.py mma=/tmp/r/mma-1.json,/tmp/r/mma-2.json wgmma16=/tmp/r/w16-1.json,/tmp/r/w16-2.json \
  l2=/tmp/r/w16l2.json --markdown --host | tee $out/bf16.md
python3 bench/compare_runs.py main=/tmp/r/main8-1.json,/tmp/r/main8-2.json cand=/tmp/r/cand8-1.json,/tmp/r/cand8-2.json \
  l2=/tmp/r/cand8l2.json --markdown --host | tee $out/fp8.md
F='*Fp8*:*Wgmma*:*WideDecode*:*CudaGraph*'
TEST_TIMEOUT=120 scripts/gpu/sharded_tests.sh /tmp/r/tests $C/wideattn_tests "$F" 16 2>&1 | tail -8
WIDEATTN_DECODE_WGMMA=all TEST_TIMEOUT=120 scripts/gpu/sharded_tests.sh /tmp/r/tests-all $C/wideattn_tests "$F:*Paged*:*Planned*:*Nan*" 16 2>&1 | tail -8
echo "tests done at $((SECONDS - start)) s"
tar czf $out/r.tgz -C /tmp r
