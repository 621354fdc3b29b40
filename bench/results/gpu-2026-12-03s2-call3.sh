#!/bin/bash
# device call 3: main + the epilogue's named barrier (racecheck) against main
out=$1
eval "$(scripts/gpu/unpack_carry.sh)"
timeout 560 scripts/gpu/candidate_check.sh /tmp/cc build-carry/bin/base build-carry/bin/cand "--suite fused"
tar czf $out/cc.tgz -C /tmp cc
