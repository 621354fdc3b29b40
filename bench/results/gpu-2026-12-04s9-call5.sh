#!/bin/bash
# Session 2026-12-04 (ninth) call 5 (main 04ae962): why a merge item takes ~2.5 us. Nsight Compute
# on the merge kernel (WIDEATTN_TUNE_DECODE_GRID_MERGE=0) of E4B and 31B b1 x KV 32K: duration,
# warp states, the source lines where warps wait; the partial states left in L2 (--cache-control none).
out=$1
eval "$(scripts/gpu/unpack_carry.sh)"
N=build-carry/bin/new
NCU="$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)"
for v in "E4B:8:2" "31B:32:4"; do
  IFS=: read name q kv <<<"$v"
  WIDEATTN_TUNE_DECODE_GRID_MERGE=0 timeout 120 "$NCU" --clock-control none --cache-control none -k regex:decode_merge -s 2 -c 1 \
    --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section LaunchStats --section Occupancy --section SourceCounters \
    $N/wideattn run --backend cuda --q-heads $q --kv-heads $kv --kv-length 32768 --suffix 1 --repeat 3 > $out/ncu-merge-$name.txt 2>&1
  echo "== $name rc=$?"
  grep -E "Duration|Elapsed Cycles|Stall|Warp Cycles Per Issued|Issued Warp|Achieved Occupancy|Registers Per|Block Size|Grid Size|smsp__pcsamp|Warp Stall" $out/ncu-merge-$name.txt | head -40
  sed -n '/Source Counters/,$p' $out/ncu-merge-$name.txt | head -60
done
