"""The components (matmul, softmax, scatter_scores, scatter_values) on the CPU with NumPy arrays."""

from __future__ import annotations

import numpy as np
import pytest

import wideattn
from _reference import assert_close, softmax as reference_softmax, to_f64, visibility


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def test_matmul_batched_shared_b_transposed(rng):
    a = rng.standard_normal((3, 5, 16)).astype(np.float32)
    b = rng.standard_normal((7, 16)).astype(np.float32)  # [n, k], shared by the batch
    d = wideattn.matmul(a, b, b_transpose=True, scale=0.5)
    assert d.shape == (3, 5, 7) and d.dtype == np.float32
    assert_close(d, 0.5 * to_f64(a) @ to_f64(b).T, 1e-5, 1e-5, "d")


def test_matmul_accumulate_bias_strided_and_f16(rng):
    a = rng.standard_normal((6, 24)).astype(np.float16)[:, :16]  # row stride 24
    b = rng.standard_normal((16, 9)).astype(np.float16)
    d = rng.standard_normal((6, 9)).astype(np.float32)
    expected = to_f64(a) @ to_f64(b) + to_f64(d)
    result = wideattn.matmul(a, b, d, c="accumulate")
    assert result is d
    assert_close(d, expected, 1e-4, 1e-4, "accumulate")
    bias = rng.standard_normal(9).astype(np.float32)
    d2 = wideattn.matmul(a, b, c="bias", bias=bias)
    assert_close(d2, to_f64(a) @ to_f64(b) + bias, 1e-4, 1e-4, "bias")


def test_matmul_shape_mismatch_names_b(rng):
    a = np.zeros((4, 8), np.float32)
    b = np.zeros((9, 5), np.float32)
    with pytest.raises(ValueError, match="matmul: b has shape"):
        wideattn.matmul(a, b)


def test_softmax_blocks_sinks_lse_and_masked_rows(rng):
    x = rng.standard_normal((6, 10)).astype(np.float32)
    x[1, 3:] = -np.inf
    x[4, :] = -np.inf  # a masked row
    sinks = np.array([0.25, -0.5], dtype=np.float32)
    p, lse = wideattn.softmax(x, rows_per_block=3, sinks=sinks, return_lse=True)
    ref_p, ref_lse = reference_softmax(x, 3, sinks)
    assert_close(p, ref_p, 1e-6, 1e-5, "p")
    assert_close(lse, ref_lse, 1e-5, 1e-6, "lse")
    # No sink: the masked row becomes zeros with LSE -inf. In place, f32.
    y = x.copy()
    out, lse2 = wideattn.softmax(y, y, return_lse=True)
    ref_p, ref_lse = reference_softmax(x)
    assert out is y
    assert_close(y, ref_p, 1e-6, 1e-5, "p in place")
    assert np.all(y[4] == 0) and lse2[4] == -np.inf
    half = wideattn.softmax(x, output_dtype="float16")
    assert half.dtype == np.float16
    assert_close(half, ref_p, 1e-3, 1e-3, "p f16")


def test_softmax_lse_2d(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    lse = np.empty((2, 2), np.float32)
    wideattn.softmax(x, rows_per_block=2, lse=lse)
    assert_close(lse.reshape(-1), reference_softmax(x)[1], 1e-5, 1e-6, "lse")


@pytest.mark.parametrize("mask", [dict(causal=True, window=0), dict(causal=True, window=3),
                                  dict(causal=False, window=4)])
def test_scatter_scores(rng, mask):
    prefix, suffix, heads = 6, 5, 3
    first_query, first_key, rows, cols = 1, 2, 3, 8
    scores = rng.standard_normal((heads, rows, cols)).astype(np.float32)
    dst = wideattn.scatter_scores(scores, first_query=first_query, first_key=first_key,
                                  prefix_length=prefix, suffix_length=suffix, softcap=1.5, **mask)
    seen = visibility(prefix, suffix, ring_length=0, ring_offset=0, tree=None, **mask)
    seen = seen[first_query : first_query + rows, first_key : first_key + cols]
    expected = np.where(seen[None], 1.5 * np.tanh(to_f64(scores) / 1.5), -np.inf)
    assert_close(dst, expected, 1e-6, 1e-6, "dst")
    wideattn.scatter_scores(scores, scores, first_query=first_query, first_key=first_key,
                            prefix_length=prefix, suffix_length=suffix, softcap=1.5, **mask)
    assert_close(scores, expected, 1e-6, 1e-6, "in place")


def test_scatter_values_into_a_strided_slice(rng):
    src = rng.standard_normal((2, 3, 8)).astype(np.float32)  # [heads, rows, head_dim]
    out = np.zeros((5, 4, 8), dtype=np.float32)  # [tokens, q_heads, head_dim]
    view = out[1:4, 2:4]  # rows 1..3, heads 2..3
    result = wideattn.scatter_values(src, view)
    assert result is view
    np.testing.assert_array_equal(out[1:4, 2:4], src.transpose(1, 0, 2))
    assert np.all(out[0] == 0) and np.all(out[:, :2] == 0)
    half = wideattn.scatter_values(src, dtype="float16")
    assert half.dtype == np.float16 and half.shape == (3, 2, 8)
