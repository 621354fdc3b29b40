#!/usr/bin/env bash
# Issue 13's GPU runs past 32-bit indexing: the largest such problems that fit one GPU, run
# through the CLI (which checks sampled rows, the last token's every head included, against the
# f64 oracle and fails past its tolerance). Logs go to OUT_DIR.
#   decode, 31B global layer (32/4, d 512, bf16), batch 8 x KV 262144: K and V 4.3e9 elements
#     each (8.6 GB); single call and split-KV
#   prefill of 262144 tokens, 32/4, d 512, causal: q and out 4.3e9 elements each (fused kernel;
#     ~2.3 PFLOP, seconds on an H200)
#   a paged decode whose pools pass 2^31 slots x heads (page 16)
# usage: scripts/gpu/large_shapes.sh OUT_DIR [path to the wideattn CLI, default build-gpu/wideattn]
set -uo pipefail
out="${1:?usage: $0 OUT_DIR [wideattn]}"; mkdir -p "$out"
cli="${2:-build-gpu/wideattn}"
status=0
run() {  # run <name> <cli arguments...>
  local name="$1"; shift
  local start=$SECONDS
  "$cli" run --backend cuda --q-heads 32 --kv-heads 4 --head-dim 512 --repeat 3 --warmup 1 "$@" \
    > "$out/$name.log" 2>&1
  local rc=$?
  echo "$name: rc=$rc ($((SECONDS - start)) s): $(grep -E '^(ok|error|FAIL)' "$out/$name.log" | tail -1)"
  [ $rc -eq 0 ] || status=1
}
run decode-b8-kv256k --batch 8 --prefix 262143 --suffix 1
run decode-b8-kv256k-paged16 --batch 8 --prefix 262143 --suffix 1 --page-size 16
run prefill-256k --batch 1 --prefix 0 --suffix 262144
exit $status
