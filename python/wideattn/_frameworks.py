"""What wideattn needs to know about each array framework: how to hand an array to the extension
without a copy, which stream to run on, and how to allocate an output of the caller's kind.

Supported: PyTorch tensors, NumPy arrays (bfloat16 and float8_e4m3fn through ml_dtypes), CuPy
arrays and JAX arrays; any other object with ``__dlpack__`` is accepted as an input.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any, Sequence, Tuple

import numpy as np

TORCH = "torch"
NUMPY = "numpy"
CUPY = "cupy"
JAX = "jax"
OTHER = "other"

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1

# The arrays that may hold fp8 e4m3 (KV caches): a NumPy float8_e4m3fn array there is handed over
# as its uint8 view (NumPy's DLPack export has no float8), and the call reads uint8 as e4m3.
_CACHE_NAMES = ("k_cache", "v_cache")


def framework(x: Any) -> str:
    """The framework an array belongs to, from its type's module."""
    module = type(x).__module__
    if module.startswith("torch"):
        return TORCH
    if module.startswith("numpy"):
        return NUMPY
    if module.startswith("cupy"):
        return CUPY
    if module.startswith(("jax", "jaxlib")):
        return JAX
    return OTHER


def _is_numpy_bfloat16(dtype: Any) -> bool:
    # The kind first: dtype.name is a slow Python-level property (ml_dtypes' kind is "V").
    return isinstance(dtype, np.dtype) and dtype.kind not in "biufc" and dtype.name == "bfloat16"


def _is_numpy_float8(dtype: Any) -> bool:
    # ml_dtypes' 8-bit (and narrower) floats: kind "V", or "f" for some (float8_e5m2).
    return isinstance(dtype, np.dtype) and dtype.itemsize == 1 and dtype.kind in "Vf"


def numpy_bfloat16() -> Any:
    """NumPy's bfloat16 dtype (from ml_dtypes), or raises TypeError when ml_dtypes is missing."""
    try:
        import ml_dtypes
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise TypeError("bfloat16 NumPy arrays need the ml_dtypes package (pip install ml_dtypes)") from error
    return np.dtype(ml_dtypes.bfloat16)


class Call:
    """The arrays of one call, exported for the extension, and the device and stream they use.

    ``export(x, name)`` returns what the extension imports without a copy: the array itself
    (NumPy, CuPy, JAX, other DLPack producers), a uint16 view of a NumPy bfloat16 array (then
    ``u16_is_bf16`` is set), a uint8 view of a NumPy float8_e4m3fn KV cache (then
    ``u8_is_fp8`` is set: ``kv_cache_dtype`` passes that on), or a DLPack capsule of a PyTorch
    tensor made without stream synchronisation (the call runs on the tensor's current stream
    anyway, and synchronising through the default stream would break CUDA graph capture).
    """

    def __init__(self, reference: Any, reference_name: str) -> None:
        self.kind = framework(reference)
        self.reference = reference
        self.reference_name = reference_name
        self.u16_is_bf16 = False
        self.u8_is_fp8 = False
        self.device_type, self.device_index = device_of(reference)

    def export(self, x: Any, name: str) -> Any:
        if x is None:
            return None
        kind = framework(x)
        if kind == TORCH:
            import torch.utils.dlpack

            return torch.utils.dlpack.to_dlpack(x)  # reads, no autograd: no detach() needed
        if kind == NUMPY and isinstance(x, np.ndarray):
            if _is_numpy_bfloat16(x.dtype):
                self.u16_is_bf16 = True
                return x.view(np.uint16)
            if x.dtype == np.uint16:
                raise TypeError(f"{name} has dtype uint16, expected float32, float16 or bfloat16")
            if _is_numpy_float8(x.dtype):
                if name in _CACHE_NAMES and x.dtype.name == "float8_e4m3fn":
                    self.u8_is_fp8 = True
                    return x.view(np.uint8)
                raise TypeError(
                    f"{name} has dtype {x.dtype.name}, expected "
                    + ("float8_e4m3fn (the fp8 cache's format), or the model's float32, float16 or "
                       "bfloat16" if name in _CACHE_NAMES else
                       "float32, float16 or bfloat16 (fp8 is a storage type of the KV cache only)"))
            return x
        if kind == JAX:
            x.block_until_ready()
        return x

    def kv_cache_dtype(self, kv_cache_dtype: Any) -> Any:
        """`kv_cache_dtype` for the extension, once the caches are exported: "fp8_e4m3" when a
        NumPy float8_e4m3fn cache went over as uint8 and the caller left it "auto"."""
        if self.u8_is_fp8 and (kv_cache_dtype is None or kv_cache_dtype == "auto"):
            return "fp8_e4m3"
        return kv_cache_dtype

    def export_scale(self, x: Any, name: str, function: str) -> Any:
        """k_scale / v_scale for the extension: None, an array exported like the others, or a
        Python number: a float on the CPU (the extension keeps it for the call), a new float32 [1]
        array on the device otherwise (device memory the kernels can read; the caller's
        framework allocates it on its stream, so the call, or a capture of it, holds it)."""
        if x is None:
            return None
        if isinstance(x, numbers.Real) and not isinstance(x, bool):
            value = check_scale(x, name, function)
            if self.device_type == "cpu":
                return value
            array = self.empty((1,), "float32", name)
            array[...] = value
            return self.export(array, name)
        return self.export(x, name)

    def stream(self) -> int:
        """The CUDA stream to run on: PyTorch's or CuPy's current stream; 0 otherwise."""
        if self.device_type != "cuda":
            return 0
        if self.kind == TORCH:
            import torch

            raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
            if raw is not None:
                return int(raw(self.device_index))
            return int(torch.cuda.current_stream(self.reference.device).cuda_stream)
        if self.kind == CUPY:
            import cupy

            return int(cupy.cuda.get_current_stream().ptr)
        return 0

    def needs_sync(self) -> bool:
        """JAX does not share its streams: wait for wideattn's work before JAX reads the output."""
        return self.kind == JAX and self.device_type == "cuda"

    def empty(self, shape: Sequence[int], dtype: Any, name: str) -> Any:
        """A new array of `shape` and `dtype` (a dtype of the reference array's framework, or one
        of "float32", "float16", "bfloat16", "int32") on the reference's device."""
        shape = tuple(int(s) for s in shape)
        if self.kind == TORCH:
            import torch

            return torch.empty(shape, dtype=_torch_dtype(dtype), device=self.reference.device)
        if self.kind == CUPY:
            import cupy

            with cupy.cuda.Device(self.device_index):
                return cupy.empty(shape, dtype=_numpy_dtype(dtype))
        if self.kind == JAX and self.device_type == "cuda":
            return _jax_gpu_buffer(shape, dtype, self.device_index, name)
        if self.device_type == "cpu":
            return np.empty(shape, dtype=_numpy_dtype(dtype))
        raise TypeError(
            f"cannot allocate {name} for a {type(self.reference).__qualname__} on {self.device_type}: "
            f"pass {name}= explicitly"
        )

    def finish(self, x: Any) -> Any:
        """Converts an array allocated by `empty` for a JAX caller back into a JAX array."""
        if self.kind == JAX and x is not None and framework(x) != JAX:
            import jax.dlpack

            try:
                return jax.dlpack.from_dlpack(x)
            except BufferError:  # NumPy's bfloat16 has no DLPack export: copy (CPU only)
                import jax.numpy as jnp

                return jnp.asarray(x)
        return x


def device_of(x: Any) -> Tuple[str, int]:
    """("cpu", 0) or ("cuda", index) for an array of any supported framework."""
    kind = framework(x)
    if kind == TORCH:
        device = x.device
        if device.type == "cuda":
            return "cuda", int(device.index if device.index is not None else 0)
        return device.type, 0
    if kind == NUMPY:
        return "cpu", 0
    if kind == CUPY:
        return "cuda", int(x.device.id)
    if hasattr(x, "__dlpack_device__"):
        device_type, index = x.__dlpack_device__()
        if int(device_type) in (1, 3):  # kDLCPU, kDLCUDAHost
            return "cpu", 0
        if int(device_type) in (2, 13):  # kDLCUDA, kDLCUDAManaged
            return "cuda", int(index)
        return f"dlpack device type {int(device_type)}", int(index)
    return "cpu", 0


_DTYPE_NAMES = ("float32", "float16", "bfloat16", "int32")


def dtype_name(dtype: Any) -> str:
    """"float32", "float16", "bfloat16" or "int32" for a dtype of any framework, or its name."""
    if isinstance(dtype, str):
        return dtype
    if isinstance(dtype, type) and issubclass(dtype, np.generic):  # np.float16, ml_dtypes.bfloat16
        return np.dtype(dtype).name
    name = getattr(dtype, "name", None) or str(dtype)
    name = name.replace("torch.", "")
    return name


def _numpy_dtype(dtype: Any) -> Any:
    name = dtype_name(dtype)
    if name == "bfloat16":
        return numpy_bfloat16()
    if name not in _DTYPE_NAMES:
        raise TypeError(f"dtype {name} is not one wideattn handles ({', '.join(_DTYPE_NAMES)})")
    return np.dtype(name)


def _torch_dtype(dtype: Any) -> Any:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    name = dtype_name(dtype)
    if name not in _DTYPE_NAMES:
        raise TypeError(f"dtype {name} is not one wideattn handles ({', '.join(_DTYPE_NAMES)})")
    return getattr(torch, name)


def _jax_gpu_buffer(shape: Tuple[int, ...], dtype: Any, index: int, name: str) -> Any:
    """JAX arrays are immutable: outputs for JAX callers are written into a CuPy (or PyTorch)
    buffer that `Call.finish` hands back to JAX through DLPack, without a copy."""
    name_of_dtype = dtype_name(dtype)
    try:
        import cupy

        if name_of_dtype != "bfloat16":
            with cupy.cuda.Device(index):
                return cupy.empty(shape, dtype=np.dtype(name_of_dtype))
    except ImportError:
        pass
    try:
        import torch

        return torch.empty(shape, dtype=getattr(torch, name_of_dtype), device=f"cuda:{index}")
    except ImportError:
        pass
    raise TypeError(f"allocating {name} for a JAX array on the GPU needs CuPy or PyTorch: pass {name}= explicitly")


def host_int32(values: Any, name: str) -> list:
    """`values` (a list, tuple, range, or a host array of PyTorch, NumPy, JAX) as a list of
    Python ints in int32 range. Device arrays are refused: wideattn reads this on the host."""
    if values is None:
        raise TypeError(f"{name} is required: a host sequence of int32")
    if isinstance(values, (list, tuple, range)):
        return _int32_list(values, name)
    kind = framework(values)
    if kind in (TORCH, CUPY, JAX) or hasattr(values, "__dlpack_device__"):
        device_type, index = device_of(values)
        if device_type != "cpu":
            raise ValueError(
                f"{name} must be on the host (a list or a CPU array), got an array on "
                f"{device_type}:{index}; wideattn's dispatch reads it on the host"
            )
    if hasattr(values, "tolist"):
        values = values.tolist()
    if isinstance(values, (int, float)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence of int32, got {type(values).__qualname__}")
    return _int32_list(values, name)


def _int32_list(values: Any, name: str) -> list:
    result = []
    for i, v in enumerate(values):
        try:
            v = operator.index(v)
        except TypeError:
            raise TypeError(f"{name}[{i}] = {v!r} is not an integer") from None
        if not _INT32_MIN <= v <= _INT32_MAX:
            raise ValueError(f"{name}[{i}] = {v} does not fit in int32")
        result.append(v)
    return result


def check_scale(value: Any, name: str, function: str) -> float:
    """A Python number given as k_scale / v_scale, as a float: finite and > 0 (the extension says
    the same of the values it reads)."""
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{function}: {name} = {v!r}, expected a finite value > 0 (a stored value x "
                         f"stands for x * {name})")
    return v


def check_int32(value: Any, name: str) -> int:
    """A Python int in int32 range, or raises TypeError/ValueError naming `name`."""
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__qualname__}") from None
    if not _INT32_MIN <= v <= _INT32_MAX:
        raise ValueError(f"{name} = {v} does not fit in int32")
    return v


def window_from_left(window: Any, window_left: Any, causal: Any, function: str) -> int:
    """`window` from FlashInfer's `window_left` (given, not None): the query sees window_left keys
    before it plus itself, so window = window_left + 1; -1: no window (0). Raises TypeError when
    `window` is given too (non-zero), ValueError for window_left < -1, and ValueError for
    window_left >= 0 with a bidirectional mask: FlashInfer's non-causal window_left hides only the
    keys more than window_left before the query (none after it), which wideattn's symmetric
    bidirectional window (|qpos - kpos| <= window / 2) cannot express."""
    if window != 0:
        raise TypeError(
            f"{function}: give window or window_left, not both (got window={window!r}, "
            f"window_left={window_left!r}; window_left=W-1 means window=W)")
    try:
        left = operator.index(window_left)
    except TypeError:
        raise TypeError(f"{function}: window_left must be an int or None, got "
                        f"{type(window_left).__qualname__}") from None
    if left == -1:
        return 0
    if left < -1:
        raise ValueError(f"{function}: window_left = {left}, expected -1 (no window) or >= 0 (the "
                         "keys a query sees before itself)")
    if left >= _INT32_MAX:
        raise ValueError(f"{function}: window_left = {left}, expected at most {_INT32_MAX - 1} "
                         "(window = window_left + 1 must fit in int32)")
    if not causal:
        raise ValueError(
            f"{function}: window_left = {left} with causal=False: FlashInfer's window_left is a "
            "left-only window (with a non-causal mask it still sees every key after the query), "
            "while wideattn's bidirectional window is symmetric (|qpos - kpos| <= window / 2): "
            "pass window=2*h for keys at most h positions away on either side, or "
            "window_left=-1 for none")
    return left + 1
