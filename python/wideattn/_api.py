"""wideattn.attention and wideattn.plan: the typed, documented front of the extension."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple, Union

from . import _frameworks as fw
from ._native import native

ArrayLike = Any  # a PyTorch tensor, NumPy/CuPy/JAX array, or any DLPack producer
IntSequence = Union[Sequence[int], Any]  # a list/tuple/range or a host int array

KERNELS = ("auto", "single_pass", "two_pass", "prefill_unfused")


@dataclass(frozen=True)
class Plan:
    """What dispatch chose for one problem on one device.

    kernel: "single_pass", "two_pass" or "prefill_unfused".
    num_splits: KV splits of two_pass (1 otherwise).
    query_rows_per_chunk: prefill_unfused's suffix tokens per chunk (0 otherwise).
    workspace_bytes: scratch the kernel uses (held by wideattn's per-device Context).
    reason: one line saying why.
    """

    kernel: str
    num_splits: int
    query_rows_per_chunk: int
    workspace_bytes: int
    reason: str


def _tree_parts(tree: Optional[Tuple[ArrayLike, ArrayLike, ArrayLike]]) -> Tuple[Any, Any, Any]:
    if tree is None:
        return None, None, None
    if not isinstance(tree, (tuple, list)) or len(tree) != 3:
        raise TypeError("tree must be a tuple (tree_start, tree_end, tree_height) of int32 arrays")
    return tree[0], tree[1], tree[2]


def _scale_value(scale: Optional[float]) -> float:
    if scale is None:
        return math.nan
    scale = float(scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale = {scale}, expected a finite value > 0 (None: 1/sqrt(head_dim))")
    return scale


def _check_kernel(kernel: str) -> str:
    if kernel not in KERNELS and kernel != "automatic":
        raise ValueError(f"kernel = {kernel!r}, expected one of {', '.join(map(repr, KERNELS))}")
    return kernel


def _check_device(call: fw.Call) -> None:
    if call.device_type not in ("cpu", "cuda"):
        raise ValueError(
            f"{call.reference_name} is on {call.device_type}; wideattn runs on CPU memory and CUDA devices"
        )


def attention(
    q: ArrayLike,
    k_cache: ArrayLike,
    v_cache: ArrayLike,
    *,
    query_offsets: IntSequence,
    kv_lengths: IntSequence,
    out: Optional[ArrayLike] = None,
    lse: Optional[ArrayLike] = None,
    return_lse: bool = False,
    causal: bool = True,
    window: int = 0,
    ring_length: int = 0,
    ring_offset: int = 0,
    tree: Optional[Tuple[ArrayLike, ArrayLike, ArrayLike]] = None,
    sinks: Optional[ArrayLike] = None,
    softcap: float = 0.0,
    scale: Optional[float] = None,
    kernel: str = "auto",
) -> Any:
    """Attention of new tokens over a contiguous KV cache, on the arrays' own device, without copies.

    Shapes (strided views are accepted; the last dimension must be contiguous):
      q        [total_tokens, q_heads, head_dim]       float32, float16 or bfloat16
      k_cache  [batch, capacity, kv_heads, head_dim]    same dtype as q
      v_cache  [batch, capacity, kv_heads, head_dim]    same dtype as q
      out      [total_tokens, q_heads, head_dim]        same dtype as q; allocated when None
      lse      [total_tokens, q_heads]                  float32; allocated when return_lse
      sinks    [q_heads]                                float32, one extra logit per head
      tree     (tree_start, tree_end, tree_height), each int32 [total_tokens]
    query_offsets: host ints [batch + 1], from 0 to total_tokens: sequence b owns q rows
      query_offsets[b]:query_offsets[b+1] (its suffix, the new tokens).
    kv_lengths: host ints [batch]: sequence b's cache rows, suffix included (its new keys and
      values are already written at rows kv_lengths[b] - suffix_length ...).

    q_heads must be a multiple of kv_heads (GQA). head_dim: 64, 128, 256 or 512 on CUDA; a
    multiple of 8 up to 512 on the CPU. causal/window/ring_length/ring_offset/tree select the
    mask (see include/wideattn/problem.h, MaskSpec); softcap > 0 applies
    softcap * tanh(logit / softcap); scale defaults to 1/sqrt(head_dim) (Gemma 4 uses 1.0).
    kernel: "auto" (dispatch chooses), "single_pass", "two_pass" or "prefill_unfused".

    PyTorch CUDA tensors run on torch.cuda.current_stream(); CuPy arrays on CuPy's current
    stream. PyTorch tensors without `out`/`lse` go through the custom operator
    torch.ops.wideattn.attention, so the call works under torch.compile(fullgraph=True) and in
    CUDA graph capture (run it once eagerly before capturing, so the workspace is sized).

    Returns out, or (out, lse) when return_lse is set or lse is given.
    Raises TypeError/ValueError naming the argument for wrong dtypes, shapes, devices or strides;
    ValueError for invalid problems, NotImplementedError for unsupported ones, MemoryError,
    RuntimeError for backend failures.
    """
    _check_kernel(kernel)
    want_lse = return_lse or lse is not None
    if fw.framework(q) == fw.TORCH:
        from . import torch_ops

        if torch_ops.available():
            options = dict(query_offsets=query_offsets, kv_lengths=kv_lengths, causal=causal,
                           window=window, ring_length=ring_length, ring_offset=ring_offset,
                           tree=tree, sinks=sinks, softcap=softcap, scale=scale, kernel=kernel)
            if out is None and lse is None:
                return torch_ops.attention(q, k_cache, v_cache, return_lse=want_lse, **options)
            import torch

            if out is None:
                out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
            if want_lse and lse is None:
                lse = torch.empty(q.shape[:2], dtype=torch.float32, device=q.device)
            torch_ops.attention_out(q, k_cache, v_cache, out, lse, **options)
            return (out, lse) if want_lse else out
    offsets = fw.host_int32(query_offsets, "query_offsets")
    lengths = fw.host_int32(kv_lengths, "kv_lengths")
    call = fw.Call(q, "q")
    _check_device(call)
    shape = getattr(q, "shape", None)
    if shape is None or len(shape) != 3:
        raise ValueError(f"attention: q must have 3 dimensions [total_tokens, q_heads, head_dim], got shape {shape}")
    inputs = (call.export(q, "q"), call.export(k_cache, "k_cache"), call.export(v_cache, "v_cache"))
    if out is None:
        out = call.empty(shape, q.dtype, "out")
    if want_lse and lse is None:
        lse = call.empty((shape[0], shape[1]), "float32", "lse")
    tree_start, tree_end, tree_height = _tree_parts(tree)
    native.attention(
        *inputs, call.export(out, "out"), call.export(lse, "lse"), offsets, lengths, bool(causal),
        fw.check_int32(window, "window"), fw.check_int32(ring_length, "ring_length"),
        fw.check_int32(ring_offset, "ring_offset"), call.export(tree_start, "tree_start"),
        call.export(tree_end, "tree_end"), call.export(tree_height, "tree_height"),
        call.export(sinks, "sinks"), float(softcap), _scale_value(scale), kernel, call.stream(),
        call.u16_is_bf16)
    if call.needs_sync():
        native.synchronize("cuda", call.device_index, 0)
    out = call.finish(out)
    if want_lse:
        return out, call.finish(lse)
    return out


def plan(
    q: ArrayLike,
    k_cache: ArrayLike,
    v_cache: ArrayLike,
    *,
    query_offsets: IntSequence,
    kv_lengths: IntSequence,
    out: Optional[ArrayLike] = None,
    lse: Optional[ArrayLike] = None,
    causal: bool = True,
    window: int = 0,
    ring_length: int = 0,
    ring_offset: int = 0,
    tree: Optional[Tuple[ArrayLike, ArrayLike, ArrayLike]] = None,
    sinks: Optional[ArrayLike] = None,
    softcap: float = 0.0,
    scale: Optional[float] = None,
    kernel: str = "auto",
) -> Plan:
    """The kernel, KV splits, workspace bytes and reason that `attention` would use for these
    arguments (same shapes as `attention`) on their device. Pure: reads no array data and
    allocates nothing (`out` may be omitted)."""
    _check_kernel(kernel)
    offsets = fw.host_int32(query_offsets, "query_offsets")
    lengths = fw.host_int32(kv_lengths, "kv_lengths")
    call = fw.Call(q, "q")
    _check_device(call)
    tree_start, tree_end, tree_height = _tree_parts(tree)
    result = native.plan(
        call.export(q, "q"), call.export(k_cache, "k_cache"), call.export(v_cache, "v_cache"),
        call.export(out, "out"), call.export(lse, "lse"), offsets, lengths, bool(causal),
        fw.check_int32(window, "window"), fw.check_int32(ring_length, "ring_length"),
        fw.check_int32(ring_offset, "ring_offset"), call.export(tree_start, "tree_start"),
        call.export(tree_end, "tree_end"), call.export(tree_height, "tree_height"),
        call.export(sinks, "sinks"), float(softcap), _scale_value(scale), kernel,
        call.u16_is_bf16)
    return Plan(*result)


def attention_into(
    q: ArrayLike,
    k_cache: ArrayLike,
    v_cache: ArrayLike,
    out: ArrayLike,
    lse: Optional[ArrayLike],
    query_offsets: Sequence[int],
    kv_lengths: Sequence[int],
    causal: bool,
    window: int,
    ring_length: int,
    ring_offset: int,
    tree: Optional[Tuple[ArrayLike, ArrayLike, ArrayLike]],
    sinks: Optional[ArrayLike],
    softcap: float,
    scale: Optional[float],
    kernel: str,
) -> Plan:
    """`attention` writing into given `out` (and `lse`) with every argument explicit and no
    framework routing; returns the plan used. The PyTorch operator calls this."""
    call = fw.Call(q, "q")
    _check_device(call)
    tree_start, tree_end, tree_height = _tree_parts(tree)
    result = native.attention(
        call.export(q, "q"), call.export(k_cache, "k_cache"), call.export(v_cache, "v_cache"),
        call.export(out, "out"), call.export(lse, "lse"), fw.host_int32(query_offsets, "query_offsets"),
        fw.host_int32(kv_lengths, "kv_lengths"), bool(causal), fw.check_int32(window, "window"),
        fw.check_int32(ring_length, "ring_length"), fw.check_int32(ring_offset, "ring_offset"),
        call.export(tree_start, "tree_start"), call.export(tree_end, "tree_end"),
        call.export(tree_height, "tree_height"), call.export(sinks, "sinks"), float(softcap),
        _scale_value(scale), kernel, call.stream(), call.u16_is_bf16)
    return Plan(*result)
