#!/bin/bash
# Session 2026-12-03 (sixth) call 4: Nsight Compute on the wgmma decode kernel over a bf16 cache
# (branch wgmma-16bit, WIDEATTN_DECODE_WGMMA=all) at 32 rows (31B b8x4), where its bytes from L2
# (call 3) still took 147 us: warp stalls per SASS instruction. And the fp8 kernel at 32 rows
# for comparison.
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
B=build-carry/bin
WIDEATTN_DECODE_WGMMA=all KERNEL=decode_wgmma SUITE=gpu timeout 300 scripts/gpu/profile_fused.sh /tmp/c4/ncu $B/cand \
  "31B decode b8x4 kv 8K (32/4)$" "E4B decode b1 kv 32K (8/2)$" > /tmp/c4/ncu.log 2>&1
echo "ncu rc=$? at $((SECONDS - start)) s"; cat /tmp/c4/ncu.log | head -40
mkdir -p /tmp/c4/x && tar xzf /tmp/c4/ncu/profiles.tar.gz -C /tmp/c4/x
for f in /tmp/c4/x/profiles/*.stalls.txt; do echo "== $f"; head -60 $f; done
cp /tmp/c4/ncu/profiles.tar.gz $out/
