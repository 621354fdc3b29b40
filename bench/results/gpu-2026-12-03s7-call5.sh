#!/bin/bash
# Session 2026-12-03 (seventh) call 5: the new paged-cache case of the fused suite at every
# head_dim and both pair modes (alternate_keys chosen, forced and off), plus the shards of
# call 4 that ran out of time (the d512 instantiations).
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
TEST_TIMEOUT=200 scripts/gpu/sharded_tests.sh /tmp/t5 build-carry/bin/cand/wideattn_tests '*FusedPrefill*PagedCaches*:PairModes/*' 16 2>&1 | tail -10
echo "tests at $((SECONDS - start)) s"
