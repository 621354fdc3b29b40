#!/bin/bash
# Session 2026-12-03 (sixth) call 5: the fp8 wgmma decode kernel's ring depth at 8 and 16 rows
# (call 4's profile: the consumers wait on full barriers and the producer on empty ones, every
# slot in flight). Builds: main c488f42; base (main + the L2 tuning aid + the bench filter's $,
# ring 12 at every row count); r20 (20 chunks at 8 and 16 rows); r22 (22 at 8, 20 at 16). Two
# rounds in turns, fp8 rows.
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
B=build-carry/bin
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
ROUNDS=2 RUN_TIMEOUT=100 scripts/gpu/ab_bench.sh /tmp/ab5 main=$B/main/wideattn base=$B/base/wideattn \
  r20=$B/r20/wideattn r22=$B/r22/wideattn -- --suite gpu --filter "(32/4) fp8|(8/2) fp8" --check-rows 2 > /tmp/ab5.log 2>&1
cat /tmp/ab5.log
echo "done at $((SECONDS - start)) s"
tar czf $out/ab5.tgz -C /tmp ab5
