"""What a serving engine calls around attention: write_kv (a step's new keys and values into the
KV cache, vLLM's reshape_and_cache) and merge_states (partial attention results combined through
their log-sum-exp, FlashInfer's merge_states). Every argument is checked once, in the extension
(python/src/serving_bindings.cpp); Python only routes the arrays and allocates outputs."""

from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence, Tuple, Union

from . import _frameworks as fw
from . import torch_ops
from ._native import native

ArrayLike = Any  # a PyTorch tensor, NumPy/CuPy/JAX array, or any DLPack producer
States = Union[Sequence[ArrayLike], ArrayLike]  # a list of per-state arrays, or them stacked


def write_kv(
    k_new: ArrayLike,
    v_new: ArrayLike,
    k_cache: ArrayLike,
    v_cache: ArrayLike,
    slot_mapping: ArrayLike,
    *,
    block_table: Optional[ArrayLike] = None,
    kv_layout: str = "NHD",
    k_scale: Optional[Union[float, ArrayLike]] = None,
    v_scale: Optional[Union[float, ArrayLike]] = None,
    kv_cache_dtype: str = "auto",
) -> None:
    """Writes token t's key and value rows (every KV head) into cache slot slot_mapping[t], in
    place, on the caches' device: what `attention` then reads.

    Shapes (strided views are accepted; the last dimension must be contiguous):
      k_new, v_new   [tokens, kv_heads, head_dim]    float32, float16 or bfloat16 (the caches'
                     dtype: no conversion); e.g. the K and V slices of a fused QKV projection,
                     qkv.view(tokens, q_heads + 2 * kv_heads, head_dim)[:, q_heads:q_heads + kv_heads]
      slot_mapping   [tokens] int32, contiguous, on the caches' device; -1 skips the token
                     (padding). No two tokens may share a slot.

    The caches are told apart as in `attention`: with block_table (vLLM's [batch, max_pages]
    int32 on the caches' device; write_kv does not read its entries, it marks the caches as
    paged) k_cache and v_cache are page pools, two strided views (e.g. kv_cache.unbind(0)) of
      kv_layout "NHD": [num_pages, page_size, kv_heads, head_dim] (vLLM's flash layout), or
      kv_layout "HND": [num_pages, kv_heads, page_size, head_dim] (head-major pages),
    and slot s is row s % page_size of page s // page_size (vLLM's page * page_size + offset).
    Without block_table they are contiguous caches [batch, capacity, kv_heads, head_dim] and
    slot s is row s % capacity of sequence s // capacity (for one sequence, the row itself);
    kv_layout "HND" without block_table is an error (it names a pool layout).

    fp8 caches (vLLM's reshape_and_cache with kv_cache_dtype="fp8"): k_cache and v_cache of
    float8_e4m3fn (PyTorch, NumPy ml_dtypes), or uint8 with kv_cache_dtype="fp8_e4m3" (or
    "fp8"), as in `attention`; k_new and v_new stay float32/float16/bfloat16. Each element x is
    stored as e4m3(x / k_scale) (v_scale for values; float32 arithmetic): rounded to
    nearest even, finite values past 448 saturated to +-448 (ml_dtypes' cast gives NaN past 464
    instead), NaN and +-inf stored as NaN (e4m3 has no infinity).
    k_scale, v_scale: None (1), a Python float, or a float32 array on the caches' device of
    shape (), (1,) or (kv_heads,), as `attention` takes them (the same scales read them back).
    Scales with a 16/32-bit cache are a ValueError naming them. CUDA raises
    NotImplementedError for fp8 caches until its kernels exist.

    On the CPU every slot is checked before anything is written: a slot below -1 or past the
    cache raises ValueError naming the token and slot, and the caches are left untouched. On
    CUDA the mapping is device memory the host does not read: a slot outside the cache is
    skipped (nothing written, nothing reported). The caches must be writable arrays (PyTorch,
    NumPy, CuPy; JAX arrays are immutable). PyTorch CUDA tensors run on the current stream; under
    torch.compile and with fake tensors the call goes through torch.ops.wideattn.write_kv.
    Raises TypeError/ValueError naming the argument for wrong dtypes, shapes, devices or strides
    (and for caches that overlap the inputs).
    """
    kv_layout = _layout(kv_layout)
    arrays = (k_new, v_new, k_cache, v_cache, slot_mapping)
    optional = tuple(x for x in (block_table, k_scale, v_scale)
                     if x is not None and not isinstance(x, numbers.Real))
    if _all_torch(arrays + optional) and torch_ops.available():
        torch_ops.write_kv_call(k_new, v_new, k_cache, v_cache, slot_mapping, block_table, kv_layout,
                                k_scale, v_scale, kv_cache_dtype)
        return
    call = fw.Call(k_cache, "k_cache")
    exported = (call.export(k_new, "k_new"), call.export(v_new, "v_new"),
                call.export(k_cache, "k_cache"), call.export(v_cache, "v_cache"))
    native.write_kv(*exported, call.export(slot_mapping, "slot_mapping"),
                    call.export(block_table, "block_table"), kv_layout, call.stream(),
                    call.u16_is_bf16, call.export_scale(k_scale, "k_scale", "write_kv"),
                    call.export_scale(v_scale, "v_scale", "write_kv"),
                    call.kv_cache_dtype(kv_cache_dtype))
    if call.needs_sync():
        native.synchronize("cuda", call.device_index, 0)


def _all_torch(arrays: Sequence[Any]) -> bool:
    return all(type(x).__module__.startswith("torch") for x in arrays)


def _layout(kv_layout: Any) -> str:
    if not isinstance(kv_layout, str):
        raise TypeError(f"write_kv: kv_layout must be 'NHD' or 'HND', got {type(kv_layout).__qualname__}")
    return kv_layout


def merge_states(
    outs: States,
    lses: States,
    *,
    out: Optional[ArrayLike] = None,
    lse: Optional[ArrayLike] = None,
    return_lse: bool = True,
    dtype: Any = None,
) -> Union[Tuple[Any, Any], Any]:
    """Combines S partial attention results (1 <= S <= 32) of the same queries over disjoint key
    sets (cascade attention's shared prefix and per-sequence suffix, KV splits, context
    parallelism) into the result over all of them, on the arrays' device:
      lse = log(sum_s exp(lses[s])),  out = sum_s exp(lses[s] - lse) * outs[s]   (f32 math)

    outs: a list of [tokens, heads, head_dim] arrays (float32, float16 or bfloat16, each its own
      dtype and strides, last dimension contiguous), or one array [S, tokens, heads, head_dim]
      (FlashInfer's [tokens, S, heads, head_dim] passes as v.transpose(0, 1), no copy).
    lses: the natural-log log-sum-exp of each state (`attention(..., return_lse=True)`'s lse):
      a list of float32 [tokens, heads] arrays, or one [S, tokens, heads] array; any strides
      (vLLM's head-major [heads, tokens] lse passes as lse.T).
    out: [tokens, heads, head_dim] of any of the three dtypes, written; allocated with `dtype`
      (None: outs[0]'s dtype) when not given. lse: float32 [tokens, heads], written; allocated
      when not given and return_lse is set. Neither may overlap an input.

    A state whose lse is -inf saw no key and contributes nothing, whatever its out holds (NaN
    included); a row whose states are all -inf becomes zeros with lse -inf. Every lse must be
    finite or -inf. More than 32 states: merge groups, then merge the merged results (exact).
    PyTorch tensors go through torch.ops.wideattn.merge_states_out where PyTorch needs it
    (torch.compile, fake tensors), as `attention` does.
    Returns (out, lse), or out alone when return_lse is False and lse is not given.
    Raises TypeError/ValueError naming the argument for wrong dtypes, shapes, devices, strides
    or counts.
    """
    stacked = not isinstance(outs, (list, tuple))
    first = outs if stacked else (outs[0] if len(outs) else None)
    want_lse = return_lse or lse is not None
    shape = _state_shape(outs, first, stacked)
    states = [outs] if stacked else list(outs)
    states += list(lses) if isinstance(lses, (list, tuple)) else [lses]
    outputs = [x for x in (out, lse) if x is not None]
    if shape is not None and _all_torch(states + outputs) and torch_ops.available():
        return torch_ops.merge_states_call(outs, lses, out, lse, want_lse, dtype, shape)
    call = fw.Call(first, "outs")
    if shape is not None:  # else the extension names what is wrong with outs
        if out is None:
            out = call.empty(shape, dtype if dtype is not None else first.dtype, "out")
        if want_lse and lse is None:
            lse = call.empty(shape[:2], "float32", "lse")
    if stacked:
        exported_outs: Any = call.export(outs, "outs")
    else:
        exported_outs = [call.export(x, f"outs[{i}]") for i, x in enumerate(outs)]
    if isinstance(lses, (list, tuple)):
        exported_lses: Any = [call.export(x, f"lses[{i}]") for i, x in enumerate(lses)]
    else:
        exported_lses = call.export(lses, "lses")
    native.merge_states(exported_outs, exported_lses, call.export(out, "out"),
                        call.export(lse, "lse"), call.stream(), call.u16_is_bf16)
    if call.needs_sync():
        native.synchronize("cuda", call.device_index, 0)
    out = call.finish(out)
    return (out, call.finish(lse)) if want_lse else out


def _state_shape(outs: States, first: Any, stacked: bool) -> Optional[Tuple[int, ...]]:
    """(tokens, heads, head_dim) of one state, or None when outs does not have that form."""
    shape = getattr(first, "shape", None)
    if shape is None or not hasattr(first, "dtype"):
        return None
    shape = tuple(int(s) for s in shape)
    if stacked:
        shape = shape[1:]
    return shape if len(shape) == 3 else None
