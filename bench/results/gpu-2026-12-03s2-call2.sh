#!/bin/bash
# device call 2: balanced parts candidate
out=$1
eval "$(scripts/gpu/unpack_carry.sh)"
build-carry/bin/cand/wideattn run --backend cuda --q-heads 8 --kv-heads 2 --head-dim 512 --prefix 0 --suffix 1024 --repeat 20 2>&1 | tail -12 > $out/e4b-run.txt
timeout 520 scripts/gpu/candidate_check.sh /tmp/cc build-carry/bin/base build-carry/bin/cand "--suite fused" "--suite gpu --filter 1K"
tar czf $out/cc.tgz -C /tmp cc
