#!/usr/bin/env bash
# 2026-12-03, call 1: Nsight Compute profiles of main's fused kernel (8ee078d) where issues 8 and 9
# miss their targets (Gemma 4 31B global layer at 4K: 59% of the matmul ceiling against 60%; the
# sliding layers at 1.8-1.9x FlexAttention against 2x), with d256 4K as the reference point, then
# the fused suite once for the figures of the same run.
set -uo pipefail
out="$1"; logs=/tmp/c1; rm -rf $logs; mkdir -p $logs
export PATH=/usr/local/cuda/bin:$PATH
eval "$(scripts/gpu/unpack_carry.sh)"
tar xzf build-py/deps.tgz
export LD_LIBRARY_PATH=$PWD/.deps/lib:$LD_LIBRARY_PATH
start=$SECONDS
trap 'tar czf $out/c1.tgz -C /tmp c1' EXIT
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $logs/env.txt
timeout 330 scripts/gpu/profile_fused.sh $logs/ncu build-carry/bin/base \
  "31B prefill 4K (32/4)" "sliding prefill 8K window 1024 (16/8)" "d256 prefill 4K (16/8)"
echo "profiles done at $((SECONDS-start)) s"
mkdir -p $logs/x && tar xzf $logs/ncu/profiles.tar.gz -C $logs/x && rm -f $logs/ncu/profiles.tar.gz $logs/x/profiles/*.ncu-rep
for f in $logs/x/profiles/*.stalls.txt; do echo "== $f"; head -30 "$f"; done
timeout 150 build-carry/bin/base/wideattn bench --suite fused --json $logs/fused.json > $logs/fused.txt 2>&1; echo "fused rc=$?"
grep -E "^\[" $logs/fused.txt | cut -c1-150
echo "done at $((SECONDS-start)) s"
