#!/bin/bash
# device call 4: main + the fused NaN policy's after-the-fact recompute, against main's kernels
out=$1
eval "$(scripts/gpu/unpack_carry.sh)"
timeout 420 scripts/gpu/candidate_check.sh /tmp/cc build-carry/bin/base build-carry/bin/cand "--suite fused"
tar czf $out/cc.tgz -C /tmp cc
