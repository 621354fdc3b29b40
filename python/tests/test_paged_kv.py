"""Paged KV caches from Python (CPU): block_table with page pools in the engines' layouts, against
the contiguous path on the same data (bitwise: the CPU kernels are the same code) and the
float64 oracle; seqused_k; and the errors for bad tables and pools."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

import wideattn
from _reference import assert_close, attention as reference_attention

SEED = int(os.environ.get("WIDEATTN_TEST_SEED", np.random.SeedSequence().entropy % 2**32))


@pytest.fixture
def rng(request):
    seed = (SEED + zlib.crc32(request.node.name.encode())) % 2**32
    print(f"seed {seed} (WIDEATTN_TEST_SEED={SEED})")
    return np.random.default_rng(seed)


def make_problem(rng, suffixes, kv_lengths, q_heads=4, kv_heads=2, head_dim=64, dtype=np.float32):
    """q and a contiguous cache [batch, capacity, kv_heads, head_dim] (NaN past each length)."""
    tokens, batch, capacity = sum(suffixes), len(kv_lengths), max(kv_lengths) + 5
    q = rng.standard_normal((tokens, q_heads, head_dim)).astype(dtype)
    k = rng.standard_normal((batch, capacity, kv_heads, head_dim)).astype(dtype)
    v = rng.standard_normal((batch, capacity, kv_heads, head_dim)).astype(dtype)
    for b, length in enumerate(kv_lengths):
        k[b, length:] = np.nan
        v[b, length:] = np.nan
    offsets = np.concatenate([[0], np.cumsum(suffixes)]).tolist()
    return q, k, v, offsets, list(kv_lengths)


def paginate(rng, k, v, kv_lengths, page_size, layout="NHD", one_tensor=False):
    """The cache's pages in a shuffled pool (spare pages NaN): (k_pool, v_pool, block_table)."""
    batch, capacity, kv_heads, head_dim = k.shape
    max_pages = -(-capacity // page_size)
    num_pages = batch * max_pages + 3
    order = rng.permutation(num_pages)
    table = order[: batch * max_pages].reshape(batch, max_pages).astype(np.int32)
    pools = np.full((num_pages, 2, page_size, kv_heads, head_dim), np.nan, dtype=k.dtype)
    for b in range(batch):
        for j in range(max_pages):
            rows = slice(j * page_size, min((j + 1) * page_size, capacity))
            n = rows.stop - rows.start
            pools[table[b, j], 0, :n] = k[b, rows]
            pools[table[b, j], 1, :n] = v[b, rows]
    if layout == "HND":
        pools = np.ascontiguousarray(pools.transpose(0, 1, 3, 2, 4))  # [pages, 2, kv_heads, page, d]
    if one_tensor:  # FlashInfer / Triton: [pages, 2, ...] viewed per pool
        return pools[:, 0], pools[:, 1], table
    return np.ascontiguousarray(pools[:, 0]), np.ascontiguousarray(pools[:, 1]), table


CASES = [
    # suffixes, kv_lengths, page size, layout, one tensor, mask options
    ([1, 1, 1], [70, 5, 33], 16, "NHD", False, {}),
    ([3, 0, 2], [40, 17, 2], 1, "HND", False, {"window": 9}),
    ([12, 20], [50, 20], 32, "NHD", True, {"causal": False}),
    ([1, 4], [300, 97], 256, "HND", True, {"softcap": 20.0}),
    ([30], [130], 64, "NHD", False, {"ring_length": 40, "ring_offset": 7}),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"page{c[2]}-{c[3]}{'-one' if c[4] else ''}")
def test_paged_matches_contiguous_numpy(rng, case):
    suffixes, lengths, page, layout, one_tensor, options = case
    q, k, v, offsets, lengths = make_problem(rng, suffixes, lengths)
    k_pool, v_pool, table = paginate(rng, k, v, lengths, page, layout, one_tensor)
    out, lse = wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths,
                                  return_lse=True, **options)
    paged_out, paged_lse = wideattn.attention(q, k_pool, v_pool, query_offsets=offsets,
                                              seqused_k=lengths, block_table=table,
                                              kv_layout=layout, return_lse=True, **options)
    np.testing.assert_array_equal(paged_out, out)
    np.testing.assert_array_equal(paged_lse, lse)
    ref_out, ref_lse = reference_attention(q, k, v, offsets, lengths, **options)
    assert_close(paged_out, ref_out, 2e-5, 1e-4, "out")
    assert_close(paged_lse, ref_lse, 1e-4, 1e-5, "lse")
    plan = wideattn.plan(q, k_pool, v_pool, query_offsets=offsets, kv_lengths=lengths,
                         block_table=table, kv_layout=layout, **options)
    assert plan.kernel in ("single_pass", "two_pass", "prefill_unfused"), plan


def test_paged_torch_matches_contiguous(rng):
    torch = pytest.importorskip("torch")
    from wideattn import torch_ops

    q, k, v, offsets, lengths = make_problem(rng, [2, 9], [45, 60], q_heads=8, kv_heads=2)
    k_pool, v_pool, table = paginate(rng, k, v, lengths, 16)
    tq, tk, tv = (torch.from_numpy(x).to(torch.bfloat16) for x in (q, k, v))
    tkp, tvp = (torch.from_numpy(x).to(torch.bfloat16) for x in (k_pool, v_pool))
    ttable = torch.from_numpy(table)
    out = wideattn.attention(tq, tk, tv, query_offsets=offsets, kv_lengths=lengths)
    assert torch_ops.uses_fast_path(tq, tkp, tvp)
    paged = wideattn.attention(tq, tkp, tvp, query_offsets=offsets, kv_lengths=lengths,
                               block_table=ttable)
    assert torch.equal(paged, out)
    # The operator (torch.compile, fake tensors and modes go through it) gives the same.
    op_out, _ = torch.ops.wideattn.attention(tq, tkp, tvp, offsets, lengths, True, 0, 0, 0, None,
                                             None, None, None, 0.0, float("nan"), "auto", False,
                                             ttable, "NHD")
    assert torch.equal(op_out, out)


def test_paged_errors_name_the_argument(rng):
    q, k, v, offsets, lengths = make_problem(rng, [1, 1], [20, 9])
    k_pool, v_pool, table = paginate(rng, k, v, lengths, 8)
    args = dict(query_offsets=offsets, kv_lengths=lengths)
    bad = table.copy()
    pages = k_pool.shape[0]
    bad[0, 1] = pages + 4
    with pytest.raises(ValueError, match=rf"kv.block_table\[0\]\[1\] = {pages + 4}, expected a page index in \[0, kv.num_pages = {pages}\)"):
        wideattn.attention(q, k_pool, v_pool, block_table=bad, **args)
    with pytest.raises(ValueError, match=r"kv.max_pages = 2, expected >= 3 pages for kv_lengths\[0\] = 20"):
        wideattn.attention(q, k_pool, v_pool, block_table=table[:, :2], **args)
    with pytest.raises(ValueError, match=r"kv.page_size = 3, expected a power of two"):
        wideattn.attention(q, k_pool[:, :3], v_pool[:, :3], block_table=table, **args)
    with pytest.raises(TypeError, match=r"block_table"):
        wideattn.attention(q, k_pool, v_pool, block_table=table.astype(np.int64), **args)
    with pytest.raises(ValueError, match=r"kv_layout = 'NDH', expected 'NHD' or 'HND'"):
        wideattn.attention(q, k_pool, v_pool, block_table=table, kv_layout="NDH", **args)
    with pytest.raises(TypeError, match=r"kv_lengths or seqused_k"):
        wideattn.attention(q, k_pool, v_pool, block_table=table, seqused_k=lengths, **args)
