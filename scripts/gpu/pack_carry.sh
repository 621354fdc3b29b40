#!/usr/bin/env bash
# On the CPU machine: packs CUDA binaries built here for the GPU machine (the device's `carry`
# takes ignored paths up to 64 MiB in all): build-carry/bin.tgz holding build-carry/bin/NAME/
# {wideattn, wideattn_tests, decode_check, decode_floor} of each build folder given, and build-carry/bin/lib/
# with the shared libraries they need that the GPU machine lacks (OpenBLAS and its Fortran
# runtime; the CUDA ones are there). Unpack there with `eval "$(scripts/gpu/unpack_carry.sh)"`.
# usage: scripts/gpu/pack_carry.sh NAME=BUILD_DIR[:cli] [NAME=BUILD_DIR[:cli] ...]
#   (:cli packs the wideattn tool alone, e.g. for a compute-only build that only benchmarks;
#   :tests the tool and wideattn_tests, without decode_check)
#   e.g. scripts/gpu/pack_carry.sh base=build-main candidate=build-cand conly=build-conly:cli
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
[ $# -ge 1 ] || { echo "usage: $0 NAME=BUILD_DIR [NAME=BUILD_DIR ...]" >&2; exit 2; }
stage="$REPO_ROOT/build-carry/bin"
rm -rf "$stage"
mkdir -p "$stage/lib"
for spec in "$@"; do
  name="${spec%%=*}" dir="${spec#*=}" binaries="wideattn wideattn_tests bench/decode_check bench/decode_floor"
  case "$dir" in
    *:cli) dir="${dir%:cli}" binaries="wideattn" ;;
    *:tests) dir="${dir%:tests}" binaries="wideattn wideattn_tests" ;;
  esac
  [ -x "$dir/wideattn" ] || { echo "pack_carry: $dir/wideattn not found (build it first)" >&2; exit 1; }
  mkdir -p "$stage/$name"
  for binary in $binaries; do
    if [ -x "$dir/$binary" ]; then cp "$dir/$binary" "$stage/$name/"; fi
  done
  # The libraries outside the CUDA toolkit and glibc that the GPU machine may not have.
  ldd "$dir/wideattn" | awk '/=> \// {print $3}' | grep -E "openblas|gfortran|quadmath|gomp" |
    while read -r lib; do cp -L "$lib" "$stage/lib/"; done
done
tar czf "$REPO_ROOT/build-carry/bin.tgz" -C "$REPO_ROOT/build-carry" bin
size=$(stat -c %s "$REPO_ROOT/build-carry/bin.tgz")
echo "pack_carry: build-carry/bin.tgz, $((size / 1048576)) MiB ($(ls "$stage" | tr '\n' ' '))"
if [ "$size" -gt $((60 * 1048576)) ]; then
  echo "pack_carry: over 60 MiB: the device's carry takes 64 MiB in all; carry fewer builds" >&2
  exit 1
fi
