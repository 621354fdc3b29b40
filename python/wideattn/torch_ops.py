"""PyTorch custom operators: torch.ops.wideattn.attention (functional: allocates out and lse)
and torch.ops.wideattn.attention_out (writes given out/lse), with fake implementations for
shape propagation, so calls work under torch.compile(fullgraph=True) and in CUDA graph capture.

Registered on first use (importing this module does not import torch). query_offsets and
kv_lengths are host int lists: under torch.compile they are constants of the graph.
"""


import math
from typing import Any, List, Optional, Sequence, Tuple

from . import _frameworks as fw

_registered: Optional[bool] = None


def available() -> bool:
    """Whether PyTorch is importable; registers the operators on the first call."""
    global _registered
    if _registered is None:
        try:
            import torch  # noqa: F401
        except ImportError:
            _registered = False
        else:
            _register()
            _registered = True
    return _registered


def _register() -> None:
    import torch

    from . import _api

    def run(q, k_cache, v_cache, out, lse, query_offsets, kv_lengths, causal, window,
            ring_length, ring_offset, tree_start, tree_end, tree_height, sinks, softcap, scale,
            kernel) -> None:
        tree = None if tree_start is None else (tree_start, tree_end, tree_height)
        _api.attention_into(q, k_cache, v_cache, out, lse, query_offsets, kv_lengths, causal,
                            window, ring_length, ring_offset, tree, sinks, softcap,
                            None if math.isnan(scale) else scale, kernel)

    @torch.library.custom_op("wideattn::attention", mutates_args=(), device_types=("cpu", "cuda"))
    def attention_op(
        q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
        query_offsets: List[int], kv_lengths: List[int], causal: bool, window: int,
        ring_length: int, ring_offset: int, tree_start: Optional[torch.Tensor],
        tree_end: Optional[torch.Tensor], tree_height: Optional[torch.Tensor],
        sinks: Optional[torch.Tensor], softcap: float, scale: float, kernel: str,
        return_lse: bool,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
        lse_shape = (q.shape[0], q.shape[1]) if return_lse else (0,)
        lse = torch.empty(lse_shape, dtype=torch.float32, device=q.device)
        run(q, k_cache, v_cache, out, lse if return_lse else None, query_offsets, kv_lengths,
            causal, window, ring_length, ring_offset, tree_start, tree_end, tree_height, sinks,
            softcap, scale, kernel)
        return out, lse

    @attention_op.register_fake
    def _(q, k_cache, v_cache, query_offsets, kv_lengths, causal, window, ring_length,
          ring_offset, tree_start, tree_end, tree_height, sinks, softcap, scale, kernel,
          return_lse):
        out = q.new_empty(q.shape)
        lse_shape = (q.shape[0], q.shape[1]) if return_lse else (0,)
        return out, q.new_empty(lse_shape, dtype=torch.float32)

    @torch.library.custom_op("wideattn::attention_out", mutates_args=("out", "lse"),
                             device_types=("cpu", "cuda"))
    def attention_out_op(
        q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, out: torch.Tensor,
        lse: Optional[torch.Tensor], query_offsets: List[int], kv_lengths: List[int],
        causal: bool, window: int, ring_length: int, ring_offset: int,
        tree_start: Optional[torch.Tensor], tree_end: Optional[torch.Tensor],
        tree_height: Optional[torch.Tensor], sinks: Optional[torch.Tensor], softcap: float,
        scale: float, kernel: str,
    ) -> None:
        run(q, k_cache, v_cache, out, lse, query_offsets, kv_lengths, causal, window,
            ring_length, ring_offset, tree_start, tree_end, tree_height, sinks, softcap, scale,
            kernel)

    @attention_out_op.register_fake
    def _(q, k_cache, v_cache, out, lse, query_offsets, kv_lengths, causal, window, ring_length,
          ring_offset, tree_start, tree_end, tree_height, sinks, softcap, scale, kernel):
        return None


def _common(query_offsets: Any, kv_lengths: Any, tree: Any, scale: Optional[float]) -> tuple:
    offsets = fw.host_int32(query_offsets, "query_offsets")
    lengths = fw.host_int32(kv_lengths, "kv_lengths")
    if tree is None:
        tree_parts = (None, None, None)
    elif isinstance(tree, (tuple, list)) and len(tree) == 3:
        tree_parts = tuple(tree)
    else:
        raise TypeError("tree must be a tuple (tree_start, tree_end, tree_height) of int32 tensors")
    return offsets, lengths, tree_parts, math.nan if scale is None else float(scale)


def attention(
    q: Any,
    k_cache: Any,
    v_cache: Any,
    *,
    query_offsets: Sequence[int],
    kv_lengths: Sequence[int],
    return_lse: bool = False,
    causal: bool = True,
    window: int = 0,
    ring_length: int = 0,
    ring_offset: int = 0,
    tree: Optional[Tuple[Any, Any, Any]] = None,
    sinks: Optional[Any] = None,
    softcap: float = 0.0,
    scale: Optional[float] = None,
    kernel: str = "auto",
) -> Any:
    """wideattn.attention for PyTorch tensors through torch.ops.wideattn.attention (same
    arguments and shapes); returns out, or (out, lse) with return_lse."""
    if not available():
        raise ImportError("wideattn.torch_ops needs PyTorch")
    import torch

    offsets, lengths, (ts, te, th), scale_value = _common(query_offsets, kv_lengths, tree, scale)
    out, lse = torch.ops.wideattn.attention(
        q, k_cache, v_cache, offsets, lengths, bool(causal), int(window), int(ring_length),
        int(ring_offset), ts, te, th, sinks, float(softcap), scale_value, str(kernel),
        bool(return_lse))
    return (out, lse) if return_lse else out


def attention_out(
    q: Any,
    k_cache: Any,
    v_cache: Any,
    out: Any,
    lse: Optional[Any] = None,
    *,
    query_offsets: Sequence[int],
    kv_lengths: Sequence[int],
    causal: bool = True,
    window: int = 0,
    ring_length: int = 0,
    ring_offset: int = 0,
    tree: Optional[Tuple[Any, Any, Any]] = None,
    sinks: Optional[Any] = None,
    softcap: float = 0.0,
    scale: Optional[float] = None,
    kernel: str = "auto",
) -> None:
    """Writes attention into `out` [total_tokens, q_heads, head_dim] (and `lse`
    [total_tokens, q_heads] float32 when given) through torch.ops.wideattn.attention_out."""
    if not available():
        raise ImportError("wideattn.torch_ops needs PyTorch")
    import torch

    offsets, lengths, (ts, te, th), scale_value = _common(query_offsets, kv_lengths, tree, scale)
    torch.ops.wideattn.attention_out(
        q, k_cache, v_cache, out, lse, offsets, lengths, bool(causal), int(window),
        int(ring_length), int(ring_offset), ts, te, th, sinks, float(softcap), scale_value,
        str(kernel))
