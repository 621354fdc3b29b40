#!/usr/bin/env bash
# Session 9, call 1: main (8ee078d) against `decode-unrolled-copies` (main + the unrolled whole-tile
# copies whenever all 8 warps copy, head_dim 256/512). The candidate's CUDA tests (sharded, with
# the Python package building from source on the other cores, as a user here would), the
# sanitizers over the small problems (main's new cases: d=512 decode with the Q K^T split, key
# sets, paged and fp8; fused paged prefill), the whole Python suite on the source build (the CUDA
# twin of the batch-invariance test), then the decode A/B.
set -uo pipefail
out="$1"; logs=/tmp/c1; rm -rf $logs; mkdir -p $logs
export PATH=/usr/local/cuda/bin:$PATH
eval "$(scripts/gpu/unpack_carry.sh)"
start=$SECONDS
trap 'tar czf $out/c1.tgz -C /tmp c1' EXIT
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $logs/env.txt
tar xzf build-py/deps.tgz
python3 -m venv --system-site-packages /tmp/v1
python3 -c 'import site; print("\n".join(site.getsitepackages()))' > "$(/tmp/v1/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/outer.pth"
( CMAKE_ARGS="-DBLAS_LIBRARIES=$PWD/.deps/lib/libopenblas.so -DWIDEATTN_CBLAS_INCLUDE=$PWD/.deps/include" WIDEATTN_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=8 \
  timeout 280 /tmp/v1/bin/python -m pip install -v --no-index --no-deps --no-build-isolation -C build-dir=/tmp/pysrc . > $logs/pybuild.log 2>&1; echo "pybuild rc=$? at $((SECONDS-start)) s" > $logs/pydone ) &
job=$!
echo "== candidate's CUDA tests (8 shards, the Python build on the other cores)"
TEST_TIMEOUT=240 scripts/gpu/sharded_tests.sh $logs/tests build-carry/bin/cand/wideattn_tests \
  '*cuda*:*Cuda*:*CUDA*:Planned*:Sanitizer*:Fp8*:Dispatch*:*Paged*:*FusedPrefill*:*Determinism*' 8 2>&1 | tail -12
echo "tests done at $((SECONDS-start)) s"
echo "== sanitizers (candidate)"
SKIP_BUILD=1 SKIP_TESTS=1 SKIP_PYTHON=1 SKIP_PEERS=1 SKIP_BENCH=1 BUILD_DIR=$PWD/build-carry/bin/cand \
  SANITIZER_TIMEOUT=90 scripts/gpu_check.sh $logs/gc > /dev/null 2>&1; echo "gpu_check rc=$?"; tail -7 $logs/gc/summary.txt
grep -h "selects" $logs/gc/gpu_check.log | head -5
echo "sanitizers done at $((SECONDS-start)) s"
wait $job; cat $logs/pydone
export LD_LIBRARY_PATH=$PWD/.deps/lib:$LD_LIBRARY_PATH
R=$PWD; (cd /tmp && timeout 170 /tmp/v1/bin/python -m pytest -q -p no:cacheprovider $R/python/tests > $logs/py.log 2>&1; echo "pytest rc=$?")
grep -E "passed|failed|^E  |^FAILED" $logs/py.log | head -20
grep -E "batch_invariance" $logs/py.log | head -5
echo "python done at $((SECONDS-start)) s"
left=$((560 - (SECONDS-start)))
echo "== decode A/B (${left} s left)"
ROUNDS=2 RUN_TIMEOUT=60 timeout $left scripts/gpu/ab_bench.sh $logs/decode base=build-carry/bin/base/wideattn cand=build-carry/bin/cand/wideattn -- --suite gpu --filter decode
echo "done at $((SECONDS-start)) s"
