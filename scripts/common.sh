# shellcheck shell=bash
# Shared by scripts/run.sh and scripts/test.sh (sourced, not run): installing what the build
# needs on Debian, finding nvcc, configuring and building with CMake + Ninja + ccache.
#
# Environment:
#   BUILD_DIR   build folder (default: build)
#   JOBS        parallel compile jobs (default: the number of cores)
#   CCACHE_DIR  compiler cache (default: ~/.ccache)
#   WIDEATTN_CUDA  ON, OFF or AUTO (default AUTO: built when nvcc is on PATH or in /usr/local/cuda/bin)

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$REPO_ROOT/build}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.ccache}"

log() { printf '[wideattn] %s\n' "$*" >&2; }
die() { printf '[wideattn] error: %s\n' "$*" >&2; exit 1; }

# Whether a Debian package is installed (falls back to "no" without dpkg).
have_package() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# install_packages PKG...: installs the Debian packages that are missing, with apt-get as root
# or through sudo. Without apt-get, root or sudo, it names what is missing and fails.
APT_UPDATED=0
install_packages() {
  local missing=() p
  for p in "$@"; do have_package "$p" || missing+=("$p"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
      die "missing Debian packages: ${missing[*]} (install them as root: apt-get install ${missing[*]})"
    fi
  fi
  command -v apt-get >/dev/null 2>&1 || die "missing packages ${missing[*]} and no apt-get to install them"
  log "installing ${missing[*]}"
  if [ "$APT_UPDATED" -eq 0 ]; then
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
    APT_UPDATED=1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || die "apt-get install ${missing[*]} failed"
}

# The build's own needs. With dpkg (Debian), by package; elsewhere, by command and header.
install_build_dependencies() {
  local with_tests="$1"
  if command -v dpkg-query >/dev/null 2>&1; then
    local packages=(cmake ninja-build g++ ccache libopenblas-dev)
    [ "$with_tests" = ON ] && packages+=(libgtest-dev)
    install_packages "${packages[@]}"
  else
    local tool
    for tool in cmake ninja g++; do
      command -v "$tool" >/dev/null 2>&1 || die "$tool not found (and no dpkg to install it)"
    done
  fi
}

# Puts nvcc on PATH when CUDA is installed in the usual place, and says whether CUDA is built.
find_cuda() {
  if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH="/usr/local/cuda/bin:$PATH"
  fi
  if [ "${WIDEATTN_CUDA:-AUTO}" = OFF ]; then
    log "CUDA backend: off (WIDEATTN_CUDA=OFF)"
  elif command -v nvcc >/dev/null 2>&1; then
    log "CUDA backend: on ($(command -v nvcc), $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'))"
    # The fused kernels' CuTe headers: the pinned nvidia-cutlass wheel, into .deps/ (once).
    "$REPO_ROOT/scripts/fetch_cutlass.sh" || die "could not fetch the CUTLASS headers (scripts/fetch_cutlass.sh)"
  else
    log "CUDA backend: off (no nvcc on PATH or in /usr/local/cuda/bin)"
  fi
}

# configure_and_build TESTS(ON|OFF) [TARGET...]
configure_and_build() {
  local with_tests="$1"
  shift
  if command -v ccache >/dev/null 2>&1; then mkdir -p "$CCACHE_DIR"; fi
  cmake -S "$REPO_ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DWIDEATTN_CUDA="${WIDEATTN_CUDA:-AUTO}" -DWIDEATTN_TESTS="$with_tests" -DWIDEATTN_TOOLS=ON \
    || die "cmake configure failed"
  ninja -C "$BUILD_DIR" -j "$JOBS" "$@" || die "build failed"
  if command -v ccache >/dev/null 2>&1; then
    ccache --show-stats 2>/dev/null | grep -iE 'hit|miss' | head -n 3 >&2 || true
  fi
}

# ---- reliability builds (scripts/sanitize.sh, scripts/fuzz.sh; docs/reliability.md) --------------

# clang_links FLAGS...: whether clang++ compiles and links a tiny program with FLAGS (with
# -fsanitize=fuzzer the program is a fuzz target, else a main).
clang_links() {
  local dir program
  dir="$(mktemp -d)"
  program='int main() { return 0; }'
  case "$*" in
    *fuzzer*) program='extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' ;;
  esac
  printf '%s\n' "$program" > "$dir/probe.cpp"
  local ok=0
  "$CLANG_CXX" "$@" "$dir/probe.cpp" -o "$dir/probe" >/dev/null 2>&1 || ok=1
  rm -rf "$dir"
  return "$ok"
}

# install_clang: clang with its sanitizer and libFuzzer runtimes (compiler-rt) and LLVM's
# OpenMP runtime (libomp, whose Archer tool lets ThreadSanitizer see OpenMP synchronisation).
# Sets CLANG_CXX and ARCHER_LIBRARY (empty when Archer is not installed).
install_clang() {
  if command -v dpkg-query >/dev/null 2>&1; then
    install_packages clang libomp-dev
  fi
  CLANG_CXX="${CLANG_CXX:-$(command -v clang++ || true)}"
  [ -n "$CLANG_CXX" ] || die "clang++ not found (and no dpkg to install it)"
  local probes=("-fsanitize=fuzzer,address,undefined" "-fsanitize=thread -fopenmp")
  local probe unlinkable=0
  for probe in "${probes[@]}"; do
    # shellcheck disable=SC2086
    clang_links $probe || unlinkable=1
  done
  if [ "$unlinkable" -eq 1 ] && command -v dpkg-query >/dev/null 2>&1; then
    # compiler-rt: its own package since LLVM 14 on Debian 12 / Ubuntu 23.04, in
    # libclang-common-<N>-dev before.
    local major
    major="$("$CLANG_CXX" -dumpversion | cut -d. -f1)"
    install_packages "libclang-rt-$major-dev"
  fi
  for probe in "${probes[@]}"; do
    # shellcheck disable=SC2086
    clang_links $probe || die "$CLANG_CXX cannot link with $probe (compiler-rt or libomp missing)"
  done
  local lib
  lib="$(dirname "$(readlink -f "$CLANG_CXX")")/../lib"
  ARCHER_LIBRARY=""
  if [ -f "$lib/libarcher.so" ]; then ARCHER_LIBRARY="$(cd "$lib" && pwd)/libarcher.so"; fi
  log "clang: $CLANG_CXX ($("$CLANG_CXX" -dumpversion)); Archer: ${ARCHER_LIBRARY:-not found}"
}

# configure_and_build_variant DIR TARGET [CMAKE_ARGUMENT...]: a CPU-only clang build in its own
# folder (ccache through CMake's compiler launcher), building TARGET.
configure_and_build_variant() {
  local dir="$1" target="$2"
  shift 2
  if command -v ccache >/dev/null 2>&1; then mkdir -p "$CCACHE_DIR"; fi
  mkdir -p "$dir"
  cmake -S "$REPO_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER="$CLANG_CXX" -DWIDEATTN_CUDA=OFF "$@" >"$dir/configure.log" 2>&1 \
    || { cat "$dir/configure.log" >&2; die "cmake configure of $dir failed"; }
  ninja -C "$dir" -j "$JOBS" "$target" || die "build of $target in $dir failed"
}
