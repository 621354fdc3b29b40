#!/usr/bin/env bash
# Builds the Python wheel here (CUDA backend, OpenBLAS linked statically) for the GPU machine,
# which has Python 3.12 and no package index: the wheel lands in .whl/ (carried with the call).
set -euo pipefail
cd "$(dirname "$0")/../.."
python="${PYTHON312:-$(pyenv root 2>/dev/null)/versions/3.12.1/bin/python3}"
rm -f .whl/wideattn-*.whl
WIDEATTN_CUDA=ON WIDEATTN_BLAS_STATIC=ON WIDEATTN_NATIVE=OFF CMAKE_BUILD_PARALLEL_LEVEL="${JOBS:-2}" \
  "$python" -m pip wheel . --no-build-isolation --no-deps -w .whl -C build-dir=build/python-cp312-cuda
