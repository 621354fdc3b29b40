"""wideattn: attention for LLM inference with wide heads (head_dim up to 512), on the CPU and
CUDA, called with PyTorch tensors, NumPy, CuPy or JAX arrays without copies (DLPack).

    import wideattn
    out = wideattn.attention(q, k_cache, v_cache, query_offsets=[0, n], kv_lengths=[n],
                             scale=1.0)

q [total_tokens, q_heads, head_dim]; k_cache, v_cache [batch, capacity, kv_heads, head_dim];
query_offsets [batch + 1] and kv_lengths [batch] are host ints. The work runs on the arrays'
device (PyTorch's current CUDA stream for torch tensors). See help(wideattn.attention).
wideattn.write_kv puts a step's new keys and values into the cache (vLLM's slot mapping);
wideattn.merge_states combines partial results through their log-sum-exp. wideattn.PlannedDecode
plans decode steps once from bounds and runs them with metadata rewritten in place on the device
(CUDA graph capture and replay).
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

from ._api import KERNELS, Plan, attention, plan
from ._components import matmul, scatter_scores, scatter_values, softmax
from ._serving import merge_states, write_kv
from ._native import native as _native
from ._planned import PlannedDecode

__version__ = "0.1.0"

__all__ = [
    "KERNELS",
    "Plan",
    "PlannedDecode",
    "attention",
    "backend_available",
    "cuda_built",
    "device_info",
    "matmul",
    "merge_states",
    "plan",
    "register_transformers",
    "scatter_scores",
    "scatter_values",
    "softmax",
    "synchronize",
    "write_kv",
]

#: Whether this build of the extension contains the CUDA backend.
cuda_built: bool = bool(_native.cuda_built)


def register_transformers(name: str = "wideattn") -> str:
    """Registers wideattn in Hugging Face transformers' attention interface, so that
    `from_pretrained(..., attn_implementation=name)` runs the model's attention through it (see
    wideattn.transformers_integration). Imports transformers and torch on first use."""
    from .transformers_integration import register_transformers as register

    return register(name=name)


def backend_available(backend: str = "cuda") -> Tuple[bool, str]:
    """(available, reason): whether this build and machine can run `backend` ("cpu" or "cuda")."""
    return tuple(_native.backend_available(backend))  # type: ignore[return-value]


def device_info(device: Any = "cpu") -> Dict[str, Any]:
    """What dispatch reads about a device: "cpu", "cuda", "cuda:N", or a torch.device."""
    backend, index = _parse_device(device)
    return dict(_native.device_info(backend, index))


def synchronize(device: Any = "cuda", stream: int = 0) -> None:
    """Waits for the work queued on `stream` (a cudaStream_t as int; 0: the default stream)."""
    backend, index = _parse_device(device)
    _native.synchronize(backend, index, int(stream))


def _parse_device(device: Any) -> Tuple[str, int]:
    if not isinstance(device, str):
        kind = getattr(device, "type", None)
        index = getattr(device, "index", None)
        if kind is None:
            raise TypeError(f"device must be 'cpu', 'cuda', 'cuda:N' or a torch.device, got {device!r}")
        return kind, int(index or 0)
    kind, _, index = device.partition(":")
    return kind, int(index) if index else 0
