#!/bin/bash
# Session 2026-12-03 (third) call 2: the wgmma decode gate's limits (ring depth, compute only)
# next to the library's decode kernels on the same problems, same card, same call.
out=$1
eval "$(scripts/gpu/unpack_carry.sh)"
w=build-carry/bin/cand/wideattn
g=build-carry/decode_wgmma_gate
{
for args in "" "--compute-only" "--fp8-registers" "--fp8-registers --ring 16" "--fp8-registers --ring 12" "--fp8-registers --compute-only" \
    "--fp8" "--tokens 4 --kv 8192 --batch 8" "--tokens 4 --kv 8192 --batch 8 --compute-only" "--tokens 4 --kv 8192 --batch 8 --fp8-registers"; do
  echo "== gate $args"; timeout 60 $g $args 2>&1 | tail -2
done
for fp8 in "" "--kv-fp8"; do
  echo "== library 31B b32 x KV 4K $fp8"
  timeout 60 $w run --backend cuda --batch 32 --q-heads 32 --kv-heads 4 --kv-length 4096 --suffix 1 $fp8 --repeat 30 2>&1 | grep -E "kernel|time|ok:|FAIL"
  echo "== library 31B b8 x 4 x KV 8K $fp8"
  timeout 60 $w run --backend cuda --batch 8 --q-heads 32 --kv-heads 4 --kv-length 8192 --suffix 4 $fp8 --repeat 30 2>&1 | grep -E "kernel|time|ok:|FAIL"
done
} > $out/gate2.txt 2>&1
cat $out/gate2.txt
