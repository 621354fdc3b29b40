#!/usr/bin/env bash
# Puts the pinned nvidia-cutlass wheel (CUTLASS/CuTe headers for the fused CUDA kernels) into
# .deps/, where CMake unpacks it. Needs pip and network once; the wheel then travels with .deps.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
version="4.2.0.0"
wheel=".deps/nvidia_cutlass-${version}-py3-none-any.whl"
[ -f "$wheel" ] && exit 0
mkdir -p .deps
python3 -m pip download -q --no-deps --only-binary=:all: "nvidia-cutlass==${version}" -d .deps \
  || { echo "fetch_cutlass: pip download nvidia-cutlass==${version} failed" >&2; exit 1; }
[ -f "$wheel" ] || { echo "fetch_cutlass: expected $wheel" >&2; exit 1; }
