#!/bin/bash
# device call 1 (2026-12-03, second session): the fused NaN-policy branch (v2, three inspector warps) against main
eval "$(scripts/gpu/unpack_carry.sh)"; timeout 560 scripts/gpu/candidate_check.sh /tmp/cc build-carry/bin/base build-carry/bin/cand "--suite fused" > $OUT/log.txt 2>&1; tar czf $OUT/cc.tgz -C /tmp cc
