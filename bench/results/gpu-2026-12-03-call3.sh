#!/usr/bin/env bash
# 2026-12-03, call 3: main (6428466: the output's own staging area at head_dim 256): its GPU
# prefill suite (issue 9's targets), the Python package from source and the peers script on
# the prefill cases (same run: wideattn, SDPA memory-efficient with K/V repeated, cuDNN, Flex).
set -uo pipefail
out="$1"; logs=/tmp/c3; rm -rf $logs; mkdir -p $logs
export PATH=/usr/local/cuda/bin:$PATH
eval "$(scripts/gpu/unpack_carry.sh)"
start=$SECONDS
trap 'tar czf $out/c3.tgz -C /tmp c3' EXIT
echo "== GPU suite, prefill"
timeout 150 build-carry/bin/main/wideattn bench --suite gpu --filter prefill --json $logs/prefill.json > $logs/prefill.txt 2>&1; echo "rc=$?"
grep -E "^\| |ceiling" $logs/prefill.txt
echo "prefill done at $((SECONDS-start)) s"
tar xzf build-py/deps.tgz
python3 -m venv --system-site-packages /tmp/v3
python3 -c 'import site; print("\n".join(site.getsitepackages()))' > "$(/tmp/v3/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/outer.pth"
CMAKE_ARGS="-DBLAS_LIBRARIES=$PWD/.deps/lib/libopenblas.so -DWIDEATTN_CBLAS_INCLUDE=$PWD/.deps/include" WIDEATTN_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=16 \
  timeout 200 /tmp/v3/bin/python -m pip install --no-index --no-deps --no-build-isolation -C build-dir=/tmp/pysrc . > $logs/pybuild.log 2>&1; echo "pybuild rc=$? at $((SECONDS-start)) s"
export LD_LIBRARY_PATH=$PWD/.deps/lib:$LD_LIBRARY_PATH
left=$((500 - (SECONDS-start)))
echo "== peers (prefill cases, ${left} s left)"
timeout $left /tmp/v3/bin/python bench/peers.py $logs/peers --skip decode --peers wideattn,sdpa_mem_efficient_repeat_kv,sdpa_cudnn,flex > $logs/peers.txt 2>&1; echo "peers rc=$?"
cat $logs/peers/peers.md 2>/dev/null | head -60 || tail -30 $logs/peers.txt
echo "done at $((SECONDS-start)) s"
