#!/usr/bin/env bash
# One GPU call: the Python package's tests on the GPU (prebuilt wheel from .whl/), the PyTorch
# peers side by side (bench/peers.py; FlexAttention only on a subset, its compiles are slow),
# and compute-sanitizer initcheck on the tests that do not go through cuBLASLt.
# usage: scripts/gpu/final_check.sh OUT_DIR
# environment: FLEX_CASES (comma-separated case-name parts), SKIP_PYTEST=1, SKIP_INITCHECK=1,
#   PEERS_TIMEOUT, FLEX_TIMEOUT, PYTEST_TIMEOUT, INIT_TIMEOUT (seconds)
set -uo pipefail
cd "$(dirname "$0")/../.."
out="$1"; mkdir -p "$out" /tmp/fc
export PATH=/usr/local/cuda/bin:$PATH LD_LIBRARY_PATH="$PWD/.deps/lib:${LD_LIBRARY_PATH:-}" PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/pytest-*.whl .whl/pluggy-*.whl \
  .whl/iniconfig-*.whl .whl/wideattn-*.whl > /tmp/fc/pip.log 2>&1 || { cat /tmp/fc/pip.log; exit 1; }
export PYTHONPATH=/tmp/site
(cd /tmp && python3 -c "import wideattn, sys; print('wideattn from', wideattn.__file__)")
timeout ${PEERS_TIMEOUT:-260} python3 bench/peers.py "$out/peers" \
  --peers wideattn,wideattn_direct,eager,sdpa_mem_efficient_repeat_kv,sdpa_cudnn,sdpa_flash \
  --budget-ms 150 > /tmp/fc/peers.log 2>&1; echo "peers rc=$?"
timeout ${FLEX_TIMEOUT:-100} python3 bench/peers.py /tmp/fc/flex --peers flex --budget-ms 100 \
  --cases "${FLEX_CASES:-prefill 4096, d=512 (16/4),decode batch 1, kv 32768}" > /tmp/fc/flex.log 2>&1
echo "flex rc=$?"
cp /tmp/fc/flex/*.md "$out/flex.md" 2>/dev/null
if [ "${SKIP_PYTEST:-0}" != 1 ]; then
  (timeout ${PYTEST_TIMEOUT:-150} python3 -m pytest -q -p no:cacheprovider python/tests > /tmp/fc/pytest.log 2>&1; echo "pytest rc=$?")
  tail -5 /tmp/fc/pytest.log
fi
if [ "${SKIP_INITCHECK:-0}" != 1 ] && [ -d .deps ] && cmake -S . -B build-gpu -G Ninja -DGTEST_ROOT="$PWD/.deps" -DBLAS_LIBRARIES="$PWD/.deps/lib/libopenblas.so" \
   -DWIDEATTN_CBLAS_INCLUDE="$PWD/.deps/include" > /tmp/fc/cmake.log 2>&1 && ninja -C build-gpu wideattn_tests > /tmp/fc/ninja.log 2>&1; then
  timeout ${INIT_TIMEOUT:-60} compute-sanitizer --tool initcheck --error-exitcode 99 build-gpu/wideattn_tests \
    --gtest_filter='*cuda*:-*prefill*:*Prefill*:*automatic*:*Matmul*' > /tmp/fc/initcheck.log 2>&1
  echo "initcheck rc=$?"; grep "ERROR SUMMARY" /tmp/fc/initcheck.log | tail -1
fi
tar czf "$out/logs.tgz" -C /tmp fc
tail -40 /tmp/fc/peers.log; tail -8 /tmp/fc/flex.log
