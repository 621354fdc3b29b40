#!/usr/bin/env bash
# Installs what the build needs (Debian: cmake, ninja-build, g++, ccache, libopenblas-dev; with
# apt-get when missing, as root or through sudo), configures, builds the library and the
# `wideattn` tool, and runs `wideattn run` on the default problem (Gemma 4 E4B global layer,
# 2048-token prefill then 16 decode steps; cuda when available, else cpu).
# Extra arguments go to `wideattn run`, e.g. scripts/run.sh --backend cpu --tokens 1024.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

install_build_dependencies OFF
find_cuda
configure_and_build OFF wideattn_cli
log "running: $BUILD_DIR/wideattn run $*"
"$BUILD_DIR/wideattn" run "$@"
