#!/usr/bin/env bash
# Runs a gtest binary in N parallel shards (the CPU oracle dominates the fused tests' time, and
# the GPU machine has 16 cores), then prints each shard's summary and the failures.
# usage: scripts/gpu/sharded_tests.sh OUT_DIR TEST_BINARY FILTER [SHARDS]
set -uo pipefail
OUT_DIR="$(mkdir -p "$1" && cd "$1" && pwd)"
BINARY="$2"
FILTER="$3"
SHARDS="${4:-8}"
for ((s = 0; s < SHARDS; ++s)); do
  GTEST_TOTAL_SHARDS=$SHARDS GTEST_SHARD_INDEX=$s timeout "${TEST_TIMEOUT:-400}" "$BINARY" \
    --gtest_filter="$FILTER" --gtest_brief=1 >"$OUT_DIR/shard$s.log" 2>&1 &
done
status=0
for job in $(jobs -p); do wait "$job" || status=1; done
cat "$OUT_DIR"/shard*.log >"$OUT_DIR/tests.log"
grep -hE "tests ran|PASSED|FAILED|SKIPPED \]" "$OUT_DIR"/shard*.log | sort | uniq -c
grep -hE "^\[  FAILED  \]|Failure|error:" "$OUT_DIR/tests.log" | head -n 30
exit $status
