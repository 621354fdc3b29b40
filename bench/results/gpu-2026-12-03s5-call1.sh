#!/bin/bash
# Session 2026-12-03 (fifth) call 1: the wgmma decode kernel's A fragments in half chunks at 16-32
# rows (branch decode-wgmma-parts), and that plus three consumer warpgroups at 16 rows (branch
# decode-wgmma-parts-three16), against main ae17f2c: the candidates' fp8/wgmma tests, the fp8
# decode A/B (2 rounds), then main's and the candidates' whole decode suites once (bf16 rows
# in the same run).
out=$1
start=$SECONDS
eval "$(scripts/gpu/unpack_carry.sh)"
B=build-carry/bin
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $out/env.txt
for c in parts three16 base; do
  TEST_TIMEOUT=120 scripts/gpu/sharded_tests.sh /tmp/c1/tests-$c $B/$c/wideattn_tests '*Fp8*:*Wgmma*:*WideDecode*:*CudaGraph*' 16 > $out/tests-$c.txt 2>&1
  echo "tests $c rc=$? at $((SECONDS - start)) s"; tail -6 $out/tests-$c.txt
done
ROUNDS=2 RUN_TIMEOUT=90 scripts/gpu/ab_bench.sh /tmp/c1/ab base=$B/base/wideattn parts=$B/parts/wideattn three16=$B/three16/wideattn -- --suite gpu --filter fp8 > $out/ab.txt 2>&1
echo "ab rc=$? at $((SECONDS - start)) s"
cp /tmp/c1/ab/ab.md $out/ab-fp8.md; cat $out/ab-fp8.md
for c in base three16 parts; do
  [ $((SECONDS - start)) -gt 470 ] && { echo "skipping decode suite of $c (time)"; continue; }
  timeout 80 $B/$c/wideattn bench --suite gpu --filter decode --json $out/decode-$c.json > $out/decode-$c.txt 2>&1
  echo "decode suite $c rc=$? at $((SECONDS - start)) s"
done
tar czf $out/c1.tgz -C /tmp c1
