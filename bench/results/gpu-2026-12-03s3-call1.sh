#!/bin/bash
# Session 2026-12-03 (third) call 1: carry build-carry/bin.tgz (base = main's kernels, cand =
# branch fused-nan-pair-ring-tree ba9f851) and this file.
# 0) a probe: the fused kernel forced onto decode problems (GQA rows packed), against the decode
#    kernels, to decide where fp8/batch decode should go; 1) the candidate's whole CUDA suite,
# 2) sanitizers, 3) the fused suite A/B ("31B tree 64 on 4K" is the changed variant).
out=$1
eval "$(scripts/gpu/unpack_carry.sh)"
w=build-carry/bin/cand/wideattn
g=build-carry/decode_wgmma_gate
{
for args in "" "--fp8" "--fp8-registers" "--tokens 4 --kv 8192 --batch 8" "--tokens 4 --kv 8192 --batch 8 --fp8-registers" "--batch 33 --kv 4096 --fp8-registers"; do
  echo "== gate $args"; timeout 60 $g $args 2>&1 | tail -3
done
} > $out/gate.txt 2>&1
cat $out/gate.txt
{
for k in auto prefill_fused; do
  echo "== 31B b32 x KV 4K, kernel $k"
  timeout 40 $w run --backend cuda --batch 32 --q-heads 32 --kv-heads 4 --kv-length 4096 --suffix 1 --kernel $k --repeat 30 2>&1 | tail -4
  echo "== 31B b8 x 4 x KV 8K, kernel $k"
  timeout 40 $w run --backend cuda --batch 8 --q-heads 32 --kv-heads 4 --kv-length 8192 --suffix 4 --kernel $k --repeat 30 2>&1 | tail -4
  echo "== 26B b32 x KV 4K, kernel $k"
  timeout 40 $w run --backend cuda --batch 32 --q-heads 16 --kv-heads 2 --kv-length 4096 --suffix 1 --kernel $k --repeat 30 2>&1 | tail -4
done
echo "== 31B b32 x KV 4K fp8, auto"
timeout 40 $w run --backend cuda --batch 32 --q-heads 32 --kv-heads 4 --kv-length 4096 --suffix 1 --kv-fp8 --repeat 30 2>&1 | tail -4
} > $out/probe.txt 2>&1
cat $out/probe.txt
timeout 470 scripts/gpu/candidate_check.sh /tmp/cc build-carry/bin/base build-carry/bin/cand "--suite fused" > $out/check.txt 2>&1
tar czf $out/cc.tgz -C /tmp cc
tail -45 $out/check.txt
