"""wideattn.attention on the CPU with NumPy arrays, against the float64 oracle in _reference.py."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

import wideattn
from _reference import assert_close, attention as reference_attention

SEED = int(os.environ.get("WIDEATTN_TEST_SEED", np.random.SeedSequence().entropy % 2**32))

try:
    import ml_dtypes

    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - depends on the environment
    BF16 = None

# Output tolerances (atol, rtol) per storage dtype: f32 math; inputs and outputs rounded.
TOLERANCE = {"float32": (2e-5, 1e-4), "float16": (2e-3, 4e-3), "bfloat16": (1.6e-2, 3e-2)}


def dtype_of(name: str):
    if name == "bfloat16":
        if BF16 is None:
            pytest.skip("ml_dtypes is not installed: no bfloat16 NumPy arrays")
        return BF16
    return np.dtype(name)


@pytest.fixture
def rng(request):
    seed = (SEED + zlib.crc32(request.node.name.encode())) % 2**32
    print(f"seed {seed} (WIDEATTN_TEST_SEED={SEED})")
    return np.random.default_rng(seed)


def make_problem(rng, suffixes, kv_lengths, q_heads, kv_heads, head_dim, dtype, capacity=None,
                 amplitude=1.0):
    tokens = sum(suffixes)
    capacity = capacity or max(kv_lengths)
    batch = len(kv_lengths)
    q = (amplitude * rng.standard_normal((tokens, q_heads, head_dim))).astype(dtype)
    k = (amplitude * rng.standard_normal((batch, capacity, kv_heads, head_dim))).astype(dtype)
    v = rng.standard_normal((batch, capacity, kv_heads, head_dim)).astype(dtype)
    offsets = [0]
    for s in suffixes:
        offsets.append(offsets[-1] + s)
    return q, k, v, offsets


def check(q, k, v, offsets, kv_lengths, dtype_name, **options):
    kernel = options.pop("kernel", "auto")
    out, lse = wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=kv_lengths,
                                  return_lse=True, kernel=kernel, **options)
    assert out.dtype == q.dtype and out.shape == q.shape
    assert lse.dtype == np.float32 and lse.shape == q.shape[:2]
    ref_out, ref_lse = reference_attention(q, k, v, offsets, kv_lengths, **options)
    atol, rtol = TOLERANCE[dtype_name]
    assert_close(out, ref_out, atol, rtol, f"out ({dtype_name}, kernel {kernel})")
    assert_close(lse, ref_lse, 1e-4, 1e-5, f"lse ({dtype_name}, kernel {kernel})")
    return out, lse


@pytest.mark.parametrize("kernel", ["auto", "single_pass", "two_pass", "prefill_unfused"])
@pytest.mark.parametrize("dtype_name", ["float32", "float16", "bfloat16"])
def test_causal_gqa_mixed_batch(rng, kernel, dtype_name):
    dtype = dtype_of(dtype_name)
    # A prefill with a prefix, a decode token, a 3-token verify step; GQA 8/2.
    suffixes, kv_lengths = [13, 1, 3], [29, 54, 3]
    q, k, v, offsets = make_problem(rng, suffixes, kv_lengths, 8, 2, 64, dtype, capacity=61)
    check(q, k, v, offsets, kv_lengths, dtype_name, kernel=kernel)


@pytest.mark.parametrize(
    "options",
    [
        dict(window=5),
        dict(causal=False),
        dict(causal=False, window=6),
        dict(softcap=2.0, scale=1.0),
        dict(sinks="random"),
        dict(ring_length=7, ring_offset=3),
        dict(window=4, sinks="random", softcap=5.0),
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
@pytest.mark.parametrize("kernel", ["auto", "two_pass", "prefill_unfused"])
def test_masks(rng, options, kernel):
    options = dict(options)
    suffixes, kv_lengths = [11, 2], [26, 19]
    q, k, v, offsets = make_problem(rng, suffixes, kv_lengths, 4, 1, 32, np.float32)
    if options.get("sinks") == "random":
        options["sinks"] = rng.standard_normal(4).astype(np.float32)
    check(q, k, v, offsets, kv_lengths, "float32", kernel=kernel, **options)


def test_tree(rng):
    # Speculative tree of 5 tokens in DFS order: 0 -> (1 -> 2, 3 -> 4).
    start = np.array([0, 1, 2, 3, 4], dtype=np.int32)
    end = np.array([4, 2, 2, 4, 4], dtype=np.int32)
    height = np.array([0, 1, 2, 1, 2], dtype=np.int32)
    q, k, v, offsets = make_problem(rng, [5], [12], 4, 2, 64, np.float32)
    for kernel in ("auto", "prefill_unfused"):
        check(q, k, v, offsets, [12], "float32", tree=(start, end, height), kernel=kernel)


def test_row_that_sees_nothing(rng):
    # A (deliberately inconsistent) tree hides the only key from the only query.
    tree = tuple(np.array([x], dtype=np.int32) for x in (1, 0, 0))
    q, k, v, offsets = make_problem(rng, [1], [1], 2, 1, 16, np.float32)
    out, lse = check(q, k, v, offsets, [1], "float32", tree=tree)
    assert np.all(out == 0) and np.all(lse == -np.inf)
    sinks = np.array([0.5, -1.0], dtype=np.float32)
    out, lse = check(q, k, v, offsets, [1], "float32", tree=tree, sinks=sinks)
    assert np.all(out == 0)
    np.testing.assert_allclose(lse[0], sinks, rtol=1e-6)


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
def test_gemma4_global_layer_shape(rng, dtype_name):
    # head_dim 512, 8/2 heads, scale 1.0: a 40-token prefill with a 24-token prefix, and decode.
    dtype = dtype_of(dtype_name)
    q, k, v, offsets = make_problem(rng, [40, 1], [64, 77], 8, 2, 512, dtype, amplitude=0.06)
    check(q, k, v, offsets, [64, 77], dtype_name, scale=1.0)


def test_strided_layouts_without_copies(rng):
    tokens, heads, kv_heads, d, capacity = 9, 4, 2, 64, 40
    # q head-major [heads, tokens, d] viewed as [tokens, heads, d]; out likewise.
    q = rng.standard_normal((heads, tokens, d)).astype(np.float32).transpose(1, 0, 2)
    out = np.zeros((heads, tokens, d), dtype=np.float32).transpose(1, 0, 2)
    # Head-major caches [batch, kv_heads, capacity, d] viewed token-major, and a slice of a
    # larger capacity.
    k = rng.standard_normal((2, kv_heads, capacity, d)).astype(np.float32).transpose(0, 2, 1, 3)
    v = rng.standard_normal((2, capacity + 8, kv_heads, d)).astype(np.float32)[:, 4 : 4 + capacity]
    lse = np.zeros((heads, tokens), dtype=np.float32).T
    offsets, kv_lengths = [0, 8, 9], [20, 33]
    result, result_lse = wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=kv_lengths,
                                            out=out, lse=lse)
    assert result is out and result_lse is lse
    ref_out, ref_lse = reference_attention(q, k, v, offsets, kv_lengths)
    assert_close(out, ref_out, 2e-5, 1e-4, "out")
    assert_close(lse, ref_lse, 1e-4, 1e-5, "lse")


def test_metadata_as_arrays_and_no_tokens(rng):
    q, k, v, offsets = make_problem(rng, [3], [5], 2, 2, 8, np.float32)
    out = wideattn.attention(q, k, v, query_offsets=np.array(offsets, dtype=np.int64),
                             kv_lengths=(5,))
    assert_close(out, reference_attention(q, k, v, offsets, [5])[0], 2e-5, 1e-4, "out")
    empty = wideattn.attention(q[:0], k, v, query_offsets=[0, 0], kv_lengths=[0])
    assert empty.shape == (0, 2, 8)


def test_read_only_inputs(rng):
    q, k, v, offsets = make_problem(rng, [3], [5], 2, 1, 8, np.float32)
    for a in (q, k, v):
        a.flags.writeable = False
    out = wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=[5])
    assert_close(out, reference_attention(q, k, v, offsets, [5])[0], 2e-5, 1e-4, "out")


def test_plan(rng):
    q, k, v, offsets = make_problem(rng, [64], [64], 8, 2, 512, np.float32)
    plan = wideattn.plan(q, k, v, query_offsets=offsets, kv_lengths=[64])
    assert plan.kernel == "prefill_unfused"
    assert plan.query_rows_per_chunk > 0 and plan.workspace_bytes > 0 and plan.reason
    decode = wideattn.plan(q[:1], k, v, query_offsets=[0, 1], kv_lengths=[64])
    assert decode.kernel in ("single_pass", "two_pass") and decode.num_splits >= 1
    forced = wideattn.plan(q[:1], k, v, query_offsets=[0, 1], kv_lengths=[64], kernel="two_pass")
    assert forced.kernel == "two_pass" and forced.num_splits >= 2


def test_devices():
    assert wideattn.backend_available("cpu") == (True, "")
    info = wideattn.device_info("cpu")
    assert info["backend"] == "cpu" and info["compute_units"] >= 1
    available, reason = wideattn.backend_available("cuda")
    assert isinstance(available, bool) and (available or reason)


def test_concurrent_calls_from_threads(rng):
    # The GIL is released during a call; each device's Context is locked per call.
    from concurrent.futures import ThreadPoolExecutor

    problems = [make_problem(rng, [17, 1], [40, 23], 8, 2, 128, np.float32) for _ in range(4)]

    def run(problem):
        q, k, v, offsets = problem
        return wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=[40, 23])

    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(run, problems * 3))
    for (q, k, v, offsets), out in zip(problems * 3, outs):
        assert_close(out, reference_attention(q, k, v, offsets, [40, 23])[0], 2e-5, 1e-4, "out")


def test_plan_lists_the_parts_of_a_mixed_batch():
    """Decode steps next to a prefill chunk: each run of sequences gets its kernel in one call."""
    rng = np.random.default_rng(7)
    d, kv_heads, q_heads = 64, 2, 4
    suffixes, lengths = [1, 1, 20, 2], [50, 9, 40, 30]
    offsets = np.concatenate([[0], np.cumsum(suffixes)]).astype(np.int32).tolist()
    q = rng.standard_normal((offsets[-1], q_heads, d)).astype(np.float32)
    k = rng.standard_normal((len(suffixes), 64, kv_heads, d)).astype(np.float32)
    v = rng.standard_normal(k.shape).astype(np.float32)
    plan = wideattn.plan(q, k, v, query_offsets=offsets, kv_lengths=lengths)
    assert [part[:2] for part in plan.parts] == [(0, 2), (2, 1), (3, 1)], plan.reason
    assert plan.parts[1][2] == plan.kernel == "prefill_unfused"
    assert plan.parts[0][2] in ("single_pass", "two_pass")
    out = wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths)
    for first, count, _, _ in plan.parts:  # the same bits as one call per run
        rows = slice(offsets[first], offsets[first + count])
        alone = wideattn.attention(
            q[rows], k[first:first + count], v[first:first + count],
            query_offsets=[o - offsets[first] for o in offsets[first:first + count + 1]],
            kv_lengths=lengths[first:first + count])
        np.testing.assert_array_equal(out[rows], alone)
    single = wideattn.plan(q[:2], k[:2], v[:2], query_offsets=offsets[:3], kv_lengths=lengths[:2])
    assert single.parts == ()
