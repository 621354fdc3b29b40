#!/usr/bin/env bash
# Checks the installed CMake package: `cmake --install` of an existing build into
# $BUILD_DIR/install, then configures, builds and runs examples/cpp_consumer against it
# (find_package(wideattn CONFIG REQUIRED), a tiny CPU attention checked against f64).
# Called by scripts/test.sh after ctest; runs alone too, on a build folder that is built.
# Takes a few seconds. Environment: see scripts/common.sh (BUILD_DIR).
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

check_install() {
  local prefix="$BUILD_DIR/install" consumer_build="$BUILD_DIR/cpp_consumer"
  [ -f "$BUILD_DIR/CMakeCache.txt" ] || die "check_install: $BUILD_DIR is not a configured build folder"
  # The consumer uses the compiler of the main build.
  local cxx
  cxx="$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt")"

  log "cmake --install $BUILD_DIR --prefix $prefix"
  rm -rf "$prefix" "$consumer_build"
  cmake --install "$BUILD_DIR" --prefix "$prefix" >/dev/null || die "cmake --install failed"
  [ -f "$prefix/lib/cmake/wideattn/wideattnConfig.cmake" ] \
    || [ -f "$prefix/lib64/cmake/wideattn/wideattnConfig.cmake" ] \
    || die "cmake --install did not install wideattnConfig.cmake (configured with WIDEATTN_INSTALL=OFF?)"

  log "examples/cpp_consumer: configure and build against $prefix (find_package(wideattn))"
  mkdir -p "$consumer_build"
  cmake -S "$REPO_ROOT/examples/cpp_consumer" -B "$consumer_build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" ${cxx:+-DCMAKE_CXX_COMPILER="$cxx"} \
    >"$consumer_build/configure.log" 2>&1 \
    || { cat "$consumer_build/configure.log" >&2; die "configuring examples/cpp_consumer failed"; }
  grep -E '^-- wideattn ' "$consumer_build/configure.log" >&2 || true
  ninja -C "$consumer_build" || die "building examples/cpp_consumer failed"
  log "examples/cpp_consumer: run"
  "$consumer_build/cpp_consumer" || die "examples/cpp_consumer failed"
  log "installed package OK"
}

check_install
