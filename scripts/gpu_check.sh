#!/usr/bin/env bash
# The GPU machine's check: build (or reuse BUILD_DIR), run the whole test suite (and the CUDA
# tests again with a NaN-poisoned workspace), run compute-sanitizer (memcheck, racecheck,
# synccheck, initcheck) over small problems that reach every CUDA kernel (the suite
# SanitizerSmallProblems: decode tensor-core and SIMT, split-KV merge, paged and fp8 caches, the
# unfused pipeline's gather, GEMMs, masked softmax, non-finite repair and scatter, the fused
# kernels; plus the CUDA component tests: softmax, scatters, matmul fills and conversions, cache
# writes (16-bit and fp8), merge_states), run the GPU benchmark
# suite, and the Python peers script when it exists. Every log goes to OUT_DIR; a summary with
# each sanitizer's error count is printed last and written to OUT_DIR/summary.txt. Exits
# non-zero when any step fails or any sanitizer reports anything. Installs nothing (that machine
# has no apt and no network): a missing tool is reported and the script fails.
#
# usage: scripts/gpu_check.sh OUT_DIR [GTEST_FILTER]
# environment:
#   BUILD_DIR         build folder (default: build-gpu). A folder already configured is only
#                     brought up to date (ninja), not reconfigured: build once, check many times
#   SKIP_BUILD        1: use BUILD_DIR as it is (no ninja run); it must hold wideattn_tests
#   JOBS              compile jobs (default: the number of cores)
#   CTEST_JOBS        test processes at once, ctest and the poisoned CUDA run (default 8)
#   SANITIZER_FILTER  gtest filter for compute-sanitizer (or the second argument)
#   SANITIZER_TOOLS   default "memcheck racecheck synccheck initcheck"
#   SANITIZER_TIMEOUT seconds per sanitizer tool (default 300)
#   BENCH_ARGS        extra arguments for `wideattn bench` (e.g. "--filter 31B")
#   PEERS_ARGS        arguments for bench/peers.py (default: OUT_DIR/peers, its output folder)
#   SKIP_TESTS, SKIP_PYTHON, SKIP_SANITIZER, SKIP_BENCH, SKIP_PEERS  set to 1 to skip a step
# The Python tests run in a virtual environment that sees the system's packages (PyTorch),
# installing the package offline (--no-build-isolation; wheels at the repository root or in
# .deps/wheels (scripts/gpu/bundle_deps.sh), such as nanobind's, are installed first with --no-index); without scikit-build-core and nanobind they
# are skipped, and the summary says so.
set -uo pipefail

if [ $# -lt 1 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,/^set -uo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
  [ $# -lt 1 ] && exit 2
  exit 0
fi
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="$(mkdir -p "$1" && cd "$1" && pwd)" || { echo "cannot create $1" >&2; exit 2; }
BUILD_DIR="${BUILD_DIR:-$REPO_ROOT/build-gpu}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 8)}"
# Small problems only: the sanitizer makes kernels 10-100x slower (docs/reliability.md).
DEFAULT_FILTER='SanitizerSmallProblems.*:*SoftmaxTest.*/cuda:*ScatterScoresTest.*/cuda:*ScatterValuesTest.*/cuda:*MatmulTest.ScaleAccumulateAndBias/cuda:*MatmulTest.OperandAndResultDtypes/cuda:*MatmulTest.IntoUninitialisedScratch/cuda:*MatmulTest.PipelineShapedGemmIntoFreshScratch/cuda:*MatmulTest.PipelinePvGemmIntoFreshScratch/cuda:*WriteKvTest.ContiguousCaches/cuda:*WriteKvTest.PagedLayouts/cuda:*Fp8WriteKvTest.*/cuda:*MergeStatesTest.OneToEightStatesMatchOracle/cuda:*MergeStatesTest.DeadStatesWithNanAndAllDeadRows/cuda'
FILTER="${2:-${SANITIZER_FILTER:-$DEFAULT_FILTER}}"
SANITIZER_TOOLS="${SANITIZER_TOOLS:-memcheck racecheck synccheck initcheck}"

SUMMARY=()
FAILED=0
note() { printf '[gpu_check] %s\n' "$*" | tee -a "$OUT_DIR/gpu_check.log" >&2; }
# step NAME LOG COMMAND...: runs COMMAND with output to OUT_DIR/LOG, records PASS/FAIL.
step() {
  local name="$1" logfile="$OUT_DIR/$2"
  shift 2
  note "$name: $* (log: $logfile)"
  local start=$SECONDS
  "$@" >"$logfile" 2>&1
  local rc=$?
  local took=$((SECONDS - start))
  if [ $rc -eq 0 ]; then
    SUMMARY+=("PASS  $name (${took}s)  $logfile")
  else
    SUMMARY+=("FAIL  $name (exit $rc, ${took}s)  $logfile")
    FAILED=1
    tail -n 20 "$logfile" | sed 's/^/    /' >&2
  fi
  return $rc
}
skip() { SUMMARY+=("SKIP  $1: $2"); note "skip $1: $2"; }
SANITIZER_COUNTS=()
# sanitizer_findings LOG: the number of errors (memcheck, initcheck, synccheck: "ERROR SUMMARY: N
# errors") or hazards (racecheck: "RACECHECK SUMMARY: N hazards displayed") the log reports;
# "unknown" when it has no summary line (the run died or timed out).
sanitizer_findings() {
  local counts
  counts="$(grep -Eo '(ERROR SUMMARY: [0-9]+ error|RACECHECK SUMMARY: [0-9]+ hazard)' "$1" | grep -Eo '[0-9]+')"
  if [ -z "$counts" ]; then echo unknown; else echo "$counts" | awk '{ n += $1 } END { print n }'; fi
}

# ---- tools ----------------------------------------------------------------------------------
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi
missing=()
for tool in cmake ninja nvcc c++; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  note "missing tools: ${missing[*]} (this script installs nothing: put them on PATH)"
  exit 1
fi
SANITIZER="$(command -v compute-sanitizer || true)"
[ -z "$SANITIZER" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ] && SANITIZER=/usr/local/cuda/bin/compute-sanitizer
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git -C "$REPO_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "nvcc: $(nvcc --version | tail -n 2 | tr '\n' ' ')"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not available"
} >"$OUT_DIR/environment.txt" 2>&1
note "environment: $(tr '\n' ';' <"$OUT_DIR/environment.txt")"

# ---- build ----------------------------------------------------------------------------------
# shellcheck disable=SC2317  # called through step
# The GPU machine has no OpenBLAS or GoogleTest: scripts/gpu/bundle_deps.sh packs them into
# .deps (carried with the call); use it when present.
DEPS_ARGS=()
if [ -d "$REPO_ROOT/.deps" ]; then
  DEPS_ARGS=(-DGTEST_ROOT="$REPO_ROOT/.deps" -DBLAS_LIBRARIES="$REPO_ROOT/.deps/lib/libopenblas.so"
             -DWIDEATTN_CBLAS_INCLUDE="$REPO_ROOT/.deps/include")
  export LD_LIBRARY_PATH="$REPO_ROOT/.deps/lib:${LD_LIBRARY_PATH:-}"
fi
configure() {
  if [ -f "$BUILD_DIR/build.ninja" ]; then  # prebuilt: bring it up to date, keep its settings
    ninja -C "$BUILD_DIR" -j "$JOBS"
    return
  fi
  cmake -S "$REPO_ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWIDEATTN_CUDA=ON \
    -DWIDEATTN_TESTS=ON -DWIDEATTN_TOOLS=ON "${DEPS_ARGS[@]}" && ninja -C "$BUILD_DIR" -j "$JOBS"
}
if [ "${SKIP_BUILD:-0}" = 1 ]; then
  if [ -x "$BUILD_DIR/wideattn_tests" ]; then skip build "SKIP_BUILD=1: using $BUILD_DIR as built"
  else note "SKIP_BUILD=1 but $BUILD_DIR/wideattn_tests does not exist"; exit 1; fi
elif ! step build build.log configure; then
  note "build failed: nothing else can run"
  printf '\n==== gpu_check summary (%s) ====\n' "$OUT_DIR"; printf '%s\n' "${SUMMARY[@]}"
  exit 1
fi
CLI="$BUILD_DIR/wideattn"
TESTS="$BUILD_DIR/wideattn_tests"

# ---- tests ----------------------------------------------------------------------------------
if [ "${SKIP_TESTS:-0}" = 1 ]; then skip tests "SKIP_TESTS=1"; else
  # In parallel: serially the whole suite takes longer than a device call may run.
  step "ctest (whole suite)" ctest.log ctest --test-dir "$BUILD_DIR" --output-on-failure --timeout 1800 \
    -j "${CTEST_JOBS:-8}"
  # GPU tests that skipped would hide a broken CUDA backend: list them.
  grep -E '\[  SKIPPED \]|Skipped' "$OUT_DIR/ctest.log" | head -n 20 >"$OUT_DIR/skipped.txt" || true
  # Scratch filled with NaN before every step that writes it (src/core/debug_options.h).
  step "CUDA tests, poisoned workspace" tests-poisoned.log env WIDEATTN_POISON_WORKSPACE=1 \
    "$REPO_ROOT/scripts/gpu/sharded_tests.sh" "$OUT_DIR/poisoned" "$TESTS" \
    '*cuda*:CudaGraph*:SanitizerSmallProblems.*' "${CTEST_JOBS:-8}"
fi

# ---- Python tests ---------------------------------------------------------------------------
PY_VENV="$BUILD_DIR/venv-gpu"
# shellcheck disable=SC2317  # called through step
python_tests() {
  # What a user on this machine runs: a source build of the package with this machine's
  # compilers (issue 11: a source build crashed on its first call while a wheel built elsewhere
  # passed), then the whole Python suite against it.
  local deps_args=""
  [ -d "$REPO_ROOT/.deps" ] && deps_args="-DBLAS_LIBRARIES=$REPO_ROOT/.deps/lib/libopenblas.so -DWIDEATTN_CBLAS_INCLUDE=$REPO_ROOT/.deps/include"
  CMAKE_ARGS="${CMAKE_ARGS:-} $deps_args" WIDEATTN_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" \
    "$PY_VENV/bin/python" -m pip install -v --no-index --no-deps --no-build-isolation --force-reinstall \
    -C build-dir="$BUILD_DIR/python-source" "$REPO_ROOT" >"$OUT_DIR/python-source-build.log" 2>&1 \
    || { echo "source build failed: $OUT_DIR/python-source-build.log"; tail -n 30 "$OUT_DIR/python-source-build.log"; return 1; }
  echo "== source build"
  (cd "$REPO_ROOT" && "$PY_VENV/bin/python" -m pytest -q python/tests) || return 1
  # A wheel built elsewhere from this tree (scripts/gpu/build_wheel.sh, carried in .whl/), too.
  local prebuilt
  prebuilt="$(ls "$REPO_ROOT"/.whl/wideattn-*.whl 2>/dev/null | head -n 1)"
  if [ -n "$prebuilt" ]; then
    echo "== prebuilt wheel $prebuilt"
    "$PY_VENV/bin/python" -m pip install -q --no-index --no-deps --force-reinstall "$prebuilt" || return 1
    (cd "$REPO_ROOT" && "$PY_VENV/bin/python" -m pytest -q python/tests) || return 1
  fi
}
if [ "${SKIP_PYTHON:-0}" = 1 ]; then skip python "SKIP_PYTHON=1"
elif [ ! -f "$REPO_ROOT/pyproject.toml" ] || [ ! -d "$REPO_ROOT/python/tests" ]; then
  skip python "no pyproject.toml or python/tests"
else
  {
    [ -x "$PY_VENV/bin/python" ] || python3 -m venv --system-site-packages "$PY_VENV"
    # When python3 is itself a virtual environment (the GPU machine's holds PyTorch and NumPy),
    # --system-site-packages reaches only the base interpreter's packages: a .pth file adds the
    # outer environment's site-packages behind the venv's own.
    python3 -c 'import site, sys; sys.prefix != sys.base_prefix and print("\n".join(site.getsitepackages()))' \
      >"$("$PY_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/outer-environment.pth"
    for wheel in "$REPO_ROOT"/*.whl "$REPO_ROOT"/.whl/*.whl "$REPO_ROOT"/.deps/wheels/*.whl; do
      case "$wheel" in */wideattn-*) continue ;; esac
      [ -f "$wheel" ] && "$PY_VENV/bin/python" -m pip install -q --no-index --no-deps "$wheel"
    done
  } >"$OUT_DIR/python-setup.log" 2>&1
  if ! "$PY_VENV/bin/python" -c 'import scikit_build_core, nanobind, pytest' >>"$OUT_DIR/python-setup.log" 2>&1; then
    skip python "the venv lacks scikit-build-core, nanobind or pytest (see $OUT_DIR/python-setup.log)"
  else
    step "python tests (pytest python/tests)" python-tests.log python_tests
  fi
fi

# ---- compute-sanitizer ----------------------------------------------------------------------
if [ "${SKIP_SANITIZER:-0}" = 1 ]; then skip sanitizer "SKIP_SANITIZER=1"
elif [ -z "$SANITIZER" ]; then SUMMARY+=("FAIL  compute-sanitizer: not found on PATH or in /usr/local/cuda/bin"); FAILED=1
elif [ ! -x "$TESTS" ]; then SUMMARY+=("FAIL  compute-sanitizer: $TESTS was not built"); FAILED=1
else
  note "sanitizer filter: $FILTER"
  # The filter must select tests that run: a sanitizer over zero tests proves nothing.
  selected="$("$TESTS" --gtest_list_tests --gtest_filter="$FILTER" | grep -c '^  ' || true)"
  note "sanitizer filter selects $selected tests"
  if [ "$selected" -eq 0 ]; then SUMMARY+=("FAIL  compute-sanitizer: the filter selects no test"); FAILED=1; fi
  for tool in $SANITIZER_TOOLS; do
    extra=()
    case "$tool" in
      memcheck) extra=(--leak-check full) ;;
      racecheck) extra=(--racecheck-report all) ;;  # hazards of every severity count
      # Every finding, to attribute them by kernel; NVTX on, so that the library's marks of what
      # cuBLASLt wrote (WIDEATTN_SANITIZER_NVTX below) reach the tool (docs/reliability.md).
      initcheck) extra=(--print-limit 100000 --nvtx yes) ;;
    esac
    step "compute-sanitizer $tool" "sanitizer-$tool.log" env WIDEATTN_SANITIZER_NVTX=1 \
      timeout "${SANITIZER_TIMEOUT:-300}" "$SANITIZER" --tool "$tool" \
      "${extra[@]}" --error-exitcode 99 "$TESTS" --gtest_filter="$FILTER" --gtest_brief=1
    # Findings, whatever the exit code said; and no test may have been skipped (no GPU).
    findings="$(sanitizer_findings "$OUT_DIR/sanitizer-$tool.log")"
    skipped="$(grep -c '^\[  SKIPPED \]' "$OUT_DIR/sanitizer-$tool.log" || true)"
    SANITIZER_COUNTS+=("$tool: $findings finding(s), $skipped skipped test(s)")
    if [ "$findings" != 0 ]; then
      SUMMARY+=("FAIL  compute-sanitizer $tool: $findings finding(s)"); FAILED=1
      # Where they are: one line per kernel and source line, most findings first.
      grep -E '^=========     at ' "$OUT_DIR/sanitizer-$tool.log" | sed -E 's/\+0x[0-9a-f]+//; s/^=+ +at //' |
        sort | uniq -c | sort -rn >"$OUT_DIR/sanitizer-$tool-by-kernel.txt" || true
    fi
  done
fi

# ---- benchmarks -----------------------------------------------------------------------------
if [ "${SKIP_BENCH:-0}" = 1 ]; then skip bench "SKIP_BENCH=1"; else
  # shellcheck disable=SC2086
  step "wideattn bench --suite gpu" bench.log "$CLI" bench --suite gpu --backend cuda \
    --json "$OUT_DIR/bench.json" ${BENCH_ARGS:-}
  "$CLI" info >"$OUT_DIR/info.txt" 2>&1 || true
fi
if [ "${SKIP_PEERS:-0}" = 1 ]; then skip peers "SKIP_PEERS=1"
elif [ -f "$REPO_ROOT/bench/peers.py" ]; then
  if [ -n "${PEERS_ARGS+x}" ]; then
    read -r -a peers_args <<<"$PEERS_ARGS"
  else
    peers_args=("$OUT_DIR/peers")  # python/README.md: python3 bench/peers.py OUTDIR
  fi
  if [ -x "$PY_VENV/bin/python" ] && "$PY_VENV/bin/python" -c 'import wideattn' >/dev/null 2>&1; then
    step "bench/peers.py" peers.log "$PY_VENV/bin/python" "$REPO_ROOT/bench/peers.py" "${peers_args[@]}"
  else
    step "bench/peers.py" peers.log env PYTHONPATH="$REPO_ROOT/python:${PYTHONPATH:-}" \
      WIDEATTN_BUILD_DIR="$BUILD_DIR" python3 "$REPO_ROOT/bench/peers.py" "${peers_args[@]}"
  fi
else
  skip peers "bench/peers.py does not exist"
fi

# ---- summary --------------------------------------------------------------------------------
{
  printf '\n==== gpu_check summary (%s) ====\n' "$OUT_DIR"
  printf '%s\n' "${SUMMARY[@]}"
  if [ -f "$OUT_DIR/ctest.log" ]; then grep -E 'tests passed|tests failed' "$OUT_DIR/ctest.log" | tail -n 1; fi
  if [ -s "$OUT_DIR/skipped.txt" ]; then echo "skipped tests (first 20): see $OUT_DIR/skipped.txt"; fi
  for line in "${SANITIZER_COUNTS[@]}"; do echo "compute-sanitizer $line"; done
  if [ -f "$OUT_DIR/bench.log" ]; then sed -n '/^| problem/,$p' "$OUT_DIR/bench.log"; fi
  [ $FAILED -eq 0 ] && echo "gpu_check: all steps passed" || echo "gpu_check: some steps FAILED"
} | tee "$OUT_DIR/summary.txt"
exit $FAILED
