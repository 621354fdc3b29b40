#!/usr/bin/env bash
# Session 7, call 1: the four candidates (gpu-candidates = main + decode-qk-split +
# decode-key-sets + fused-overlap-wide + fused-paged): the candidate's CUDA tests, again with the
# key sets off for the decode tests, then the decode and fused A/B against main.
set -uo pipefail
out="$1"
export PATH=/usr/local/cuda/bin:$PATH
eval "$(scripts/gpu/unpack_carry.sh)"
start=$SECONDS
python3 -c 'import sys, torch; print(sys.version.split()[0], torch.__version__)' 2>&1 | tee $out/python.txt
python3 -c 'import scikit_build_core, nanobind, pytest' 2>&1 | tail -1 | tee -a $out/python.txt
SKIP_SANITIZER=1 ROUNDS=2 RUN_TIMEOUT=90 TEST_TIMEOUT=180 ALSO_WITH=WIDEATTN_TUNE_DECODE_KEY_SETS=1 \
  ALSO_FILTER='*Decode*:*decode*:Planned*:CudaGraph*' \
  scripts/gpu/candidate_check.sh $out/cc build-carry/bin/base build-carry/bin/cand \
  "--suite gpu --filter decode" "--suite fused"
echo "candidate_check rc=$? at $((SECONDS-start)) s"
if [ $((SECONDS-start)) -lt 470 ]; then
  echo "== compute-only decode A/B"
  ROUNDS=1 RUN_TIMEOUT=50 scripts/gpu/ab_bench.sh $out/conly base=build-carry/bin/base_conly/wideattn \
    cand=build-carry/bin/cand_conly/wideattn -- --suite gpu --filter "decode b" --warmup 3 --repeat 10
fi
echo "done at $((SECONDS-start)) s"
