#!/usr/bin/env bash
# Installs what the build and tests need (Debian: cmake, ninja-build, g++, ccache,
# libopenblas-dev, libgtest-dev), builds everything (the CUDA backend too when nvcc is found;
# its tests skip without a GPU), runs ctest, checks the installed CMake package
# (scripts/check_install.sh), then the Python tests when the package exists, then the sanitizer
# runs (scripts/sanitize.sh) and the fuzz target (scripts/fuzz.sh).
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

install_build_dependencies ON
find_cuda
configure_and_build ON
log "ctest"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "${CTEST_JOBS:-1}" --timeout 1800
# Scratch filled with NaN before every step that writes it: a read of a cell the step before
# did not write would reach the outputs (src/core/debug_options.h). The CPU cases take seconds.
log "wideattn_tests with WIDEATTN_POISON_WORKSPACE=1 (CPU cases)"
WIDEATTN_POISON_WORKSPACE=1 "$BUILD_DIR/wideattn_tests" --gtest_filter='*cpu*' --gtest_brief=1

# ---- installed CMake package ---------------------------------------------------------------------
# cmake --install into $BUILD_DIR/install, then build and run examples/cpp_consumer against it
# through find_package(wideattn) (seconds).
BUILD_DIR="$BUILD_DIR" "$REPO_ROOT/scripts/check_install.sh"

# ---- Python hook -------------------------------------------------------------------------------
# The Python package is optional: when pyproject.toml exists at the repository root, install it
# into a virtual environment inside the build folder and run pytest on python/tests.
if [ -f "$REPO_ROOT/pyproject.toml" ]; then
  if command -v dpkg-query >/dev/null 2>&1; then
    install_packages python3 python3-venv python3-dev
  fi
  VENV="$BUILD_DIR/venv"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || die "python3 -m venv failed"
  log "pip install ./ (Python package)"
  "$VENV/bin/python" -m pip install -q pytest numpy || die "pip install pytest numpy failed"
  CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" "$VENV/bin/python" -m pip install -q "$REPO_ROOT[test]" \
    || die "pip install of the Python package failed"
  if [ -d "$REPO_ROOT/python/tests" ]; then
    log "pytest python/tests"
    (cd "$REPO_ROOT" && "$VENV/bin/python" -m pytest -q python/tests)
  else
    log "no python/tests folder: Python tests skipped"
  fi
else
  log "no pyproject.toml at the repository root: Python package and tests skipped"
fi
# ---- reliability: sanitizers and fuzzing (docs/reliability.md) ------------------------------------
# CPU-only clang builds under $BUILD_DIR/asan, $BUILD_DIR/tsan and $BUILD_DIR/fuzz: the whole test
# suite under ASan+UBSan, the concurrency tests under TSan, and the libFuzzer target for
# FUZZ_SECONDS (default 150) over fuzz/corpus. About 10 minutes on 2 cores with a cold ccache.
# SANITIZERS=OFF or FUZZ=OFF skips them.
if [ "${SANITIZERS:-ON}" != OFF ]; then
  reliability_start=$SECONDS
  BUILD_DIR="$BUILD_DIR" "$REPO_ROOT/scripts/sanitize.sh"
  log "sanitizers: $((SECONDS - reliability_start)) s"
fi
if [ "${FUZZ:-ON}" != OFF ]; then
  reliability_start=$SECONDS
  BUILD_DIR="$BUILD_DIR" "$REPO_ROOT/scripts/fuzz.sh"
  log "fuzzing: $((SECONDS - reliability_start)) s"
fi
log "all tests passed"
