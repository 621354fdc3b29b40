"""Loads the _wideattn extension. A build with the CUDA backend needs the CUDA runtime and
cuBLASLt shared libraries: when the loader cannot find them (no CUDA toolkit on the library path),
they are preloaded from NVIDIA's pip packages (nvidia/cu13/lib, nvidia/cuda_runtime/lib,
nvidia/cublas/lib, as PyTorch and CuPy install them) and the import is retried."""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from types import ModuleType

_LIBRARIES = ("libcudart.so.*[0-9]", "libcublasLt.so.*[0-9]")
_SUBDIRS = ("nvidia/cu13/lib", "nvidia/cu12/lib", "nvidia/cuda_runtime/lib", "nvidia/cublas/lib")


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


def _load() -> ModuleType:
    try:
        from . import _wideattn
    except ImportError as error:
        message = str(error)
        if ("libcudart" not in message and "libcublas" not in message) or not _preload_cuda_libraries():
            raise
        from . import _wideattn
    return _wideattn


native = _load()
