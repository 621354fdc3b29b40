#!/bin/bash
# device call 5 (the session's last seconds): the decode kernels' NaN policy (after-the-fact
# recompute) and everything else on the candidate: tests, sanitizers, then a short decode A/B.
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
TEST_TIMEOUT=110 SKIP_SANITIZER=0 ROUNDS=1 timeout 190 scripts/gpu/candidate_check.sh /tmp/cc build-carry/bin/base build-carry/bin/cand \
  '--suite gpu --filter "decode b32"' > $out/check.txt 2>&1
tar czf $out/cc.tgz -C /tmp cc
tail -40 $out/check.txt
