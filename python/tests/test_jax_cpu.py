"""JAX arrays on the CPU: inputs read through DLPack, outputs returned as JAX arrays.
Skipped when JAX is not installed."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import wideattn  # noqa: E402
from _reference import assert_close, attention as reference_attention  # noqa: E402


@pytest.mark.parametrize("dtype,atol", [(jnp.float32, 2e-5), (jnp.bfloat16, 1.6e-2)])
def test_jax_arrays(dtype, atol):
    rng = np.random.default_rng(7)
    # head_dim 64: valid on every backend (JAX places arrays on the GPU when there is one).
    q = jnp.asarray(rng.standard_normal((6, 4, 64)), dtype=dtype)
    k = jnp.asarray(rng.standard_normal((2, 9, 2, 64)), dtype=dtype)
    v = jnp.asarray(rng.standard_normal((2, 9, 2, 64)), dtype=dtype)
    offsets, lengths = [0, 5, 6], [9, 4]
    out, lse = wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths, return_lse=True)
    assert isinstance(out, jax.Array) and out.dtype == dtype and out.shape == q.shape
    as_f32 = lambda x: np.asarray(x.astype(jnp.float32))  # noqa: E731
    ref_out, ref_lse = reference_attention(as_f32(q), as_f32(k), as_f32(v), offsets, lengths)
    on_gpu = any(d.platform == "gpu" for d in q.devices())
    if on_gpu and dtype == jnp.bfloat16:
        atol = 2.5e-2  # the GPU rounds probabilities to bf16 for the tensor cores (as test_gpu.py)
    assert_close(as_f32(out), ref_out, atol, 4e-2 if on_gpu else 3e-2, "out")
    # bf16 on the GPU: probabilities are summed after rounding to bf16 (LSE error <= ~2e-3).
    lse_atol = 2.5e-3 if on_gpu and dtype == jnp.bfloat16 else 1e-4
    assert_close(np.asarray(lse), ref_lse, lse_atol, 1e-5, "lse")
