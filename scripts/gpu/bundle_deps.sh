#!/usr/bin/env bash
# Bundles the build dependencies the GPU machine lacks (it has no package manager access):
# OpenBLAS and GoogleTest headers and libraries, taken from this Debian machine, into .deps/
# (ignored by git; pass it to the device with carry: [".deps"]). scripts/gpu_check.sh uses it.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .deps && mkdir -p .deps/include .deps/lib
cp -rL /usr/include/x86_64-linux-gnu/openblas-pthread/*.h .deps/include/
cp -r /usr/include/gtest /usr/include/gmock .deps/include/
cp -L /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0 .deps/lib/
ln -sf libopenblas.so.0 .deps/lib/libopenblas.so
for lib in libgfortran.so.5 libquadmath.so.0; do cp -L /lib/x86_64-linux-gnu/$lib .deps/lib/; done
cp /usr/lib/x86_64-linux-gnu/libgtest*.a /usr/lib/x86_64-linux-gnu/libgmock*.a .deps/lib/
du -sh .deps
