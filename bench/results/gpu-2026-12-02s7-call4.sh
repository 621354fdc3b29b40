#!/usr/bin/env bash
# Session 7, call 4: fixed KV splits (--kv-splits) against the plan's choice, for the fused
# prefill problems with few query tiles (1K tokens, 512-token chunks on 8K) and for batch-1
# decode over 32K keys; main 2c816da's CLI.
set -uo pipefail
out="$1"; logs=/tmp/c4; rm -rf $logs; mkdir -p $logs
eval "$(scripts/gpu/unpack_carry.sh)"
trap 'tar czf $out/c4.tgz -C /tmp c4' EXIT
start=$SECONDS
B=build-carry/bin/new/wideattn
common="--check-rows 1 --warmup 3 --repeat 15"
$B bench --suite gpu --filter "prefill 1K" $common --json $logs/p1k-auto.json > $logs/p1k-auto.txt 2>&1
grep -E "^\| |ceilings" $logs/p1k-auto.txt
for s in 1 2 3 4; do
  $B bench --suite gpu --filter "prefill 1K" --kv-splits $s --no-ceilings $common --json $logs/p1k-s$s.json > $logs/p1k-s$s.txt 2>&1
  echo "== 1K, $s split(s)"; grep -E "^\| [^p-]" $logs/p1k-s$s.txt | cut -c1-110
done
echo "1K done at $((SECONDS-start)) s"
for s in 0 1 2 3 4; do
  echo "== E2B 1K (8/1), kv-splits $s"
  $B run --backend cuda --q-heads 8 --kv-heads 1 --prefix 0 --suffix 1024 --kv-splits $s --repeat 15 2>&1 | grep -E "kernel|time " 
done
for s in 0 1 2 4; do
  $B bench --suite gpu --filter "chunk" --kv-splits $s --no-ceilings $common --json $logs/chunk-s$s.json > $logs/chunk-s$s.txt 2>&1
  echo "== chunks, kv-splits $s"; grep -E "^\| [^p-]" $logs/chunk-s$s.txt | cut -c1-110
done
echo "chunks done at $((SECONDS-start)) s"
for s in 0 33 66 99 132; do
  [ $((SECONDS-start)) -lt 150 ] || break
  $B bench --suite gpu --filter "b1 kv 32K" --kv-splits $s --no-ceilings $common --json $logs/d32k-s$s.json > $logs/d32k-s$s.txt 2>&1
  echo "== decode b1 32K, kv-splits $s"; grep -E "^\| [^p-]" $logs/d32k-s$s.txt | cut -c1-110
done
echo "done at $((SECONDS-start)) s"
