#!/bin/bash
# Session 2026-12-03 (eighth) call 4 (main d035272 + the peers' 1K cases): the Python package
# built from source on this machine, the PyTorch peers on the 1K shapes and 31B 4K (issue 9's
# ratios), then the Python tests against that build.
out=$1
start=$SECONDS
tar xzf build-py/deps.tgz
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
mkdir -p /tmp/c4 /tmp/pyb
V=/tmp/pyb/venv
python3 -m venv --system-site-packages $V
python3 -c 'import site, sys; sys.prefix != sys.base_prefix and print("\n".join(site.getsitepackages()))' \
  > "$($V/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/outer-environment.pth"
for w in .deps/wheels/*.whl; do $V/bin/python -m pip install -q --no-index --no-deps "$w"; done
(export PATH=/usr/local/cuda/bin:$PATH; CMAKE_ARGS="-DBLAS_LIBRARIES=$PWD/.deps/lib/libopenblas.so -DWIDEATTN_CBLAS_INCLUDE=$PWD/.deps/include" \
  WIDEATTN_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=14 timeout 300 $V/bin/python -m pip install -v --no-index --no-deps \
  --no-build-isolation --force-reinstall -C build-dir=/tmp/pyb/build . > /tmp/c4/python-source-build.log 2>&1)
echo "python source build rc=$? at $((SECONDS - start)) s"; tail -1 /tmp/c4/python-source-build.log
(cd /tmp && timeout 60 $V/bin/python -c "import wideattn; print('wideattn from', wideattn.__file__)")
export LD_LIBRARY_PATH="$PWD/.deps/lib:${LD_LIBRARY_PATH:-}"
timeout 200 $V/bin/python bench/peers.py /tmp/c4/peers --cases "prefill 1024,31B prefill 4096" \
  --peers wideattn,wideattn_direct,eager,sdpa_mem_efficient_repeat_kv,sdpa_cudnn,sdpa_flash --budget-ms 120 > /tmp/c4/peers.log 2>&1
echo "peers rc=$? at $((SECONDS - start)) s"; tail -30 /tmp/c4/peers.log | cut -c1-220
timeout 230 $V/bin/python -m pytest -q -p no:cacheprovider python/tests > /tmp/c4/pytest.log 2>&1; echo "pytest rc=$? at $((SECONDS - start)) s"
tail -4 /tmp/c4/pytest.log
cp /tmp/c4/peers/*.md $out/ 2>/dev/null
tar czf $out/c4.tgz -C /tmp c4
