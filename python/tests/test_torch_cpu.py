"""PyTorch CPU tensors: the custom operators, opcheck, and torch.compile(fullgraph=True).
Skipped when PyTorch is not installed."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import wideattn  # noqa: E402
from wideattn import torch_ops  # noqa: E402
from _reference import assert_close, attention as reference_attention  # noqa: E402

TOLERANCE = {torch.float32: (2e-5, 1e-4), torch.float16: (2e-3, 4e-3), torch.bfloat16: (1.6e-2, 3e-2)}


def make(dtype=torch.float32, tokens=(7, 1), kv_lengths=(12, 9), heads=8, kv_heads=2, d=64,
         capacity=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    total = sum(tokens)
    q = torch.randn(total, heads, d, generator=g).to(dtype)
    k = torch.randn(len(kv_lengths), capacity, kv_heads, d, generator=g).to(dtype)
    v = torch.randn(len(kv_lengths), capacity, kv_heads, d, generator=g).to(dtype)
    offsets = [0]
    for t in tokens:
        offsets.append(offsets[-1] + t)
    return q, k, v, offsets, list(kv_lengths)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_torch_tensors(dtype):
    q, k, v, offsets, lengths = make(dtype)
    sinks = torch.randn(8)
    out, lse = wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths,
                                  return_lse=True, sinks=sinks, window=6, softcap=3.0)
    assert isinstance(out, torch.Tensor) and out.dtype == dtype and lse.dtype == torch.float32
    ref_out, ref_lse = reference_attention(q, k, v, offsets, lengths, sinks=sinks, window=6, softcap=3.0)
    atol, rtol = TOLERANCE[dtype]
    assert_close(out, ref_out, atol, rtol, "out")
    assert_close(lse, ref_lse, 1e-4, 1e-5, "lse")


def test_out_variant_strided_and_metadata_tensors():
    q, k, v, offsets, lengths = make()
    out = torch.zeros(8, q.shape[0], 64).transpose(0, 1)  # head-major storage
    result = wideattn.attention(q.transpose(0, 1).contiguous().transpose(0, 1), k, v,
                                query_offsets=torch.tensor(offsets), kv_lengths=torch.tensor(lengths),
                                out=out)
    assert result is out
    assert_close(out, reference_attention(q, k, v, offsets, lengths)[0], 2e-5, 1e-4, "out")


def test_requires_grad_inputs_are_read_without_copies():
    q, k, v, offsets, lengths = make()
    q.requires_grad_(True)
    out = wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths)
    assert_close(out, reference_attention(q, k, v, offsets, lengths)[0], 2e-5, 1e-4, "out")


def test_opcheck():
    assert torch_ops.available()
    q, k, v, offsets, lengths = make(d=32)
    nan = float("nan")
    torch.library.opcheck(
        torch.ops.wideattn.attention.default,
        (q, k, v, offsets, lengths, True, 0, 0, 0, None, None, None, None, 0.0, nan, "auto", True))
    out = torch.empty_like(q)
    lse = torch.empty(q.shape[:2])
    torch.library.opcheck(
        torch.ops.wideattn.attention_out.default,
        (q, k, v, out, lse, offsets, lengths, True, 0, 0, 0, None, None, None, None, 0.0, 1.0, "auto"))


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph(backend):
    q, k, v, offsets, lengths = make()

    def layer(q, k, v):
        out = wideattn.attention(q * 1.0, k, v, query_offsets=offsets, kv_lengths=lengths, scale=1.0)
        return out.sum(dim=-1)

    compiled = torch.compile(layer, fullgraph=True, backend=backend)
    expected = torch.from_numpy(reference_attention(q, k, v, offsets, lengths, scale=1.0)[0].sum(-1))
    assert_close(compiled(q, k, v), expected, 1e-3, 1e-4, "compiled")


def test_bad_input_through_the_operator():
    q, k, v, offsets, lengths = make()
    with pytest.raises(ValueError, match=r"k_cache.shape\[3\] = 32, expected 64"):
        wideattn.attention(q, k[..., :32], v, query_offsets=offsets, kv_lengths=lengths)
    with pytest.raises(TypeError, match=r"k_cache has dtype float16 but q has dtype float32"):
        wideattn.attention(q, k.half(), v, query_offsets=offsets, kv_lengths=lengths)


def test_meta_tensors_propagate_shapes():
    q = torch.empty(5, 8, 512, dtype=torch.bfloat16, device="meta")
    k = torch.empty(1, 16, 2, 512, dtype=torch.bfloat16, device="meta")
    out, lse = wideattn.attention(q, k, k, query_offsets=[0, 5], kv_lengths=[5], return_lse=True)
    assert out.device.type == "meta" and out.shape == q.shape and lse.shape == (5, 8)
