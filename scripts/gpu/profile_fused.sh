#!/usr/bin/env bash
# Nsight Compute profiles of the fused prefill kernel on the benchmark problems, from a build
# made elsewhere (BIN_DIR holds `wideattn`; BIN_DIR/lib any shared libraries it needs there).
# Writes per problem the details page (speed of light, pipes, stalls, memory) and the SASS
# source page with the warp-stall samples per instruction, as text, plus one archive.
# usage: scripts/gpu/profile_fused.sh OUT_DIR BIN_DIR [PROBLEM_FILTER ...]
# environment: KERNEL (ncu's kernel-name regex, default fused_prefill) and SUITE (default fused)
#   profile another kernel the same way, e.g. KERNEL=decode_wgmma SUITE=gpu "b8x4 kv 8K (32/4) fp8"
set -uo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT_DIR="$(mkdir -p "$1" && cd "$1" && pwd)"
BIN_DIR="$(cd "$2" && pwd)"
shift 2
PROBLEMS=("$@")
[ ${#PROBLEMS[@]} -eq 0 ] && PROBLEMS=("d128 prefill 4K" "d256 prefill 4K")
export PATH="/usr/local/cuda/bin:$PATH"
export LD_LIBRARY_PATH="$BIN_DIR/lib:$REPO_ROOT/.deps/lib:${LD_LIBRARY_PATH:-}"
NCU="$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)"
work="$OUT_DIR/profiles"
mkdir -p "$work"
status=0
for problem in "${PROBLEMS[@]}"; do
  name="$(echo "$problem" | tr -c 'A-Za-z0-9\n' '_')"
  echo "== ncu: $problem"
  # The clocks stay as the machine sets them (--clock-control none), as in the benchmarks.
  "$NCU" --clock-control none -k "regex:${KERNEL:-fused_prefill}" -c 1 --set full --import-source no -f \
    -o "$work/$name" "$BIN_DIR/wideattn" bench --suite "${SUITE:-fused}" --backend cuda --filter "$problem" \
    --repeat 1 --warmup 0 --no-ceilings --check-rows 0 >"$work/$name.run.log" 2>&1 || {
    status=1; tail -n 20 "$work/$name.run.log"; continue; }
  "$NCU" --import "$work/$name.ncu-rep" --page details >"$work/$name.details.txt" 2>&1
  "$NCU" --import "$work/$name.ncu-rep" --page source --csv --print-source sass >"$work/$name.sass.csv" 2>&1
  python3 "$REPO_ROOT/scripts/gpu/ncu_stalls.py" "$work/$name.sass.csv" 12 >"$work/$name.stalls.txt" 2>&1
  grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|Registers Per|Issue Slots Busy|Warp Cycles Per Issued|L2 Hit|Shared Memory" \
    "$work/$name.details.txt" | head -n 16
done
tar -czf "$OUT_DIR/profiles.tar.gz" -C "$OUT_DIR" profiles && rm -rf "$work"
exit $status
