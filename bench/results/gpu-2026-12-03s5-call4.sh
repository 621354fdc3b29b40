#!/bin/bash
# Session 2026-12-03 (fifth) call 4 (main 2c5867e's wideattn, built here): Nsight Compute on the
# wgmma decode kernel after its prologue/epilogue rewrite (fp8: 32 rows at 31B b8x4, 16 at E4B
# b8x4, 8 at 31B b1 x 32K), then KV-split sweeps of the fp8 problems the cost model plans with
# the mma kernel's terms.
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
B=build-carry/bin/main
KERNEL=decode_wgmma SUITE=gpu timeout 200 scripts/gpu/profile_fused.sh /tmp/c4/ncu $B \
  "31B decode b8x4 kv 8K (32/4) fp8" "E4B decode b8x4 kv 8K (8/2) fp8" "31B decode b1 kv 32K (32/4) fp8" > $out/ncu.log 2>&1
echo "ncu rc=$? at $((SECONDS - start)) s"; cat $out/ncu.log | grep -v "^  *Static\|Driver\|Configuration" | head -40
cp /tmp/c4/ncu/profiles.tar.gz $out/ 2>/dev/null
sweep() {  # name, splits..., -- run args
  local name=$1; shift; local splits=(); while [ "$1" != "--" ]; do splits+=("$1"); shift; done; shift
  for s in "${splits[@]}"; do
    [ $((SECONDS - start)) -gt 400 ] && { echo "$name: stopped (time)"; return; }
    line=$(timeout 60 $B/wideattn run --backend cuda --kv-fp8 --repeat 30 --warmup 5 --kv-splits $s "$@" 2>&1 | grep -E "^ +(kernel|time|accuracy)" | tr -s ' ' | paste -sd' ' | cut -c1-260)
    echo "$name splits=$s: $line"
  done
  line=$(timeout 60 $B/wideattn run --backend cuda --kv-fp8 --repeat 30 --warmup 5 "$@" 2>&1 | grep -E "^ +(kernel|time|accuracy)" | tr -s ' ' | paste -sd' ' | cut -c1-260)
  echo "$name planned: $line"
}
{
sweep "31B b1 x 32K" 16 24 32 33 48 64 -- --q-heads 32 --kv-heads 4 --kv-length 32768 --suffix 1
sweep "E4B b1 x 32K" 32 48 64 66 96 128 -- --q-heads 8 --kv-heads 2 --kv-length 32768 --suffix 1
sweep "31B b8 x 4 x 8K" 2 3 4 5 8 -- --batch 8 --q-heads 32 --kv-heads 4 --kv-length 8192 --suffix 4
} > $out/sweep.txt 2>&1
echo "sweeps at $((SECONDS - start)) s"; cat $out/sweep.txt
