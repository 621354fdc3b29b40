#!/usr/bin/env bash
# Regenerates the seed inputs fuzz/corpus/seed-*: fuzzes for GROW_SECONDS (default 600; 0: no
# fuzzing) from the current corpus, then keeps the SEEDS inputs (default 48) that together
# cover the most code: a greedy set cover over the coverage features libFuzzer's merge reports
# per input (features: edges and their hit-count buckets).
# fuzz/corpus/regression-* (inputs that reproduced fixed bugs) are kept as they are.
# Needs python3 and the fuzz target (scripts/fuzz.sh builds it: $BUILD_DIR/fuzz/wideattn_fuzz).
# EXTRA_CORPORA: more corpus folders to choose from (e.g. $BUILD_DIR/fuzz/corpus after long runs).
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

FUZZER="${FUZZER:-$BUILD_DIR/fuzz/wideattn_fuzz}"
[ -x "$FUZZER" ] || die "no fuzz target at $FUZZER (run scripts/fuzz.sh first)"
CORPUS="$REPO_ROOT/fuzz/corpus"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/grown" "$work/merged"

if [ "${GROW_SECONDS:-600}" -gt 0 ]; then
  log "fuzzing ${GROW_SECONDS:-600} s from $CORPUS"
  "$FUZZER" -max_total_time="${GROW_SECONDS:-600}" -timeout=10 -max_len=512 -rss_limit_mb=4096 \
    "$work/grown" "$CORPUS" >"$work/grow.log" 2>&1 || { tail -n 40 "$work/grow.log" >&2; die "the fuzz target failed"; }
fi
log "merging (features per input)"
# shellcheck disable=SC2086
"$FUZZER" -merge=1 -merge_control_file="$work/control" "$work/merged" "$work/grown" "$CORPUS" ${EXTRA_CORPORA:-} \
  >"$work/merge.log" 2>&1 || { tail -n 40 "$work/merge.log" >&2; die "merge failed"; }

python3 - "$work/control" "${SEEDS:-48}" >"$work/chosen" <<'EOF'
import sys
lines = open(sys.argv[1]).read().split("\n")
count = int(lines[0])
files = lines[2:2 + count]
edges, features = {}, {}
for line in lines[2 + count:]:
    parts = line.split()
    if len(parts) >= 2 and parts[0] in ("COV", "FT"):
        (edges if parts[0] == "COV" else features)[int(parts[1])] = set(map(int, parts[2:]))
candidates = set(edges) | set(features)
covered_edges, covered_features, chosen = set(), set(), []
all_edges = set().union(*edges.values()) if edges else set()
size = lambda i: len(open(files[i], "rb").read())
for _ in range(int(sys.argv[2])):
    gain = lambda i: (len(features.get(i, set()) - covered_features), len(edges.get(i, set()) - covered_edges), -size(i))
    best = max(candidates, key=gain, default=None)
    if best is None or gain(best)[:2] == (0, 0):
        break
    candidates.discard(best)
    covered_edges |= edges.get(best, set())
    covered_features |= features.get(best, set())
    chosen.append(files[best])
print("\n".join(chosen))
all_features = set().union(*features.values()) if features else set()
print(f"{len(chosen)} inputs: {len(covered_features)} of {len(all_features)} features", file=sys.stderr)
EOF

mkdir -p "$work/chosen_files"
while IFS= read -r file; do
  [ -n "$file" ] || continue
  case "$(basename "$file")" in regression-*) continue ;; esac
  cp "$file" "$work/chosen_files/seed-$(sha1sum "$file" | cut -c1-16)"
done <"$work/chosen"
find "$CORPUS" -name 'seed-*' -delete
cp "$work/chosen_files/"seed-* "$CORPUS/"
log "fuzz/corpus: $(find "$CORPUS" -name 'seed-*' | wc -l) seed and $(find "$CORPUS" -name 'regression-*' | wc -l) regression inputs"
