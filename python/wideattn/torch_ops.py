"""PyTorch: custom operators torch.ops.wideattn.attention (functional: allocates out and lse) and
torch.ops.wideattn.attention_out (writes given out/lse), with fake implementations for shape
propagation, so calls work under torch.compile(fullgraph=True), with fake and meta tensors and
in CUDA graph capture; and an eager fast path. The same for the serving calls:
torch.ops.wideattn.write_kv (writes k_cache/v_cache) and torch.ops.wideattn.merge_states_out
(writes out/lse), which wideattn.write_kv and wideattn.merge_states use for torch tensors.

The eager fast path: a custom operator's Python dispatch costs tens of microseconds per call.
When nothing needs the operator (not compiling or exporting; no dispatch or function mode,
functorch transform or jit trace active; plain CPU/CUDA tensors; no autograd graph to record),
`attention` and `attention_out` call the extension directly, with the tensors' DLPack capsules
and the current CUDA stream: the same extension call the operators make, minus the dispatch.
Anything else goes through the operators. `uses_fast_path` says which one a call takes.

Registered on first use (importing this module does not import torch). query_offsets and
kv_lengths are host int lists: under torch.compile they are constants of the graph.

fp8 KV caches: the operators take k_scale and v_scale as optional float32 tensors and
kv_cache_dtype as a str (the schema has no float-or-tensor type): a Python float scale becomes
a float32 [1] tensor on q's device before the operator (traced into the graph under
torch.compile), while the eager path hands a float on the CPU straight to the extension.
"""

import math
import numbers
from typing import Any, List, Optional, Sequence, Tuple

from . import _frameworks as fw
from ._native import native

_registered: Optional[bool] = None

# Set by available() once torch is imported: what the eager path calls, looked up once.
_Tensor: Any = None
_to_dlpack: Any = None
_empty_like: Any = None
_empty: Any = None
_full: Any = None
_contiguous: Any = None
_float32: Any = None
_is_compiling: Any = None
_grad_enabled: Any = None
_dispatch_modes: Any = None
_function_modes: Any = None
_functorch_active: Any = None
_jit_tracing: Any = None
_raw_stream: Any = None
_native_attention = native.attention
_native_write_kv = native.write_kv
_native_merge_states = native.merge_states


def available() -> bool:
    """Whether PyTorch is importable; registers the operators on the first call."""
    global _registered
    if _registered is None:
        try:
            import torch  # noqa: F401
        except ImportError:
            _registered = False
        else:
            _bind_eager(torch)
            _register()
            _registered = True
    return _registered


# torch.compile runs available() while tracing instead of tracing into it (what
# torch._dynamo.assume_constant_result sets, without importing torch here): so a process whose
# first wideattn call is inside torch.compile(fullgraph=True) registers the operators for real
# (dynamo does not trace torch.library's registration).
available._dynamo_marked_constant = True  # type: ignore[attr-defined]


def _bind_eager(torch: Any) -> None:
    global _Tensor, _to_dlpack, _empty_like, _empty, _full, _contiguous, _float32, _is_compiling
    global _grad_enabled, _dispatch_modes, _function_modes, _functorch_active, _jit_tracing
    global _raw_stream
    import torch.utils.dlpack

    C = torch._C
    _Tensor = torch.Tensor
    _to_dlpack = torch.utils.dlpack.to_dlpack
    _empty_like = torch.empty_like
    _empty = torch.empty
    _full = torch.full
    _contiguous = torch.contiguous_format
    _float32 = torch.float32
    _is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None) or (
        lambda: torch._dynamo.is_compiling())
    _grad_enabled = torch.is_grad_enabled
    _dispatch_modes = getattr(C, "_len_torch_dispatch_stack", None)
    _function_modes = getattr(C, "_is_torch_function_mode_enabled", None)
    _functorch_active = getattr(C, "_are_functorch_transforms_active", None)
    _jit_tracing = getattr(C, "_get_tracing_state", None)
    _raw_stream = getattr(C, "_cuda_getCurrentRawStream", None)
    if _raw_stream is None:  # pragma: no cover - older PyTorch
        _raw_stream = lambda index: torch.cuda.current_stream(index).cuda_stream  # noqa: E731
    if None in (_dispatch_modes, _function_modes, _functorch_active, _jit_tracing):
        # A PyTorch without these probes (none known): always take the operators.
        _is_compiling = lambda: True  # noqa: E731  # pragma: no cover


def _capsule(x: Any) -> Any:
    return None if x is None else _to_dlpack(x)


def _scale_capsule(x: Any, ref: Any, name: str, function: str) -> Any:
    """An fp8 cache's scale for the extension: None, a tensor's capsule, or a Python number:
    a float on the CPU, a new float32 [1] tensor on the device otherwise (made on the current
    stream, alive for the call)."""
    if x is None:
        return None
    if isinstance(x, _Tensor):
        return _to_dlpack(x)
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        value = fw.check_scale(x, name, function)
        if ref.is_cuda:
            return _to_dlpack(_full((1,), value, dtype=_float32, device=ref.device))
        return value
    return x  # the extension names what it is


def _scale_tensor(x: Any, ref: Any, name: str, function: str) -> Any:
    """An fp8 cache's scale as the operators' schema takes it: None or a tensor (a Python number
    becomes a float32 [1] tensor on ref's device)."""
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        import torch

        return torch.full((1,), fw.check_scale(x, name, function), dtype=torch.float32,
                          device=ref.device)
    return x


def _run(q, k_cache, v_cache, out, lse, query_offsets, kv_lengths, causal, window, ring_length,
         ring_offset, tree_start, tree_end, tree_height, sinks, softcap, scale, kernel,
         block_table, kv_layout, k_scale=None, v_scale=None, kv_cache_dtype="auto",
         kv_splits=0) -> None:
    """The operators' real implementation: the extension call (scale NaN: the default)."""
    tree = None if tree_start is None else (
        _capsule(tree_start), _capsule(tree_end), _capsule(tree_height))
    stream = _raw_stream(q.get_device()) if q.is_cuda else 0
    _native_attention(
        _to_dlpack(q), _to_dlpack(k_cache), _to_dlpack(v_cache), _to_dlpack(out), _capsule(lse),
        query_offsets, kv_lengths, causal, window, ring_length, ring_offset, tree,
        _capsule(sinks), softcap, None if math.isnan(scale) else scale, kernel, stream, False,
        False, _capsule(block_table), None if block_table is None else kv_layout,
        _scale_capsule(k_scale, q, "k_scale", "attention"),
        _scale_capsule(v_scale, q, "v_scale", "attention"), kv_cache_dtype, kv_splits)


def _stream_of(t: Any) -> int:
    return _raw_stream(t.get_device()) if t.is_cuda else 0


def _run_write_kv(k_new, v_new, k_cache, v_cache, slot_mapping, block_table, kv_layout,
                  k_scale=None, v_scale=None, kv_cache_dtype="auto") -> None:
    """torch.ops.wideattn.write_kv's implementation (and the eager path's): the extension call."""
    _native_write_kv(_to_dlpack(k_new), _to_dlpack(v_new), _to_dlpack(k_cache), _to_dlpack(v_cache),
                     _to_dlpack(slot_mapping), _capsule(block_table), kv_layout,
                     _stream_of(k_cache), False,
                     _scale_capsule(k_scale, k_cache, "k_scale", "write_kv"),
                     _scale_capsule(v_scale, k_cache, "v_scale", "write_kv"), kv_cache_dtype)


def _run_merge_states(outs, lses, out, lse) -> None:
    """torch.ops.wideattn.merge_states_out's implementation: outs/lses are lists of tensors or
    (eager path only) one stacked tensor each."""
    outs = _capsule(outs) if isinstance(outs, _Tensor) else [_to_dlpack(x) for x in outs]
    lses = _capsule(lses) if isinstance(lses, _Tensor) else [_to_dlpack(x) for x in lses]
    _native_merge_states(outs, lses, _to_dlpack(out), _capsule(lse), _stream_of(out), False)


def _register() -> None:
    import torch

    @torch.library.custom_op("wideattn::write_kv", mutates_args=("k_cache", "v_cache"),
                             device_types=("cpu", "cuda"))
    def write_kv_op(
        k_new: torch.Tensor, v_new: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
        slot_mapping: torch.Tensor, block_table: Optional[torch.Tensor] = None,
        kv_layout: str = "NHD", k_scale: Optional[torch.Tensor] = None,
        v_scale: Optional[torch.Tensor] = None, kv_cache_dtype: str = "auto",
    ) -> None:
        _run_write_kv(k_new, v_new, k_cache, v_cache, slot_mapping, block_table, kv_layout,
                      k_scale, v_scale, kv_cache_dtype)

    @write_kv_op.register_fake
    def _(k_new, v_new, k_cache, v_cache, slot_mapping, block_table=None, kv_layout="NHD",
          k_scale=None, v_scale=None, kv_cache_dtype="auto"):
        return None

    @torch.library.custom_op("wideattn::merge_states_out", mutates_args=("out", "lse"),
                             device_types=("cpu", "cuda"))
    def merge_states_out_op(
        outs: List[torch.Tensor], lses: List[torch.Tensor], out: torch.Tensor,
        lse: Optional[torch.Tensor] = None,
    ) -> None:
        _run_merge_states(outs, lses, out, lse)

    @merge_states_out_op.register_fake
    def _(outs, lses, out, lse=None):
        return None

    @torch.library.custom_op("wideattn::attention", mutates_args=(), device_types=("cpu", "cuda"))
    def attention_op(
        q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
        query_offsets: List[int], kv_lengths: List[int], causal: bool, window: int,
        ring_length: int, ring_offset: int, tree_start: Optional[torch.Tensor],
        tree_end: Optional[torch.Tensor], tree_height: Optional[torch.Tensor],
        sinks: Optional[torch.Tensor], softcap: float, scale: float, kernel: str,
        return_lse: bool, block_table: Optional[torch.Tensor] = None, kv_layout: str = "NHD",
        k_scale: Optional[torch.Tensor] = None, v_scale: Optional[torch.Tensor] = None,
        kv_cache_dtype: str = "auto", kv_splits: int = 0,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
        lse_shape = (q.shape[0], q.shape[1]) if return_lse else (0,)
        lse = torch.empty(lse_shape, dtype=torch.float32, device=q.device)
        _run(q, k_cache, v_cache, out, lse if return_lse else None, query_offsets, kv_lengths,
             causal, window, ring_length, ring_offset, tree_start, tree_end, tree_height, sinks,
             softcap, scale, kernel, block_table, kv_layout, k_scale, v_scale, kv_cache_dtype,
             kv_splits)
        return out, lse

    @attention_op.register_fake
    def _(q, k_cache, v_cache, query_offsets, kv_lengths, causal, window, ring_length,
          ring_offset, tree_start, tree_end, tree_height, sinks, softcap, scale, kernel,
          return_lse, block_table=None, kv_layout="NHD", k_scale=None, v_scale=None,
          kv_cache_dtype="auto", kv_splits=0):
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
        scale: float, kernel: str, block_table: Optional[torch.Tensor] = None,
        kv_layout: str = "NHD", k_scale: Optional[torch.Tensor] = None,
        v_scale: Optional[torch.Tensor] = None, kv_cache_dtype: str = "auto",
        kv_splits: int = 0,
    ) -> None:
        _run(q, k_cache, v_cache, out, lse, query_offsets, kv_lengths, causal, window,
             ring_length, ring_offset, tree_start, tree_end, tree_height, sinks, softcap, scale,
             kernel, block_table, kv_layout, k_scale, v_scale, kv_cache_dtype, kv_splits)

    @attention_out_op.register_fake
    def _(q, k_cache, v_cache, out, lse, query_offsets, kv_lengths, causal, window, ring_length,
          ring_offset, tree_start, tree_end, tree_height, sinks, softcap, scale, kernel,
          block_table=None, kv_layout="NHD", k_scale=None, v_scale=None, kv_cache_dtype="auto",
          kv_splits=0):
        return None


def _eager(q: Any, k_cache: Any, v_cache: Any, out: Any, lse: Any, tree: Any, sinks: Any,
           block_table: Any = None, k_scale: Any = None, v_scale: Any = None) -> bool:
    """Whether this call may skip the operators (see the module's docstring)."""
    if _is_compiling():
        return False
    T = _Tensor
    if type(q) is not T or type(k_cache) is not T or type(v_cache) is not T:
        return False  # FakeTensor, FunctionalTensor, Parameter, other subclasses
    if not (q.is_cpu or q.is_cuda):
        return False  # meta and other devices: the operators say what happens
    if _dispatch_modes() or _function_modes() or _functorch_active() or _jit_tracing():
        return False  # a mode, vmap/grad transform or torch.jit.trace must see the operator
    if out is not None and type(out) is not T:
        return False
    if lse is not None and type(lse) is not T:
        return False
    if sinks is not None and type(sinks) is not T:
        return False
    if block_table is not None and type(block_table) is not T:
        return False
    if (isinstance(k_scale, T) and type(k_scale) is not T) or (
            isinstance(v_scale, T) and type(v_scale) is not T):
        return False  # a tensor subclass (fake tensors); floats and plain tensors pass
    if tree is not None:
        if not isinstance(tree, (tuple, list)) or len(tree) != 3:
            return False  # the operator path raises the TypeError
        for part in tree:
            if type(part) is not T:
                return False
    if _grad_enabled() and (
            q.requires_grad or k_cache.requires_grad or v_cache.requires_grad
            or (sinks is not None and sinks.requires_grad)
            or (out is not None and out.requires_grad)):
        return False  # the operators record the (unimplemented) backward
    return True


def _eager_tensors(tensors: Sequence[Any]) -> bool:
    """Whether a serving call on these tensors (None: absent) may skip the operators: the
    conditions of _eager, for any number of tensors."""
    if _is_compiling():
        return False
    T = _Tensor
    present = [t for t in tensors if t is not None]
    for t in present:
        if type(t) is not T:
            return False  # FakeTensor, FunctionalTensor, Parameter, other subclasses
        if not (t.is_cpu or t.is_cuda):
            return False
    if _dispatch_modes() or _function_modes() or _functorch_active() or _jit_tracing():
        return False
    if _grad_enabled() and any(t.requires_grad for t in present):
        return False
    return True


def write_kv_call(k_new, v_new, k_cache, v_cache, slot_mapping, block_table, kv_layout,
                  k_scale=None, v_scale=None, kv_cache_dtype="auto") -> None:
    """wideattn.write_kv for PyTorch tensors (k_scale/v_scale: None, numbers or tensors): the
    eager fast path, else torch.ops.wideattn.write_kv."""
    if _registered is None:
        available()
    scales = [x for x in (k_scale, v_scale) if isinstance(x, _Tensor)]
    if _eager_tensors((k_new, v_new, k_cache, v_cache, slot_mapping, block_table, *scales)):
        _run_write_kv(k_new, v_new, k_cache, v_cache, slot_mapping, block_table, kv_layout,
                      k_scale, v_scale, kv_cache_dtype)
        return
    import torch

    torch.ops.wideattn.write_kv(k_new, v_new, k_cache, v_cache, slot_mapping, block_table, kv_layout,
                                _scale_tensor(k_scale, k_cache, "k_scale", "write_kv"),
                                _scale_tensor(v_scale, k_cache, "v_scale", "write_kv"),
                                str(kv_cache_dtype))


def merge_states_call(outs, lses, out, lse, want_lse, dtype, shape) -> Any:
    """wideattn.merge_states for PyTorch tensors (outs/lses: lists of tensors or one stacked
    tensor each; shape: one state's (tokens, heads, head_dim)): the eager fast path, else
    torch.ops.wideattn.merge_states_out. Returns (out, lse), or out without want_lse."""
    if _registered is None:
        available()
    import torch

    first = outs if isinstance(outs, _Tensor) else outs[0]
    if out is None:
        out = torch.empty(shape, dtype=fw._torch_dtype(dtype if dtype is not None else first.dtype),
                          device=first.device)
    if want_lse and lse is None:
        lse = torch.empty(shape[:2], dtype=torch.float32, device=first.device)
    if _eager_tensors([*_states(outs), *_states(lses), out, lse]):
        _run_merge_states(outs, lses, out, lse)
    else:
        # The operator's schema takes lists: a stacked tensor goes in as its views.
        unstacked = lambda x: list(x.unbind(0)) if isinstance(x, _Tensor) else list(x)  # noqa: E731
        torch.ops.wideattn.merge_states_out(unstacked(outs), unstacked(lses), out, lse)
    return (out, lse) if want_lse else out


def _states(x: Any) -> List[Any]:
    return [x] if isinstance(x, _Tensor) else list(x)


def uses_fast_path(q: Any, k_cache: Any, v_cache: Any, out: Any = None, lse: Any = None,
                   tree: Any = None, sinks: Any = None, block_table: Any = None,
                   k_scale: Any = None, v_scale: Any = None) -> bool:
    """Whether `attention`/`attention_out` with these tensors, here and now, call the extension
    directly (True) or go through torch.ops.wideattn (False)."""
    if not available():
        return False
    return _eager(q, k_cache, v_cache, out, lse, tree, sinks, block_table, k_scale, v_scale)


def _fast(q, k_cache, v_cache, out, lse, query_offsets, kv_lengths, causal, window, ring_length,
          ring_offset, tree, sinks, softcap, scale, kernel, block_table, kv_layout, k_scale=None,
          v_scale=None, kv_cache_dtype="auto", kv_splits=0) -> None:
    if tree is not None:
        tree = (_to_dlpack(tree[0]), _to_dlpack(tree[1]), _to_dlpack(tree[2]))
    stream = _raw_stream(q.get_device()) if q.is_cuda else 0
    _native_attention(
        _to_dlpack(q), _to_dlpack(k_cache), _to_dlpack(v_cache), _to_dlpack(out),
        None if lse is None else _to_dlpack(lse), query_offsets, kv_lengths, causal, window,
        ring_length, ring_offset, tree, None if sinks is None else _to_dlpack(sinks), softcap,
        scale, kernel, stream, False, False,
        None if block_table is None else _to_dlpack(block_table), kv_layout,
        None if k_scale is None else _scale_capsule(k_scale, q, "k_scale", "attention"),
        None if v_scale is None else _scale_capsule(v_scale, q, "v_scale", "attention"),
        kv_cache_dtype, kv_splits)


def call(q, k_cache, v_cache, out, lse, return_lse, query_offsets, kv_lengths, causal, window,
         ring_length, ring_offset, tree, sinks, softcap, scale, kernel, block_table=None,
         kv_layout=None, k_scale=None, v_scale=None, kv_cache_dtype="auto", kv_splits=0) -> Any:
    """wideattn.attention for a PyTorch q (every argument positional, as wideattn.attention
    takes them): the eager fast path, else the operators. Returns out or (out, lse)."""
    if _registered is None:
        available()
    if block_table is None:
        kv_layout = None
    elif kv_layout is None:
        kv_layout = "NHD"
    if _eager(q, k_cache, v_cache, out, lse, tree, sinks, block_table, k_scale, v_scale):
        if out is None:
            out = _empty_like(q, memory_format=_contiguous)
        if lse is None and return_lse:
            lse = _empty((q.shape[0], q.shape[1]), dtype=_float32, device=q.device)
        _fast(q, k_cache, v_cache, out, lse, query_offsets, kv_lengths, causal, window,
              ring_length, ring_offset, tree, sinks, softcap, scale, kernel, block_table, kv_layout,
              k_scale, v_scale, kv_cache_dtype, kv_splits)
        return out if lse is None else (out, lse)
    want_lse = return_lse or lse is not None
    k_scale = _scale_tensor(k_scale, q, "k_scale", "attention")
    v_scale = _scale_tensor(v_scale, q, "v_scale", "attention")
    if out is None and lse is None:
        return _op_attention(q, k_cache, v_cache, want_lse, query_offsets, kv_lengths, causal,
                             window, ring_length, ring_offset, tree, sinks, softcap, scale, kernel,
                             block_table, kv_layout, k_scale, v_scale, kv_cache_dtype, kv_splits)
    import torch

    if out is None:
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    if want_lse and lse is None:
        lse = torch.empty(q.shape[:2], dtype=torch.float32, device=q.device)
    _op_attention_out(q, k_cache, v_cache, out, lse, query_offsets, kv_lengths, causal, window,
                      ring_length, ring_offset, tree, sinks, softcap, scale, kernel, block_table,
                      kv_layout, k_scale, v_scale, kv_cache_dtype, kv_splits)
    return (out, lse) if want_lse else out


def _op_arguments(query_offsets: Any, kv_lengths: Any, tree: Any, scale: Optional[float]) -> tuple:
    """The operators' schema types: int lists, three optional tensors, a float scale (NaN:
    the default). Values are checked by the extension when the operator runs."""
    offsets = fw.host_int32(query_offsets, "query_offsets")
    lengths = fw.host_int32(kv_lengths, "kv_lengths")
    if tree is None:
        tree_parts = (None, None, None)
    elif isinstance(tree, (tuple, list)) and len(tree) == 3:
        tree_parts = tuple(tree)
    else:
        raise TypeError("tree must be a tuple (tree_start, tree_end, tree_height) of int32 tensors")
    if scale is None:
        scale_value = math.nan
    else:
        scale_value = float(scale)
        if not (math.isfinite(scale_value) and scale_value > 0):
            raise ValueError(f"scale = {scale_value}, expected a finite value > 0 (None: 1/sqrt(head_dim))")
    return offsets, lengths, tree_parts, scale_value


def _op_attention(q, k_cache, v_cache, return_lse, query_offsets, kv_lengths, causal, window,
                  ring_length, ring_offset, tree, sinks, softcap, scale, kernel, block_table,
                  kv_layout, k_scale=None, v_scale=None, kv_cache_dtype="auto", kv_splits=0) -> Any:
    import torch

    offsets, lengths, (ts, te, th), scale_value = _op_arguments(query_offsets, kv_lengths, tree, scale)
    out, lse = torch.ops.wideattn.attention(
        q, k_cache, v_cache, offsets, lengths, bool(causal), int(window), int(ring_length),
        int(ring_offset), ts, te, th, sinks, float(softcap), scale_value, str(kernel),
        bool(return_lse), block_table, str(kv_layout or "NHD"), k_scale, v_scale,
        str(kv_cache_dtype), fw.check_int32(kv_splits, "kv_splits"))
    return (out, lse) if return_lse else out


def _op_attention_out(q, k_cache, v_cache, out, lse, query_offsets, kv_lengths, causal, window,
                      ring_length, ring_offset, tree, sinks, softcap, scale, kernel, block_table,
                      kv_layout, k_scale=None, v_scale=None, kv_cache_dtype="auto",
                      kv_splits=0) -> None:
    import torch

    offsets, lengths, (ts, te, th), scale_value = _op_arguments(query_offsets, kv_lengths, tree, scale)
    torch.ops.wideattn.attention_out(
        q, k_cache, v_cache, out, lse, offsets, lengths, bool(causal), int(window),
        int(ring_length), int(ring_offset), ts, te, th, sinks, float(softcap), scale_value,
        str(kernel), block_table, str(kv_layout or "NHD"), k_scale, v_scale, str(kv_cache_dtype),
        fw.check_int32(kv_splits, "kv_splits"))


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
    block_table: Optional[Any] = None,
    kv_layout: str = "NHD",
    k_scale: Optional[Any] = None,
    v_scale: Optional[Any] = None,
    kv_cache_dtype: str = "auto",
    window_left: Optional[int] = None,
    kv_splits: int = 0,
) -> Any:
    """wideattn.attention for PyTorch tensors (same arguments and shapes): the eager fast path
    when it applies, else torch.ops.wideattn.attention; returns out, or (out, lse) with
    return_lse. window_left (FlashInfer's: window = window_left + 1; -1: none) as in
    wideattn.attention; the operators take the resulting `window`."""
    if not available():
        raise ImportError("wideattn.torch_ops needs PyTorch")
    if window_left is not None:
        window = fw.window_from_left(window, window_left, causal, "attention")
    return call(q, k_cache, v_cache, None, None, return_lse, query_offsets, kv_lengths, causal,
                window, ring_length, ring_offset, tree, sinks, softcap, scale, kernel, block_table,
                kv_layout, k_scale, v_scale, kv_cache_dtype, kv_splits)


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
    block_table: Optional[Any] = None,
    kv_layout: str = "NHD",
    k_scale: Optional[Any] = None,
    v_scale: Optional[Any] = None,
    kv_cache_dtype: str = "auto",
    window_left: Optional[int] = None,
    kv_splits: int = 0,
) -> None:
    """Writes attention into `out` [total_tokens, q_heads, head_dim] (and `lse`
    [total_tokens, q_heads] float32 when given): the eager fast path when it applies, else
    torch.ops.wideattn.attention_out. window_left as in `attention`."""
    if not available():
        raise ImportError("wideattn.torch_ops needs PyTorch")
    if window_left is not None:
        window = fw.window_from_left(window, window_left, causal, "attention_out")
    if out is None:
        raise TypeError("attention_out: out is required")
    call(q, k_cache, v_cache, out, lse, False, query_offsets, kv_lengths, causal, window,
         ring_length, ring_offset, tree, sinks, softcap, scale, kernel, block_table, kv_layout,
         k_scale, v_scale, kv_cache_dtype, kv_splits)
