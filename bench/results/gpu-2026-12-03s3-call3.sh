#!/bin/bash
# Session 2026-12-03 (third) call 3: the gate at 32 rows (4 tokens x gqa 8) on a full grid
# (batch 32 x 4 KV heads = 128 CTAs), against the library on the same problem.
out=$1
eval "$(scripts/gpu/unpack_carry.sh)"
w=build-carry/bin/cand/wideattn
g=build-carry/decode_wgmma_gate
{
for args in "" "--compute-only" "--fp8-registers" "--fp8-registers --ring 12" "--fp8-registers --compute-only"; do
  echo "== gate --tokens 4 --kv 2048 --batch 32 $args"; timeout 60 $g --tokens 4 --kv 2048 --batch 32 $args 2>&1 | tail -2
done
for fp8 in "" "--kv-fp8"; do
  echo "== library 31B b32 x 4 x KV 2K $fp8"
  timeout 60 $w run --backend cuda --batch 32 --q-heads 32 --kv-heads 4 --kv-length 2048 --suffix 4 $fp8 --repeat 30 2>&1 | grep -E "kernel|time|ok:|FAIL"
done
} > $out/gate3.txt 2>&1
cat $out/gate3.txt
