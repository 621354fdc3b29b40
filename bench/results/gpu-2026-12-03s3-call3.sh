#!/bin/bash
# Session 2026-12-03 (third) call 3 (the session's last ~4 device minutes): the wgmma decode
# gate with the Q K^T product in 4 independent accumulator chains against 1 (31B b32 x KV 4K),
# and at 32 rows (4 tokens x gqa 8) on a full grid (b32 x 4 KV heads = 128 CTAs), next to the
# library on that problem.
out=$1
eval "$(scripts/gpu/unpack_carry.sh)"
w=build-carry/bin/cand/wideattn
g=build-carry/decode_wgmma_gate
run_all() {
for args in "--chains 1" "--chains 4" "--chains 4 --compute-only" \
    "--fp8-registers --ring 12 --chains 1" "--fp8-registers --ring 12 --chains 4" "--fp8-registers --chains 4 --compute-only" \
    "--tokens 4 --kv 2048 --batch 32" "--tokens 4 --kv 2048 --batch 32 --fp8-registers --ring 12"; do
  echo "== gate $args"; timeout 20 $g $args 2>&1 | tail -1
done
for fp8 in "" "--kv-fp8"; do
  echo "== library 31B b32 x 4 x KV 2K $fp8"
  timeout 30 $w run --backend cuda --batch 32 --q-heads 32 --kv-heads 4 --kv-length 2048 --suffix 4 $fp8 --repeat 30 2>&1 | grep -E "kernel|time|ok:|FAIL"
done
}
timeout 130 bash -c "$(declare -f run_all); g=$g; w=$w; run_all" > $out/gate3.txt 2>&1
cat $out/gate3.txt
