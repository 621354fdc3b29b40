#!/usr/bin/env bash
# On the GPU machine: unpacks binaries built elsewhere and carried compressed (the carry limit
# is 64 MiB; OpenBLAS and three CUDA binaries take more uncompressed) into build-carry/bin, and
# prints the LD_LIBRARY_PATH they need. usage: eval "$(scripts/gpu/unpack_carry.sh)"
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tar xzf "$REPO_ROOT/build-carry/bin.tgz" -C "$REPO_ROOT/build-carry"
echo "export LD_LIBRARY_PATH=$REPO_ROOT/build-carry/bin/lib:\${LD_LIBRARY_PATH:-}"
