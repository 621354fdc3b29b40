#!/usr/bin/env bash
# Sanitizer runs of the CPU backend (docs/reliability.md), each in its own CPU-only clang build
# folder under $BUILD_DIR (ccache shared with the main build):
#   asan  $BUILD_DIR/asan: AddressSanitizer + UndefinedBehaviorSanitizer (every UB finding
#         aborts). The whole test suite (the CUDA tests skip: no CUDA backend in this build) and
#         the CLI smoke test.
#   tsan  $BUILD_DIR/tsan: ThreadSanitizer on the concurrency tests (tests/concurrency_test.cpp),
#         twice: with LLVM's libomp and its Archer tool (OMP_TOOL_LIBRARIES), so that OpenMP's
#         own synchronisation is known to TSan and the kernels' OpenMP teams run as usual; then
#         with OMP_NUM_THREADS=1 and no Archer (host threads only). Without Archer the first run
#         is skipped: TSan reports false races inside an uninstrumented OpenMP runtime.
# OpenBLAS is not instrumented (ASan still checks every buffer our code hands it).
# Called by scripts/test.sh; runs alone too. Takes ~5 minutes on 2 cores (cold ccache).
# Environment: see scripts/common.sh; SANITIZE_STEPS (default "asan tsan").
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

install_build_dependencies ON
install_clang

# ASan/UBSan: abort on the first report; LeakSanitizer on. TSan: fail on the first race.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
TSAN_DEFAULTS="halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1"

# run_tsan COMMAND...: runs a ThreadSanitizer binary; LLVM 14's TSan cannot map its shadow
# memory under the high ASLR entropy of recent kernels ("unexpected memory mapping"), so it is
# rerun with address randomisation off when that happens.
run_tsan() {
  local out status=0
  out="$(mktemp)"
  "$@" >"$out" 2>&1 || status=$?
  if [ "$status" -ne 0 ] && grep -q "unexpected memory mapping" "$out" && command -v setarch >/dev/null 2>&1; then
    log "TSan cannot map its shadow memory under this ASLR: rerunning with setarch -R"
    status=0
    setarch "$(uname -m)" -R "$@" >"$out" 2>&1 || status=$?
  fi
  cat "$out" >&2
  rm -f "$out"
  return "$status"
}

for step in ${SANITIZE_STEPS:-asan tsan}; do
  start=$SECONDS
  case "$step" in
    asan)
      log "ASan+UBSan build ($BUILD_DIR/asan)"
      configure_and_build_variant "$BUILD_DIR/asan" all -DWIDEATTN_TESTS=ON -DWIDEATTN_TOOLS=ON \
        "-DWIDEATTN_SANITIZE=address;undefined"
      log "ASan+UBSan: wideattn_tests (CPU-only build: every CPU test; the CUDA tests skip)"
      "$BUILD_DIR/asan/wideattn_tests" --gtest_brief=1 || die "tests failed under ASan+UBSan"
      log "ASan+UBSan: CLI smoke test"
      cmake -DCLI="$BUILD_DIR/asan/wideattn" -P "$REPO_ROOT/tests/cli_smoke.cmake" || die "CLI smoke test failed under ASan+UBSan"
      ;;
    tsan)
      log "TSan build ($BUILD_DIR/tsan)"
      configure_and_build_variant "$BUILD_DIR/tsan" wideattn_tests -DWIDEATTN_TESTS=ON -DWIDEATTN_TOOLS=OFF \
        -DWIDEATTN_SANITIZE=thread
      filter='*Concurrency*'
      if [ -n "$ARCHER_LIBRARY" ]; then
        log "TSan: concurrency tests, OpenMP teams with Archer ($ARCHER_LIBRARY)"
        OMP_TOOL_LIBRARIES="$ARCHER_LIBRARY" TSAN_OPTIONS="${TSAN_OPTIONS:-$TSAN_DEFAULTS}" \
          run_tsan "$BUILD_DIR/tsan/wideattn_tests" --gtest_filter="$filter" --gtest_brief=1 \
          || die "concurrency tests failed under TSan (Archer)"
      else
        log "TSan: no Archer (libomp's libarcher.so) found: skipping the run with OpenMP teams"
      fi
      log "TSan: concurrency tests, OMP_NUM_THREADS=1"
      OMP_NUM_THREADS=1 TSAN_OPTIONS="${TSAN_OPTIONS:-$TSAN_DEFAULTS}" \
        run_tsan "$BUILD_DIR/tsan/wideattn_tests" --gtest_filter="$filter" --gtest_brief=1 \
        || die "concurrency tests failed under TSan (OMP_NUM_THREADS=1)"
      ;;
    *) die "SANITIZE_STEPS: unknown step $step (expected asan, tsan)" ;;
  esac
  log "$step: done in $((SECONDS - start)) s"
done
