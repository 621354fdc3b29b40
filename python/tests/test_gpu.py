"""CUDA: PyTorch CUDA tensors (current stream, strided layouts), torch.compile(fullgraph=True),
CUDA graph capture, CuPy and JAX arrays, components. Skipped without a GPU or a CUDA build."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import wideattn  # noqa: E402
from _reference import assert_close, attention as reference_attention  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and wideattn.cuda_built and wideattn.backend_available("cuda")[0]),
    reason="no GPU, or this build of wideattn has no CUDA backend: GPU tests skipped",
)

# bf16/f16 outputs: inputs rounded, f32 accumulation, probabilities in the model dtype on CUDA.
TOLERANCE = {torch.float16: (4e-3, 1e-2), torch.bfloat16: (2.5e-2, 4e-2), torch.float32: (1e-4, 1e-3)}


def make(dtype, suffixes, kv_lengths, heads, kv_heads, d, capacity=None, device="cuda", seed=0,
         amplitude=None):
    g = torch.Generator().manual_seed(seed)
    capacity = capacity or max(kv_lengths)
    amplitude = amplitude if amplitude is not None else d ** -0.25  # logits of order 1 at scale 1
    q = (amplitude * torch.randn(sum(suffixes), heads, d, generator=g)).to(dtype).to(device)
    k = (amplitude * torch.randn(len(kv_lengths), capacity, kv_heads, d, generator=g)).to(dtype).to(device)
    v = torch.randn(len(kv_lengths), capacity, kv_heads, d, generator=g).to(dtype).to(device)
    offsets = [0]
    for s in suffixes:
        offsets.append(offsets[-1] + s)
    return q, k, v, offsets, list(kv_lengths)


def check(out, lse, q, k, v, offsets, lengths, **options):
    torch.cuda.synchronize()
    ref_out, ref_lse = reference_attention(q.cpu(), k.cpu(), v.cpu(), offsets, lengths, **options)
    atol, rtol = TOLERANCE[q.dtype]
    assert_close(out.cpu(), ref_out, atol, rtol, "out")
    if lse is not None:
        assert_close(lse.cpu(), ref_lse, 2e-3, 1e-4, "lse")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kernel", ["auto", "single_pass", "two_pass", "prefill_unfused"])
def test_gemma4_global_layer(dtype, kernel):
    # head_dim 512, 8/2 heads, scale 1.0: a prefill chunk over a prefix, a decode token, a
    # 4-token verify step.
    q, k, v, offsets, lengths = make(dtype, [70, 1, 4], [100, 300, 37], 8, 2, 512, capacity=320)
    out, lse = wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths, scale=1.0,
                                  return_lse=True, kernel=kernel)
    assert out.device == q.device and out.dtype == dtype
    check(out, lse, q, k, v, offsets, lengths, scale=1.0)


@pytest.mark.parametrize("d,heads,kv_heads", [(64, 4, 4), (128, 32, 8), (256, 16, 8)])
def test_other_head_dims_with_masks(d, heads, kv_heads):
    q, k, v, offsets, lengths = make(torch.bfloat16, [33, 1], [50, 97], heads, kv_heads, d)
    sinks = torch.randn(heads, device="cuda")
    options = dict(window=16, softcap=20.0, sinks=sinks)
    out, lse = wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths,
                                  return_lse=True, **options)
    check(out, lse, q, k, v, offsets, lengths, **options)


def test_strided_layouts_and_a_side_stream():
    q, k, v, offsets, lengths = make(torch.bfloat16, [40], [64], 8, 2, 512, capacity=80)
    q_head_major = q.transpose(0, 1).contiguous().transpose(0, 1)
    k_head_major = k.transpose(1, 2).contiguous().transpose(1, 2)
    out = torch.empty(8, 40, 512, dtype=torch.bfloat16, device="cuda").transpose(0, 1)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        result = wideattn.attention(q_head_major, k_head_major, v, query_offsets=offsets,
                                    kv_lengths=lengths, out=out, scale=1.0)
    stream.synchronize()
    assert result is out
    check(out, None, q, k, v, offsets, lengths, scale=1.0)


def test_torch_compile_fullgraph():
    q, k, v, offsets, lengths = make(torch.bfloat16, [16, 1], [40, 90], 8, 2, 512)

    @torch.compile(fullgraph=True)
    def layer(q, k, v):
        return wideattn.attention(q * 2, k, v, query_offsets=offsets, kv_lengths=lengths, scale=0.5)

    out = layer(q, k, v)
    check(out, None, q * 2, k, v, offsets, lengths, scale=0.5)


def test_cuda_graph_capture_and_replay():
    q, k, v, offsets, lengths = make(torch.bfloat16, [1, 1, 1, 1], [129, 700, 33, 1024], 8, 2, 512,
                                     capacity=1024)
    static_q = q.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up: sizes the workspace before capture
        for _ in range(2):
            wideattn.attention(static_q, k, v, query_offsets=offsets, kv_lengths=lengths, scale=1.0)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = wideattn.attention(static_q, k, v, query_offsets=offsets, kv_lengths=lengths,
                                        scale=1.0)
    for seed in (1, 2):
        new_q, _, _, _, _ = make(torch.bfloat16, [1, 1, 1, 1], [129, 700, 33, 1024], 8, 2, 512,
                                 capacity=1024, seed=seed)
        static_q.copy_(new_q)
        graph.replay()
        check(static_out, None, static_q, k, v, offsets, lengths, scale=1.0)


def test_errors_name_the_argument():
    q, k, v, offsets, lengths = make(torch.bfloat16, [3], [5], 4, 2, 128)
    with pytest.raises(ValueError, match=r"k_cache is on cpu but q is on cuda:0"):
        wideattn.attention(q, k.cpu(), v, query_offsets=offsets, kv_lengths=lengths)
    with pytest.raises(ValueError, match=r"query_offsets must be on the host"):
        wideattn.attention(q, k, v, query_offsets=torch.tensor(offsets, device="cuda"),
                           kv_lengths=lengths)
    q96, k96, v96, _, _ = make(torch.bfloat16, [3], [5], 4, 2, 96)
    with pytest.raises(ValueError, match=r"head_dim = 96, expected one of 64, 128, 256, 512 on CUDA"):
        wideattn.attention(q96, k96, v96, query_offsets=offsets, kv_lengths=lengths)


def test_plan_on_the_gpu():
    q, k, v, offsets, lengths = make(torch.bfloat16, [1] * 32, [4096] * 32, 16, 4, 512)
    plan = wideattn.plan(q, k, v, query_offsets=offsets, kv_lengths=lengths)
    assert plan.kernel in ("single_pass", "two_pass") and "SMs" in plan.reason
    info = wideattn.device_info(q.device)
    assert info["backend"] == "cuda" and info["compute_units"] > 0


def test_components_on_the_gpu():
    a = torch.randn(4, 33, 64, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(48, 64, device="cuda", dtype=torch.bfloat16)
    d = wideattn.matmul(a, b, b_transpose=True, scale=0.25)
    expected = 0.25 * a.double() @ b.double().T
    assert_close(d.cpu(), expected.cpu().numpy(), 5e-2, 1e-2, "matmul")
    with pytest.raises(NotImplementedError, match=r"a_dtype = bf16 and b_dtype = f16 differ"):
        wideattn.matmul(a, b.half(), b_transpose=True)
    x = torch.randn(6, 40, device="cuda")
    p = wideattn.softmax(x, output_dtype=torch.bfloat16)
    assert_close(p.cpu(), torch.softmax(x.double(), -1).cpu().numpy(), 4e-3, 1e-2, "softmax")


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="one GPU")
def test_second_gpu():
    q, k, v, offsets, lengths = make(torch.bfloat16, [5], [9], 8, 2, 512, device="cuda:1")
    out = wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths, scale=1.0)
    assert out.device == q.device
    check(out, None, q, k, v, offsets, lengths, scale=1.0)


def test_cupy_arrays():
    cupy = pytest.importorskip("cupy")
    q, k, v, offsets, lengths = make(torch.float16, [9, 1], [20, 30], 8, 2, 256)
    qc, kc, vc = (cupy.asarray(t.cpu().numpy()) for t in (q, k, v))
    out = wideattn.attention(qc, kc, vc, query_offsets=offsets, kv_lengths=lengths)
    assert isinstance(out, cupy.ndarray)
    cupy.cuda.get_current_stream().synchronize()
    check(torch.from_numpy(cupy.asnumpy(out)), None, q, k, v, offsets, lengths)


def test_jax_arrays():
    jax = pytest.importorskip("jax")
    if not any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("JAX sees no GPU")
    import jax.numpy as jnp

    q, k, v, offsets, lengths = make(torch.float16, [9, 1], [20, 30], 8, 2, 128)
    qj, kj, vj = (jnp.asarray(t.cpu().numpy()) for t in (q, k, v))
    out = wideattn.attention(qj, kj, vj, query_offsets=offsets, kv_lengths=lengths)
    assert isinstance(out, jax.Array)
    check(torch.from_numpy(np.asarray(out)), None, q, k, v, offsets, lengths)
