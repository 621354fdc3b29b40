"""wideattn as an attention implementation of Hugging Face transformers.

    import wideattn.transformers_integration   # registers attn_implementation="wideattn"
    model = AutoModelForCausalLM.from_pretrained(name, attn_implementation="wideattn")

Importing this module imports transformers and calls `register_transformers()`, which registers
two functions under one name: `attention_forward` in transformers' `AttentionInterface` (what
every attention layer calls) and `build_mask` in its `AttentionMaskInterface` (what the model
calls once per forward to build each layer type's mask; without it transformers would hand a
custom implementation no mask at all, padding included).

What each layer call does, without copying the cache: the queries [batch, heads, q_len, dim]
become token-major rows; transformers' key/value tensors [batch, kv_heads, kv_len, dim] (the
cache included) are passed as strided [batch, kv_len, kv_heads, dim] views; the new tokens are the
last rows of each sequence's keys (wideattn's suffix convention, which is where transformers'
dynamic caches put them). The layer's `sliding_window`, `scaling`, `softcap`, causality
(`is_causal`) and attention sinks (`s_aux`, as GPT-OSS passes them) map onto wideattn's mask and
arguments:

- causal sliding window w (transformers: key j visible from query i iff i - w < j <= i) is
  wideattn's causal window w (0 <= qpos - kpos < w); a bidirectional window w
  (|i - j| <= w) is wideattn's bidirectional window 2w.
- the mask: `build_mask` returns None where the mask is the layer's plain pattern (no
  padding, the queries at the end of the keys), and transformers' boolean 4-D mask otherwise.
  A 4-D mask (boolean, or additive with 0 and the dtype's minimum) is read back into per-sequence
  key ranges: sequence b's visible keys form one range [start_b, end_b) (left or right padding,
  a sliding cache, a static cache's unwritten tail), its queries sit at consecutive positions,
  and every query row that sees its own key must see exactly the keys the layer's causal mask and
  window allow inside that range. The mask is checked element by element against that
  description; a mask it does not describe (packed sequences, bidirectional image blocks, holes in
  the padding, additive biases) raises ValueError naming `attention_mask`. Query rows whose own
  key is masked (padding tokens) get zeros, as in FlashAttention's unpadded path.
- a batch whose sequences all see all keys runs as one wideattn call; a padded batch runs one
  call per sequence, on views of the same tensors.

Not supported: attention weights (`output_attentions` returns None for them), dropout > 0 and
backward (wideattn computes inference attention), FlexAttention BlockMasks, packed/varlen inputs
(`cu_seq_lens_q`), paged caches (continuous batching), and key/value head dims that differ from
the query's. The mask analysis reads the mask's summary on the host: one synchronisation per
materialised mask per forward on CUDA (masks are shared by all layers of a type, and the analysis
is cached per mask tensor).
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any, Dict, List, Optional, Tuple

import torch

from ._api import attention as _attention

__all__ = ["attention_forward", "build_mask", "register_transformers", "sequence_layout"]

DEFAULT_NAME = "wideattn"


# --------------------------------------------------------------------------------------------
# The attention function


def attention_forward(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    dropout: float = 0.0,
    scaling: Optional[float] = None,
    sliding_window: Optional[int] = None,
    softcap: Optional[float] = None,
    is_causal: Optional[bool] = None,
    s_aux: Optional[torch.Tensor] = None,
    **kwargs: Any,
) -> Tuple[torch.Tensor, None]:
    """transformers' attention-function signature: query [batch, heads, q_len, dim], key/value
    [batch, kv_heads, kv_len, dim] (cache included), attention_mask None or [batch, 1, q_len,
    kv_len]; returns (out [batch, q_len, heads, dim], None)."""
    if kwargs.get("output_attentions") and not _warned_weights:
        _warn_weights()
    if dropout:
        raise NotImplementedError(
            f"wideattn attention: dropout={dropout} is not supported (inference only); call "
            "model.eval() or use another attn_implementation for training")
    for name in ("cu_seq_lens_q", "cu_seq_lens_k"):
        if kwargs.get(name) is not None:
            raise NotImplementedError(
                f"wideattn attention: {name} (packed/varlen inputs) is not supported; pass a "
                "padded batch with an attention_mask")
    if query.dim() != 4 or key.dim() != 4 or value.dim() != 4:
        raise ValueError(
            "wideattn attention: query, key and value must be 4-D [batch, heads, length, head_dim], "
            f"got {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
    batch, heads, q_len, dim = query.shape
    kv_len = key.shape[2]
    if key.shape[-1] != dim or value.shape[-1] != dim:
        raise NotImplementedError(
            f"wideattn attention: key/value head_dim ({key.shape[-1]}, {value.shape[-1]}) must equal "
            f"the query's ({dim})")
    if value.shape[:3] != key.shape[:3] or key.shape[0] != batch:
        raise ValueError(
            f"wideattn attention: key {tuple(key.shape)} and value {tuple(value.shape)} do not match "
            f"query {tuple(query.shape)}")

    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(causal)
    window = _wideattn_window(sliding_window, causal)
    if scaling is None:
        head_dim = getattr(module, "head_dim", None)
        scaling = head_dim ** -0.5 if head_dim else None
    sinks = s_aux if s_aux is not None else kwargs.get("sinks")
    if sinks is not None:
        sinks = sinks.detach().to(device=query.device, dtype=torch.float32).reshape(-1)
        if sinks.numel() != heads:
            raise ValueError(
                f"wideattn attention: s_aux (attention sinks) must hold one value per query head "
                f"({heads}), got shape {tuple(sinks.shape)}")
        sinks = sinks.contiguous()
    common = dict(causal=causal, window=window, softcap=float(softcap or 0.0),
                  scale=None if scaling is None else float(scaling), sinks=sinks)

    # [batch, kv_len, kv_heads, dim] views of transformers' [batch, kv_heads, kv_len, dim] tensors.
    k_cache = _last_dim_contiguous(key).transpose(1, 2)
    v_cache = _last_dim_contiguous(value).transpose(1, 2)
    q_rows = _last_dim_contiguous(query).transpose(1, 2)  # [batch, q_len, heads, dim]

    layout = sequence_layout(attention_mask, batch, q_len, kv_len, causal, sliding_window)
    if layout is None:  # every sequence: all keys, queries at the end
        layout = [(0, kv_len, 0, q_len)] * batch
    start, end, row_begin, row_end = layout[0]
    if all(entry == layout[0] for entry in layout) and (row_begin, row_end) == (0, q_len):
        # One call for the batch: the same key range and every query row in each sequence.
        out = torch.empty((batch, q_len, heads, dim), dtype=query.dtype, device=query.device)
        if batch * q_len:
            _attention(q_rows.reshape(batch * q_len, heads, dim), k_cache[:, start:end],
                       v_cache[:, start:end], out=out.view(batch * q_len, heads, dim),
                       query_offsets=list(range(0, (batch + 1) * q_len, q_len)),
                       kv_lengths=[end - start] * batch, **common)
        return out, None

    # Padding: one call per sequence on views; the padding rows stay zero.
    out = torch.zeros((batch, q_len, heads, dim), dtype=query.dtype, device=query.device)
    for b, (start, end, row_begin, row_end) in enumerate(layout):
        rows = row_end - row_begin
        if rows <= 0:
            continue
        _attention(q_rows[b, row_begin:row_end], k_cache[b:b + 1, start:end],
                   v_cache[b:b + 1, start:end], out=out[b, row_begin:row_end],
                   query_offsets=[0, rows], kv_lengths=[end - start], **common)
    return out, None


_warned_weights = False


def _warn_weights() -> None:
    global _warned_weights
    _warned_weights = True
    warnings.warn("wideattn attention does not return attention weights (output_attentions): "
                  "they come back as None; use attn_implementation='eager' to inspect them",
                  stacklevel=3)


def _last_dim_contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 or x.shape[-1] == 1 else x.contiguous()


def _wideattn_window(sliding_window: Optional[int], causal: bool) -> int:
    """transformers' sliding_window as wideattn's `window` (0: none)."""
    if sliding_window is None:
        return 0
    w = int(sliding_window)
    if w <= 0:
        raise ValueError(f"wideattn attention: sliding_window must be positive, got {sliding_window}")
    # causal: i - w < j <= i, wideattn 0 <= i - j < w; bidirectional: |i - j| <= w, wideattn
    # |i - j| <= window / 2.
    return w if causal else 2 * w


# --------------------------------------------------------------------------------------------
# Reading a 4-D mask back into per-sequence ranges

Layout = Optional[List[Tuple[int, int, int, int]]]

# mask tensor id -> (weakref to it, its _version, the analysis arguments, the layout)
_layout_cache: Dict[int, Tuple[Any, int, Tuple[Any, ...], Layout]] = {}
_LAYOUT_CACHE_SIZE = 16


def sequence_layout(attention_mask: Optional[torch.Tensor], batch: int, q_len: int, kv_len: int,
                    causal: bool = True, sliding_window: Optional[int] = None) -> Layout:
    """What wideattn runs for a transformers mask: None when every sequence sees all kv_len keys
    with its q_len queries at the end (the mask is None, or says exactly that), else one
    (start, end, row_begin, row_end) per sequence: its keys are rows [start, end) of the key
    tensor, query rows [row_begin, row_end) are computed (the last one sits at key end - 1) and
    the other query rows are padding (zeros).

    Raises ValueError naming `attention_mask` when the mask is not of that form (checked element
    by element against the causal/bidirectional pattern and sliding_window)."""
    if attention_mask is None:
        return None
    if not isinstance(attention_mask, torch.Tensor) or type(attention_mask).__name__ == "BlockMask":
        raise TypeError(
            "wideattn attention: attention_mask must be None or a 4-D tensor, got "
            f"{type(attention_mask).__name__} (FlexAttention BlockMasks are not supported)")
    args = (batch, q_len, kv_len, bool(causal), sliding_window, tuple(attention_mask.shape),
            attention_mask.dtype, attention_mask.device)
    entry = _layout_cache.get(id(attention_mask))
    if entry is not None and entry[0]() is attention_mask and entry[1] == attention_mask._version \
            and entry[2] == args:
        return entry[3]
    layout = _analyse(attention_mask, batch, q_len, kv_len, bool(causal), sliding_window)
    if len(_layout_cache) >= _LAYOUT_CACHE_SIZE:
        for key in [k for k, v in _layout_cache.items() if v[0]() is None] or list(_layout_cache):
            del _layout_cache[key]
    try:
        ref = weakref.ref(attention_mask)
    except TypeError:  # pragma: no cover - tensors support weak references
        return layout
    _layout_cache[id(attention_mask)] = (ref, attention_mask._version, args, layout)
    return layout


def _analyse(mask: torch.Tensor, batch: int, q_len: int, kv_len: int, causal: bool,
             sliding_window: Optional[int]) -> Layout:
    if mask.dim() != 4:
        raise ValueError(
            "wideattn attention: attention_mask must be 4-D [batch, 1, q_len, kv_len] (a 2-D padding "
            f"mask is turned into one by the model), got shape {tuple(mask.shape)}")
    if mask.shape[0] not in (1, batch) or mask.shape[2] != q_len or mask.shape[3] < kv_len:
        raise ValueError(
            f"wideattn attention: attention_mask has shape {tuple(mask.shape)}; expected "
            f"[{batch}, 1, {q_len}, >= {kv_len}] for query length {q_len} and key length {kv_len}")
    if q_len == 0 or kv_len == 0:
        return None
    mask = mask[..., :kv_len]
    if mask.dtype == torch.bool:
        visible = mask
    elif mask.is_floating_point():
        visible = mask == 0
        if bool((~visible & (mask > torch.finfo(mask.dtype).min / 2)).any()):
            raise ValueError(
                "wideattn attention: attention_mask holds additive biases (values other than 0 and "
                "the dtype's minimum or -inf); wideattn takes masks, not biases")
    else:
        visible = mask != 0
    if visible.shape[1] != 1 and not bool((visible == visible[:, :1]).all()):
        raise ValueError(
            "wideattn attention: attention_mask differs between heads; wideattn applies one mask "
            "to every head")
    visible = visible[:, 0].expand(batch, q_len, kv_len)  # [batch, q_len, kv_len]
    device = visible.device
    keys = torch.arange(kv_len, device=device)
    rows = torch.arange(q_len, device=device)

    def first_true(x: torch.Tensor) -> torch.Tensor:  # index of the first True on the last dim
        return x.to(torch.uint8).argmax(dim=-1)

    seen = visible.any(dim=1)                        # [batch, kv_len]: keys some query sees
    has_keys = seen.any(dim=1)                       # [batch]
    start = torch.where(has_keys, first_true(seen), 0)
    end = torch.where(has_keys, kv_len - first_true(seen.flip(-1)), 0)
    if causal:
        # Query row i sits at key position q0 + i. The first row that sees a key is a real token
        # (padding rows before it see nothing), and the last key it sees is its own position.
        first_row = first_true(visible.any(dim=2))                          # [batch]
        row = visible[torch.arange(batch, device=device), first_row]        # [batch, kv_len]
        q0 = (kv_len - 1 - first_true(row.flip(-1))) - first_row
        q0 = torch.where(has_keys, q0, kv_len - q_len)
    else:
        q0 = torch.full((batch,), kv_len - q_len, device=device, dtype=torch.long)
    row_begin = (start - q0).clamp(0, q_len)
    row_end = torch.maximum((end - q0).clamp(max=q_len), row_begin)

    # The mask wideattn applies: keys [start, end) of rows [row_begin, row_end), with the layer's
    # pattern. (Comparisons only: no int64 temporaries of the mask's size.)
    pos = (q0[:, None] + rows[None, :])[:, :, None]                    # [batch, q_len, 1]
    k = keys[None, None, :]
    expected = (k >= start[:, None, None]) & (k < end[:, None, None]) & (pos >= 0)  # full shape
    if causal:
        expected &= k <= pos
        if sliding_window is not None:
            expected &= k > pos - int(sliding_window)
    elif sliding_window is not None:
        expected &= (k >= pos - int(sliding_window)) & (k <= pos + int(sliding_window))
    computed = (rows[None, :] >= row_begin[:, None]) & (rows[None, :] < row_end[:, None])
    bad_rows = (expected != visible).any(dim=2) & computed                # [batch, q_len]
    bad = bad_rows.any(dim=1)
    # The last computed row must sit at key end - 1: wideattn's new tokens end the keys.
    misplaced = has_keys & (row_end > row_begin) & (q0 + row_end != end)

    summary = torch.stack([start, end, row_begin, row_end, has_keys.long(), q0, bad.long(),
                           first_true(bad_rows), misplaced.long()], dim=1).tolist()
    layout: List[Tuple[int, int, int, int]] = []
    for b, (s, e, r0, r1, has, q0_b, bad_b, bad_row, misplaced_b) in enumerate(summary):
        if bad_b or misplaced_b:
            pattern = ("causal" if causal else "bidirectional") + (
                f" with sliding_window={sliding_window}" if sliding_window is not None else "")
            detail = ""
            if bad_b:
                seen_keys = visible[b, bad_row].nonzero().flatten().tolist()
                want = expected[b, bad_row].nonzero().flatten().tolist()
                detail = (f"; query row {bad_row} sees keys {_ranges(seen_keys)} where that "
                          f"pattern gives {_ranges(want)}")
            raise ValueError(
                f"wideattn attention: attention_mask (shape {tuple(mask.shape)}) cannot be "
                f"expressed as per-sequence lengths: sequence {b} sees keys [{s}, {e}) from queries "
                f"at positions {q0_b}..{q0_b + q_len - 1}, but not as the layer's {pattern}"
                f"{detail}. Supported: left/right padding, and caches whose new tokens end the "
                "keys; not packed sequences, block (e.g. bidirectional image) masks or holes in the "
                "padding")
        layout.append((s, e, r0, r1) if has else (0, 0, 0, 0))
    if all(entry == (0, kv_len, 0, q_len) for entry in layout):
        return None
    return layout


def _ranges(indices: List[int]) -> str:
    """[0, 1, 2, 5] -> "[0-2, 5]"."""
    parts: List[List[int]] = []
    for i in indices:
        if parts and parts[-1][1] == i - 1:
            parts[-1][1] = i
        else:
            parts.append([i, i])
    return "[" + ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in parts) + "]"


# --------------------------------------------------------------------------------------------
# The mask function


def build_mask(**kwargs: Any) -> Optional[torch.Tensor]:
    """transformers' mask-interface function (called with keywords: batch_size, q_length or
    cache_position, kv_length, q_offset, kv_offset, mask_function, attention_mask, ...). None
    when the layer's own pattern is the whole mask: the model allowed skipping it (no extra mask
    function, no packed sequences), no key is padding, and the queries are the last ones of the
    keys (q_offset + q_length == kv_offset + kv_length). Otherwise transformers' boolean 4-D
    SDPA mask, which attention_forward reads back into per-sequence lengths."""
    from transformers.masking_utils import sdpa_mask

    causal_skip = kwargs.pop("allow_is_causal_skip", True)
    bidirectional_skip = kwargs.pop("allow_is_bidirectional_skip", False)
    if (causal_skip or bidirectional_skip) and _is_plain(kwargs):
        return None
    return sdpa_mask(allow_is_causal_skip=False, allow_is_bidirectional_skip=False, **kwargs)


def _is_plain(kwargs: Dict[str, Any]) -> bool:
    kv_length, kv_offset = kwargs.get("kv_length"), kwargs.get("kv_offset", 0)
    if "q_length" in kwargs:
        q_length, q_offset = kwargs["q_length"], kwargs.get("q_offset", 0)
    elif isinstance(kwargs.get("cache_position"), torch.Tensor):  # transformers < 5.2 or so
        positions = kwargs["cache_position"]
        if positions.dim() != 1 or positions.numel() == 0 or _tracing(positions):
            return False
        q_length, q_offset = positions.numel(), int(positions[0])
    else:
        return False
    if not all(isinstance(x, int) for x in (q_length, q_offset, kv_length, kv_offset)):
        return False  # a static cache's tensor offset, or symbolic sizes: materialise the mask
    if q_offset + q_length != kv_offset + kv_length:
        return False
    padding = kwargs.get("attention_mask")
    if padding is None:
        return True
    if padding.dim() != 2 or padding.shape[-1] < kv_offset + kv_length or _tracing(padding):
        return False
    return bool(padding[:, kv_offset:kv_offset + kv_length].all())


def _tracing(x: torch.Tensor) -> bool:
    """Whether reading x's values would break a trace (compiling, or a fake/functional tensor)."""
    compiler = getattr(torch, "compiler", None)
    compiling = bool(compiler.is_compiling()) if hasattr(compiler, "is_compiling") else False
    return compiling or type(x) is not torch.Tensor


# --------------------------------------------------------------------------------------------
# Registration


def register_transformers(name: str = DEFAULT_NAME) -> str:
    """Registers wideattn in transformers under `name`: `attention_forward` in AttentionInterface
    and `build_mask` in AttentionMaskInterface, so that `attn_implementation=name` (in
    from_pretrained, from_config or model.set_attn_implementation) runs every attention layer
    through wideattn. Returns `name`."""
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface
    except ImportError as error:  # pragma: no cover - exercised where transformers is absent
        raise ImportError(
            "wideattn.transformers_integration needs transformers with AttentionInterface and "
            f"AttentionMaskInterface (transformers >= 4.54): {error}") from error
    AttentionInterface.register(name, attention_forward)
    AttentionMaskInterface.register(name, build_mask)
    return name


register_transformers()
