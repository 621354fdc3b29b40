# ===== build-carry/call1.sh
#!/usr/bin/env bash
# Session 5, call 1: the integrate branch (fp8 CUDA prefill + f16 MMAs for fp8 decode) verified,
# sanitizers with NVTX marks, the decode suite, and the issue 12 decode timeline.
set -uo pipefail
out="$1"; logs=/tmp/c1; rm -rf $logs; mkdir -p $logs
export PATH=/usr/local/cuda/bin:$PATH
eval "$(scripts/gpu/unpack_carry.sh)"
start=$SECONDS
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $logs/env.txt
tar xzf build-py/deps.tgz
python3 -m venv --system-site-packages /tmp/v1
python3 -c 'import site; print("\n".join(site.getsitepackages()))' > "$(/tmp/v1/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/outer.pth"
( CMAKE_ARGS="-DBLAS_LIBRARIES=$PWD/.deps/lib/libopenblas.so -DWIDEATTN_CBLAS_INCLUDE=$PWD/.deps/include" WIDEATTN_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=10 \
  timeout 200 /tmp/v1/bin/python -m pip install --no-index --no-deps --no-build-isolation -C build-dir=/tmp/pysrc . > $logs/pybuild.log 2>&1; echo "pybuild rc=$? at $((SECONDS-start)) s" > $logs/pydone ) &
job=$!
echo "== CUDA tests"
TEST_TIMEOUT=250 scripts/gpu/sharded_tests.sh $logs/tests build-carry/bin/wideattn_tests \
  '*cuda*:*Cuda*:*CUDA*:Planned*:Sanitizer*:Fp8*:Dispatch*:*Paged*' 8 2>&1 | tail -25
echo "tests done at $((SECONDS-start)) s"
wait $job; cat $logs/pydone
R=$PWD; (cd /tmp && timeout 200 /tmp/v1/bin/python -m pytest -q -p no:cacheprovider $R/python/tests > $logs/py.log 2>&1; echo "pytest rc=$?")
grep -E "passed|failed|^E  |^FAILED" $logs/py.log | head -12
echo "python done at $((SECONDS-start)) s"
echo "== sanitizers"
SKIP_BUILD=1 SKIP_TESTS=1 SKIP_PYTHON=1 SKIP_PEERS=1 SKIP_BENCH=1 BUILD_DIR=$PWD/build-carry/bin \
  SANITIZER_TIMEOUT=120 scripts/gpu_check.sh $logs/gc > /dev/null 2>&1; tail -8 $logs/gc/summary.txt
echo "sanitizers done at $((SECONDS-start)) s"
echo "== decode suite"
timeout 150 build-carry/bin/wideattn bench --suite gpu --filter decode --json $out/decode.json > $logs/decode.txt 2>&1; echo "rc=$?"
cat $logs/decode.txt
echo "== decode timeline (trace build)"
timeout 150 build-carry/bin/decode_check_trace --no-check --quick --trace-sweep > $logs/trace.txt 2>&1; echo "rc=$? at $((SECONDS-start)) s"
grep -E "^[A-Za-z0-9].*auto plan|^  auto|^  [0-9]+ |trace:|streaming|last tile done|merge CTA end" $logs/trace.txt | head -150
tar czf $out/c1.tgz -C /tmp c1
# ===== build-carry/call2.sh
#!/usr/bin/env bash
# Session 5, call 2: fp8 prefill without double rounding, the sliced decode merge, and the
# row-blocks A/B for 32-row decode groups.
set -uo pipefail
out="$1"; logs=/tmp/c2; rm -rf $logs; mkdir -p $logs
export PATH=/usr/local/cuda/bin:$PATH
eval "$(scripts/gpu/unpack_carry.sh)"
start=$SECONDS
tar xzf build-py/deps.tgz
python3 -m venv --system-site-packages /tmp/v2
python3 -c 'import site; print("\n".join(site.getsitepackages()))' > "$(/tmp/v2/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/outer.pth"
( CMAKE_ARGS="-DBLAS_LIBRARIES=$PWD/.deps/lib/libopenblas.so -DWIDEATTN_CBLAS_INCLUDE=$PWD/.deps/include" WIDEATTN_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=10 \
  timeout 200 /tmp/v2/bin/python -m pip install --no-index --no-deps --no-build-isolation -C build-dir=/tmp/pysrc . > $logs/pybuild.log 2>&1; echo "pybuild rc=$? at $((SECONDS-start)) s" > $logs/pydone ) &
job=$!
echo "== CUDA tests"
TEST_TIMEOUT=250 scripts/gpu/sharded_tests.sh $logs/tests build-carry/bin/wideattn_tests \
  '*cuda*:*Cuda*:*CUDA*:Planned*:Sanitizer*:Fp8*:Dispatch*:*Paged*:*Determinism*' 8 2>&1 | tail -25
echo "tests done at $((SECONDS-start)) s"
wait $job; cat $logs/pydone
R=$PWD; (cd /tmp && timeout 150 /tmp/v2/bin/python -m pytest -q -p no:cacheprovider $R/python/tests/test_fp8_kv.py $R/python/tests/test_serving.py $R/python/tests/test_gpu.py $R/python/tests/test_planned_decode.py $R/python/tests/test_paged_kv.py > $logs/py.log 2>&1; echo "pytest rc=$?")
grep -E "passed|failed|^E  |^FAILED" $logs/py.log | head -12
echo "python done at $((SECONDS-start)) s"
echo "== sanitizers"
SKIP_BUILD=1 SKIP_TESTS=1 SKIP_PYTHON=1 SKIP_PEERS=1 SKIP_BENCH=1 BUILD_DIR=$PWD/build-carry/bin \
  SANITIZER_TIMEOUT=120 scripts/gpu_check.sh $logs/gc > /dev/null 2>&1; tail -6 $logs/gc/summary.txt
echo "== decode suite (sliced merge)"
timeout 150 build-carry/bin/wideattn bench --suite gpu --filter decode --json $out/decode.json > $logs/decode.txt 2>&1; echo "rc=$?"
grep -E "^\| |ceiling" $logs/decode.txt
echo "== b8x4 with one row block per CTA (WIDEATTN_TUNE_DECODE_ROW_BLOCKS=1)"
WIDEATTN_TUNE_DECODE_ROW_BLOCKS=1 timeout 60 build-carry/bin/wideattn bench --suite gpu --filter "b8x4" --json $out/decode-rb1.json > $logs/decode-rb1.txt 2>&1; echo "rc=$?"
grep -E "^\| |ceiling" $logs/decode-rb1.txt
echo "== decode timeline (trace build, sliced merge)"
timeout 100 build-carry/bin/decode_check_trace --no-check --quick > $logs/trace.txt 2>&1; echo "rc=$? at $((SECONDS-start)) s"
grep -E "^[A-Za-z0-9].*auto plan|^  auto|^  [0-9]+ |trace:|streaming|last tile done|merge dependency|merge CTA end" $logs/trace.txt | head -120
tar czf $out/c2.tgz -C /tmp c2
# ===== build-carry/call3.sh
#!/usr/bin/env bash
# Session 5, call 3: host cost of a decode call, piece by piece; the merge with its own
# parameter block (tests + decode suite).
set -uo pipefail
out="$1"; logs=/tmp/c3; rm -rf $logs; mkdir -p $logs
export PATH=/usr/local/cuda/bin:$PATH
eval "$(scripts/gpu/unpack_carry.sh)"
start=$SECONDS
lscpu | grep -E "Model name|^CPU\(s\)|MHz" | tee $logs/cpu.txt
echo "== launch pieces"; build-carry/bin/launch_cost | tee $logs/launch_cost.txt
echo "== plan_attention (E4B b1 x 32K decode)"; build-carry/bin/plan_cost | tee $logs/plan_cost.txt
echo "== CUDA tests"
TEST_TIMEOUT=250 scripts/gpu/sharded_tests.sh $logs/tests build-carry/bin/wideattn_tests \
  '*cuda*:*Cuda*:*CUDA*:Planned*:Sanitizer*:Fp8*:Dispatch*:*Paged*:*Determinism*' 8 2>&1 | tail -20
echo "tests done at $((SECONDS-start)) s"
echo "== decode suite"
timeout 150 build-carry/bin/wideattn bench --suite gpu --filter decode --json $out/decode.json > $logs/decode.txt 2>&1; echo "rc=$?"
grep -E "^\| |ceiling" $logs/decode.txt
tar czf $out/c3.tgz -C /tmp c3
# ===== build-carry/call4.sh
#!/usr/bin/env bash
# Session 5, call 4: the bulk-copy gate, the widened sanitizer set, the CUDA tests, and the decode
# suite's host cost after the split-choice memo.
set -uo pipefail
out="$1"; logs=/tmp/c4; rm -rf $logs; mkdir -p $logs
export PATH=/usr/local/cuda/bin:$PATH
eval "$(scripts/gpu/unpack_carry.sh)"
start=$SECONDS
echo "== decode_load_gate"; timeout 120 build-carry/bin/decode_load_gate 2>&1 | tee $logs/gate.txt
echo "== CUDA tests"
TEST_TIMEOUT=250 scripts/gpu/sharded_tests.sh $logs/tests build-carry/bin/wideattn_tests \
  '*cuda*:*Cuda*:*CUDA*:Planned*:Sanitizer*:Fp8*:Dispatch*:*Paged*:*Determinism*' 8 2>&1 | tail -20
echo "tests done at $((SECONDS-start)) s"
echo "== sanitizers"
SKIP_BUILD=1 SKIP_TESTS=1 SKIP_PYTHON=1 SKIP_PEERS=1 SKIP_BENCH=1 BUILD_DIR=$PWD/build-carry/bin \
  SANITIZER_TIMEOUT=200 scripts/gpu_check.sh $logs/gc > /dev/null 2>&1; tail -9 $logs/gc/summary.txt
grep -h "selects" $logs/gc/gpu_check.log
for t in memcheck initcheck; do grep -E "^\[  (PASSED|FAILED|SKIPPED) " $logs/gc/sanitizer-$t.log | head -3; done
echo "sanitizers done at $((SECONDS-start)) s"
echo "== decode suite"
timeout 150 build-carry/bin/wideattn bench --suite gpu --filter decode --json $out/decode.json > $logs/decode.txt 2>&1; echo "rc=$?"
grep -E "^\| |ceiling" $logs/decode.txt
tar czf $out/c4.tgz -C /tmp c4
# ===== build-carry/call5.sh
#!/usr/bin/env bash
# Session 5, call 5: launch cost behind a host-function gate, behind a device spin kernel and on
# a free stream; the decode suite's host cost as a median.
set -uo pipefail
out="$1"; logs=/tmp/c5; rm -rf $logs; mkdir -p $logs
eval "$(scripts/gpu/unpack_carry.sh)"
echo "== launch pieces"; timeout 60 build-carry/bin/launch_cost | tee $logs/launch_cost.txt
echo "== decode suite"
timeout 150 build-carry/bin/wideattn bench --suite gpu --filter "decode b" --json $out/decode.json > $logs/decode.txt 2>&1; echo "rc=$?"
grep -E "^\| |ceiling" $logs/decode.txt
tar czf $out/c5.tgz -C /tmp c5
# ===== build-carry/call7.sh
#!/usr/bin/env bash
# Session 5, call 7: the decode kernels' compute-bound rate (WIDEATTN_DECODE_COMPUTE_ONLY: every
# copy zero-fills, no DRAM) next to the normal build, same problems.
set -uo pipefail
out="$1"; logs=/tmp/c7; rm -rf $logs; mkdir -p $logs
eval "$(scripts/gpu/unpack_carry.sh)"
for b in wideattn_conly wideattn; do
  echo "== $b bench --suite gpu --filter decode"
  timeout 120 build-carry/bin/$b bench --suite gpu --filter "decode b" --warmup 3 --repeat 10 --json $out/$b.json > $logs/$b.txt 2>&1; echo "rc=$?"
  grep -E "^\| |ceiling" $logs/$b.txt
done
echo "== decode_check_conly"
timeout 90 build-carry/bin/decode_check_conly --no-check --quick --no-sweep > $logs/decode_check_conly.txt 2>&1; echo "rc=$?"
grep -E "^[A-Za-z0-9].*auto plan|^  auto" $logs/decode_check_conly.txt | head -40
tar czf $out/c7.tgz -C /tmp c7
# ===== call 6: eval "$(scripts/gpu/unpack_carry.sh)" && build-carry/bin/decode_load_gate
#!/usr/bin/env bash
# Session 5, call 8: the Python package from source on the GPU machine, the context-parallel
# composition and the serving tests on CUDA.
set -uo pipefail
out="$1"; logs=/tmp/c8; rm -rf $logs; mkdir -p $logs
export PATH=/usr/local/cuda/bin:$PATH
start=$SECONDS
tar xzf build-py/deps.tgz
python3 -m venv --system-site-packages /tmp/v8
python3 -c 'import site; print("\n".join(site.getsitepackages()))' > "$(/tmp/v8/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/outer.pth"
CMAKE_ARGS="-DBLAS_LIBRARIES=$PWD/.deps/lib/libopenblas.so -DWIDEATTN_CBLAS_INCLUDE=$PWD/.deps/include" WIDEATTN_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=16 \
  timeout 200 /tmp/v8/bin/python -m pip install --no-index --no-deps --no-build-isolation -C build-dir=/tmp/pysrc . > $logs/pybuild.log 2>&1; echo "pybuild rc=$? at $((SECONDS-start)) s"
R=$PWD; (cd /tmp && timeout 100 /tmp/v8/bin/python -m pytest -q -p no:cacheprovider $R/python/tests/test_serving.py > $logs/py.log 2>&1; echo "pytest rc=$?")
grep -E "passed|failed|^E  |^FAILED" $logs/py.log | head -12
echo "done at $((SECONDS-start)) s"
tar czf $out/c8.tgz -C /tmp c8
