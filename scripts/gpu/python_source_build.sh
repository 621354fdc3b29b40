#!/usr/bin/env bash
# On the GPU machine: builds and installs the Python package from this checkout's sources, as a
# user there would (pip, scikit-build-core, the CUDA backend), into a virtual environment that
# also sees the machine's own packages (PyTorch). Needs .deps/ (OpenBLAS, the build's wheels:
# `tar xzf build-py/deps.tgz` from scripts/gpu/bundle_deps.sh) since nothing can be downloaded
# there. The calls of 2026-12-03 (bench/results/gpu-2026-12-03s8-call4.sh) ran these steps inline.
# usage: scripts/gpu/python_source_build.sh VENV_DIR LOG_FILE   (then VENV_DIR/bin/python -m pytest ...)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
venv="${1:?usage: $0 VENV_DIR LOG_FILE}" log="${2:?usage: $0 VENV_DIR LOG_FILE}"
[ -d .deps/wheels ] || { echo "python_source_build: no .deps/wheels (tar xzf build-py/deps.tgz first)" >&2; exit 2; }
start=$SECONDS
python3 -m venv --system-site-packages "$venv" || exit 1
# The outer environment's site-packages too (a venv inside another one sees only the base's).
python3 -c 'import site, sys; sys.prefix != sys.base_prefix and print("\n".join(site.getsitepackages()))' \
  > "$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/outer-environment.pth"
for wheel in .deps/wheels/*.whl; do "$venv/bin/python" -m pip install -q --no-index --no-deps "$wheel" || exit 1; done
PATH=/usr/local/cuda/bin:$PATH \
  CMAKE_ARGS="-DBLAS_LIBRARIES=$PWD/.deps/lib/libopenblas.so -DWIDEATTN_CBLAS_INCLUDE=$PWD/.deps/include" \
  WIDEATTN_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL="${BUILD_JOBS:-14}" timeout "${BUILD_TIMEOUT:-300}" \
  "$venv/bin/python" -m pip install -v --no-index --no-deps --no-build-isolation --force-reinstall \
  -C build-dir="$venv/../pybuild" . > "$log" 2>&1
status=$?
echo "python_source_build: rc=$status after $((SECONDS - start)) s (log: $log)"
[ $status = 0 ] || exit $status
# Imported from outside the checkout, so that the installed package is the one found.
(cd /tmp && "$venv/bin/python" -c "import wideattn; print('python_source_build: wideattn from', wideattn.__file__)")
