#!/bin/bash
# Session 2026-12-03 (fifth) call 2 (main ae17f2c, built here and carried): Nsight Compute on the
# wgmma decode kernel (fp8: 32 rows at b8x4, 8 rows at b32 and b1 x 32K) while the Python package
# builds from source on this machine; then pytest against that build, and the whole CUDA suite.
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
tar xzf build-py/deps.tgz
B=build-carry/bin
mkdir -p /tmp/c2 /tmp/pyb
V=/tmp/pyb/venv
python3 -m venv --system-site-packages $V
python3 -c 'import site, sys; sys.prefix != sys.base_prefix and print("\n".join(site.getsitepackages()))' \
  > "$($V/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/outer-environment.pth"
for w in .deps/wheels/*.whl; do $V/bin/python -m pip install -q --no-index --no-deps "$w"; done
(export PATH=/usr/local/cuda/bin:$PATH; CMAKE_ARGS="-DBLAS_LIBRARIES=$PWD/.deps/lib/libopenblas.so -DWIDEATTN_CBLAS_INCLUDE=$PWD/.deps/include" \
  WIDEATTN_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=12 timeout 300 $V/bin/python -m pip install -v --no-index --no-deps \
  --no-build-isolation --force-reinstall -C build-dir=/tmp/pyb/build . > /tmp/c2/python-source-build.log 2>&1
 echo "python source build rc=$? at $((SECONDS - start)) s" >> /tmp/c2/python-source-build.log) &
build=$!
KERNEL=decode_wgmma SUITE=gpu timeout 240 scripts/gpu/profile_fused.sh /tmp/c2/ncu $B/base \
  "31B decode b8x4 kv 8K (32/4) fp8" "31B decode b32 kv 4K (32/4) fp8" "31B decode b1 kv 32K (32/4) fp8" > /tmp/c2/ncu.log 2>&1
echo "ncu rc=$? at $((SECONDS - start)) s"; cat /tmp/c2/ncu.log | head -60
wait $build
tail -2 /tmp/c2/python-source-build.log
(cd /tmp && timeout 200 $V/bin/python -c "import wideattn; print('wideattn from', wideattn.__file__)") 
(timeout 240 $V/bin/python -m pytest -q -p no:cacheprovider python/tests > /tmp/c2/pytest.log 2>&1; echo "pytest rc=$? at $((SECONDS - start)) s" >> /tmp/c2/pytest.log) &
py=$!
TEST_TIMEOUT=300 scripts/gpu/sharded_tests.sh /tmp/c2/tests $B/base/wideattn_tests \
  '*cuda*:*Cuda*:*CUDA*:Planned*:Sanitizer*:Fp8*:Dispatch*:*Paged*:*FusedPrefill*:*Determinism*' 12 > /tmp/c2/tests.txt 2>&1
echo "tests rc=$? at $((SECONDS - start)) s"; tail -12 /tmp/c2/tests.txt
wait $py; tail -4 /tmp/c2/pytest.log
for f in /tmp/c2/ncu/profiles.tar.gz; do cp $f $out/ 2>/dev/null; done
tar czf $out/c2.tgz -C /tmp c2
