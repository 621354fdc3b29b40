#!/usr/bin/env bash
# Builds the libFuzzer target fuzz/wideattn_fuzz.cpp (clang, CPU-only, ASan + UBSan, in
# $BUILD_DIR/fuzz) and runs it for FUZZ_SECONDS over the seed corpus fuzz/corpus/ (read only:
# new inputs go to $BUILD_DIR/fuzz/corpus). A finding fails the script; the input that caused it
# is in $BUILD_DIR/fuzz/artifacts/ (rerun: $BUILD_DIR/fuzz/wideattn_fuzz <file>, with
# WIDEATTN_FUZZ_VERBOSE=1 to print the problem). docs/reliability.md says what is checked.
# Called by scripts/test.sh; runs alone too.
# Environment: see scripts/common.sh; FUZZ_SECONDS (default 150; 0 replays the seed corpus only),
# FUZZ_ARGS (more libFuzzer flags).
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

install_build_dependencies OFF
install_clang

FUZZ_DIR="$BUILD_DIR/fuzz"
start=$SECONDS
log "fuzz target build ($FUZZ_DIR)"
configure_and_build_variant "$FUZZ_DIR" wideattn_fuzz -DWIDEATTN_FUZZ=ON -DWIDEATTN_TESTS=OFF -DWIDEATTN_TOOLS=OFF
log "fuzz target built in $((SECONDS - start)) s"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
mkdir -p "$FUZZ_DIR/corpus" "$FUZZ_DIR/artifacts"
seconds="${FUZZ_SECONDS:-150}"
# Inputs up to 512 bytes describe every call the target makes; 10 s per input is a hang.
flags=(-timeout=10 -rss_limit_mb=4096 -max_len=512 -print_final_stats=1 "-artifact_prefix=$FUZZ_DIR/artifacts/")
# shellcheck disable=SC2206
flags+=(${FUZZ_ARGS:-})
start=$SECONDS
if [ "$seconds" -eq 0 ]; then
  log "fuzz: replaying the seed corpus (fuzz/corpus)"
  "$FUZZ_DIR/wideattn_fuzz" "${flags[@]}" -runs=0 "$REPO_ROOT/fuzz/corpus" \
    || die "the fuzz target failed on the seed corpus (input in $FUZZ_DIR/artifacts/)"
else
  log "fuzz: ${seconds} s over fuzz/corpus ($(find "$REPO_ROOT/fuzz/corpus" -type f | wc -l) seeds)"
  "$FUZZ_DIR/wideattn_fuzz" "${flags[@]}" -max_total_time="$seconds" "$FUZZ_DIR/corpus" "$REPO_ROOT/fuzz/corpus" \
    > "$FUZZ_DIR/fuzz.log" 2>&1 || {
    tail -n 80 "$FUZZ_DIR/fuzz.log" >&2
    die "the fuzz target found a failure (input in $FUZZ_DIR/artifacts/, log $FUZZ_DIR/fuzz.log)"
  }
  grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb|Done )' "$FUZZ_DIR/fuzz.log" >&2 || true
fi
log "fuzz: done in $((SECONDS - start)) s"
