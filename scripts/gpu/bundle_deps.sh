#!/usr/bin/env bash
# Bundles the build dependencies the GPU machine lacks (it has no package manager and no
# network): OpenBLAS and GoogleTest headers and libraries from this Debian machine, the pinned
# CUTLASS wheel (scripts/fetch_cutlass.sh), and the wheels a source build of the Python package
# and its tests need (scikit-build-core, nanobind, pytest and their pure-Python dependencies, in
# .deps/wheels; scripts/gpu_check.sh installs them into its venv) into .deps/ (ignored by git).
# With --tar FILE it also packs .deps into FILE (gzip; the carry limit is 64 MiB in all, and
# OpenBLAS alone takes 30+ MiB uncompressed): on the device, `tar xzf FILE` at the repository
# root restores .deps. Otherwise pass .deps itself with carry.
# usage: scripts/gpu/bundle_deps.sh [--tar FILE]   (e.g. --tar build-py/deps.tgz)
set -euo pipefail
cd "$(dirname "$0")/../.."
tarball=""
if [ "${1:-}" = "--tar" ]; then tarball="${2:?--tar needs a file}"; fi
# The CUTLASS wheel stays (fetching it again needs the network); everything else is rebuilt.
mkdir -p .deps
find .deps -mindepth 1 -maxdepth 1 ! -name 'nvidia_cutlass-*.whl' -exec rm -rf {} +
scripts/fetch_cutlass.sh
mkdir -p .deps/include .deps/lib .deps/wheels
cp -rL /usr/include/x86_64-linux-gnu/openblas-pthread/*.h .deps/include/
cp -r /usr/include/gtest /usr/include/gmock .deps/include/
cp -L /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0 .deps/lib/
ln -sf libopenblas.so.0 .deps/lib/libopenblas.so
for lib in libgfortran.so.5 libquadmath.so.0; do cp -L /lib/x86_64-linux-gnu/$lib .deps/lib/; done
cp /usr/lib/x86_64-linux-gnu/libgtest*.a /usr/lib/x86_64-linux-gnu/libgmock*.a .deps/lib/
# Pure-Python wheels only (py3-none-any), so they install on whatever Python the device runs.
python3 -m pip download -q --only-binary=:all: --python-version 3.9 --platform any --implementation py \
  -d .deps/wheels "scikit-build-core>=0.10" "nanobind>=2.4" "pytest>=7"
du -sh .deps
if [ -n "$tarball" ]; then
  mkdir -p "$(dirname "$tarball")"
  tar czf "$tarball" .deps
  du -h "$tarball"
fi
