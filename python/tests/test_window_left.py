"""FlashInfer's `window_left` (vLLM passes window_left=W-1 for a Hugging Face sliding window W):
window_left=W-1 gives the bits of window=W (decode and prefill, NumPy and PyTorch, every entry
point: attention, plan, attention_into, PlannedDecode, torch_ops, scatter_scores), -1 is no
window, and the misuses raise: both given (TypeError), window_left < -1 and window_left >= 0 with
a bidirectional mask (ValueError: FlashInfer's non-causal window_left is left-only, wideattn's
bidirectional window symmetric). PyTorch tests skip without PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import wideattn
from wideattn import _api
from _reference import assert_close, attention as reference_attention

HEADS, KV_HEADS, D, CAPACITY = 4, 2, 64, 64
# (tokens per sequence, kv_lengths): decode steps, and prefill chunks (one with a prefix, one
# starting at 0, one decode step in the same batch).
DECODE = ([1, 1, 1], [40, 17, 64])
PREFILL = ([9, 20, 1], [30, 20, 33])
WINDOWS = [1, 2, 5, 16]


def problem(shape, dtype=np.float32, seed=0):
    tokens, lengths = shape
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((sum(tokens), HEADS, D)).astype(dtype)
    k = rng.standard_normal((len(lengths), CAPACITY, KV_HEADS, D)).astype(dtype)
    v = rng.standard_normal((len(lengths), CAPACITY, KV_HEADS, D)).astype(dtype)
    offsets = np.concatenate([[0], np.cumsum(tokens)]).tolist()
    return q, k, v, offsets, list(lengths)


def run(q, k, v, offsets, lengths, **kw):
    return wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths,
                              return_lse=True, **kw)


def assert_same(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ---- NumPy: wideattn.attention -----------------------------------------------------------------

@pytest.mark.parametrize("w", WINDOWS)
@pytest.mark.parametrize("shape,kernels", [(DECODE, ["auto", "single_pass", "two_pass"]),
                                           (PREFILL, ["auto", "prefill_unfused"])],
                         ids=["decode", "prefill"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["f32", "f16"])
def test_window_left_is_window_minus_one(w, shape, kernels, dtype):
    q, k, v, offsets, lengths = problem(shape, dtype)
    for kernel in kernels:
        expected = run(q, k, v, offsets, lengths, window=w, kernel=kernel)
        got = run(q, k, v, offsets, lengths, window_left=w - 1, kernel=kernel)
        assert_same(got, expected)
        # window=0 given with window_left is no conflict (0 is the default).
        assert_same(run(q, k, v, offsets, lengths, window=0, window_left=w - 1, kernel=kernel),
                    expected)
        # The window hides keys here, and one key more or less changes the bits: a conversion
        # off by one (window = window_left) would fail the comparison above.
        assert not np.array_equal(got[0], run(q, k, v, offsets, lengths, window=w - 1,
                                              kernel=kernel)[0])
    # And against the float64 oracle of window=W (FlashInfer's: window_left keys before the
    # query, plus itself).
    if dtype == np.float32:
        ref_out, ref_lse = reference_attention(q, k, v, offsets, lengths, window=w)
        out, lse = run(q, k, v, offsets, lengths, window_left=w - 1)
        assert_close(out, ref_out, 2e-5, 1e-4, "out")
        assert_close(lse, ref_lse, 2e-5, 1e-4, "lse")


@pytest.mark.parametrize("shape", [DECODE, PREFILL], ids=["decode", "prefill"])
def test_window_left_minus_one_is_no_window(shape):
    q, k, v, offsets, lengths = problem(shape)
    assert_same(run(q, k, v, offsets, lengths, window_left=-1), run(q, k, v, offsets, lengths))
    assert_same(run(q, k, v, offsets, lengths, window_left=-1, window=0),
                run(q, k, v, offsets, lengths))
    # Bidirectional masks accept -1 (no window) too.
    assert_same(run(q, k, v, offsets, lengths, causal=False, window_left=-1),
                run(q, k, v, offsets, lengths, causal=False))


def test_window_left_with_other_integer_types():
    q, k, v, offsets, lengths = problem(DECODE)
    expected = run(q, k, v, offsets, lengths, window=5)
    assert_same(run(q, k, v, offsets, lengths, window_left=np.int64(4)), expected)
    assert_same(run(q, k, v, offsets, lengths, window_left=np.int32(4), window=np.int32(0)),
                expected)


def test_window_left_errors():
    q, k, v, offsets, lengths = problem(PREFILL)
    with pytest.raises(TypeError, match=r"attention: give window or window_left, not both "
                                        r"\(got window=4, window_left=3"):
        run(q, k, v, offsets, lengths, window=4, window_left=3)
    with pytest.raises(TypeError, match=r"window=4, window_left=-1"):
        run(q, k, v, offsets, lengths, window=4, window_left=-1)
    with pytest.raises(ValueError, match=r"attention: window_left = -2, expected -1 \(no window\) "
                                         r"or >= 0"):
        run(q, k, v, offsets, lengths, window_left=-2)
    with pytest.raises(TypeError, match=r"attention: window_left must be an int or None, got "
                                        r"float"):
        run(q, k, v, offsets, lengths, window_left=2.0)
    with pytest.raises(ValueError, match=r"window_left = 2147483647, expected at most 2147483646"):
        run(q, k, v, offsets, lengths, window_left=2**31 - 1)
    # Bidirectional: FlashInfer's non-causal window_left is left-only, wideattn's bidirectional
    # window symmetric: refused, not silently different.
    with pytest.raises(ValueError, match=r"attention: window_left = 3 with causal=False: "
                                         r".*left-only.*symmetric.*window=2\*h"):
        run(q, k, v, offsets, lengths, causal=False, window_left=3)
    with pytest.raises(ValueError, match=r"window_left = 0 with causal=False"):
        run(q, k, v, offsets, lengths, causal=False, window_left=0)


def test_window_left_on_the_general_path():
    # NumPy bfloat16 (like JAX, CuPy and other DLPack producers) goes through _frameworks.Call.
    ml_dtypes = pytest.importorskip("ml_dtypes")
    q, k, v, offsets, lengths = problem(PREFILL)
    qb, kb, vb = (x.astype(ml_dtypes.bfloat16) for x in (q, k, v))
    assert_same(run(qb, kb, vb, offsets, lengths, window_left=6),
                run(qb, kb, vb, offsets, lengths, window=7))
    with pytest.raises(TypeError, match=r"not both"):
        run(qb, kb, vb, offsets, lengths, window=7, window_left=6)


# ---- plan, attention_into, scatter_scores -------------------------------------------------------

@pytest.mark.parametrize("shape", [DECODE, PREFILL], ids=["decode", "prefill"])
def test_plan_and_attention_into(shape):
    q, k, v, offsets, lengths = problem(shape)
    for w in WINDOWS:
        plan = wideattn.plan(q, k, v, query_offsets=offsets, kv_lengths=lengths, window_left=w - 1)
        assert plan == wideattn.plan(q, k, v, query_offsets=offsets, kv_lengths=lengths, window=w)
        outs = []
        for window, window_left in ((w, None), (0, w - 1)):
            out = np.full_like(q, np.nan)
            lse = np.full(q.shape[:2], np.nan, np.float32)
            used = _api.attention_into(q, k, v, out, lse, offsets, lengths, True, window, 0, 0,
                                       None, None, 0.0, None, "auto", window_left=window_left)
            assert used == plan
            outs.append((out, lse))
        assert_same(outs[1], outs[0])
        assert_same(outs[0], run(q, k, v, offsets, lengths, window=w))
    with pytest.raises(TypeError, match=r"plan_attention: give window or window_left, not both"):
        wideattn.plan(q, k, v, query_offsets=offsets, kv_lengths=lengths, window=2, window_left=1)
    with pytest.raises(ValueError, match=r"plan_attention: window_left = -2"):
        wideattn.plan(q, k, v, query_offsets=offsets, kv_lengths=lengths, window_left=-2)
    with pytest.raises(ValueError, match=r"plan_attention: window_left = 1 with causal=False"):
        wideattn.plan(q, k, v, query_offsets=offsets, kv_lengths=lengths, causal=False,
                      window_left=1)
    out = np.empty_like(q)
    with pytest.raises(TypeError, match=r"attention: give window or window_left, not both"):
        _api.attention_into(q, k, v, out, None, offsets, lengths, True, 2, 0, 0, None, None, 0.0,
                            None, "auto", window_left=1)
    with pytest.raises(ValueError, match=r"attention: window_left = -2"):
        _api.attention_into(q, k, v, out, None, offsets, lengths, True, 0, 0, 0, None, None, 0.0,
                            None, "auto", window_left=-2)


def test_scatter_scores():
    rng = np.random.default_rng(3)
    scores = rng.standard_normal((2, 5, 12)).astype(np.float32)
    common = dict(first_query=0, first_key=0, prefix_length=7, suffix_length=5)
    for w in WINDOWS:
        expected = wideattn.scatter_scores(scores, window=w, **common)
        np.testing.assert_array_equal(wideattn.scatter_scores(scores, window_left=w - 1, **common),
                                      expected)
    np.testing.assert_array_equal(wideattn.scatter_scores(scores, window_left=-1, **common),
                                  wideattn.scatter_scores(scores, **common))
    with pytest.raises(TypeError, match=r"scatter_scores: give window or window_left, not both"):
        wideattn.scatter_scores(scores, window=3, window_left=2, **common)
    with pytest.raises(ValueError, match=r"scatter_scores: window_left = -2"):
        wideattn.scatter_scores(scores, window_left=-2, **common)
    with pytest.raises(ValueError, match=r"scatter_scores: window_left = 2 with causal=False"):
        wideattn.scatter_scores(scores, causal=False, window_left=2, **common)


# ---- PlannedDecode -----------------------------------------------------------------------------

def planned(q, k, v, offsets, lengths, **kw):
    runner = wideattn.PlannedDecode(q, k, v, query_offsets=np.array(offsets, np.int32),
                                    kv_lengths=np.array(lengths, np.int32), max_suffix=1,
                                    return_lse=True, **kw)
    out, lse = runner.run()
    return runner, (out.copy(), lse.copy())


@pytest.mark.parametrize("kernel", ["auto", "single_pass", "two_pass"])
def test_planned_decode_accepts_window_left(kernel):
    q, k, v, offsets, lengths = problem(DECODE)
    for w in WINDOWS:
        by_window, expected = planned(q, k, v, offsets, lengths, window=w, kernel=kernel)
        by_left, got = planned(q, k, v, offsets, lengths, window_left=w - 1, kernel=kernel)
        assert by_left.plan == by_window.plan
        assert_same(got, expected)
        ref_out, ref_lse = reference_attention(q, k, v, offsets, lengths, window=w)
        assert_close(got[0], ref_out, 2e-5, 1e-4, "out")
        assert_close(got[1], ref_lse, 2e-5, 1e-4, "lse")
    _, none = planned(q, k, v, offsets, lengths, window_left=-1, kernel=kernel)
    assert_same(none, planned(q, k, v, offsets, lengths, kernel=kernel)[1])


def test_planned_decode_window_left_errors():
    q, k, v, offsets, lengths = problem(DECODE)
    with pytest.raises(TypeError, match=r"PlannedDecode: give window or window_left, not both"):
        planned(q, k, v, offsets, lengths, window=5, window_left=4)
    with pytest.raises(ValueError, match=r"PlannedDecode: window_left = -2"):
        planned(q, k, v, offsets, lengths, window_left=-2)
    with pytest.raises(ValueError, match=r"PlannedDecode: window_left = 4 with causal=False"):
        planned(q, k, v, offsets, lengths, causal=False, window_left=4)


# ---- PyTorch -----------------------------------------------------------------------------------

def torch_problem(torch, shape, dtype):
    q, k, v, offsets, lengths = problem(shape)
    return (*(torch.from_numpy(x).to(dtype) for x in (q, k, v)), offsets, lengths)


@pytest.mark.parametrize("shape", [DECODE, PREFILL], ids=["decode", "prefill"])
@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
def test_torch_window_left(shape, dtype_name):
    torch = pytest.importorskip("torch")
    from wideattn import torch_ops

    dtype = getattr(torch, dtype_name)
    q, k, v, offsets, lengths = torch_problem(torch, shape, dtype)
    assert torch_ops.uses_fast_path(q, k, v)
    q_grad = q.clone().requires_grad_(True)  # autograd: through the operators
    assert not torch_ops.uses_fast_path(q_grad, k, v)
    for w in WINDOWS:
        common = dict(query_offsets=offsets, kv_lengths=lengths, return_lse=True)
        expected = wideattn.attention(q, k, v, window=w, **common)
        for call in (wideattn.attention, torch_ops.attention):
            for query in (q, q_grad):
                out, lse = call(query, k, v, window_left=w - 1, **common)
                assert torch.equal(out.detach(), expected[0]) and torch.equal(lse, expected[1])
            out = torch.full_like(q, float("nan"))
            torch_ops.attention_out(q, k, v, out, query_offsets=offsets, kv_lengths=lengths,
                                    window_left=w - 1)
            assert torch.equal(out, expected[0])
        assert not torch.equal(expected[0], wideattn.attention(q, k, v, window=w - 1, **common)[0])
    none = wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths)
    assert torch.equal(wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths,
                                          window_left=-1), none)


def test_torch_window_left_errors():
    torch = pytest.importorskip("torch")
    from wideattn import torch_ops

    q, k, v, offsets, lengths = torch_problem(torch, DECODE, torch.float32)
    common = dict(query_offsets=offsets, kv_lengths=lengths)
    for name, call in (("attention", wideattn.attention), ("attention", torch_ops.attention),
                       ("attention_out", lambda *a, **kw: torch_ops.attention_out(
                           *a, torch.empty_like(q), **kw))):
        with pytest.raises(TypeError, match=rf"{name}: give window or window_left, not both"):
            call(q, k, v, window=3, window_left=2, **common)
        with pytest.raises(ValueError, match=rf"{name}: window_left = -2"):
            call(q, k, v, window_left=-2, **common)
        with pytest.raises(ValueError, match=rf"{name}: window_left = 2 with causal=False"):
            call(q, k, v, causal=False, window_left=2, **common)


def test_torch_compile_window_left():
    torch = pytest.importorskip("torch")

    q, k, v, offsets, lengths = torch_problem(torch, PREFILL, torch.float32)

    def layer(q, k, v):
        return wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths,
                                  window_left=4, return_lse=True)

    out, lse = torch.compile(layer, fullgraph=True, backend="aot_eager")(q, k, v)
    expected = wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths, window=5,
                                  return_lse=True)
    assert torch.equal(out, expected[0]) and torch.equal(lse, expected[1])
