#!/usr/bin/env bash
# Session 7, call 2: main after the merge of the candidates (35e212c: descriptors hoisted again at
# d128, overlap off at d256) against the old main (6b87956) on the fused suite; main's CUDA tests
# while the Python package builds from source (as a user here would); the whole Python suite on
# that build; the mixed-batch benchmark (issue 10).
set -uo pipefail
out="$1"; logs=/tmp/c2; rm -rf $logs; mkdir -p $logs
export PATH=/usr/local/cuda/bin:$PATH
eval "$(scripts/gpu/unpack_carry.sh)"
start=$SECONDS
trap 'tar czf $out/c2.tgz -C /tmp c2' EXIT
echo "== fused A/B"
ROUNDS=2 RUN_TIMEOUT=60 scripts/gpu/ab_bench.sh $logs/fused base=build-carry/bin/base/wideattn main=build-carry/bin/cand/wideattn -- --suite fused
echo "fused A/B done at $((SECONDS-start)) s"
tar xzf build-py/deps.tgz
python3 -m venv --system-site-packages /tmp/v2
python3 -c 'import site; print("\n".join(site.getsitepackages()))' > "$(/tmp/v2/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/outer.pth"
( CMAKE_ARGS="-DBLAS_LIBRARIES=$PWD/.deps/lib/libopenblas.so -DWIDEATTN_CBLAS_INCLUDE=$PWD/.deps/include" WIDEATTN_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=8 \
  timeout 280 /tmp/v2/bin/python -m pip install -v --no-index --no-deps --no-build-isolation -C build-dir=/tmp/pysrc . > $logs/pybuild.log 2>&1; echo "pybuild rc=$? at $((SECONDS-start)) s" > $logs/pydone ) &
job=$!
echo "== main's CUDA tests (8 shards, the build on the other cores)"
TEST_TIMEOUT=240 scripts/gpu/sharded_tests.sh $logs/tests build-carry/bin/cand/wideattn_tests \
  '*cuda*:*Cuda*:*CUDA*:Planned*:Sanitizer*:Fp8*:Dispatch*:*Paged*:*FusedPrefill*:*Determinism*' 8 2>&1 | tail -12
echo "tests done at $((SECONDS-start)) s"
echo "== the decode tests again with the key sets off (WIDEATTN_TUNE_DECODE_KEY_SETS=1)"
WIDEATTN_TUNE_DECODE_KEY_SETS=1 TEST_TIMEOUT=150 scripts/gpu/sharded_tests.sh $logs/tests-keysets-off build-carry/bin/cand/wideattn_tests \
  '*single_pass*:*two_pass*:*Paged*:Planned*:CudaGraph*:Fp8*:*Determinism*:SanitizerSmallProblems.*' 8 2>&1 | tail -8
echo "key-sets-off tests done at $((SECONDS-start)) s"
wait $job; cat $logs/pydone
export LD_LIBRARY_PATH=$PWD/.deps/lib:$LD_LIBRARY_PATH
R=$PWD; (cd /tmp && timeout 170 /tmp/v2/bin/python -m pytest -q -p no:cacheprovider $R/python/tests > $logs/py.log 2>&1; echo "pytest rc=$?")
grep -E "passed|failed|^E  |^FAILED|SKIPPED" $logs/py.log | head -20
echo "python done at $((SECONDS-start)) s"
if [ $((SECONDS-start)) -lt 500 ]; then
  echo "== mixed batch"
  (cd /tmp && timeout 60 /tmp/v2/bin/python $R/bench/mixed_batch.py --json $logs/mixed_batch.json 2>&1 | tail -20)
fi
echo "done at $((SECONDS-start)) s"
