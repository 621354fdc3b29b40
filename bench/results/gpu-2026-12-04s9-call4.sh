#!/bin/bash
# Session 2026-12-04 (ninth) call 4 (main f99f41b, the submission's CUDA sources): the CUDA decode
# tests and sanitizers on the final kernels, the Python package built from source on this
# machine and its tests, the batch-1 decode rows.
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
N=build-carry/bin/new
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
mkdir -p /tmp/c4
TEST_TIMEOUT=200 scripts/gpu/sharded_tests.sh /tmp/c4/t $N/wideattn_tests \
  '*cuda*:*Cuda*:*CUDA*:Planned*:Sanitizer*:Fp8*:Dispatch*:*Paged*:*Determinism*:*MixedBatch*:*HiddenRows*-*FusedPrefill*:*prefill_fused*' 16 2>&1 | tail -6
$N/wideattn_tests --gtest_filter='*GridMerge*' 2>&1 | grep -E "^\[  (PASSED|FAILED|  OK) |Failure" | head -6
for tool in memcheck racecheck synccheck; do
  timeout 100 compute-sanitizer --tool $tool --error-exitcode 99 $N/wideattn_tests \
    --gtest_filter='CudaGraphTest.GridMergedDecodeIsOneKernelAndReplays:*SanitizerSmallProblems*ecode*' > /tmp/c4/$tool.txt 2>&1
  echo "$tool rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY" /tmp/c4/$tool.txt | head -2
done
echo "tests at $((SECONDS - start)) s"
timeout 100 $N/wideattn bench --suite gpu --filter "decode b1 kv 32K \(" 2>&1 | grep -E "^\| " | cut -c1-170
echo "bench at $((SECONDS - start)) s"
tar xzf build-py/deps.tgz
scripts/gpu/python_source_build.sh /tmp/pyb/venv /tmp/c4/python-source-build.log
export LD_LIBRARY_PATH="$PWD/.deps/lib:${LD_LIBRARY_PATH:-}"
timeout 240 /tmp/pyb/venv/bin/python -m pytest -q -p no:cacheprovider python/tests > /tmp/c4/pytest.log 2>&1; echo "pytest rc=$? at $((SECONDS - start)) s"
tail -3 /tmp/c4/pytest.log
tar czf $out/c4.tgz -C /tmp c4
