#!/bin/bash
# Next session's first device call (prepared 2026-12-03, third session). Build first, here:
#   git checkout decode-wgmma-cp-async; nvcc ... bench/decode_wgmma_gate.cu -o build-carry/decode_wgmma_gate
#   (command in docs/design.md's gate section / bench/CMakeLists.txt), carry it and this file.
# The gate's cp.async producer, contiguous and paged, against its TMA producer, bf16 and fp8.
out=$1
g=build-carry/decode_wgmma_gate
{
for args in "" "--cp-async" "--cp-async --page-size 16" "--cp-async --page-size 64" \
    "--fp8-registers --ring 12" "--fp8-registers --ring 12 --cp-async" "--fp8-registers --ring 12 --cp-async --page-size 16" \
    "--fp8-registers --ring 12 --cp-async --page-size 256"; do
  echo "== gate $args"; timeout 30 $g $args 2>&1 | tail -2
done
} > $out/gate.txt 2>&1
cat $out/gate.txt
