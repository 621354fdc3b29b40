"""wideattn.attention and wideattn.plan: the typed, documented front of the extension.

Per call, Python only routes the arrays and allocates the outputs; every argument is converted
and checked once, in the extension (python/src/attention_bindings.cpp). NumPy arrays go straight
in; PyTorch tensors go through wideattn.torch_ops (an eager fast path, or the custom operators
under torch.compile, fake tensors and the like); CuPy, JAX, NumPy bfloat16 and other DLPack
producers through _frameworks.Call, which knows their streams and output types.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from . import _frameworks as fw
from . import torch_ops
from ._native import native

ArrayLike = Any  # a PyTorch tensor, NumPy/CuPy/JAX array, or any DLPack producer
IntSequence = Union[Sequence[int], Any]  # a list/tuple/range or a host int array

KERNELS = ("auto", "single_pass", "two_pass", "prefill_unfused", "prefill_fused")

_ndarray = np.ndarray
_float32 = np.dtype(np.float32)
_empty = np.empty
_native_attention = native.attention
_Real = numbers.Real
_window_from_left = fw.window_from_left


@dataclass(frozen=True)
class Plan:
    """What dispatch chose for one problem on one device.

    kernel: "single_pass", "two_pass", "prefill_unfused" or "prefill_fused".
    num_splits: KV splits of two_pass (1 otherwise).
    query_rows_per_chunk: prefill_unfused's suffix tokens per chunk (0 otherwise).
    workspace_bytes: scratch the kernel uses (held by wideattn's per-device Context).
    reason: one line saying why.
    parts: for a batch that mixes decode steps (up to 8 new tokens) with prefill chunks, the runs
        of consecutive sequences that go to each kernel in the same call, as
        (first_sequence, sequences, kernel, num_splits); empty when one kernel serves the batch
        (then `kernel` is it; for a mixed batch `kernel` is the first prefill part's).
    """

    kernel: str
    num_splits: int
    query_rows_per_chunk: int
    workspace_bytes: int
    reason: str
    parts: Tuple[Tuple[int, int, str, int], ...] = ()


def _seqused_k(kv_lengths: Any, seqused_k: Any) -> Any:
    """seqused_k is kv_lengths under the engines' name: one of the two, not both."""
    if kv_lengths is not None:
        raise TypeError("attention: give kv_lengths or seqused_k (the same argument), not both")
    return seqused_k


def host_scale(x: Any, name: str, function: str) -> Any:
    """k_scale / v_scale for a call on the CPU: a Python number (NumPy scalars included) as a
    float, checked; anything else as is (arrays, checked by the extension)."""
    if x is None or type(x) is float:
        return x
    if isinstance(x, _Real) and not isinstance(x, bool):
        return fw.check_scale(x, name, function)
    return x


def _check_device(call: fw.Call) -> None:
    if call.device_type not in ("cpu", "cuda"):
        raise ValueError(
            f"{call.reference_name} is on {call.device_type}; wideattn runs on CPU memory and CUDA devices"
        )


def _export_tree(call: fw.Call, tree: Any) -> Any:
    """The tree's three arrays exported like the others; anything else as is (the extension
    raises the TypeError)."""
    if isinstance(tree, (tuple, list)) and len(tree) == 3:
        return (call.export(tree[0], "tree_start"), call.export(tree[1], "tree_end"),
                call.export(tree[2], "tree_height"))
    return tree


def attention(
    q: ArrayLike,
    k_cache: ArrayLike,
    v_cache: ArrayLike,
    *,
    query_offsets: IntSequence,
    kv_lengths: Optional[IntSequence] = None,
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
    block_table: Optional[ArrayLike] = None,
    kv_layout: str = "NHD",
    seqused_k: Optional[IntSequence] = None,
    k_scale: Optional[Union[float, ArrayLike]] = None,
    v_scale: Optional[Union[float, ArrayLike]] = None,
    kv_cache_dtype: str = "auto",
    window_left: Optional[int] = None,
    kv_splits: int = 0,
) -> Any:
    """Attention of new tokens over a contiguous or paged KV cache, on the arrays' own device,
    without copies.

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
      values are already written at rows kv_lengths[b] - suffix_length ...). seqused_k is the
      same argument under FlashAttention's / vLLM's name (give one of the two).

    Paged caches (vLLM's block_table): k_cache and v_cache are page pools, two separate strided
    views (e.g. kv_cache.unbind(0) or kv_cache[:, 0] / kv_cache[:, 1]) of
      kv_layout "NHD": [num_pages, page_size, kv_heads, head_dim], or
      kv_layout "HND": [num_pages, kv_heads, page_size, head_dim],
    and block_table [batch, max_pages] int32 (on the arrays' device) lists each sequence's pages:
    cache row i of sequence b is row i % page_size of page block_table[b, i // page_size]. The
    page size (a power of two up to 4096) comes from the pools' shape; entries past a sequence's
    last page are never read. On the CPU every entry read is checked; on CUDA an index outside
    the pools reads zeros. Paged prefill runs the unfused pipeline (not prefill_fused).

    q_heads must be a multiple of kv_heads (GQA). head_dim: 64, 128, 256 or 512 on CUDA; a
    multiple of 8 up to 512 on the CPU. causal/window/ring_length/ring_offset/tree select the
    mask (see include/wideattn/problem.h, MaskSpec); softcap > 0 applies
    softcap * tanh(logit / softcap); scale defaults to 1/sqrt(head_dim) (Gemma 4 uses 1.0).
    window (0: none): causal, a query sees the keys with 0 <= qpos - kpos < window (itself and
      window - 1 before it: a Hugging Face sliding_window W is window=W); causal=False, the
      keys with |qpos - kpos| <= window / 2.
    window_left: FlashInfer's spelling of the causal window, instead of `window` (vLLM passes
      FlashInfer window_left=W-1, FlashAttention window_size=(W-1, 0), for sliding_window W): a
      query sees window_left keys before it plus itself, i.e. window = window_left + 1; -1: no
      window; None (the default): `window` applies. Giving a non-zero `window` too is a
      TypeError, window_left < -1 a ValueError. With causal=False only -1 is accepted
      (ValueError otherwise): FlashInfer's non-causal window_left limits only the keys before
      the query, while wideattn's bidirectional window is symmetric; use `window` there.
    kernel: "auto" (dispatch chooses), "single_pass", "two_pass", "prefill_unfused" or
        "prefill_fused" (Hopper, head_dim 64/128/256/512, f16/bf16).
    kv_splits: 0 (the default) lets the plan choose how many parts each row's keys are split
      into (decode's two_pass, the fused prefill), from the device and the whole batch, so a
      sequence's result may differ in the last bits with the batch around it (within the
      tolerance of docs/reliability.md). 1 to 128 fixes the count: a sequence's output is then
      the same bits whatever the batch and the GPU's SM count (batch-invariant serving; 1:
      single_pass, more: two_pass; the unfused prefill has no splits and ignores it).

    fp8 KV caches (vLLM's kv_cache_dtype="fp8"): k_cache and v_cache may hold fp8 e4m3 (OCP
    E4M3FN: largest finite 448, no infinities) while q and out keep float32/float16/bfloat16:
    torch.float8_e4m3fn tensors, NumPy ml_dtypes.float8_e4m3fn arrays, or uint8 arrays of e4m3
    bytes with kv_cache_dtype="fp8_e4m3" (or "fp8"; "auto", the default, takes the caches'
    dtype, and refuses uint8). A stored value x stands for x * k_scale (keys) or x * v_scale
    (values), the scales of `write_kv`:
      k_scale, v_scale  None (1), a Python float, or a float32 array on the caches' device of
                        shape () or (1,) (one scale per cache, vLLM's layer._k_scale) or
                        (kv_heads,) (one per KV head; then both are per head or one is None).
    Scales must be finite and > 0 (checked for floats, and for CPU arrays). A float on a GPU is
    copied into a float32 [1] array on the caller's stream at every call: pass an array to avoid
    that. Scales with a 16/32-bit cache are a ValueError naming them. The CPU backend serves fp8
    caches; CUDA serves them for float16/bfloat16 q (decode steps on the tensor-core kernels,
    prefill on the unfused pipeline) and raises NotImplementedError naming kv.fp8 for float32 q.

    PyTorch CUDA tensors run on torch.cuda.current_stream(); CuPy arrays on CuPy's current
    stream. PyTorch tensors go through the custom operators torch.ops.wideattn.attention and
    attention_out wherever PyTorch needs them (torch.compile(fullgraph=True), fake and meta
    tensors, dispatch modes, autograd); plain eager calls reach the extension directly (same
    results, a few microseconds instead of tens: see wideattn.torch_ops). CUDA graph capture
    works either way (run the call once eagerly before capturing, so the workspace is sized).

    Returns out, or (out, lse) when return_lse is set or lse is given.
    Raises TypeError/ValueError naming the argument for wrong dtypes, shapes, devices or strides;
    ValueError for invalid problems, NotImplementedError for unsupported ones, MemoryError,
    RuntimeError for backend failures.
    """
    if seqused_k is not None:
        kv_lengths = _seqused_k(kv_lengths, seqused_k)
    if window_left is not None:
        window = _window_from_left(window, window_left, causal, "attention")
    if block_table is None:
        kv_layout = None
    # NumPy float16/32 q (bfloat16 is kind "V"); ml_dtypes caches (bfloat16, float8: kind "V",
    # or "f" of one byte) and uint8 ones take the general path, which exports them.
    if (type(q) is _ndarray and q.dtype.kind == "f" and q.itemsize > 1
            and (type(k_cache) is not _ndarray or (k_cache.dtype.kind == "f" and k_cache.itemsize > 1))
            and (type(v_cache) is not _ndarray or (v_cache.dtype.kind == "f" and v_cache.itemsize > 1))):
        if out is None:
            out = _empty(q.shape, q.dtype)
        if lse is None and return_lse:
            lse = _empty(q.shape[:2], _float32)
        if k_scale is not None or v_scale is not None:
            k_scale = host_scale(k_scale, "k_scale", "attention")
            v_scale = host_scale(v_scale, "v_scale", "attention")
        _native_attention(q, k_cache, v_cache, out, lse, query_offsets, kv_lengths, causal,
                          window, ring_length, ring_offset, tree, sinks, softcap, scale, kernel, 0,
                          False, False, block_table, kv_layout, k_scale, v_scale, kv_cache_dtype,
                          kv_splits)
        return out if lse is None else (out, lse)
    if type(q).__module__.startswith("torch"):
        return torch_ops.call(q, k_cache, v_cache, out, lse, return_lse, query_offsets,
                              kv_lengths, causal, window, ring_length, ring_offset, tree, sinks,
                              softcap, scale, kernel, block_table, kv_layout, k_scale, v_scale,
                              kv_cache_dtype, kv_splits)
    want_lse = return_lse or lse is not None
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
    scales = (call.export_scale(k_scale, "k_scale", "attention"),
              call.export_scale(v_scale, "v_scale", "attention"))
    _native_attention(
        *inputs, call.export(out, "out"), call.export(lse, "lse"), query_offsets, kv_lengths,
        causal, window, ring_length, ring_offset, _export_tree(call, tree),
        call.export(sinks, "sinks"), softcap, scale, kernel, call.stream(), call.u16_is_bf16,
        False, call.export(block_table, "block_table"), kv_layout, *scales,
        call.kv_cache_dtype(kv_cache_dtype), kv_splits)
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
    kv_lengths: Optional[IntSequence] = None,
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
    block_table: Optional[ArrayLike] = None,
    kv_layout: str = "NHD",
    seqused_k: Optional[IntSequence] = None,
    k_scale: Optional[Union[float, ArrayLike]] = None,
    v_scale: Optional[Union[float, ArrayLike]] = None,
    kv_cache_dtype: str = "auto",
    window_left: Optional[int] = None,
    kv_splits: int = 0,
) -> Plan:
    """The kernel, KV splits, workspace bytes and reason that `attention` would use for these
    arguments (same shapes as `attention`) on their device. Pure: reads no array data (a CPU
    block table's entries excepted: they are checked) and allocates nothing (`out` may be
    omitted). kv_splits as in `attention`."""
    if seqused_k is not None:
        kv_lengths = _seqused_k(kv_lengths, seqused_k)
    if window_left is not None:
        window = _window_from_left(window, window_left, causal, "plan_attention")
    call = fw.Call(q, "q")
    _check_device(call)
    inputs = (call.export(q, "q"), call.export(k_cache, "k_cache"), call.export(v_cache, "v_cache"))
    result = native.plan(
        *inputs, call.export(out, "out"), call.export(lse, "lse"), query_offsets, kv_lengths,
        causal, window, ring_length, ring_offset, _export_tree(call, tree),
        call.export(sinks, "sinks"), softcap, scale, kernel, call.u16_is_bf16,
        call.export(block_table, "block_table"), None if block_table is None else kv_layout,
        call.export_scale(k_scale, "k_scale", "plan_attention"),
        call.export_scale(v_scale, "v_scale", "plan_attention"), call.kv_cache_dtype(kv_cache_dtype),
        kv_splits)
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
    *,
    block_table: Optional[ArrayLike] = None,
    kv_layout: str = "NHD",
    k_scale: Optional[Union[float, ArrayLike]] = None,
    v_scale: Optional[Union[float, ArrayLike]] = None,
    kv_cache_dtype: str = "auto",
    window_left: Optional[int] = None,
    kv_splits: int = 0,
) -> Plan:
    """`attention` writing into given `out` (and `lse`) with every argument explicit and no
    framework routing (PyTorch tensors too: no operator); returns the plan used. block_table,
    kv_layout, k_scale, v_scale, kv_cache_dtype, window_left and kv_splits as in `attention`
    (window_left replaces `window`, which must then be 0)."""
    if window_left is not None:
        window = _window_from_left(window, window_left, causal, "attention")
    call = fw.Call(q, "q")
    _check_device(call)
    inputs = (call.export(q, "q"), call.export(k_cache, "k_cache"), call.export(v_cache, "v_cache"))
    result = native.attention(
        *inputs, call.export(out, "out"), call.export(lse, "lse"), query_offsets, kv_lengths,
        causal, window, ring_length, ring_offset, _export_tree(call, tree),
        call.export(sinks, "sinks"), softcap, scale, kernel, call.stream(), call.u16_is_bf16, True,
        call.export(block_table, "block_table"), None if block_table is None else kv_layout,
        call.export_scale(k_scale, "k_scale", "attention"),
        call.export_scale(v_scale, "v_scale", "attention"), call.kv_cache_dtype(kv_cache_dtype),
        kv_splits)
    if call.needs_sync():
        native.synchronize("cuda", call.device_index, 0)
    return Plan(*result)
