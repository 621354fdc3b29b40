#!/bin/sh
# Compiler launcher for the fused kernels: runs the compile (through ccache when given), shows
# its messages, and fails it when ptxas reports register spills or serialised wgmma ("Potential
# Performance Loss"): both would silently cost the kernels a large share of their speed.
# usage: strict_ptxas.sh [launcher...] compiler args...
log="$(mktemp)" || exit 1
"$@" 2>"$log"
rc=$?
cat "$log" >&2
if [ "$rc" -eq 0 ] && grep -qE "Registers are spilled|Potential Performance Loss" "$log"; then
  echo "strict_ptxas: register spills or serialised wgmma in a fused kernel (see above); failing the build" >&2
  rc=1
fi
rm -f "$log"
exit "$rc"
