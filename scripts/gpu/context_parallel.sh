#!/usr/bin/env bash
# Issue 14 on a multi-GPU host: the C++ API's tests (tests/context_parallel_test.cpp, with
# TEST_BINARY=path/to/wideattn_tests; the one-rank NCCL case loads PyTorch's libnccl.so.2),
# the context-parallel tests over NCCL (python/tests/
# test_distributed.py; its NCCL cases need 2-3 GPUs and skip, saying so, with fewer), then the
# decode and ring-prefill benchmark against one GPU (examples/context_parallel.py under torchrun,
# Gemma 4 31B's global layer: decode batch 8 over KV 262144, prefill of 65536 tokens), on
# NPROC GPUs (default: every GPU, at most 4). Needs the Python package installed (pip install .)
# and PyTorch with NCCL. NVLink multicast stays off. Logs: OUT/.
# usage: scripts/gpu/context_parallel.sh OUT
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
out="${1:?usage: scripts/gpu/context_parallel.sh OUT}"
mkdir -p "$out"
export NCCL_NVLS_ENABLE=0
python="${PYTHON:-python3}"
gpus="$("$python" -c 'import torch; print(torch.cuda.device_count())')"
nproc="${NPROC:-$(( gpus < 4 ? gpus : 4 ))}"
echo "GPUs: $gpus; ranks: $nproc" | tee "$out/env.txt"
status=0
if [ -n "${TEST_BINARY:-}" ]; then
  lib="$("$python" -c 'import glob, os, torch; print((glob.glob(os.path.join(os.path.dirname(torch.__file__), "..", "nvidia", "nccl", "lib", "libnccl.so*")) + [""])[0])')"
  WIDEATTN_NCCL_LIBRARY="${WIDEATTN_NCCL_LIBRARY:-$lib}" "$TEST_BINARY" --gtest_filter='*ContextParallel*' \
    2>&1 | tee "$out/cpp-tests.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
(cd "$out" && "$python" -m pytest -q -rs "$OLDPWD/python/tests/test_distributed.py") 2>&1 | tee "$out/tests.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
if [ "$nproc" -ge 2 ]; then
  "$python" -m torch.distributed.run --standalone --nproc_per_node="$nproc" examples/context_parallel.py \
    2>&1 | tee "$out/bench.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
else
  echo "context_parallel.sh: $nproc GPU(s): the benchmark needs 2 or more (skipped)" | tee "$out/bench.log"
fi
exit "$status"
