#!/usr/bin/env bash
# On the CPU machine, before a device call: builds two revisions for an A/B on the GPU (a base and
# a candidate; the CUDA tool, tests and decode harness of each), with COMPUTE_ONLY=1 also both
# decode compute-only CLIs (-DWIDEATTN_DECODE_COMPUTE_ONLY=ON), each in a git worktree under
# $WORK, then packs them into build-carry/bin.tgz (scripts/gpu/pack_carry.sh) as base, cand,
# base_conly, cand_conly. Then: `scripts/gpu/candidate_check.sh OUT build-carry/bin/base
# build-carry/bin/cand ...` on the device (carry build-carry).
# usage: scripts/gpu/build_candidates.sh BASE_REV CANDIDATE_REV   (e.g. main gpu-candidates)
# environment: WORK (default /tmp/wideattn-ab), JOBS (default: the cores), COMPUTE_ONLY=1
# The worktrees stay registered for incremental rebuilds: `git worktree prune` once WORK is gone.
# 2026-12-02 on the 2-core machine with a warm ccache: all four builds in ~10 min, 38 MiB packed.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=scripts/common.sh
source "$REPO_ROOT/scripts/common.sh"
[ $# -eq 2 ] || { echo "usage: $0 BASE_REV CANDIDATE_REV" >&2; exit 2; }
work="${WORK:-/tmp/wideattn-ab}"
mkdir -p "$work"
find_cuda
command -v nvcc >/dev/null 2>&1 || die "nvcc not found: the candidates are CUDA builds"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.ccache}"

# build NAME REV "TARGETS" [CMAKE_ARGUMENT...]: a worktree of REV at $work/NAME-src, its TARGETS
# built in $work/NAME.
build() {
  local name="$1" rev="$2" targets="$3"
  shift 3
  local src="$work/$name-src" dir="$work/$name"
  git -C "$REPO_ROOT" worktree remove --force "$src" 2>/dev/null || rm -rf "$src"
  git -C "$REPO_ROOT" worktree add --detach "$src" "$rev" >/dev/null
  # The CUTLASS headers the main checkout fetched (.deps is ignored, so worktrees lack it).
  [ -d "$REPO_ROOT/.deps" ] && ln -sfn "$REPO_ROOT/.deps" "$src/.deps"
  log "build $name ($rev: $(git -C "$src" log --oneline -1)) in $dir"
  cmake -S "$src" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWIDEATTN_CUDA=ON -DWIDEATTN_TOOLS=ON "$@" \
    >"$dir.configure.log" 2>&1 || die "configure of $name failed ($dir.configure.log)"
  # shellcheck disable=SC2086
  ninja -C "$dir" -j "${JOBS:-$(nproc)}" $targets >"$dir.build.log" 2>&1 || die "build of $name failed ($dir.build.log)"
}

build base "$1" "wideattn wideattn_tests decode_check" -DWIDEATTN_TESTS=ON
build cand "$2" "wideattn wideattn_tests decode_check" -DWIDEATTN_TESTS=ON
specs=("base=$work/base" "cand=$work/cand")
if [ "${COMPUTE_ONLY:-0}" = 1 ]; then
  build base_conly "$1" wideattn -DWIDEATTN_TESTS=OFF -DWIDEATTN_DECODE_COMPUTE_ONLY=ON
  build cand_conly "$2" wideattn -DWIDEATTN_TESTS=OFF -DWIDEATTN_DECODE_COMPUTE_ONLY=ON
  specs+=("base_conly=$work/base_conly:cli" "cand_conly=$work/cand_conly:cli")
fi
"$REPO_ROOT/scripts/gpu/pack_carry.sh" "${specs[@]}"
