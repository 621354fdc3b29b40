#!/usr/bin/env bash
# Builds the Python wheel here (CUDA backend, OpenBLAS linked statically) for the GPU machine,
# which has Python 3.12 and no package index: the wheel lands in .whl/ (carried with the call).
# The build runs without pip's build isolation, in that Python 3.12 (PYTHON312, default pyenv's
# 3.12.1): the build requirements of pyproject.toml (scikit-build-core, nanobind) are installed
# into it with pip when they are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
log() { printf '[build_wheel] %s\n' "$*" >&2; }
die() { printf '[build_wheel] error: %s\n' "$*" >&2; exit 1; }

python="${PYTHON312:-$(pyenv root 2>/dev/null)/versions/3.12.1/bin/python3}"
[ -x "$python" ] || die "no Python 3.12 at '$python' (set PYTHON312 to a python3.12 executable)"

# The [build-system] requires of pyproject.toml, one per line (e.g. scikit-build-core>=0.10).
requires_text="$("$python" -c '
import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["build-system"]["requires"]))')" \
  || die "could not read [build-system] requires from pyproject.toml with $python"
mapfile -t requires <<<"$requires_text"
[ "${#requires[@]}" -gt 0 ] || die "pyproject.toml lists no build requirements"

# Which of them are missing from that Python, or installed at a version they exclude.
missing="$("$python" - "${requires[@]}" <<'PY'
import importlib.metadata, sys
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
for text in sys.argv[1:]:
    req = Requirement(text)
    try:
        version = importlib.metadata.version(req.name)
    except importlib.metadata.PackageNotFoundError:
        print(text); continue
    if not req.specifier.contains(version, prereleases=True):
        print(text)
PY
)" || die "could not check the build requirements in $python"
if [ -n "$missing" ]; then
  mapfile -t missing_list <<<"$missing"
  log "$python lacks the build requirements ${missing_list[*]}: installing them with pip"
  "$python" -m pip --version >/dev/null 2>&1 || "$python" -m ensurepip --upgrade \
    || die "$python has no pip (and ensurepip failed)"
  "$python" -m pip install -q "${missing_list[@]}" \
    || die "pip install ${missing_list[*]} into $python failed (no package index here? install them by hand)"
fi
log "building the wheel with $python ($("$python" -c '
import importlib.metadata as m
print(", ".join(n + " " + m.version(n) for n in ("scikit-build-core", "nanobind")))'))"

rm -f .whl/wideattn-*.whl
WIDEATTN_CUDA=ON WIDEATTN_BLAS_STATIC=ON WIDEATTN_NATIVE=OFF CMAKE_BUILD_PARALLEL_LEVEL="${JOBS:-2}" \
  "$python" -m pip wheel . --no-build-isolation --no-deps -w .whl -C build-dir=build/python-cp312-cuda
ls -l .whl/wideattn-*.whl >&2
