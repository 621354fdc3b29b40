#!/usr/bin/env bash
# Runs a gtest binary in N parallel shards (the CPU oracle dominates the fused tests' time, and
# the GPU machine has 16 cores), then prints each shard's summary and the failures.
# usage: scripts/gpu/sharded_tests.sh OUT_DIR TEST_BINARY FILTER [SHARDS]
set -uo pipefail
OUT_DIR="$(mkdir -p "$1" && cd "$1" && pwd)"
BINARY="$2"
FILTER="$3"
SHARDS="${4:-8}"
# Each shard's exit status goes to shardN.rc: a shard the timeout stops (124) has run only part
# of its tests, and says so below (its log just ends).
for ((s = 0; s < SHARDS; ++s)); do
  (GTEST_TOTAL_SHARDS=$SHARDS GTEST_SHARD_INDEX=$s timeout "${TEST_TIMEOUT:-400}" "$BINARY" \
     --gtest_filter="$FILTER" --gtest_brief=1 >"$OUT_DIR/shard$s.log" 2>&1
   echo $? >"$OUT_DIR/shard$s.rc") &
done
wait
status=0
cat "$OUT_DIR"/shard*.log >"$OUT_DIR/tests.log"
grep -hE "tests ran|PASSED|FAILED|SKIPPED \]" "$OUT_DIR"/shard*.log | sort | uniq -c
grep -hE "^\[  FAILED  \]|Failure|error:" "$OUT_DIR/tests.log" | head -n 30
for ((s = 0; s < SHARDS; ++s)); do
  rc=$(cat "$OUT_DIR/shard$s.rc" 2>/dev/null || echo missing)
  case "$rc" in
    0) ;;
    124|137) status=1; echo "sharded_tests: shard $s STOPPED by the ${TEST_TIMEOUT:-400} s timeout: its later tests did not run" ;;
    *) status=1; echo "sharded_tests: shard $s exited with $rc" ;;
  esac
done
exit $status
