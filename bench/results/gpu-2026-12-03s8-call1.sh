#!/bin/bash
# Session 2026-12-03 (eighth) call 1 (main d035272, built here and carried): the Python package
# built from source on this machine and its tests; the C++ context-parallel tests on CUDA (the
# prefill's first GPU run, issue 14); E4B/E2B 1K with alternate_keys, whole tiles and fixed KV
# splits (issue 9); Nsight Compute on the alternate_keys kernel at E4B 1K.
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
tar xzf build-py/deps.tgz
B=build-carry/bin/base
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
mkdir -p /tmp/c1 /tmp/pyb
V=/tmp/pyb/venv
python3 -m venv --system-site-packages $V
python3 -c 'import site, sys; sys.prefix != sys.base_prefix and print("\n".join(site.getsitepackages()))' \
  > "$($V/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/outer-environment.pth"
for w in .deps/wheels/*.whl; do $V/bin/python -m pip install -q --no-index --no-deps "$w"; done
(export PATH=/usr/local/cuda/bin:$PATH; CMAKE_ARGS="-DBLAS_LIBRARIES=$PWD/.deps/lib/libopenblas.so -DWIDEATTN_CBLAS_INCLUDE=$PWD/.deps/include" \
  WIDEATTN_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=10 timeout 300 $V/bin/python -m pip install -v --no-index --no-deps \
  --no-build-isolation --force-reinstall -C build-dir=/tmp/pyb/build . > /tmp/c1/python-source-build.log 2>&1
 echo "python source build rc=$? at $((SECONDS - start)) s" >> /tmp/c1/python-source-build.log) &
build=$!
lib="$(python3 -c 'import glob, os, torch; print((glob.glob(os.path.join(os.path.dirname(torch.__file__), "..", "nvidia", "nccl", "lib", "libnccl.so*")) + [""])[0])')"
echo "nccl: $lib"
NCCL_NVLS_ENABLE=0 WIDEATTN_NCCL_LIBRARY="$lib" timeout 150 $B/wideattn_tests --gtest_filter='*ContextParallel*' > /tmp/c1/cp-tests.txt 2>&1
echo "cp tests rc=$? at $((SECONDS - start)) s"; grep -E "FAILED|PASSED|SKIPPED \]|tests ran" /tmp/c1/cp-tests.txt | tail -12
for v in "off:WIDEATTN_TUNE_FUSED_ALTERNATE=0:" "s2:WIDEATTN_TUNE_FUSED_ALTERNATE=0:--kv-splits 2" "s3:WIDEATTN_TUNE_FUSED_ALTERNATE=0:--kv-splits 3" "s4:WIDEATTN_TUNE_FUSED_ALTERNATE=0:--kv-splits 4"; do
  IFS=: read name env extra <<<"$v"
  printf '#!/bin/bash\n%s exec %s "$@" %s\n' "$env" "$PWD/$B/wideattn" "$extra" > /tmp/$name.sh; chmod +x /tmp/$name.sh
done
ROUNDS=2 RUN_TIMEOUT=100 scripts/gpu/ab_bench.sh /tmp/c1/ab auto=$B/wideattn off=/tmp/off.sh s2=/tmp/s2.sh s3=/tmp/s3.sh s4=/tmp/s4.sh -- \
  --suite gpu --filter "E4B prefill 1K|E2B prefill 1K|26B prefill 1K|31B prefill 1K" 2>&1 | tail -1
cut -c1-220 /tmp/c1/ab/ab.md
echo "ab at $((SECONDS - start)) s"
SUITE=gpu timeout 150 scripts/gpu/profile_fused.sh /tmp/c1/ncu $B "E4B prefill 1K" > /tmp/c1/ncu.log 2>&1
echo "ncu rc=$? at $((SECONDS - start)) s"; head -30 /tmp/c1/ncu.log
tar xzf /tmp/c1/ncu/profiles.tar.gz -C /tmp/c1/ncu 2>/dev/null; cat /tmp/c1/ncu/profiles/*.stalls.txt 2>/dev/null | head -80
wait $build
tail -2 /tmp/c1/python-source-build.log
(cd /tmp && timeout 60 $V/bin/python -c "import wideattn, torch; print('wideattn from', wideattn.__file__); q=torch.randn(1,4,2,512,device='cuda',dtype=torch.bfloat16)")
timeout 200 $V/bin/python -m pytest -q -p no:cacheprovider python/tests > /tmp/c1/pytest.log 2>&1; echo "pytest rc=$? at $((SECONDS - start)) s"
tail -4 /tmp/c1/pytest.log
cp /tmp/c1/ncu/profiles.tar.gz $out/ 2>/dev/null
rm -rf /tmp/c1/ncu/profiles
tar czf $out/c1.tgz -C /tmp c1
