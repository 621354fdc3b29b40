"""The building blocks of the unfused prefill pipeline, each usable on its own:
matmul, softmax, scatter_scores and scatter_values (include/wideattn/components.h)."""

from __future__ import annotations

from typing import Any, Optional, Tuple

from . import _frameworks as fw
from ._native import native

ArrayLike = Any

_C_MODES = ("none", "accumulate", "bias")


def _finish(call: fw.Call, x: Any) -> Any:
    if call.needs_sync():
        native.synchronize("cuda", call.device_index, 0)
    return call.finish(x)


def matmul(
    a: ArrayLike,
    b: ArrayLike,
    d: Optional[ArrayLike] = None,
    *,
    b_transpose: bool = False,
    c: str = "none",
    bias: Optional[ArrayLike] = None,
    scale: float = 1.0,
    d_dtype: Any = "float32",
) -> Any:
    """D = scale * A op(B) (+ C), batched, on the arrays' device.

    a: [m, k] or [batch, m, k]; b: [k, n] ([n, k] with b_transpose) or with a leading batch;
    d: [m, n] or [batch, m, n], allocated with dtype d_dtype when None. A 2-D operand (or a
    batch stride of 0, e.g. an expanded view) is shared across the batch. Row strides become
    leading dimensions; the last dimension of each must be contiguous.
    c: "none"; "accumulate" (D += ...; d must be given); "bias" (adds bias[n], d's dtype).
    Dtypes: float32, float16, bfloat16 (CUDA needs a and b of one dtype). Returns d.
    """
    if c not in _C_MODES:
        raise ValueError(f"matmul: c = {c!r}, expected one of {_C_MODES}")
    if c == "accumulate" and d is None:
        raise ValueError("matmul: c = 'accumulate' needs d (the matrix to accumulate into)")
    call = fw.Call(a, "a")
    if d is None:
        a_shape, b_shape = tuple(a.shape), tuple(b.shape)
        if len(a_shape) not in (2, 3) or len(b_shape) not in (2, 3):
            raise ValueError(f"matmul: a and b must be 2-D or 3-D, got shapes {a_shape} and {b_shape}")
        n = b_shape[-2] if b_transpose else b_shape[-1]
        batch = a_shape[0] if len(a_shape) == 3 else (b_shape[0] if len(b_shape) == 3 else None)
        shape = (a_shape[-2], n) if batch is None else (batch, a_shape[-2], n)
        d = call.empty(shape, d_dtype, "d")
    native.matmul(call.export(a, "a"), call.export(b, "b"), call.export(d, "d"),
                  call.export(bias, "bias"), bool(b_transpose), c, float(scale), call.stream(),
                  call.u16_is_bf16)
    return _finish(call, d)


def softmax(
    input: ArrayLike,
    output: Optional[ArrayLike] = None,
    *,
    rows_per_block: int = 0,
    sinks: Optional[ArrayLike] = None,
    lse: Optional[ArrayLike] = None,
    return_lse: bool = False,
    output_dtype: Any = "float32",
) -> Any:
    """Row-wise softmax in f32 of input [rows, cols] (float32; -inf marks a masked entry).

    output: [rows, cols] of float32/float16/bfloat16, allocated with output_dtype when None; it
    may be `input` itself (float32, same strides). Rows form blocks of rows_per_block (0: one
    block); sinks: float32 [blocks], one extra logit per block. lse: float32 [rows] or
    [blocks, rows_per_block], the log of each row's normaliser (sink included; -inf for a row
    with nothing visible). A row with nothing visible and no sink becomes zeros.
    Returns output, or (output, lse) when return_lse is set or lse is given.
    """
    call = fw.Call(input, "input")
    shape = tuple(input.shape)
    if output is None:
        output = call.empty(shape, output_dtype, "output")
    want_lse = return_lse or lse is not None
    if want_lse and lse is None:
        lse = call.empty((shape[0],), "float32", "lse")
    native.softmax(call.export(input, "input"), call.export(output, "output"),
                   fw.check_int32(rows_per_block, "rows_per_block"), call.export(sinks, "sinks"),
                   call.export(lse, "lse"), call.stream(), call.u16_is_bf16)
    output = _finish(call, output)
    return (output, call.finish(lse)) if want_lse else output


def scatter_scores(
    scores: ArrayLike,
    dst: Optional[ArrayLike] = None,
    *,
    first_query: int,
    first_key: int,
    prefix_length: int,
    suffix_length: int,
    causal: bool = True,
    window: int = 0,
    ring_length: int = 0,
    ring_offset: int = 0,
    tree: Optional[Tuple[ArrayLike, ArrayLike, ArrayLike]] = None,
    softcap: float = 0.0,
    window_left: Optional[int] = None,
) -> Any:
    """Masks (and soft-caps) the scores of one sequence.

    scores: float32 [heads, rows, cols]: query rows first_query.. of the sequence's suffix
    against cache rows first_key..; dst: float32 [heads, rows, cols], allocated when None (pass
    dst=scores to work in place). Entries the mask hides become -inf; softcap > 0 applies
    softcap * tanh(s / softcap) first. tree: (tree_start, tree_end, tree_height), int32
    [suffix_length] each. causal/window/ring_length/ring_offset as in `wideattn.attention`,
    FlashInfer's window_left (window = window_left + 1; -1: none) too. Returns dst.
    """
    if window_left is not None:
        window = fw.window_from_left(window, window_left, causal, "scatter_scores")
    call = fw.Call(scores, "scores")
    if dst is None:
        dst = call.empty(tuple(scores.shape), "float32", "dst")
    if tree is not None and (not isinstance(tree, (tuple, list)) or len(tree) != 3):
        raise TypeError("tree must be a tuple (tree_start, tree_end, tree_height) of int32 arrays")
    tree_start, tree_end, tree_height = tree if tree is not None else (None, None, None)
    native.scatter_scores(
        call.export(scores, "scores"), call.export(dst, "dst"), int(first_query), int(first_key),
        int(prefix_length), int(suffix_length), bool(causal), fw.check_int32(window, "window"),
        fw.check_int32(ring_length, "ring_length"), fw.check_int32(ring_offset, "ring_offset"),
        call.export(tree_start, "tree_start"), call.export(tree_end, "tree_end"),
        call.export(tree_height, "tree_height"), float(softcap), call.stream())
    return _finish(call, dst)


def scatter_values(src: ArrayLike, out: Optional[ArrayLike] = None, *, dtype: Any = "float32") -> Any:
    """Writes a group-major float32 result src [heads, rows, head_dim] into token-major rows
    out [rows, heads, head_dim] (any strides with a contiguous last dimension, e.g. a slice of
    an attention output), converted to out's dtype; out is allocated with `dtype` when None.
    Returns out."""
    call = fw.Call(src, "src")
    if out is None:
        heads, rows, head_dim = tuple(src.shape)
        out = call.empty((rows, heads, head_dim), dtype, "out")
    native.scatter_values(call.export(src, "src"), call.export(out, "out"), call.stream(),
                          call.u16_is_bf16)
    return _finish(call, out)
