#!/usr/bin/env bash
# A/B of builds on the GPU: `wideattn bench` of each build in turns (A B ... A B ..., ROUNDS
# rounds, so that clock and thermal drift fall on every build alike), then a side-by-side table
# (bench/compare_runs.py: lowest median per problem, % of the same run's ceiling, ratio to the
# first build). Records: OUT/NAME-ROUND.json and OUT/ab.md.
# usage: scripts/gpu/ab_bench.sh OUT NAME=BINARY [NAME=BINARY ...] -- BENCH_ARGS...
#   e.g. scripts/gpu/ab_bench.sh $OUT main=build-a/wideattn qk=build-b/wideattn -- --suite gpu --filter "decode b"
# environment: ROUNDS (default 2), RUN_TIMEOUT (seconds per run, default 200)
set -uo pipefail
cd "$(dirname "$0")/../.."
out="$1"; shift
mkdir -p "$out"
builds=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do builds+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#builds[@]} -ge 1 ] || { echo "ab_bench: no NAME=BINARY given" >&2; exit 2; }
declare -A files
for round in $(seq 1 "${ROUNDS:-2}"); do
  for b in "${builds[@]}"; do
    name="${b%%=*}" binary="${b#*=}"
    json="$out/$name-$round.json"
    timeout "${RUN_TIMEOUT:-200}" "$binary" bench "$@" --json "$json" > "$out/$name-$round.txt" 2>&1
    echo "ab_bench: $name round $round rc=$?"
    [ -s "$json" ] && files[$name]="${files[$name]:+${files[$name]},}$json"
  done
done
args=()
for b in "${builds[@]}"; do
  name="${b%%=*}"
  [ -n "${files[$name]:-}" ] && args+=("$name=${files[$name]}")
done
python3 bench/compare_runs.py "${args[@]}" --markdown --host | tee "$out/ab.md"
