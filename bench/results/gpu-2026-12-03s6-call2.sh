#!/bin/bash
# Session 2026-12-03 (sixth) call 2: where the wgmma decode kernel's time goes, one binary
# (branch wgmma-16bit), switches from the environment: WIDEATTN_DECODE_WGMMA=all (16-bit caches
# on the wgmma kernel), WIDEATTN_TUNE_DECODE_WGMMA_BATCH=N (the producer issues N loads back to
# back once N slots are free), WIDEATTN_TUNE_DECODE_WGMMA_L2=1 (every tile loads the CTA's first
# one: bytes from L2, not DRAM; results wrong). bf16 rows: the mma kernel, the wgmma kernel, with
# batches of 4 and 8, from L2; fp8 rows: the wgmma kernel, batches of 4, from L2.
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
W=$PWD/build-carry/bin/cand/wideattn
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
FB='31B decode b32 kv 4K (32/4)$|31B decode b1 kv 32K (32/4)$|31B decode b8x4 kv 8K (32/4)$|E4B decode b1 kv 32K (8/2)$|26B decode b8x4 kv 8K (16/2)$|31B decode b32 kv 4K (32/4) paged 16$'
FF='31B decode b32 kv 4K (32/4) fp8$|31B decode b1 kv 32K (32/4) fp8$|31B decode b8x4 kv 8K (32/4) fp8$|E4B decode b1 kv 32K (8/2) fp8$|31B decode b32 kv 4K (32/4) paged 16 fp8$'
run() {  # NAME FILTER ENV...
  local name=$1 filter=$2; shift 2
  env "$@" timeout 120 $W bench --suite gpu --filter "$filter" --check-rows 2 --json /tmp/r/$name.json > /tmp/r/$name.txt 2>&1
  echo "$name rc=$? at $((SECONDS - start)) s"
}
mkdir -p /tmp/r
run mma "$FB" X=1
run wgmma16 "$FB" WIDEATTN_DECODE_WGMMA=all
run wgmma16-b4 "$FB" WIDEATTN_DECODE_WGMMA=all WIDEATTN_TUNE_DECODE_WGMMA_BATCH=4
run wgmma16-b8 "$FB" WIDEATTN_DECODE_WGMMA=all WIDEATTN_TUNE_DECODE_WGMMA_BATCH=8
run wgmma16-l2 "$FB" WIDEATTN_DECODE_WGMMA=all WIDEATTN_TUNE_DECODE_WGMMA_L2=1
run fp8 "$FF" X=1
run fp8-b4 "$FF" WIDEATTN_TUNE_DECODE_WGMMA_BATCH=4
run fp8-l2 "$FF" WIDEATTN_TUNE_DECODE_WGMMA_L2=1
run mma2 "$FB" X=1
run wgmma16-2 "$FB" WIDEATTN_DECODE_WGMMA=all
python3 bench/compare_runs.py mma=/tmp/r/mma.json,/tmp/r/mma2.json wgmma16=/tmp/r/wgmma16.json,/tmp/r/wgmma16-2.json \
  b4=/tmp/r/wgmma16-b4.json b8=/tmp/r/wgmma16-b8.json l2=/tmp/r/wgmma16-l2.json --markdown --host | tee $out/bf16.md
python3 bench/compare_runs.py fp8=/tmp/r/fp8.json b4=/tmp/r/fp8-b4.json l2=/tmp/r/fp8-l2.json --markdown --host | tee $out/fp8.md
tar czf $out/r.tgz -C /tmp r
