"""kv_splits: a fixed split count makes a sequence's result the same bits whatever batch it is
computed in (batch-invariant serving), through every entry point (NumPy, the PyTorch eager path
and operators, plan, attention_into, PlannedDecode); values outside 0..128 and non-integers are
refused naming the argument. CUDA twins skip without a GPU."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

import wideattn
from wideattn import _api
from _reference import assert_close, attention as reference_attention

SEED = int(os.environ.get("WIDEATTN_TEST_SEED", np.random.SeedSequence().entropy % 2**32))
Q_HEADS, KV_HEADS = 8, 2


@pytest.fixture
def rng(request):
    seed = (SEED + zlib.crc32(request.node.name.encode())) % 2**32
    print(f"seed {seed} (WIDEATTN_TEST_SEED={SEED})")
    return np.random.default_rng(seed)


def decode_batch(rng, suffixes, kv_lengths, head_dim, capacity):
    tokens = sum(suffixes)
    q = rng.standard_normal((tokens, Q_HEADS, head_dim)).astype(np.float32)
    k = rng.standard_normal((len(kv_lengths), capacity, KV_HEADS, head_dim)).astype(np.float32)
    v = rng.standard_normal((len(kv_lengths), capacity, KV_HEADS, head_dim)).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(suffixes)]).astype(int).tolist()
    return q, k, v, offsets


def alone_and_in_batches(run, rng, head_dim=128, capacity=700):
    """Sequence 0 (a 2-token step over 613 keys) computed alone, then first in two different
    batches; `run(q, k, v, offsets, kv_lengths)` returns (out, lse). Returns the three outputs'
    rows of sequence 0 and its reference."""
    q, k, v, offsets = decode_batch(rng, [2, 1, 4, 1, 1], [613, 700, 90, 1, 333], head_dim, capacity)
    kv_lengths = [613, 700, 90, 1, 333]
    alone = run(q[:2], k[:1], v[:1], [0, 2], kv_lengths[:1])
    full = run(q, k, v, offsets, kv_lengths)
    pair = run(q[:3], k[:2], v[:2], offsets[:3], kv_lengths[:2])
    ref_out, ref_lse = reference_attention(q[:2], k[:1], v[:1], [0, 2], kv_lengths[:1])
    return [(np.asarray(o)[:2], np.asarray(l)[:2]) for o, l in (alone, full, pair)], (ref_out, ref_lse)


@pytest.mark.parametrize("splits", [1, 3, 7])
def test_fixed_splits_give_the_same_bits_in_any_batch(rng, splits):
    def run(q, k, v, offsets, kv_lengths):
        plan = wideattn.plan(q, k, v, query_offsets=offsets, kv_lengths=kv_lengths, kv_splits=splits)
        assert plan.num_splits == splits and plan.kernel == ("single_pass" if splits == 1 else "two_pass")
        assert "kv_splits" in plan.reason, plan.reason
        return wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=kv_lengths,
                                  return_lse=True, kv_splits=splits)

    results, (ref_out, ref_lse) = alone_and_in_batches(run, rng)
    for out, lse in results:
        assert_close(out, ref_out, 2e-5, 1e-4, f"out ({splits} splits)")
        assert_close(lse, ref_lse, 1e-4, 1e-5, f"lse ({splits} splits)")
        np.testing.assert_array_equal(out, results[0][0])
        np.testing.assert_array_equal(lse, results[0][1])


def test_attention_into_and_planned_decode_take_kv_splits(rng):
    q, k, v, offsets = decode_batch(rng, [1, 1], [300, 57], 64, 320)
    out = np.zeros_like(q)
    plan = _api.attention_into(q, k, v, out, None, offsets, [300, 57], True, 0, 0, 0, None, None,
                               0.0, None, "auto", kv_splits=5)
    assert plan.num_splits == 5 and plan.kernel == "two_pass"
    expected = wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=[300, 57], kv_splits=5)
    np.testing.assert_array_equal(out, expected)
    runner = wideattn.PlannedDecode(q, k, v, query_offsets=np.asarray(offsets, np.int32),
                                    kv_lengths=np.asarray([300, 57], np.int32), max_suffix=1,
                                    kv_splits=5)
    assert runner.plan.num_splits == 5 and runner.plan.kernel == "two_pass"
    runner.run()
    np.testing.assert_array_equal(runner.out, expected)


@pytest.mark.parametrize("value, error", [(-1, ValueError), (129, ValueError), ("2", TypeError),
                                          (2.5, TypeError)])
def test_bad_kv_splits_is_refused_naming_it(rng, value, error):
    q, k, v, offsets = decode_batch(rng, [1], [20], 64, 20)
    out = np.full_like(q, 7.0)
    with pytest.raises(error, match="kv_splits"):
        wideattn.attention(q, k, v, out=out, query_offsets=offsets, kv_lengths=[20], kv_splits=value)
    assert (out == 7.0).all()
    with pytest.raises(error, match="kv_splits"):
        wideattn.plan(q, k, v, query_offsets=offsets, kv_lengths=[20], kv_splits=value)


def test_kv_splits_that_contradicts_the_forced_kernel_is_refused(rng):
    q, k, v, offsets = decode_batch(rng, [1], [40], 64, 40)
    with pytest.raises(ValueError, match="kv_splits"):
        wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=[40], kernel="single_pass",
                           kv_splits=2)
    with pytest.raises(ValueError, match="kv_splits"):
        wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=[40], kernel="two_pass",
                           kv_splits=1)


def torch_or_skip():
    return pytest.importorskip("torch")


def test_torch_eager_path_and_operators_take_kv_splits(rng):
    torch = torch_or_skip()
    from wideattn import torch_ops

    q, k, v, offsets = (x if isinstance(x, list) else torch.from_numpy(x)
                        for x in decode_batch(rng, [1, 3], [250, 64], 64, 256))
    lengths = [250, 64]
    expected = wideattn.attention(q.numpy(), k.numpy(), v.numpy(), query_offsets=offsets,
                                  kv_lengths=lengths, kv_splits=4)
    assert torch_ops.uses_fast_path(q, k, v)
    eager = wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths, kv_splits=4)
    np.testing.assert_array_equal(eager.numpy(), expected)
    op_out, _ = torch.ops.wideattn.attention(q, k, v, offsets, lengths, True, 0, 0, 0, None, None,
                                             None, None, 0.0, float("nan"), "auto", False,
                                             kv_splits=4)
    np.testing.assert_array_equal(op_out.numpy(), expected)
    out = torch.zeros_like(q)
    torch.ops.wideattn.attention_out(q, k, v, out, None, offsets, lengths, True, 0, 0, 0, None, None,
                                     None, None, 0.0, float("nan"), "auto", kv_splits=4)
    np.testing.assert_array_equal(out.numpy(), expected)
    # Through the operator (inputs that need grad) with a bad value: the error names it.
    with pytest.raises(ValueError, match="kv_splits"):
        wideattn.attention(q.requires_grad_(), k, v, query_offsets=offsets, kv_lengths=lengths,
                           kv_splits=500)


def test_cuda_fixed_splits_give_the_same_bits_in_any_batch(rng):
    torch = torch_or_skip()
    if not torch.cuda.is_available() or not wideattn.backend_available("cuda")[0]:
        pytest.skip("no CUDA device (or wideattn built without CUDA)")

    def run(q, k, v, offsets, kv_lengths):
        cast = lambda x: torch.from_numpy(np.ascontiguousarray(x)).to("cuda", torch.bfloat16)  # noqa: E731
        out, lse = wideattn.attention(cast(q), cast(k), cast(v), query_offsets=offsets,
                                      kv_lengths=kv_lengths, return_lse=True, kv_splits=6)
        return out.float().cpu().numpy(), lse.cpu().numpy()

    for head_dim in (128, 512):
        results, (ref_out, _) = alone_and_in_batches(run, rng, head_dim)
        for out, lse in results:
            assert_close(out, ref_out, 3e-2, 3e-2, f"out (d={head_dim})")
            np.testing.assert_array_equal(out, results[0][0])
            np.testing.assert_array_equal(lse, results[0][1])
