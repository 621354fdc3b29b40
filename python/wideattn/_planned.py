"""wideattn.PlannedDecode: a decode plan made once from upper bounds over fixed buffers, run with
metadata that lives on the device and is rewritten in place between steps (CUDA graphs).

The C++ side is wideattn::plan_attention(problem, bounds, ...) and attention_planned
(include/wideattn/attention.h); python/src/attention_bindings.cpp converts and checks the
arguments once, at construction, with the same code as `attention`.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional, Tuple, Union

from . import _frameworks as fw
from ._api import ArrayLike, Plan, _check_device, _export_tree, _seqused_k
from ._native import native


class PlannedDecode:
    """Decode (and speculative) attention planned once from bounds, run many times: the serving
    loop's fixed-buffer path, captured into a CUDA graph once and replayed every step.

    The buffers are given once and never change; what changes between runs is their contents:

      q        [max_total_tokens, q_heads, head_dim]  (more rows are fine: the rest are unused)
      k_cache, v_cache, block_table, kv_layout, sinks, tree: as in `wideattn.attention`
      out      [rows of q, q_heads, head_dim], same dtype as q; allocated (zeroed) when None
      lse      [rows of q, q_heads] float32; allocated (zeroed) when None and return_lse is set
      query_offsets  int32 [slots + 1] on the arrays' device (FlashAttention's cu_seqlens_q)
      kv_lengths     int32 [slots] on the arrays' device (seqused_k: the same argument)
      errors   optional int32 [1] on the arrays' device, zeroed by the caller

    slots = k_cache.shape[0] (contiguous caches) or block_table.shape[0] (paged pools): the
    sequence slots of every step. A step uses the first query_offsets[slots] rows of q and out;
    an idle slot has suffix 0 (query_offsets[b + 1] == query_offsets[b]; its kv_length may be 0)
    and writes nothing. Rows of out past query_offsets[slots] are not written.

    Bounds (the plan covers every step within them; the workspace is sized for them):
      max_suffix        new tokens of one slot in a step: 1 (decode) to 8 (speculative steps).
                        Prefill chunks need host metadata: use `wideattn.attention` for them.
      max_kv_length     longest kv_length (suffix included), at most the cache's capacity
                        (max_pages x page_size when paged); None: that capacity.
      max_total_tokens  query_offsets[slots] of any step, at most slots x max_suffix and q's
                        rows; None: q.shape[0].

    Metadata outside the bounds: on the CPU, run() raises ValueError naming the entry (e.g.
    "kv_lengths[1] = 51, expected <= bounds.max_kv_length = 50") before anything is written. On
    CUDA the host never reads the metadata: the kernels skip a slot outside the bounds (its rows
    of out and lse are unspecified), and OR kMetadata* bits into `errors` when given
    (1: query_offsets, 2: a suffix above max_suffix, 4: a kv_length below its suffix or above
    max_kv_length). Check it after a replay (it stays set until the caller zeroes it).

    run() calls wideattn::attention_planned on PyTorch's current CUDA stream (CuPy's for CuPy
    arrays; the CPU backend otherwise) and returns out, or (out, lse). It does no host work that
    depends on the metadata: on CUDA it reads no metadata, allocates nothing and does not
    synchronise, so it can be captured into a CUDA graph:

        runner = wideattn.PlannedDecode(q_buf, k_pages, v_pages, out=out_buf,
                                        query_offsets=offsets_buf, kv_lengths=lengths_buf,
                                        block_table=table_buf, max_suffix=1, scale=1.0)
        runner.run()                      # 1. once outside the capture: sizes the workspace
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):     # 2. capture
            runner.run()
        for step in steps:                # 3. every step: rewrite the buffers in place, replay
            q_buf[:n].copy_(q_step); offsets_buf.copy_(step_offsets)
            lengths_buf.copy_(step_lengths); table_buf.copy_(step_table)
            graph.replay()                # out_buf[:n] holds the step's attention

    Rewrite the buffers in place (copy_, slice assignment) and never rebind them: the plan and
    any captured graph hold their addresses. Each PlannedDecode owns its workspace (the plan's
    workspace_bytes, 0 for single_pass), separate from the one `attention` grows for prefill, so
    eager calls between replays cannot move it; keep the PlannedDecode alive as long as a graph
    that captured it. The first run() sizes it: a first run inside a capture raises
    NotImplementedError.

    causal, window, ring_length, ring_offset, softcap, scale and kv_splits as in
    `wideattn.attention`, which also says what FlashInfer's window_left (window = window_left + 1;
    -1: none) accepts. kv_splits fixes the split count of the plan (0: chosen from the bounds).

    fp8 KV caches: k_cache/v_cache, k_scale, v_scale and kv_cache_dtype as in
    `wideattn.attention`. A scale given as a Python float becomes a float32 [1] array on the
    buffers' device, made once here and owned by the runner (`runner.k_scale`, `runner.v_scale`
    hold the scale arrays, given or made), so it stays valid across runs and graph replays; to
    change a scale between runs, rewrite that array in place. Values are checked here (floats,
    and CPU arrays) and not at each run. On CUDA an fp8 cache runs on the decode kernels (float16
    or bfloat16 q; float32 q is refused at construction with NotImplementedError).

    run() is a plain call (not a torch operator): call it eagerly or inside CUDA graph capture,
    not inside torch.compile regions. JAX arrays are immutable and cannot serve as buffers.
    Construction raises as `attention` does (TypeError/ValueError naming the argument; bounds
    errors as ValueError, max_suffix above 8 as NotImplementedError).
    """

    def __init__(
        self,
        q: ArrayLike,
        k_cache: ArrayLike,
        v_cache: ArrayLike,
        *,
        query_offsets: ArrayLike,
        kv_lengths: Optional[ArrayLike] = None,
        max_suffix: int,
        max_kv_length: Optional[int] = None,
        max_total_tokens: Optional[int] = None,
        out: Optional[ArrayLike] = None,
        lse: Optional[ArrayLike] = None,
        return_lse: bool = False,
        errors: Optional[ArrayLike] = None,
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
        seqused_k: Optional[ArrayLike] = None,
        k_scale: Optional[Union[float, ArrayLike]] = None,
        v_scale: Optional[Union[float, ArrayLike]] = None,
        kv_cache_dtype: str = "auto",
        window_left: Optional[int] = None,
        kv_splits: int = 0,
    ) -> None:
        if seqused_k is not None:
            kv_lengths = _seqused_k(kv_lengths, seqused_k)
        if window_left is not None:
            window = fw.window_from_left(window, window_left, causal, "PlannedDecode")
        call = fw.Call(q, "q")
        _check_device(call)
        if call.kind == fw.JAX:
            raise TypeError("PlannedDecode: JAX arrays are immutable; the buffers must be arrays "
                            "the caller rewrites in place (PyTorch, NumPy, CuPy)")
        shape = getattr(q, "shape", None)
        if shape is None or len(shape) != 3:
            raise ValueError(f"PlannedDecode: q must have 3 dimensions [max_total_tokens, q_heads, "
                             f"head_dim], got shape {shape}")
        # Allocated once, zeroed: rows no step writes (idle slots, padding) read as zeros.
        if out is None:
            out = call.empty(shape, q.dtype, "out")
            out[...] = 0
        if lse is None and return_lse:
            lse = call.empty((shape[0], shape[1]), "float32", "lse")
            lse[...] = 0
        # A float scale becomes an array the runner owns (valid across runs and replays).
        k_scale = _owned_scale(call, k_scale, "k_scale")
        v_scale = _owned_scale(call, v_scale, "v_scale")
        exported = (call.export(q, "q"), call.export(k_cache, "k_cache"), call.export(v_cache, "v_cache"))
        self._native = native.PlannedDecode(
            *exported, call.export(out, "out"), call.export(lse, "lse"),
            call.export(query_offsets, "query_offsets"), call.export(kv_lengths, "kv_lengths"),
            causal, window, ring_length, ring_offset, _export_tree(call, tree),
            call.export(sinks, "sinks"), softcap, scale, kernel, call.u16_is_bf16,
            call.export(block_table, "block_table"), None if block_table is None else kv_layout,
            max_total_tokens, max_suffix, max_kv_length, call.export(errors, "errors"),
            call.export(k_scale, "k_scale"), call.export(v_scale, "v_scale"),
            call.kv_cache_dtype(kv_cache_dtype), kv_splits)
        self._call = call
        #: The buffers, as given (or allocated): rewrite their contents in place between runs.
        self.q, self.k_cache, self.v_cache = q, k_cache, v_cache
        self.out, self.lse, self.errors = out, lse, errors
        self.query_offsets, self.kv_lengths, self.block_table = query_offsets, kv_lengths, block_table
        #: The fp8 cache's scale arrays (None when not given): rewrite in place to change them.
        self.k_scale, self.v_scale = k_scale, v_scale
        self._result: Any = out if lse is None else (out, lse)
        #: What dispatch chose for the bounds (kernel, KV splits, workspace bytes, reason).
        self.plan = Plan(*self._native.plan)

    def run(self) -> Any:
        """Runs the plan on the buffers' current contents (see the class docstring); returns out,
        or (out, lse). Asynchronous on CUDA, on the current stream."""
        self._native.run(self._call.stream())
        return self._result

    def __repr__(self) -> str:
        return f"PlannedDecode({self.plan.reason})"


def _owned_scale(call: fw.Call, x: Any, name: str) -> Any:
    """A Python number given as a scale, as a new float32 [1] array of the caller's framework on
    the buffers' device (checked first); anything else as given."""
    if x is None or not isinstance(x, numbers.Real) or isinstance(x, bool):
        return x
    value = fw.check_scale(x, name, "PlannedDecode")
    array = call.empty((1,), "float32", name)
    array[...] = value
    return array
