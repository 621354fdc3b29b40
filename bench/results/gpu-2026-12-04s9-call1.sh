#!/bin/bash
# Session 2026-12-04 (ninth) call 1: where a batch-1 decode call's fixed cost goes (issue 12, 10).
# (1) bench/decode_floor: events, launches and a plain streaming read of the same bytes, timed as
#     the CLI times a call; (2) the decode timeline (trace build of main 5aca5d2's decode_check) at
#     b1 x KV 32K for every shape; (3) Nsight Compute kernel durations against the event time;
#     (4) the CLI's b1 x 32K rows in the same call.
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
M=build-carry/bin/main T=build-carry/bin/trace
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
timeout 90 $M/decode_floor 2>&1 | tee $out/floor.txt
echo "floor at $((SECONDS - start)) s"
timeout 120 $T/decode_check --no-check --no-sweep --only "b1 x kv32768" 2>&1 | tee $out/trace.txt | grep -vE "^\s*$" | cut -c1-160
echo "trace at $((SECONDS - start)) s"
NCU="$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)"
for v in "E4B-bf16:8:2:" "E4B-fp8:8:2:--kv-fp8" "31B-bf16:32:4:" "31B-fp8:32:4:--kv-fp8"; do
  IFS=: read name q kv extra <<<"$v"
  t=$(timeout 40 $M/wideattn run --backend cuda --q-heads $q --kv-heads $kv --kv-length 32768 --suffix 1 --repeat 30 $extra 2>&1 | grep -E "^  time|kernel " | tr '\n' ' ' | sed 's/  */ /g')
  echo "== $name event-timed: $t"
  timeout 60 "$NCU" --clock-control none --metrics gpu__time_duration.sum -k regex:decode -c 6 \
    $M/wideattn run --backend cuda --q-heads $q --kv-heads $kv --kv-length 32768 --suffix 1 --repeat 3 $extra > /tmp/ncu-$name.txt 2>&1
  grep -E "decode_|gpu__time_duration" /tmp/ncu-$name.txt | sed 's/(wideattn[^)]*)//g' | cut -c1-120 | tail -12
done 2>&1 | tee $out/ncu.txt
echo "ncu at $((SECONDS - start)) s"
timeout 120 $M/wideattn bench --suite gpu --filter "decode b1 kv 32K" 2>&1 | grep -E "copy|decode" | cut -c1-170 | tee $out/cli.txt
echo "done at $((SECONDS - start)) s"
