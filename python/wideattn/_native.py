"""Loads the _wideattn extension.

Where from: the installed package (pip install .); else, when the package is used from the
source tree (PYTHONPATH=python), the newest `_wideattn<this Python's ABI suffix>` under
$WIDEATTN_BUILD_DIR (a CMake build configured with -DWIDEATTN_PYTHON=ON) or, failing that, under
the repository's build/ folder (where `pip install .` builds).

A build with the CUDA backend needs the CUDA runtime and cuBLASLt shared libraries: when the
loader cannot find them (no CUDA toolkit on the library path), they are preloaded from NVIDIA's
pip packages (nvidia/cu13/lib, nvidia/cuda_runtime/lib, nvidia/cublas/lib, as PyTorch and CuPy
install them) and the import is retried."""

from __future__ import annotations

import ctypes
import glob
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType
from typing import Callable, Optional

_LIBRARIES = ("libcudart.so.*[0-9]", "libcublasLt.so.*[0-9]")
_SUBDIRS = ("nvidia/cu13/lib", "nvidia/cu12/lib", "nvidia/cuda_runtime/lib", "nvidia/cublas/lib")
_NAME = "wideattn._wideattn"


def _preload_cuda_libraries() -> bool:
    loaded = False
    roots = [p for p in sys.path if p and os.path.isdir(p)]
    for pattern in _LIBRARIES:
        for root in roots:
            candidates = []
            for sub in _SUBDIRS:
                candidates += sorted(glob.glob(os.path.join(root, sub, pattern)))
            if candidates:
                ctypes.CDLL(candidates[-1], mode=ctypes.RTLD_GLOBAL)
                loaded = True
                break
    return loaded


def _with_cuda_preload(load: Callable[[], ModuleType]) -> ModuleType:
    try:
        return load()
    except ImportError as error:
        message = str(error)
        if ("libcudart" not in message and "libcublas" not in message) or not _preload_cuda_libraries():
            raise
        return load()


def _from_package() -> ModuleType:
    from . import _wideattn

    return _wideattn


def _build_dir_extension() -> Optional[str]:
    here = os.path.dirname(os.path.abspath(__file__))
    roots = [os.environ.get("WIDEATTN_BUILD_DIR", "")]
    if os.path.basename(os.path.dirname(here)) == "python":  # <repo>/python/wideattn
        roots.append(os.path.join(os.path.dirname(os.path.dirname(here)), "build"))
    for root in roots:
        if not root or not os.path.isdir(root):
            continue
        found = []
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            found += glob.glob(os.path.join(root, "**", "_wideattn" + suffix), recursive=True)
        if found:
            return max(found, key=os.path.getmtime)
    return None


def _from_file(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(_NAME, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[_NAME] = module
    return module


def _load() -> ModuleType:
    try:
        return _with_cuda_preload(_from_package)
    except ImportError as error:
        path = _build_dir_extension()
        if path is None:
            raise ImportError(
                f"wideattn's extension _wideattn is not built or does not load ({error}). Install the "
                "package (pip install . at the repository root), or set WIDEATTN_BUILD_DIR to a CMake "
                "build configured with -DWIDEATTN_PYTHON=ON"
            ) from error
        return _with_cuda_preload(lambda: _from_file(path))


native = _load()
