"""A NumPy float64 oracle of wideattn's attention and components, written from the semantics in
include/wideattn/problem.h (MaskSpec) and components.h; used by the Python tests only."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np


def to_f64(x) -> np.ndarray:
    """Any NumPy array (bfloat16 too) or CPU torch tensor as float64."""
    if type(x).__module__.startswith("torch"):
        import torch

        x = x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x).astype(np.float64)


def key_visible(prefix: int, suffix: int, t: int, i: int, *, causal: bool, window: int,
                ring_length: int, ring_offset: int,
                tree: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]]) -> bool:
    """Whether suffix query t sees cache row i, per problem.h's MaskSpec."""
    qpos = prefix + (int(tree[2][t]) if tree is not None else t)
    kpos = i
    if i >= prefix:
        j = i - prefix
        if tree is not None:
            if t < tree[0][j] or t > tree[1][j]:
                return False
            kpos = prefix + int(tree[2][j])
        elif causal and j > t:
            return False
    elif ring_length > 0:
        logical = (prefix + i - ring_offset) % prefix
        if logical >= ring_length:
            return False
        kpos = logical
    if window > 0:
        distance = qpos - kpos
        if causal:
            if distance < 0 or distance >= window:
                return False
        elif abs(distance) > window // 2:
            return False
    return True


def visibility(prefix: int, suffix: int, **mask) -> np.ndarray:
    """bool [suffix, prefix + suffix]: which cache rows each suffix query sees."""
    seen = np.zeros((suffix, prefix + suffix), dtype=bool)
    for t in range(suffix):
        for i in range(prefix + suffix):
            seen[t, i] = key_visible(prefix, suffix, t, i, **mask)
    return seen


def attention(q, k, v, query_offsets: Sequence[int], kv_lengths: Sequence[int], *,
              causal: bool = True, window: int = 0, ring_length: int = 0, ring_offset: int = 0,
              tree=None, sinks=None, softcap: float = 0.0,
              scale: Optional[float] = None) -> Tuple[np.ndarray, np.ndarray]:
    """out [tokens, q_heads, head_dim] and lse [tokens, q_heads], float64."""
    q, k, v = to_f64(q), to_f64(k), to_f64(v)
    tokens, q_heads, d = q.shape
    kv_heads = k.shape[2]
    group = q_heads // kv_heads
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    sinks = None if sinks is None else to_f64(sinks)
    tree = None if tree is None else tuple(np.asarray(a) for a in tree)
    out = np.zeros((tokens, q_heads, d))
    lse = np.full((tokens, q_heads), -np.inf)
    for b in range(len(kv_lengths)):
        first, last = query_offsets[b], query_offsets[b + 1]
        suffix = last - first
        if suffix == 0:
            continue
        prefix = kv_lengths[b] - suffix
        seq_tree = None if tree is None else tuple(a[first:last] for a in tree)
        seen = visibility(prefix, suffix, causal=causal, window=window, ring_length=ring_length,
                          ring_offset=ring_offset, tree=seq_tree)
        for h in range(q_heads):
            g = h // group
            keys = k[b, : prefix + suffix, g]
            values = v[b, : prefix + suffix, g]
            logits = scale * q[first:last, h] @ keys.T
            if softcap > 0:
                logits = softcap * np.tanh(logits / softcap)
            logits = np.where(seen, logits, -np.inf)
            sink = -np.inf if sinks is None else sinks[h]
            maximum = np.maximum(logits.max(axis=1, initial=-np.inf), sink)
            for t in range(suffix):
                if maximum[t] == -np.inf:
                    continue
                weights = np.exp(logits[t] - maximum[t])
                normaliser = weights.sum() + (np.exp(sink - maximum[t]) if sinks is not None else 0.0)
                out[first + t, h] = weights @ values / normaliser
                lse[first + t, h] = maximum[t] + np.log(normaliser)
    return out, lse


def softmax(x, rows_per_block: int = 0, sinks=None) -> Tuple[np.ndarray, np.ndarray]:
    """Row softmax of float64 x [rows, cols] with an optional sink per block; (p, lse)."""
    x = to_f64(x)
    rows = x.shape[0]
    block = rows_per_block or max(rows, 1)
    sink = np.full(rows, -np.inf) if sinks is None else np.repeat(to_f64(sinks), block)
    maximum = np.maximum(x.max(axis=1, initial=-np.inf), sink)
    safe = np.where(np.isfinite(maximum), maximum, 0.0)
    e = np.exp(x - safe[:, None])
    normaliser = e.sum(axis=1) + np.exp(sink - safe)
    p = np.where(np.isfinite(maximum)[:, None], e / np.where(normaliser > 0, normaliser, 1)[:, None], 0.0)
    lse = np.where(np.isfinite(maximum), safe + np.log(np.where(normaliser > 0, normaliser, 1)), -np.inf)
    return p, lse


def write_kv(k_cache, v_cache, k_new, v_new, slot_mapping, *, paged: bool,
             kv_layout: str = "NHD") -> Tuple[np.ndarray, np.ndarray]:
    """The caches (float64 copies) after write_kv, per include/wideattn/write_kv.h: token t's
    rows go to slot s = slot_mapping[t] (paged: page s // page_size, row s % page_size; contiguous:
    sequence s // capacity, row s % capacity); s = -1 skips the token."""
    k_out, v_out = to_f64(k_cache).copy(), to_f64(v_cache).copy()
    k_new, v_new = to_f64(k_new), to_f64(v_new)
    head_major = paged and kv_layout == "HND"
    rows = k_out.shape[2] if head_major else k_out.shape[1]
    for t, s in enumerate(np.asarray(slot_mapping).tolist()):
        if s == -1:
            continue
        outer, row = divmod(s, rows)
        for h in range(k_new.shape[1]):
            where = (outer, h, row) if head_major else (outer, row, h)
            k_out[where] = k_new[t, h]
            v_out[where] = v_new[t, h]
    return k_out, v_out


def merge_states(outs, lses) -> Tuple[np.ndarray, np.ndarray]:
    """out [tokens, heads, head_dim] and lse [tokens, heads], float64, per components.h: a state
    with lse -inf contributes nothing (whatever its out holds); all dead: zeros and -inf."""
    lses = np.stack([to_f64(x) for x in lses])  # [S, tokens, heads]
    outs = np.stack([to_f64(x) for x in outs])  # [S, tokens, heads, head_dim]
    live = lses > -np.inf
    maximum = np.max(lses, axis=0)
    safe = np.where(live.any(axis=0), maximum, 0.0)
    weights = np.where(live, np.exp(lses - safe), 0.0)
    total = weights.sum(axis=0)
    lse = np.where(total > 0, safe + np.log(np.where(total > 0, total, 1.0)), -np.inf)
    scaled = np.where(live[..., None], weights[..., None] * np.where(live[..., None], outs, 0.0), 0.0)
    out = scaled.sum(axis=0) / np.where(total > 0, total, 1.0)[..., None]
    return out, lse


def assert_close(actual, expected, atol: float, rtol: float, what: str) -> None:
    """Equal inf/NaN positions, then |a - e| <= atol + rtol |e|; reports the worst element."""
    a, e = to_f64(actual), np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    a_bad, e_bad = ~np.isfinite(a), ~np.isfinite(e)
    if not np.array_equal(a_bad, e_bad) or not np.array_equal(a[a_bad], e[e_bad], equal_nan=True):
        where = np.argwhere((a_bad != e_bad) | (a_bad & (a != e) & ~(np.isnan(a) & np.isnan(e))))
        idx = tuple(where[0]) if len(where) else None
        raise AssertionError(f"{what}: non-finite entries differ, first at {idx}: "
                             f"{a[idx] if idx else None} vs {e[idx] if idx else None}")
    fa, fe = np.where(a_bad, 0, a), np.where(e_bad, 0, e)
    excess = np.abs(fa - fe) - (atol + rtol * np.abs(fe))
    if excess.size and excess.max() > 0:
        idx = np.unravel_index(np.argmax(excess), excess.shape)
        raise AssertionError(f"{what}: worst element {idx}: {fa[idx]} vs {fe[idx]} "
                             f"(|diff| {abs(fa[idx] - fe[idx]):.3g} > {atol} + {rtol} * |expected|)")
