"""wideattn.write_kv and wideattn.merge_states against the float64 oracle (_reference.py): NumPy on
the CPU, PyTorch CPU tensors where PyTorch is installed, CUDA where a GPU and a CUDA build are.
write_kv is checked cell by cell over the whole cache (every cell it should not write keeps its
value); bad arguments raise errors naming them and write nothing."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

import wideattn
from _reference import (assert_close, attention as reference_attention,
                        merge_states as reference_merge, to_f64, write_kv as reference_write_kv)

SEED = int(os.environ.get("WIDEATTN_TEST_SEED", np.random.SeedSequence().entropy % 2**32))

try:
    import ml_dtypes

    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - depends on the environment
    BF16 = None


@pytest.fixture
def rng(request):
    seed = (SEED + zlib.crc32(request.node.name.encode())) % 2**32
    print(f"seed {seed} (WIDEATTN_TEST_SEED={SEED})")
    return np.random.default_rng(seed)


def numpy_dtype(name):
    if name == "bfloat16":
        if BF16 is None:
            pytest.skip("ml_dtypes is not installed: no bfloat16 NumPy arrays")
        return BF16
    return np.dtype(name)


def random(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def same_bits(a, b) -> bool:
    """Bitwise equality (NaN payloads and signed zeros included)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


# ---- write_kv -------------------------------------------------------------------------------------


def pools(rng, num_pages, page_size, kv_heads, head_dim, dtype, layout):
    shape = ((num_pages, page_size, kv_heads, head_dim) if layout == "NHD"
             else (num_pages, kv_heads, page_size, head_dim))
    return random(rng, shape, dtype), random(rng, shape, dtype)


def slots_with_padding(rng, tokens, total_slots, skipped):
    """Distinct slots for `tokens` tokens (the cache's last slot among them), `skipped` other
    tokens -1 (padding)."""
    slots = rng.choice(total_slots, size=tokens, replace=False).astype(np.int32)
    if total_slots - 1 not in slots:
        slots[rng.integers(tokens)] = total_slots - 1
    padding = rng.choice(np.flatnonzero(slots != total_slots - 1), size=skipped, replace=False)
    slots[padding] = -1
    return slots


def check_written(k_cache, v_cache, expected_k, expected_v):
    # Exact: write_kv copies without conversion, so every cell is its old or its new value.
    assert np.array_equal(to_f64(k_cache), expected_k), "k_cache differs from the reference"
    assert np.array_equal(to_f64(v_cache), expected_v), "v_cache differs from the reference"


@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("dtype_name", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("page_size,kv_heads,head_dim", [(16, 3, 40), (1, 1, 8), (4, 2, 72)])
def test_write_kv_paged(rng, layout, dtype_name, page_size, kv_heads, head_dim):
    dtype = numpy_dtype(dtype_name)
    num_pages, tokens = 7, 13 if page_size > 1 else 5
    k_cache, v_cache = pools(rng, num_pages, page_size, kv_heads, head_dim, dtype, layout)
    k_new = random(rng, (tokens, kv_heads, head_dim), dtype)
    v_new = random(rng, (tokens, kv_heads, head_dim), dtype)
    slots = slots_with_padding(rng, tokens, num_pages * page_size, skipped=2)
    expected_k, expected_v = reference_write_kv(k_cache, v_cache, k_new, v_new, slots, paged=True,
                                                kv_layout=layout)
    block_table = np.arange(num_pages, dtype=np.int32)[None, :]
    result = wideattn.write_kv(k_new, v_new, k_cache, v_cache, slots, block_table=block_table,
                               kv_layout=layout)
    assert result is None
    check_written(k_cache, v_cache, expected_k, expected_v)


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
def test_write_kv_fused_qkv_slices_into_contiguous_cache(rng, dtype_name):
    # K and V are slices of one fused projection [tokens, (q_heads + 2 kv_heads) * head_dim]:
    # token stride (q_heads + 2 kv_heads) * head_dim, no copy.
    dtype = numpy_dtype(dtype_name)
    tokens, q_heads, kv_heads, head_dim, batch, capacity = 11, 6, 2, 24, 3, 9
    qkv = random(rng, (tokens, (q_heads + 2 * kv_heads) * head_dim), dtype)
    heads = qkv.reshape(tokens, q_heads + 2 * kv_heads, head_dim)
    k_new, v_new = heads[:, q_heads:q_heads + kv_heads], heads[:, q_heads + kv_heads:]
    assert not k_new.flags.c_contiguous and np.shares_memory(k_new, qkv)
    k_cache = random(rng, (batch, capacity, kv_heads, head_dim), dtype)
    v_cache = random(rng, (batch, capacity, kv_heads, head_dim), dtype)
    # Slot = sequence * capacity + row: a prefill of 5 rows into sequence 1, decode rows elsewhere.
    slots = np.array([9 + 2, 9 + 3, 9 + 4, 9 + 5, 9 + 6, 8, -1, 2 * 9 + 0, -1, 0, 2 * 9 + 8],
                     dtype=np.int32)
    expected_k, expected_v = reference_write_kv(k_cache, v_cache, k_new, v_new, slots, paged=False)
    qkv_before = qkv.copy()
    wideattn.write_kv(k_new, v_new, k_cache, v_cache, slots)
    check_written(k_cache, v_cache, expected_k, expected_v)
    assert same_bits(qkv, qkv_before)


@pytest.mark.parametrize("layout", ["NHD", "HND"])
def test_write_kv_interleaved_pools_and_strided_caches(rng, layout):
    # FlashInfer's one tensor [num_pages, 2, ...] viewed per pool (page stride 2 pools), and a
    # contiguous cache whose head dimension is a slice of a wider one.
    num_pages, page_size, kv_heads, head_dim, tokens = 5, 8, 2, 16, 9
    inner = (page_size, kv_heads, head_dim) if layout == "NHD" else (kv_heads, page_size, head_dim)
    kv_cache = random(rng, (num_pages, 2) + inner, np.float32)
    k_new = random(rng, (tokens, kv_heads, head_dim), np.float32)
    v_new = random(rng, (tokens, kv_heads, head_dim), np.float32)
    slots = slots_with_padding(rng, tokens, num_pages * page_size, skipped=3)
    expected_k, expected_v = reference_write_kv(kv_cache[:, 0], kv_cache[:, 1], k_new, v_new, slots,
                                                paged=True, kv_layout=layout)
    wideattn.write_kv(k_new, v_new, kv_cache[:, 0], kv_cache[:, 1], slots,
                      block_table=np.zeros((2, 3), np.int32), kv_layout=layout)
    check_written(kv_cache[:, 0], kv_cache[:, 1], expected_k, expected_v)

    wide_k = random(rng, (2, 6, kv_heads + 1, head_dim), np.float32)
    wide_v = random(rng, (2, 6, kv_heads + 1, head_dim), np.float32)
    k_cache, v_cache = wide_k[:, :, 1:], wide_v[:, :, :kv_heads]  # head-sliced caches
    slots = np.array([7, -1, 0, 11, 5, -1, 6, 1, 10], np.int32)
    expected_k, expected_v = reference_write_kv(k_cache, v_cache, k_new, v_new, slots, paged=False)
    spare_k, spare_v = wide_k[:, :, :1].copy(), wide_v[:, :, kv_heads:].copy()
    wideattn.write_kv(k_new, v_new, k_cache, v_cache, slots)
    check_written(k_cache, v_cache, expected_k, expected_v)
    assert same_bits(wide_k[:, :, :1], spare_k) and same_bits(wide_v[:, :, kv_heads:], spare_v)


def test_write_kv_skips_every_padding_token_and_empty_steps(rng):
    k_cache, v_cache = pools(rng, 3, 4, 2, 8, np.float16, "NHD")
    before_k, before_v = k_cache.copy(), v_cache.copy()
    k_new = random(rng, (4, 2, 8), np.float16)
    wideattn.write_kv(k_new, k_new, k_cache, v_cache, np.full(4, -1, np.int32),
                      block_table=np.zeros((1, 3), np.int32))
    wideattn.write_kv(k_new[:0], k_new[:0], k_cache, v_cache, np.zeros(0, np.int32),
                      block_table=np.zeros((1, 3), np.int32))
    # An empty block table (no sequences yet) still marks the pools as paged.
    wideattn.write_kv(k_new[:0], k_new[:0], k_cache, v_cache, np.zeros(0, np.int32),
                      block_table=np.zeros((0, 3), np.int32))
    assert same_bits(k_cache, before_k) and same_bits(v_cache, before_v)


def test_write_kv_then_attention_reads_it(rng):
    # The engine's step: write the new K/V into paged pools, then attend over them.
    page_size, kv_heads, q_heads, head_dim = 4, 2, 4, 32
    lengths, new = [6, 3], [2, 1]  # sequence b holds lengths[b] rows, the last new[b] of them new
    table = np.array([[3, 0], [1, 4]], np.int32)
    k_pool = np.full((5, page_size, kv_heads, head_dim), np.nan, np.float32)
    v_pool = np.full_like(k_pool, np.nan)
    k_rows = [random(rng, (n, kv_heads, head_dim), np.float32) for n in lengths]
    v_rows = [random(rng, (n, kv_heads, head_dim), np.float32) for n in lengths]
    slot = lambda b, i: table[b, i // page_size] * page_size + i % page_size  # noqa: E731
    for b, n in enumerate(lengths):  # the old rows, written earlier
        for i in range(n - new[b]):
            k_pool[table[b, i // page_size], i % page_size] = k_rows[b][i]
            v_pool[table[b, i // page_size], i % page_size] = v_rows[b][i]
    k_new = np.concatenate([k_rows[b][lengths[b] - new[b]:] for b in range(2)])
    v_new = np.concatenate([v_rows[b][lengths[b] - new[b]:] for b in range(2)])
    slots = np.array([slot(b, i) for b in range(2) for i in range(lengths[b] - new[b], lengths[b])],
                     np.int32)
    wideattn.write_kv(k_new, v_new, k_pool, v_pool, slots, block_table=table)
    q = random(rng, (sum(new), q_heads, head_dim), np.float32)
    offsets = [0, new[0], sum(new)]
    out = wideattn.attention(q, k_pool, v_pool, query_offsets=offsets, kv_lengths=lengths,
                             block_table=table)
    capacity = max(lengths)
    k_dense = np.zeros((2, capacity, kv_heads, head_dim), np.float32)
    v_dense = np.zeros_like(k_dense)
    for b, n in enumerate(lengths):
        k_dense[b, :n], v_dense[b, :n] = k_rows[b], v_rows[b]
    expected, _ = reference_attention(q, k_dense, v_dense, offsets, lengths)
    assert_close(out, expected, 2e-5, 1e-4, "out")


def write_kv_case(rng, dtype=np.float32, tokens=4, layout="NHD"):
    k_cache, v_cache = pools(rng, 3, 4, 2, 8, dtype, layout)
    return dict(k_new=random(rng, (tokens, 2, 8), dtype), v_new=random(rng, (tokens, 2, 8), dtype),
                k_cache=k_cache, v_cache=v_cache, slot_mapping=np.array([0, 5, -1, 11], np.int32),
                block_table=np.zeros((1, 3), np.int32), kv_layout=layout)


BAD_WRITE_KV = [
    # (what changes, exception, message)
    (dict(slot_mapping=np.array([0, 5, 12, 11], np.int32)), ValueError,
     r"write_kv: slot_mapping\[2\] = 12, expected -1 \(skip\) or a slot in \[0, 12\)"),
    (dict(slot_mapping=np.array([0, -2, 1, 2], np.int32)), ValueError, r"slot_mapping\[1\] = -2"),
    (dict(slot_mapping=np.array([0, 5, -1, 11], np.int64)), TypeError,
     r"write_kv: slot_mapping has dtype int64, expected int32"),
    (dict(slot_mapping=np.array([0, 5, -1], np.int32)), ValueError,
     r"slot_mapping.shape\[0\] = 3, expected 4 \(tokens, k_new.shape\[0\]\)"),
    (dict(slot_mapping=np.array([0, 0, 5, 5, -1, -1, 11, 11], np.int32)[::2]), ValueError,
     r"slot_mapping's last dimension must be contiguous"),
    (dict(k_new=np.zeros((4, 2, 8), np.float16), v_new=np.zeros((4, 2, 8), np.float16)), TypeError,
     r"k_cache has dtype float32 but k_new has dtype float16"),
    (dict(v_new=np.zeros((4, 2, 8), np.float64)), TypeError, r"v_new has dtype float64 but k_new"),
    (dict(v_new=np.zeros((3, 2, 8), np.float32)), ValueError, r"v_new.shape\[0\] = 3, expected 4"),
    (dict(k_new=np.zeros((4, 3, 8), np.float32), v_new=np.zeros((4, 3, 8), np.float32)), ValueError,
     r"k_cache.shape\[2\] = 2, expected 3 \(kv_heads, k_new.shape\[1\]\)"),
    (dict(k_new=np.zeros((4, 2, 16), np.float32), v_new=np.zeros((4, 2, 16), np.float32)), ValueError,
     r"k_cache.shape\[3\] = 8, expected 16 \(head_dim"),
    (dict(v_cache=np.zeros((2, 4, 2, 8), np.float32)), ValueError,
     r"v_cache.shape\[0\] = 2, expected 3 \(num_pages"),
    (dict(k_cache=np.zeros((3, 4, 8), np.float32)), ValueError,
     r"k_cache must have 4 dimensions \[num_pages, page_size, kv_heads, head_dim\]"),
    (dict(k_new=np.zeros((4, 2, 16), np.float32)[..., ::2]), ValueError,
     r"k_new's last dimension must be contiguous"),
    (dict(block_table=np.zeros((1, 3), np.int64)), TypeError, r"block_table has dtype int64"),
    (dict(kv_layout="NDH"), ValueError, r"write_kv: kv_layout = 'NDH', expected 'NHD' or 'HND'"),
    (dict(kv_layout="HND", block_table=None), ValueError,
     r"kv_layout = 'HND' describes paged pools .* pass block_table"),
    (dict(k_cache="not an array"), TypeError, r"write_kv: k_cache must be a writable array"),
]


@pytest.mark.parametrize("change,error,message", BAD_WRITE_KV,
                         ids=[m.split(": ")[-1][:40] for _, _, m in BAD_WRITE_KV])
def test_write_kv_bad_arguments_write_nothing(rng, change, error, message):
    arguments = write_kv_case(rng)
    arguments.update(change)
    caches = [a for a in (arguments["k_cache"], arguments["v_cache"]) if isinstance(a, np.ndarray)]
    before = [c.copy() for c in caches]
    positional = [arguments.pop(n) for n in ("k_new", "v_new", "k_cache", "v_cache", "slot_mapping")]
    with pytest.raises(error, match=message):
        wideattn.write_kv(*positional, **arguments)
    assert all(same_bits(c, b) for c, b in zip(caches, before)), "a failed call wrote the cache"


def test_write_kv_overlap_and_read_only_caches(rng):
    case = write_kv_case(rng)
    k_cache = case["k_cache"]
    before = k_cache.copy()
    with pytest.raises(ValueError, match=r"write_kv: kv.k overlaps k_new"):
        wideattn.write_kv(k_cache[0], case["v_new"], k_cache, case["v_cache"], case["slot_mapping"],
                          block_table=case["block_table"])
    read_only = k_cache.copy()
    read_only.flags.writeable = False
    with pytest.raises(TypeError, match=r"write_kv: k_cache must be a writable array .* read-only"):
        wideattn.write_kv(case["k_new"], case["v_new"], read_only, case["v_cache"],
                          case["slot_mapping"], block_table=case["block_table"])
    assert same_bits(k_cache, before)


# ---- merge_states ---------------------------------------------------------------------------------

MERGE_TOLERANCE = {"float32": (2e-5, 2e-5), "float16": (1e-3, 2e-3), "bfloat16": (8e-3, 8e-3)}
LSE_TOLERANCE = (2e-5, 1e-5)


def make_states(rng, count, tokens, heads, head_dim, dtypes):
    outs = [random(rng, (tokens, heads, head_dim), dtypes[s % len(dtypes)]) for s in range(count)]
    lses = [random(rng, (tokens, heads), np.float32, scale=3.0) for _ in range(count)]
    return outs, lses


@pytest.mark.parametrize("count", [1, 2, 3, 7, 32])
@pytest.mark.parametrize("out_dtype", ["float32", "float16", "bfloat16"])
def test_merge_states_matches_reference(rng, count, out_dtype):
    dtypes = [np.float32, np.float16] + ([BF16] if BF16 is not None else [])
    outs, lses = make_states(rng, count, tokens=7, heads=3, head_dim=40, dtypes=dtypes)
    out, lse = wideattn.merge_states(outs, lses, dtype=numpy_dtype(out_dtype))
    assert out.shape == (7, 3, 40) and out.dtype == numpy_dtype(out_dtype)
    assert lse.shape == (7, 3) and lse.dtype == np.float32
    expected_out, expected_lse = reference_merge(outs, lses)
    assert_close(out, expected_out, *MERGE_TOLERANCE[out_dtype], "out")
    assert_close(lse, expected_lse, *LSE_TOLERANCE, "lse")


def test_merge_states_stacked_and_engine_layouts(rng):
    count, tokens, heads, head_dim = 4, 9, 5, 24
    outs, lses = make_states(rng, count, tokens, heads, head_dim, [np.float16])
    expected_out, expected_lse = reference_merge(outs, lses)
    listed_out, listed_lse = wideattn.merge_states(outs, lses)
    assert listed_out.dtype == np.float16  # outs[0]'s dtype by default

    stacked_out, stacked_lse = wideattn.merge_states(np.stack(outs), np.stack(lses))
    assert same_bits(stacked_out, listed_out) and same_bits(stacked_lse, listed_lse)

    # FlashInfer's [tokens, S, heads, head_dim] and [tokens, S, heads] as strided views; vLLM's
    # head-major lse [heads, tokens] transposed; a tuple of states.
    flashinfer_v = np.ascontiguousarray(np.stack(outs).transpose(1, 0, 2, 3))
    flashinfer_s = np.ascontiguousarray(np.stack(lses).transpose(1, 0, 2))
    out, lse = wideattn.merge_states(flashinfer_v.transpose(1, 0, 2, 3), flashinfer_s.transpose(1, 0, 2))
    assert same_bits(out, listed_out) and same_bits(lse, listed_lse)
    head_major = [np.ascontiguousarray(x.T) for x in lses]
    out, lse = wideattn.merge_states(tuple(outs), [x.T for x in head_major])
    assert same_bits(out, listed_out) and same_bits(lse, listed_lse)
    assert_close(listed_out, expected_out, *MERGE_TOLERANCE["float16"], "out")
    assert_close(listed_lse, expected_lse, *LSE_TOLERANCE, "lse")


def test_merge_states_strided_inputs_and_outputs(rng):
    tokens, heads, head_dim = 6, 4, 16
    wide = [random(rng, (tokens, heads + 2, head_dim + 8), np.float32) for _ in range(3)]
    outs = [w[:, 1:heads + 1, 8:] for w in wide]  # head and head_dim slices
    lse_buffer = random(rng, (3, heads, tokens * 2), np.float32, scale=2.0)
    lses = [lse_buffer[s, :, ::2].T for s in range(3)]  # token stride 2, head stride 2 tokens
    out_buffer = np.full((tokens, heads + 1, head_dim + 4), 7.0, np.float32)
    lse_out_buffer = np.full((heads, tokens + 1), 7.0, np.float32)
    out, lse = out_buffer[:, :heads, 2:head_dim + 2], lse_out_buffer[:, 1:].T
    result = wideattn.merge_states(outs, lses, out=out, lse=lse)
    assert result[0] is out and result[1] is lse
    expected_out, expected_lse = reference_merge(outs, lses)
    assert_close(out, expected_out, *MERGE_TOLERANCE["float32"], "out")
    assert_close(lse, expected_lse, *LSE_TOLERANCE, "lse")
    # Cells around the views are untouched.
    spare = np.ones(out_buffer.shape, bool)
    spare[:, :heads, 2:head_dim + 2] = False
    assert np.all(out_buffer[spare] == 7.0) and np.all(lse_out_buffer[:, 0] == 7.0)


def test_merge_states_dead_states_contribute_nothing(rng):
    tokens, heads, head_dim = 5, 3, 8
    outs, lses = make_states(rng, 4, tokens, heads, head_dim, [np.float32, np.float16])
    # State 1 saw no key for some rows (its out NaN there); state 3 for every row.
    dead_rows = (np.array([0, 2, 4]), np.array([1, 0, 2]))
    lses[1][dead_rows] = -np.inf
    outs[1][dead_rows] = np.nan
    lses[3][:] = -np.inf
    outs[3][:] = np.nan
    # Row (3, *): every state dead: zeros and -inf.
    for s in range(4):
        lses[s][3] = -np.inf
        outs[s][3] = np.nan
    out, lse = wideattn.merge_states(outs, lses)
    expected_out, expected_lse = reference_merge(outs, lses)
    assert np.all(np.isfinite(out)), "a dead state's NaN reached the output"
    assert np.all(out[3] == 0) and np.all(lse[3] == -np.inf)
    assert_close(out, expected_out, *MERGE_TOLERANCE["float32"], "out")
    assert_close(lse, expected_lse, *LSE_TOLERANCE, "lse")
    # Where states 1 and 3 are dead, the result is the merge of states 0 and 2 alone.
    live_out, live_lse = wideattn.merge_states([outs[0], outs[2]], [lses[0], lses[2]])
    assert_close(out[dead_rows], to_f64(live_out)[dead_rows], 1e-6, 1e-6, "out without dead states")
    assert_close(lse[dead_rows], to_f64(live_lse)[dead_rows], 1e-6, 1e-6, "lse without dead states")


def test_merge_states_of_split_attention_is_attention(rng):
    # Bidirectional attention over a cache = the merge of attention over its two halves
    # (cascade attention: shared prefix + per-sequence suffix).
    tokens, q_heads, kv_heads, head_dim, length, split = 3, 4, 2, 32, 11, 5
    q = random(rng, (tokens, q_heads, head_dim), np.float32)
    k = random(rng, (1, length, kv_heads, head_dim), np.float32)
    v = random(rng, (1, length, kv_heads, head_dim), np.float32)
    parts = []
    for rows in (slice(0, split), slice(split, length)):
        n = rows.stop - rows.start
        parts.append(wideattn.attention(q, k[:, rows], v[:, rows], query_offsets=[0, tokens],
                                        kv_lengths=[n], causal=False, return_lse=True))
    out, lse = wideattn.merge_states([p[0] for p in parts], [p[1] for p in parts])
    whole_out, whole_lse = wideattn.attention(q, k, v, query_offsets=[0, tokens],
                                              kv_lengths=[length], causal=False, return_lse=True)
    assert_close(out, to_f64(whole_out), 2e-5, 1e-4, "merged out")
    assert_close(lse, to_f64(whole_lse), 2e-5, 1e-5, "merged lse")


def context_parallel_decode(q, k, v, offsets, lengths, shards, sinks, softcap, to_array):
    """Decode attention as ranks of a context-parallel group would run it: each rank holds
    positions [start, end) of every sequence's cache; ranks before the last see their whole
    shard (bidirectional), the last holds the new tokens' keys (causal, and the sinks, counted
    once); the partial (out, lse) merge into the whole. Returns the merged (out, lse)."""
    outs, lses = [], []
    for r, (starts, ends) in enumerate(shards):
        last = r == len(shards) - 1
        rows = [e - s for s, e in zip(starts, ends)]
        shape = (len(lengths), max(rows)) + k.shape[2:]
        k_shard, v_shard = np.zeros(shape, k.dtype), np.zeros(shape, v.dtype)
        for b, (s, e) in enumerate(zip(starts, ends)):
            k_shard[b, : e - s] = k[b, s:e]
            v_shard[b, : e - s] = v[b, s:e]
        out, lse = wideattn.attention(to_array(q), to_array(k_shard), to_array(v_shard),
                                      query_offsets=offsets, kv_lengths=rows, causal=last,
                                      sinks=to_array(sinks) if last else None, softcap=softcap,
                                      return_lse=True)
        outs.append(out)
        lses.append(lse)
    return wideattn.merge_states(outs, lses)


CP_CASE = dict(suffixes=[1, 3, 2], lengths=[37, 50, 9], q_heads=8, kv_heads=2, head_dim=64,
               # Per rank, each sequence's [start, end): uneven, one shard of 3 rows, and the
               # last shard holding at least the new tokens.
               shards=[([0, 0, 0], [12, 20, 3]), ([12, 20, 3], [15, 41, 6]),
                       ([15, 41, 6], [37, 50, 9])])


def context_parallel_inputs(rng):
    c = CP_CASE
    offsets = np.concatenate([[0], np.cumsum(c["suffixes"])]).tolist()
    q = random(rng, (offsets[-1], c["q_heads"], c["head_dim"]), np.float32)
    k = random(rng, (len(c["lengths"]), max(c["lengths"]), c["kv_heads"], c["head_dim"]), np.float32)
    v = random(rng, k.shape, np.float32)
    sinks = random(rng, (c["q_heads"],), np.float32)
    return offsets, q, k, v, sinks


@pytest.mark.parametrize("softcap", [0.0, 30.0])
def test_context_parallel_decode_is_the_merge_of_its_shards(rng, softcap):
    # Issue 14's decode step on one device: the merge of the ranks' shards is the whole call.
    c = CP_CASE
    offsets, q, k, v, sinks = context_parallel_inputs(rng)
    out, lse = context_parallel_decode(q, k, v, offsets, c["lengths"], c["shards"], sinks, softcap,
                                       lambda x: x)
    whole_out, whole_lse = wideattn.attention(q, k, v, query_offsets=offsets,
                                              kv_lengths=c["lengths"], causal=True, sinks=sinks,
                                              softcap=softcap, return_lse=True)
    assert_close(out, to_f64(whole_out), 2e-5, 1e-4, "merged out")
    assert_close(lse, to_f64(whole_lse), 2e-5, 1e-5, "merged lse")


def ring_prefill(q, k, v, length, ranks, sinks, softcap, to_array):
    """Causal prefill of one sequence as ring attention over `ranks` ranks with zig-zag sharding
    would compute it: 2 * ranks equal chunks, rank r holding query and key chunks r and
    2 * ranks - 1 - r (each rank the same causal work); at ring step t rank r has rank
    (r - t) mod ranks's key chunks in hand. A key chunk before the query chunk is wholly
    visible (bidirectional), the query chunk's own is the causal diagonal (and carries the sinks,
    counted once), a later one is hidden (skipped). Each query chunk's partial (out, lse) merge.
    Equal chunks: a key chunk must hold at least as many rows as the queries' (kv_length >=
    suffix); a shorter one, or a window across chunks, needs key/query position offsets (issue
    14, docs/design.md). Returns (out, lse) of the sequence's tokens."""
    chunk = length // (2 * ranks)
    assert chunk * 2 * ranks == length

    def holds(r):  # the rank's two chunks
        return (r, 2 * ranks - 1 - r)

    parts = {i: ([], []) for i in range(2 * ranks)}
    for r in range(ranks):
        for step in range(ranks):
            for i in holds(r):
                for j in holds((r - step) % ranks):
                    if j > i:
                        continue
                    rows = slice(j * chunk, (j + 1) * chunk)
                    out, lse = wideattn.attention(
                        to_array(q[i * chunk:(i + 1) * chunk]), to_array(k[None, rows]),
                        to_array(v[None, rows]), query_offsets=[0, chunk], kv_lengths=[chunk],
                        causal=i == j, sinks=to_array(sinks) if i == j else None, softcap=softcap,
                        return_lse=True)
                    parts[i][0].append(out)
                    parts[i][1].append(lse)
    merged = [wideattn.merge_states(*parts[i]) for i in range(2 * ranks)]
    return [m[0] for m in merged], [m[1] for m in merged]


RING_CASE = dict(length=96, ranks=3, q_heads=8, kv_heads=2, head_dim=64)


def ring_inputs(rng):
    c = RING_CASE
    q = random(rng, (c["length"], c["q_heads"], c["head_dim"]), np.float32)
    k = random(rng, (c["length"], c["kv_heads"], c["head_dim"]), np.float32)
    v = random(rng, k.shape, np.float32)
    sinks = random(rng, (c["q_heads"],), np.float32)
    return q, k, v, sinks


@pytest.mark.parametrize("softcap", [0.0, 30.0])
def test_ring_prefill_is_the_merge_of_its_zigzag_chunks(rng, softcap):
    # Issue 14's prefill on one device: ring attention's pieces, merged, are the whole call.
    c = RING_CASE
    q, k, v, sinks = ring_inputs(rng)
    outs, lses = ring_prefill(q, k, v, c["length"], c["ranks"], sinks, softcap, lambda x: x)
    whole_out, whole_lse = wideattn.attention(q, k[None], v[None], query_offsets=[0, c["length"]],
                                              kv_lengths=[c["length"]], causal=True, sinks=sinks,
                                              softcap=softcap, return_lse=True)
    assert_close(np.concatenate(outs), to_f64(whole_out), 2e-5, 1e-4, "merged out")
    assert_close(np.concatenate(lses), to_f64(whole_lse), 2e-5, 1e-5, "merged lse")


def test_merge_states_return_forms(rng):
    outs, lses = make_states(rng, 2, 3, 2, 8, [np.float32])
    out = wideattn.merge_states(outs, lses, return_lse=False)
    assert isinstance(out, np.ndarray) and out.shape == (3, 2, 8)
    given = np.empty((3, 2, 8), np.float16)
    result = wideattn.merge_states(outs, lses, out=given, return_lse=False)
    assert result is given
    lse = np.empty((3, 2), np.float32)
    out2, lse2 = wideattn.merge_states(outs, lses, lse=lse, return_lse=False)
    assert lse2 is lse and np.array_equal(out2, out)
    empty_out, empty_lse = wideattn.merge_states([x[:0] for x in outs], [x[:0] for x in lses])
    assert empty_out.shape == (0, 2, 8) and empty_lse.shape == (0, 2)


def merge_case(rng, count=3):
    outs, lses = make_states(rng, count, 4, 2, 8, [np.float32])
    return outs, lses, np.full((4, 2, 8), 5.0, np.float32), np.full((4, 2), 5.0, np.float32)


BAD_MERGE = [
    # (change(outs, lses, out, lse) -> (outs, lses, out, lse), exception, message)
    (lambda o, l, out, lse: (o * 11, l * 11, out, lse), ValueError,
     r"merge_states: outs has 33 states, expected 1 to 32"),
    (lambda o, l, out, lse: (np.stack(o * 11), np.stack(l * 11), out, lse), ValueError,
     r"merge_states: outs.shape\[0\] = 33 states, expected 1 to 32"),
    (lambda o, l, out, lse: ([], [], out, lse), ValueError, r"outs has 0 states, expected 1 to 32"),
    (lambda o, l, out, lse: (o, l[:2], out, lse), ValueError,
     r"lses has 2 states but outs has 3; give one lse per partial output"),
    (lambda o, l, out, lse: (o, [l[0], l[1].astype(np.float16), l[2]], out, lse), TypeError,
     r"merge_states: lses\[1\] has dtype float16, expected float32"),
    (lambda o, l, out, lse: ([o[0], o[1].astype(np.float64), o[2]], l, out, lse), TypeError,
     r"outs\[1\] has dtype float64, expected float32, float16 or bfloat16"),
    (lambda o, l, out, lse: ([o[0], o[1][:3], o[2]], l, out, lse), ValueError,
     r"outs\[1\].shape\[0\] = 3, expected 4 \(tokens, outs\[0\].shape\[0\]\)"),
    (lambda o, l, out, lse: ([o[0], o[1], o[2][..., :4]], l, out, lse), ValueError,
     r"outs\[2\].shape\[2\] = 4, expected 8 \(head_dim"),
    (lambda o, l, out, lse: (o, [l[0], l[1][:, :1], l[2]], out, lse), ValueError,
     r"lses\[1\].shape\[1\] = 1, expected 2 \(heads"),
    (lambda o, l, out, lse: ([o[0], o[1][0], o[2]], l, out, lse), ValueError,
     r"outs\[1\] must have 3 dimensions \[tokens, heads, head_dim\]"),
    (lambda o, l, out, lse: (np.stack(o)[0], l, out, lse), ValueError,
     r"outs must have 4 dimensions \[num_states, tokens, heads, head_dim\]"),
    (lambda o, l, out, lse: (o, l, out[:, :1], lse), ValueError, r"out.shape\[1\] = 1, expected 2"),
    (lambda o, l, out, lse: (o, l, out, lse.astype(np.float64)), TypeError,
     r"lse has dtype float64, expected float32"),
    (lambda o, l, out, lse: (o, l, out.astype(np.int32), lse), TypeError, r"out has dtype int32"),
    (lambda o, l, out, lse: ([o[0], None, o[2]], l, out, lse), TypeError, r"outs\[1\] is None"),
    (lambda o, l, out, lse: (o, l, o[1], lse), ValueError, r"merge_states: out overlaps states\[1\].out"),
]


@pytest.mark.parametrize("change,error,message", BAD_MERGE,
                         ids=[m.split(": ")[-1][:40] for _, _, m in BAD_MERGE])
def test_merge_states_bad_arguments_write_nothing(rng, change, error, message):
    outs, lses, out, lse = change(*merge_case(rng))
    before = [x.copy() for x in (out, lse)]
    with pytest.raises(error, match=message):
        wideattn.merge_states(outs, lses, out=out, lse=lse)
    assert all(same_bits(x, b) for x, b in zip((out, lse), before)), "a failed call wrote an output"


# ---- PyTorch CPU tensors --------------------------------------------------------------------------


def test_torch_cpu_write_kv_and_merge_states(rng):
    torch = pytest.importorskip("torch")
    page_size, kv_heads, head_dim, tokens, num_pages = 8, 2, 40, 10, 6
    kv_cache = torch.randn(num_pages, 2, kv_heads, page_size, head_dim).to(torch.bfloat16)  # HND
    qkv = torch.randn(tokens, (4 + 2 * kv_heads) * head_dim).to(torch.bfloat16)
    heads = qkv.view(tokens, 4 + 2 * kv_heads, head_dim)
    k_new, v_new = heads[:, 4:4 + kv_heads], heads[:, 4 + kv_heads:]
    slots = torch.from_numpy(slots_with_padding(rng, tokens, num_pages * page_size, skipped=2))
    expected_k, expected_v = reference_write_kv(kv_cache[:, 0], kv_cache[:, 1], k_new, v_new, slots,
                                                paged=True, kv_layout="HND")
    k_cache, v_cache = kv_cache.unbind(1)
    wideattn.write_kv(k_new, v_new, k_cache, v_cache, slots,
                      block_table=torch.zeros(1, num_pages, dtype=torch.int32), kv_layout="HND")
    check_written(kv_cache[:, 0], kv_cache[:, 1], expected_k, expected_v)
    with pytest.raises(TypeError, match=r"write_kv: slot_mapping has dtype int64, expected int32"):
        wideattn.write_kv(k_new, v_new, k_cache, v_cache, slots.long(),
                          block_table=torch.zeros(1, num_pages, dtype=torch.int32), kv_layout="HND")

    outs = [torch.randn(5, 3, 16).to(dtype) for dtype in (torch.bfloat16, torch.float32, torch.float16)]
    lses = [3 * torch.randn(5, 3) for _ in outs]
    lses[2][1] = float("-inf")
    outs[2][1] = float("nan")
    out, lse = wideattn.merge_states(outs, lses)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.bfloat16 and lse.dtype == torch.float32
    expected_out, expected_lse = reference_merge(outs, lses)
    assert_close(out, expected_out, *MERGE_TOLERANCE["bfloat16"], "out")
    assert_close(lse, expected_lse, *LSE_TOLERANCE, "lse")
    stacked_out, _ = wideattn.merge_states(torch.stack([x.float() for x in outs]), torch.stack(lses),
                                           dtype=torch.float32)
    assert_close(stacked_out, reference_merge([x.float() for x in outs], lses)[0],
                 *MERGE_TOLERANCE["float32"], "stacked out")


def torch_step_case(torch, page_size=4, num_pages=5, kv_heads=2, q_heads=4, head_dim=16):
    g = torch.Generator().manual_seed(3)
    k_pool = torch.randn(num_pages, page_size, kv_heads, head_dim, generator=g)
    v_pool = torch.randn(num_pages, page_size, kv_heads, head_dim, generator=g)
    qkv = torch.randn(3, (q_heads + 2 * kv_heads) * head_dim, generator=g)
    heads = qkv.view(3, q_heads + 2 * kv_heads, head_dim)
    slots = torch.tensor([6, -1, 17], dtype=torch.int32)
    table = torch.tensor([[1, 4]], dtype=torch.int32)
    return k_pool, v_pool, heads, slots, table


def test_torch_operators_opcheck_and_same_bits_as_the_fast_path():
    torch = pytest.importorskip("torch")
    from wideattn import torch_ops

    assert torch_ops.available()
    k_pool, v_pool, heads, slots, table = torch_step_case(torch)
    k_new, v_new = heads[:, 4:6], heads[:, 6:]
    torch.library.opcheck(torch.ops.wideattn.write_kv.default,
                          (k_new, v_new, k_pool.clone(), v_pool.clone(), slots, table, "NHD"))
    k_fast, v_fast = k_pool.clone(), v_pool.clone()
    wideattn.write_kv(k_new, v_new, k_fast, v_fast, slots, block_table=table)
    k_op, v_op = k_pool.clone(), v_pool.clone()
    torch.ops.wideattn.write_kv(k_new, v_new, k_op, v_op, slots, table, "NHD")
    assert torch.equal(k_fast, k_op) and torch.equal(v_fast, v_op)
    assert not torch.equal(k_fast, k_pool)

    outs = [torch.randn(5, 3, 16), torch.randn(5, 3, 16).half()]
    lses = [torch.randn(5, 3), torch.randn(5, 3).T.contiguous().T]
    out, lse = torch.empty(5, 3, 16, dtype=torch.bfloat16), torch.empty(5, 3)
    torch.library.opcheck(torch.ops.wideattn.merge_states_out.default, (outs, lses, out, lse))
    fast_out, fast_lse = wideattn.merge_states(outs, lses, dtype=torch.bfloat16)
    torch.ops.wideattn.merge_states_out(outs, lses, out, lse)
    assert torch.equal(fast_out, out) and torch.equal(fast_lse, lse)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph_step(backend):
    # An engine's step under torch.compile(fullgraph=True): write the new K/V, attend over the
    # paged cache in two parts (pages of the shared prefix, then the rest), merge.
    torch = pytest.importorskip("torch")
    k_pool, v_pool, heads, slots, table = torch_step_case(torch)

    def step(heads, k_pool, v_pool):
        q, k_new, v_new = heads[:, :4] * 1.0, heads[:, 4:6], heads[:, 6:]
        wideattn.write_kv(k_new, v_new, k_pool, v_pool, slots, block_table=table)
        first = wideattn.attention(q, k_pool, v_pool, query_offsets=[0, 3], kv_lengths=[4],
                                   block_table=table[:, :1], causal=False, return_lse=True)
        rest = wideattn.attention(q, k_pool, v_pool, query_offsets=[0, 3], kv_lengths=[4],
                                  block_table=table[:, 1:], causal=False, return_lse=True)
        out, lse = wideattn.merge_states([first[0], rest[0]], [first[1], rest[1]])
        return out * 2.0, lse

    k_eager, v_eager = k_pool.clone(), v_pool.clone()
    expected_out, expected_lse = step(heads, k_eager, v_eager)
    compiled = torch.compile(step, fullgraph=True, backend=backend)
    k_compiled, v_compiled = k_pool.clone(), v_pool.clone()
    out, lse = compiled(heads, k_compiled, v_compiled)
    assert torch.equal(k_compiled, k_eager) and torch.equal(v_compiled, v_eager)
    assert not torch.equal(k_compiled, k_pool), "the compiled step wrote nothing"
    assert_close(out, expected_out.numpy(), 1e-5, 1e-5, "compiled out")
    assert_close(lse, expected_lse.numpy(), 1e-5, 1e-5, "compiled lse")
    # The merge of the two page ranges is attention over all 8 rows.
    k_dense = torch.cat([k_eager[1], k_eager[4]])[None]
    v_dense = torch.cat([v_eager[1], v_eager[4]])[None]
    whole = reference_attention(heads[:, :4], k_dense, v_dense, [0, 3], [8], causal=False)
    assert_close(expected_out, 2.0 * whole[0], 2e-5, 1e-4, "merged out")
    assert_close(expected_lse, whole[1], 2e-5, 1e-5, "merged lse")


def test_torch_meta_tensors_propagate_shapes():
    torch = pytest.importorskip("torch")
    meta = dict(device="meta")
    k_pool = torch.empty(4, 16, 2, 64, **meta)
    wideattn.write_kv(torch.empty(3, 2, 64, **meta), torch.empty(3, 2, 64, **meta), k_pool, k_pool.clone(),
                      torch.empty(3, dtype=torch.int32, **meta),
                      block_table=torch.empty(1, 4, dtype=torch.int32, **meta))
    out, lse = wideattn.merge_states(torch.empty(3, 5, 2, 64, dtype=torch.float16, **meta),
                                     torch.empty(3, 5, 2, **meta))
    assert out.device.type == "meta" and out.shape == (5, 2, 64) and out.dtype == torch.float16
    assert lse.shape == (5, 2) and lse.dtype == torch.float32


# ---- CUDA -----------------------------------------------------------------------------------------


def cuda_torch():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: CUDA serving tests skipped")
    if not (torch.cuda.is_available() and wideattn.cuda_built and wideattn.backend_available("cuda")[0]):
        pytest.skip("no GPU, or this build of wideattn has no CUDA backend: CUDA serving tests skipped")
    return torch


@pytest.mark.parametrize("layout", ["NHD", "HND"])
def test_cuda_write_kv_paged_and_bad_slots_skipped(rng, layout):
    torch = cuda_torch()
    num_pages, page_size, kv_heads, head_dim, tokens = 9, 16, 2, 128, 21
    k_cache, v_cache = (torch.from_numpy(x).cuda() for x in
                        pools(rng, num_pages, page_size, kv_heads, head_dim, np.float32, layout))
    k_cache, v_cache = k_cache.to(torch.bfloat16), v_cache.to(torch.bfloat16)
    qkv = torch.randn(tokens, (8 + 2 * kv_heads) * head_dim, device="cuda").to(torch.bfloat16)
    heads = qkv.view(tokens, 8 + 2 * kv_heads, head_dim)
    k_new, v_new = heads[:, 8:8 + kv_heads], heads[:, 8 + kv_heads:]
    slots = slots_with_padding(rng, tokens, num_pages * page_size, skipped=3)
    slots[1] = num_pages * page_size  # outside the pools: CUDA skips it
    slots[2] = -7
    kept = slots.copy()
    kept[[1, 2]] = -1
    expected_k, expected_v = reference_write_kv(k_cache.cpu(), v_cache.cpu(), k_new.cpu(), v_new.cpu(),
                                                kept, paged=True, kv_layout=layout)
    block_table = torch.zeros(1, num_pages, dtype=torch.int32, device="cuda")
    wideattn.write_kv(k_new, v_new, k_cache, v_cache, torch.from_numpy(slots).cuda(),
                      block_table=block_table, kv_layout=layout)
    torch.cuda.synchronize()
    check_written(k_cache.cpu(), v_cache.cpu(), expected_k, expected_v)
    with pytest.raises(ValueError, match=r"slot_mapping is on cpu but k_new is on cuda:0"):
        wideattn.write_kv(k_new, v_new, k_cache, v_cache, torch.from_numpy(slots),
                          block_table=block_table, kv_layout=layout)


def test_cuda_context_parallel_decode_is_the_merge_of_its_shards(rng):
    # As test_context_parallel_decode_is_the_merge_of_its_shards, on the tensor-core decode
    # kernels (bfloat16): the shards' outputs are rounded to bfloat16 before the merge, the
    # whole call's once, so they agree to bfloat16's rounding.
    torch = cuda_torch()
    c = CP_CASE
    offsets, q, k, v, sinks = context_parallel_inputs(rng)

    def to_cuda(x):  # tensors in bfloat16, the sinks in float32
        x = torch.from_numpy(x).cuda()
        return x.to(torch.bfloat16) if x.dim() > 1 else x

    out, lse = context_parallel_decode(q, k, v, offsets, c["lengths"], c["shards"], sinks, 0.0,
                                       to_cuda)
    whole_out, whole_lse = wideattn.attention(to_cuda(q), to_cuda(k), to_cuda(v),
                                              query_offsets=offsets, kv_lengths=c["lengths"],
                                              causal=True, sinks=to_cuda(sinks), return_lse=True)
    torch.cuda.synchronize()
    assert_close(out.float().cpu(), whole_out.float().cpu(), *MERGE_TOLERANCE["bfloat16"], "merged out")
    assert_close(lse.cpu(), whole_lse.cpu(), 1e-3, 1e-3, "merged lse")


def test_cuda_ring_prefill_is_the_merge_of_its_zigzag_chunks(rng):
    # As test_ring_prefill_is_the_merge_of_its_zigzag_chunks, on the CUDA prefill kernels
    # (bfloat16): the pieces are rounded to bfloat16 before the merge, the whole call once.
    torch = cuda_torch()
    c = RING_CASE
    q, k, v, sinks = ring_inputs(rng)

    def to_cuda(x):  # tensors in bfloat16, the sinks in float32
        x = torch.from_numpy(np.ascontiguousarray(x)).cuda()
        return x.to(torch.bfloat16) if x.dim() > 1 else x

    outs, lses = ring_prefill(q, k, v, c["length"], c["ranks"], sinks, 0.0, to_cuda)
    whole_out, whole_lse = wideattn.attention(to_cuda(q), to_cuda(k[None]), to_cuda(v[None]),
                                              query_offsets=[0, c["length"]], kv_lengths=[c["length"]],
                                              causal=True, sinks=to_cuda(sinks), return_lse=True)
    torch.cuda.synchronize()
    assert_close(torch.cat(outs).float().cpu(), whole_out.float().cpu(), *MERGE_TOLERANCE["bfloat16"],
                 "merged out")
    assert_close(torch.cat(lses).cpu(), whole_lse.cpu(), 1e-3, 1e-3, "merged lse")


def test_cuda_merge_states(rng):
    torch = cuda_torch()
    # Nine distinct tensors (a list repeated with * 3 would alias them: the NaN below would sit in
    # live splits too).
    outs = [torch.randn(37, 8, 128, device="cuda").to(dtype)
            for _ in range(3) for dtype in (torch.bfloat16, torch.float16, torch.float32)]
    lses = [3 * torch.randn(37, 8, device="cuda") for _ in outs]
    lses[4][5] = float("-inf")
    outs[4][5] = float("nan")
    for s in range(len(outs)):
        lses[s][7] = float("-inf")
    out, lse = wideattn.merge_states(outs, lses, dtype=torch.float32)
    torch.cuda.synchronize()
    expected_out, expected_lse = reference_merge([x.cpu() for x in outs], [x.cpu() for x in lses])
    assert_close(out.cpu(), expected_out, *MERGE_TOLERANCE["float32"], "out")
    assert_close(lse.cpu(), expected_lse, *LSE_TOLERANCE, "lse")
