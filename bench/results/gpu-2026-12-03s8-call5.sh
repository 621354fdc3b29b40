#!/bin/bash
# Session 2026-12-03 (eighth) call 5 (main d035272's CLI): batch-1 decode time against KV length
# (E4B 8/2, 31B 32/4; bf16 and fp8 caches), to separate a call's fixed cost from its
# streaming rate (issue 12's and issue 10's batch-1 x 32K targets); the copy ceiling of the run.
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
W=build-carry/bin/main/wideattn
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
timeout 60 $W bench --suite gpu --filter "E4B decode b1 kv 32K (8/2)$" 2>&1 | grep -E "copy|E4B decode" | cut -c1-160
for shape in "E4B 8 2" "31B 32 4"; do
  read name q kv <<<"$shape"
  for cache in bf16 fp8; do
    extra=""; [ $cache = fp8 ] && extra="--kv-fp8"
    lengths="8192 16384 32768 65536 131072"; [ $name = 31B ] && lengths="8192 16384 32768 65536"
    for L in $lengths; do
      t=$(timeout 40 $W run --backend cuda --q-heads $q --kv-heads $kv --kv-length $L --suffix 1 --repeat 30 $extra 2>&1 | grep -E "^  time|kernel " | tr '\n' ' ' | sed 's/  */ /g')
      echo "$name $cache kv $L: $t"
    done
  done
  echo "at $((SECONDS - start)) s"
done | tee $out/decode-vs-length.txt
