"""fp8 (e4m3) KV caches from Python (include/wideattn/problem.h, KvCache::fp8).

- write_kv into a float8_e4m3fn / uint8 cache against float_to_fp8_e4m3's documented semantics
  (include/wideattn/convert.h: round to nearest even; finite values past 448 saturate to +-448;
  NaN and +-inf become NaN), computed with ml_dtypes, whose own cast turns finite values past 464
  into NaN: the reference clips first. Quantising is x / scale in float32 (divided, not multiplied
  by the reciprocal).
- attention over an fp8 cache (contiguous and paged, one scale per cache or per KV head, floats
  or float32 arrays) against the float64 oracle over the dequantised stored values (stored x
  scale), and PyTorch CPU tensors (eager, the operators, torch.compile) giving the same bits.
- a PlannedDecode serving loop over an fp8 cache written by write_kv.
- bad input: errors naming the argument, nothing written.
- CUDA: decode, prefill and write_kv over an fp8 cache agree with the CPU backend. Checked on a
  GPU only.
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

import wideattn
from _reference import assert_close, attention as reference_attention

ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes is not installed: no float8 NumPy arrays")

try:
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

F8 = np.dtype(ml_dtypes.float8_e4m3fn)
BF16 = np.dtype(ml_dtypes.bfloat16)
NAN_CODE = 0x7F  # S.1111.111 is NaN in e4m3fn; 0x7E is +448
SEED = int(os.environ.get("WIDEATTN_TEST_SEED", np.random.SeedSequence().entropy % 2**32))
TOLERANCE = {"float32": (2e-5, 1e-4), "bfloat16": (1.6e-2, 3e-2)}

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed: torch cases skipped")


@pytest.fixture
def rng(request):
    seed = (SEED + zlib.crc32(request.node.name.encode())) % 2**32
    print(f"seed {seed} (WIDEATTN_TEST_SEED={SEED})")
    return np.random.default_rng(seed)


# ---- the reference ---------------------------------------------------------------------------------


def e4m3_codes(x) -> np.ndarray:
    """float_to_fp8_e4m3 of float32 `x`, as uint8 codes. ml_dtypes' cast rounds to nearest even
    like the library, but gives NaN for finite values past 464 where the library saturates at
    +-448: clip first. Non-finite values: NaN carrying x's sign bit."""
    x = np.asarray(x, np.float32)
    finite = np.isfinite(x)
    codes = np.clip(np.where(finite, x, np.float32(0)), -448, 448).astype(F8).view(np.uint8)
    return np.where(finite, codes, np.where(np.signbit(x), 0x80 | NAN_CODE, NAN_CODE)).astype(np.uint8)


def scales_f32(scale, kv_heads) -> np.ndarray:
    """The scale in float32 per KV head [kv_heads] (what write_kv divides by)."""
    return np.broadcast_to(np.asarray(1.0 if scale is None else scale, np.float32).reshape(-1), (kv_heads,))


def per_head(scale, kv_heads) -> np.ndarray:
    """The scale of each KV head as float64 [kv_heads] (None: 1)."""
    return np.broadcast_to(np.asarray(1.0 if scale is None else scale, np.float64).reshape(-1), (kv_heads,))


def dequantised(stored: np.ndarray, scale) -> np.ndarray:
    """float64 values of a stored fp8 cache [..., kv_heads, head_dim]: stored x scale of the head."""
    return stored.view(F8).astype(np.float64) * per_head(scale, stored.shape[-2])[:, None]


def stored_cache(rng, batch, capacity, kv_heads, head_dim, lengths) -> np.ndarray:
    """A float8_e4m3fn cache [batch, capacity, kv_heads, head_dim] of values of order 1 to 10,
    NaN past each sequence's length (a read past it would show)."""
    cache = (3.0 * rng.standard_normal((batch, capacity, kv_heads, head_dim))).astype(F8)
    codes = cache.view(np.uint8)
    for b, length in enumerate(lengths):
        codes[b, length:] = NAN_CODE
    return cache


def paginate(rng, k, v, page_size, layout):
    """The caches' pages in shuffled pools (spare pages NaN), same dtype: (k_pool, v_pool, table)."""
    batch, capacity, kv_heads, head_dim = k.shape
    max_pages = -(-capacity // page_size)
    num_pages = batch * max_pages + 3
    table = rng.permutation(num_pages)[: batch * max_pages].reshape(batch, max_pages).astype(np.int32)
    pools = []
    for cache in (k, v):
        pool = np.full((num_pages, page_size, kv_heads, head_dim), NAN_CODE, np.uint8)
        for b in range(batch):
            for j in range(max_pages):
                rows = slice(j * page_size, min((j + 1) * page_size, capacity))
                pool[table[b, j], : rows.stop - rows.start] = cache.view(np.uint8)[b, rows]
        if layout == "HND":
            pool = np.ascontiguousarray(pool.transpose(0, 2, 1, 3))
        pools.append(pool.view(cache.dtype))
    return pools[0], pools[1], table


def scale_argument(kind, values):
    """A scale in one of the forms the API takes: 'float', '0-d', '[1]' (values: one float),
    'per-head' (values: a list), 'none'."""
    if kind == "none":
        return None
    if kind == "float":
        return float(values)
    if kind == "0-d":
        return np.array(values, np.float32)
    if kind == "[1]":
        return np.array([values], np.float32)
    return np.array(values, np.float32)


# ---- write_kv --------------------------------------------------------------------------------------


def special_values() -> np.ndarray:
    """Every finite e4m3 value, every midpoint between neighbours (ties) and its float32
    neighbours, both signs; the saturation boundary; tiny values; zeros, infinities and NaN."""
    finite = np.arange(256, dtype=np.uint8).view(F8).astype(np.float32)
    finite = np.unique(finite[np.isfinite(finite)])
    mids = ((finite[:-1].astype(np.float64) + finite[1:]) / 2).astype(np.float32)  # exact in f32
    around = np.concatenate([np.nextafter(mids, np.float32(np.inf)), np.nextafter(mids, np.float32(-np.inf))])
    edges = np.array([448, 449, 463.99, 464, 464.01, 465, 479, 480, 500, 1e6, 1e30,
                      np.finfo(np.float32).max, 2.0**-9, 2.0**-10, 3 * 2.0**-10, 2.0**-11, 2.0**-30,
                      15 * 2.0**-10, 0.0], np.float32)
    specials = np.array([np.inf, -np.inf, np.nan, -np.nan, -0.0], np.float32)
    return np.concatenate([finite, mids, around, edges, -edges, specials]).astype(np.float32)


def test_write_kv_rounds_to_nearest_even_and_saturates_at_448():
    values = special_values()
    head_dim = 16
    tokens = -(-values.size // head_dim)
    rows = np.zeros(tokens * head_dim, np.float32)
    rows[: values.size] = values
    k_new = rows.reshape(tokens, 1, head_dim)
    v_new = -k_new
    capacity = tokens + 3
    k_cache = np.full((1, capacity, 1, head_dim), 0x11, np.uint8).view(F8)
    v_cache = np.full((1, capacity, 1, head_dim), 0x11, np.uint8).view(F8)
    slots = np.random.default_rng(5).permutation(capacity)[:tokens].astype(np.int32)
    wideattn.write_kv(k_new, v_new, k_cache, v_cache, slots)  # no scales: 1
    expected_k = np.full((1, capacity, 1, head_dim), 0x11, np.uint8)
    expected_v = expected_k.copy()
    expected_k[0, slots] = e4m3_codes(k_new)
    expected_v[0, slots] = e4m3_codes(v_new)
    np.testing.assert_array_equal(k_cache.view(np.uint8), expected_k)
    np.testing.assert_array_equal(v_cache.view(np.uint8), expected_v)
    # The documented points, independently of ml_dtypes.
    codes_of = dict(zip(rows.tolist(), k_cache.view(np.uint8)[0, slots].reshape(-1).tolist()))

    def stored(x):
        return codes_of[float(np.float32(x))]

    assert stored(448) == 0x7E and stored(464) == 0x7E and stored(500) == 0x7E
    assert stored(1e30) == 0x7E and stored(-1e30) == 0xFE and stored(-465) == 0xFE
    assert stored(2.0**-10) == 0x00  # the tie between 0 and 2^-9 goes to even (0)
    assert stored(3 * 2.0**-10) == 0x02  # the tie between codes 1 and 2 goes to even
    assert stored(1.0625) == 0x38 and stored(1.1875) == 0x3A  # ties to even mantissas
    assert stored(15 * 2.0**-10) == 0x08  # rounds up out of the subnormals into 2^-6
    codes = k_cache.view(np.uint8)[0, slots].reshape(-1)[: values.size]
    assert (codes[np.isposinf(values)] == 0x7F).all() and (codes[np.isneginf(values)] == 0xFF).all()
    assert ((codes[np.isnan(values)] & 0x7F) == 0x7F).all()


WRITE_CASES = [
    # cache layout, page size, k_new dtype, scale form, k scales, v scales, cache as
    ("contiguous", 0, "float32", "float", 0.37, 1.9, "float8"),
    ("contiguous", 0, "bfloat16", "per-head", [0.37, 0.05], [2.5, 0.125], "uint8"),
    ("NHD", 4, "float16", "0-d", 0.05, 0.7, "float8"),
    ("HND", 8, "float32", "per-head", [0.02, 1.0], [0.3, 0.6], "float8"),
    ("HND", 2, "bfloat16", "[1]", 0.11, 3.0, "uint8"),
    ("NHD", 4, "float32", "none", None, None, "float8"),
]


@pytest.mark.parametrize("case", WRITE_CASES, ids=lambda c: f"{c[0]}-{c[2]}-{c[3]}-{c[6]}")
def test_write_kv_quantises_with_the_scales(rng, case):
    layout, page_size, dtype_name, form, k_values, v_values, cache_as = case
    tokens, kv_heads, head_dim = 9, 2, 32
    dtype = BF16 if dtype_name == "bfloat16" else np.dtype(dtype_name)
    # Values up to ~60 / 0.02: many saturate under the small scales.
    k_new = (20 * rng.standard_normal((tokens, kv_heads, head_dim))).astype(dtype)
    v_new = (20 * rng.standard_normal((tokens, kv_heads, head_dim))).astype(dtype)
    if layout == "contiguous":
        shape, total, args = (3, 6, kv_heads, head_dim), 18, {}
    else:
        pages = 7
        shape = ((pages, page_size, kv_heads, head_dim) if layout == "NHD"
                 else (pages, kv_heads, page_size, head_dim))
        total, args = pages * page_size, {"block_table": np.zeros((1, 1), np.int32), "kv_layout": layout}
    initial_k = rng.integers(0, 256, shape, dtype=np.uint8)
    initial_v = rng.integers(0, 256, shape, dtype=np.uint8)
    k_cache, v_cache = initial_k.copy(), initial_v.copy()
    if cache_as == "uint8":
        args["kv_cache_dtype"] = "fp8_e4m3"
    else:
        k_cache, v_cache = k_cache.view(F8), v_cache.view(F8)
    slots = rng.choice(total, size=tokens, replace=False).astype(np.int32)
    slots[3] = -1
    k_scale, v_scale = scale_argument(form, k_values), scale_argument(form, v_values)
    wideattn.write_kv(k_new, v_new, k_cache, v_cache, slots, k_scale=k_scale, v_scale=v_scale, **args)

    expected = []
    for initial, new, scale in ((initial_k, k_new, k_values), (initial_v, v_new, v_values)):
        codes = e4m3_codes(new.astype(np.float32) / scales_f32(scale, kv_heads)[:, None])
        cache = initial.copy()
        for t, s in enumerate(slots.tolist()):
            if s < 0:
                continue
            if layout == "contiguous":
                cache[s // shape[1], s % shape[1]] = codes[t]
            elif layout == "NHD":
                cache[s // page_size, s % page_size] = codes[t]
            else:
                cache[s // page_size, :, s % page_size] = codes[t]
        expected.append(cache)
    np.testing.assert_array_equal(k_cache.view(np.uint8), expected[0], "k_cache")
    np.testing.assert_array_equal(v_cache.view(np.uint8), expected[1], "v_cache")


@needs_torch
def test_write_kv_torch_float8_and_uint8_same_bytes_as_numpy(rng):
    tokens, kv_heads, head_dim, capacity = 6, 2, 64, 8
    k_new = (30 * rng.standard_normal((tokens, kv_heads, head_dim))).astype(np.float32)
    v_new = (3 * rng.standard_normal((tokens, kv_heads, head_dim))).astype(np.float32)
    slots = np.array([3, -1, 0, 7, 9, 12], np.int32)
    k_scales, v_scales = np.array([0.25, 0.07], np.float32), np.array([0.5, 0.02], np.float32)
    k_ref = np.zeros((2, capacity, kv_heads, head_dim), F8)
    v_ref = np.zeros_like(k_ref)
    wideattn.write_kv(k_new, v_new, k_ref, v_ref, slots, k_scale=k_scales, v_scale=v_scales)

    from wideattn import torch_ops

    assert torch_ops.available()  # registers torch.ops.wideattn
    t_new = (torch.from_numpy(k_new), torch.from_numpy(v_new))
    t_slots = torch.from_numpy(slots)
    # float8_e4m3fn tensors, eager (the extension directly).
    k8 = torch.zeros(k_ref.shape, dtype=torch.float8_e4m3fn)
    v8 = torch.zeros(k_ref.shape, dtype=torch.float8_e4m3fn)
    wideattn.write_kv(*t_new, k8, v8, t_slots, k_scale=torch.from_numpy(k_scales),
                      v_scale=torch.from_numpy(v_scales))
    # uint8 tensors (vLLM's older caches) with kv_cache_dtype, through the operator.
    ku = torch.zeros(k_ref.shape, dtype=torch.uint8)
    vu = torch.zeros(k_ref.shape, dtype=torch.uint8)
    torch.ops.wideattn.write_kv(*t_new, ku, vu, t_slots, None, "NHD", torch.from_numpy(k_scales),
                                torch.from_numpy(v_scales), "fp8")
    for k_out, v_out in ((k8.view(torch.uint8), v8.view(torch.uint8)), (ku, vu)):
        np.testing.assert_array_equal(k_out.numpy(), k_ref.view(np.uint8))
        np.testing.assert_array_equal(v_out.numpy(), v_ref.view(np.uint8))


# ---- attention -------------------------------------------------------------------------------------

ATTENTION_CASES = [
    # suffixes, kv lengths, page size (0: contiguous), layout, scale form, k scale, v scale,
    # q dtype, kernel, mask options
    ([1, 1, 1], [70, 5, 33], 0, "NHD", "float", 0.3, 1.7, "float32", "single_pass", {}),
    ([1, 2], [300, 40], 16, "NHD", "per-head", [0.25, 0.6], [1.5, 0.2], "float32", "two_pass",
     {"softcap": 20.0}),
    ([12, 20], [50, 20], 0, "NHD", "0-d", 0.15, 0.9, "bfloat16", "prefill_unfused", {"causal": False}),
    ([30, 1], [130, 9], 32, "HND", "per-head", [0.1, 0.4], [2.0, 0.05], "float32", "auto",
     {"window": 17}),
    ([3, 0, 5], [40, 17, 5], 8, "HND", "[1]", 0.5, 0.5, "bfloat16", "auto", {}),
    ([4, 1], [20, 90], 0, "NHD", "none", None, None, "float32", "auto", {"scale": 0.05}),
]


def fp8_problem(rng, case):
    """(q, k_cache, v_cache, call arguments, reference arguments) of an ATTENTION_CASES entry."""
    suffixes, lengths, page_size, layout, form, k_values, v_values, q_dtype, kernel, options = case
    q_heads, kv_heads, head_dim = 8, 2, 64
    batch, capacity = len(lengths), max(lengths) + 5
    q = rng.standard_normal((sum(suffixes), q_heads, head_dim)).astype(np.float32)
    q *= 0.3  # logits of order 1 over keys of order 3 x scale
    if q_dtype == "bfloat16":
        q = q.astype(BF16)
    k = stored_cache(rng, batch, capacity, kv_heads, head_dim, lengths)
    v = stored_cache(rng, batch, capacity, kv_heads, head_dim, lengths)
    offsets = np.concatenate([[0], np.cumsum(suffixes)]).astype(int).tolist()
    args = dict(query_offsets=offsets, kv_lengths=list(lengths), kernel=kernel,
                k_scale=scale_argument(form, k_values), v_scale=scale_argument(form, v_values),
                **options)
    reference = dict(k=dequantised(k, k_values), v=dequantised(v, v_values), offsets=offsets,
                     lengths=list(lengths), options=options)
    if page_size:
        k, v, table = paginate(rng, k, v, page_size, layout)
        args.update(block_table=table, kv_layout=layout)
    return q, k, v, args, reference


def attention_case_id(c) -> str:
    cache = f"paged{c[2]}-{c[3]}" if c[2] else "contiguous"
    return f"{cache}-{c[4]}-{c[7]}-{c[8]}"


@pytest.mark.parametrize("case", ATTENTION_CASES, ids=attention_case_id)
def test_attention_over_fp8_cache_matches_reference(rng, case):
    q, k, v, args, ref = fp8_problem(rng, case)
    out, lse = wideattn.attention(q, k, v, return_lse=True, **args)
    assert out.dtype == q.dtype and out.shape == q.shape
    ref_out, ref_lse = reference_attention(q, ref["k"], ref["v"], ref["offsets"], ref["lengths"],
                                           **ref["options"])
    atol, rtol = TOLERANCE[q.dtype.name]
    assert_close(out, ref_out, atol, rtol, "out")
    assert_close(lse, ref_lse, 1e-4, 1e-5, "lse")
    # The same cache as uint8 bytes, told apart by kv_cache_dtype: the same bits.
    out_u8 = wideattn.attention(q, k.view(np.uint8), v.view(np.uint8), kv_cache_dtype="fp8", **args)
    np.testing.assert_array_equal(out_u8, out)
    plan = wideattn.plan(q, k, v, **{n: a for n, a in args.items()})
    assert plan.kernel in ("single_pass", "two_pass", "prefill_unfused"), plan


@needs_torch
@pytest.mark.parametrize("case", [ATTENTION_CASES[1], ATTENTION_CASES[2], ATTENTION_CASES[3]],
                         ids=["two_pass-paged", "prefill-contiguous", "auto-paged-HND"])
def test_torch_fp8_cache_same_bits_as_numpy(rng, case):
    from wideattn import torch_ops

    q, k, v, args, _ = fp8_problem(rng, case)
    expected, expected_lse = wideattn.attention(q, k, v, return_lse=True, **args)
    tq = torch.from_numpy(q.astype(np.float32)).to(torch.bfloat16 if q.dtype == BF16 else torch.float32)
    t8 = [torch.from_numpy(x.view(np.uint8)).view(torch.float8_e4m3fn) for x in (k, v)]
    targs = dict(args)
    for name in ("k_scale", "v_scale", "block_table"):
        if isinstance(targs.get(name), np.ndarray):
            targs[name] = torch.from_numpy(targs[name])
    # float8_e4m3fn tensors: the eager path.
    assert torch_ops.uses_fast_path(tq, *t8, k_scale=targs["k_scale"], v_scale=targs["v_scale"])
    out, lse = wideattn.attention(tq, *t8, return_lse=True, **targs)
    np.testing.assert_array_equal(out.float().numpy(), expected.astype(np.float32))
    np.testing.assert_array_equal(lse.numpy(), expected_lse)
    # uint8 tensors with kv_cache_dtype, through the operator as torch.compile calls it.
    tu = [torch.from_numpy(x.view(np.uint8)) for x in (k, v)]

    def layer(q, k_cache, v_cache):
        return wideattn.attention(q * 1.0, k_cache, v_cache, kv_cache_dtype="fp8_e4m3", **targs)

    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    np.testing.assert_array_equal(compiled(tq, *tu).float().numpy(), expected.astype(np.float32))


@needs_torch
def test_torch_operator_schema_and_float_scales(rng):
    from wideattn import torch_ops

    assert torch_ops.available()  # registers torch.ops.wideattn
    q, k, v, args, _ = fp8_problem(rng, ATTENTION_CASES[0])  # float scales, contiguous
    expected = wideattn.attention(q, k, v, **args)
    tq = torch.from_numpy(q)
    tk, tv = (torch.from_numpy(x.view(np.uint8)).view(torch.float8_e4m3fn) for x in (k, v))
    op_out, _ = torch.ops.wideattn.attention(
        tq, tk, tv, args["query_offsets"], args["kv_lengths"], True, 0, 0, 0, None, None, None,
        None, 0.0, float("nan"), args["kernel"], False, None, "NHD",
        torch.tensor([args["k_scale"]]), torch.tensor(args["v_scale"]), "auto")
    np.testing.assert_array_equal(op_out.numpy(), expected)
    # A Python float reaches the operator as a float32 tensor (torch.compile traces it in).
    compiled = torch.compile(lambda q, k, v: wideattn.attention(q, k, v, **args), fullgraph=True,
                             backend="aot_eager")
    np.testing.assert_array_equal(compiled(tq, tk, tv).numpy(), expected)
    out = torch.empty_like(tq)
    # opcheck's test_schema multiplies the inputs, which PyTorch does not implement for float8
    # on the CPU: the other checks (fake tensor, autograd registration, AOT dispatch) run.
    torch.library.opcheck(
        torch.ops.wideattn.attention_out.default,
        (tq, tk, tv, out, None, args["query_offsets"], args["kv_lengths"], True, 0, 0, 0, None,
         None, None, None, 0.0, 1.0, "auto", None, "NHD", torch.tensor([0.3]), torch.tensor([1.7]),
         "auto"),
        test_utils=("test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic"))


# ---- PlannedDecode ---------------------------------------------------------------------------------


@pytest.mark.parametrize("paged", [False, True], ids=["contiguous", "paged"])
@pytest.mark.parametrize("form", ["float", "per-head"])
def test_planned_decode_over_fp8_cache_written_by_write_kv(rng, paged, form):
    slots, capacity, q_heads, kv_heads, head_dim, page = 3, 48, 4, 2, 64, 16
    k_values = 0.2 if form == "float" else [0.2, 0.05]
    v_values = 1.5 if form == "float" else [1.5, 0.4]
    k_scale, v_scale = scale_argument(form, k_values), scale_argument(form, v_values)
    q = np.zeros((slots, q_heads, head_dim), np.float32)
    query_offsets = np.zeros(slots + 1, np.int32)
    kv_lengths = np.zeros(slots, np.int32)
    args = {}
    if paged:
        max_pages = capacity // page
        num_pages = slots * max_pages + 2
        table = rng.permutation(num_pages)[: slots * max_pages].reshape(slots, max_pages).astype(np.int32)
        k_cache = np.full((num_pages, page, kv_heads, head_dim), NAN_CODE, np.uint8).view(F8)
        args = {"block_table": table}
    else:
        k_cache = np.full((slots, capacity, kv_heads, head_dim), NAN_CODE, np.uint8).view(F8)
    v_cache = k_cache.copy()
    runner = wideattn.PlannedDecode(q, k_cache, v_cache, query_offsets=query_offsets,
                                    kv_lengths=kv_lengths, max_suffix=1, return_lse=True,
                                    k_scale=k_scale, v_scale=v_scale, **args)
    # A float scale became a float32 [1] array the runner owns (valid across runs and replays).
    assert isinstance(runner.k_scale, np.ndarray) and runner.k_scale.dtype == np.float32
    if form == "float":
        assert runner.k_scale.shape == (1,) and runner.k_scale[0] == np.float32(k_values)
    else:
        assert runner.k_scale is k_scale
    # Every slot's logical cache in float64 (what the stored bytes stand for).
    logical_k = np.zeros((slots, capacity, kv_heads, head_dim))
    logical_v = np.zeros_like(logical_k)
    lengths = np.array([5, 0, 20])
    prefill_k = (0.5 * rng.standard_normal((slots, capacity, kv_heads, head_dim))).astype(np.float32)
    prefill_v = rng.standard_normal((slots, capacity, kv_heads, head_dim)).astype(np.float32)

    def slot_of(b, row):
        if not paged:
            return b * capacity + row
        return int(table[b, row // page]) * page + row % page

    def write(b, rows, k_rows, v_rows):
        mapping = np.array([slot_of(b, r) for r in rows], np.int32)
        wideattn.write_kv(k_rows, v_rows, k_cache, v_cache, mapping, k_scale=runner.k_scale,
                          v_scale=runner.v_scale, **({"block_table": table} if paged else {}))
        # Slot s is row s of the caches seen as [slots, kv_heads, head_dim] (both layouts here).
        k_stored = k_cache.view(np.uint8).reshape(-1, kv_heads, head_dim)[mapping]
        v_stored = v_cache.view(np.uint8).reshape(-1, kv_heads, head_dim)[mapping]
        logical_k[b, rows] = dequantised(k_stored.view(F8), k_values)
        logical_v[b, rows] = dequantised(v_stored.view(F8), v_values)

    for b in range(slots):
        if lengths[b]:
            rows = list(range(lengths[b]))
            write(b, rows, prefill_k[b, rows], prefill_v[b, rows])
    for step in range(3):
        active = [b for b in range(slots) if step > 0 or lengths[b] > 0]  # slot 1 joins at step 1
        suffixes = [1 if b in active else 0 for b in range(slots)]
        offsets = np.concatenate([[0], np.cumsum(suffixes)]).astype(np.int32)
        for b in active:
            row = int(lengths[b])
            write(b, [row], (0.5 * rng.standard_normal((1, kv_heads, head_dim))).astype(np.float32),
                  rng.standard_normal((1, kv_heads, head_dim)).astype(np.float32))
            lengths[b] += 1
        n = int(offsets[-1])
        q[:n] = 0.3 * rng.standard_normal((n, q_heads, head_dim))
        query_offsets[:] = offsets
        kv_lengths[:] = lengths
        out, lse = runner.run()
        eager = wideattn.attention(q[:n], k_cache, v_cache, query_offsets=offsets.tolist(),
                                   kv_lengths=lengths.tolist(), k_scale=runner.k_scale,
                                   v_scale=runner.v_scale, **args)
        assert_close(out[:n], eager, 1e-5, 1e-5, f"step {step}: out vs attention")
        ref_out, ref_lse = reference_attention(q[:n], logical_k, logical_v, offsets.tolist(),
                                               lengths.tolist())
        assert_close(out[:n], ref_out, 2e-5, 1e-4, f"step {step}: out vs reference")
        assert_close(lse[:n], ref_lse, 1e-4, 1e-5, f"step {step}: lse vs reference")
    # The runner reads its scale arrays at every run: doubling v_scale in place doubles out.
    before = out[:n].copy()
    runner.v_scale *= 2
    out, _ = runner.run()
    np.testing.assert_array_equal(out[:n], 2 * before)


@needs_torch
def test_planned_decode_torch_float_scale_is_owned(rng):
    q, k, v, args, ref = fp8_problem(rng, ATTENTION_CASES[0])  # decode, contiguous, float scales
    tq = torch.from_numpy(q)
    tk, tv = (torch.from_numpy(x.view(np.uint8)) for x in (k, v))
    offsets = torch.tensor(args["query_offsets"], dtype=torch.int32)
    lengths = torch.tensor(args["kv_lengths"], dtype=torch.int32)
    runner = wideattn.PlannedDecode(tq, tk, tv, query_offsets=offsets, kv_lengths=lengths,
                                    max_suffix=1, k_scale=args["k_scale"],
                                    v_scale=args["v_scale"], kv_cache_dtype="fp8")
    assert isinstance(runner.k_scale, torch.Tensor) and runner.k_scale.dtype == torch.float32
    out = runner.run()
    ref_out, _ = reference_attention(q, ref["k"], ref["v"], ref["offsets"], ref["lengths"])
    assert_close(out, ref_out, 2e-5, 1e-4, "out")


# ---- errors ----------------------------------------------------------------------------------------


def small_problem(rng, dtype=np.float32):
    q = rng.standard_normal((3, 4, 64)).astype(dtype)
    k = rng.standard_normal((2, 8, 2, 64)).astype(dtype)
    v = rng.standard_normal((2, 8, 2, 64)).astype(dtype)
    return q, k, v, dict(query_offsets=[0, 2, 3], kv_lengths=[6, 1])


def attention_errors():
    """(name, change to the fp8 call's arguments, error, message)."""
    per_head = np.array([0.5, 0.25], np.float32)
    return [
        ("scale-shape", {"k_scale": np.ones(3, np.float32)}, ValueError,
         r"attention: k_scale has shape \(3,\), expected \(\) or \(1,\) .* or \(kv_heads,\) = \(2,\)"),
        ("scale-2d", {"v_scale": np.ones((2, 1), np.float32)}, ValueError, r"v_scale has shape \(2, 1\)"),
        ("scale-dtype", {"k_scale": np.ones(1, np.float64)}, TypeError,
         r"k_scale has dtype float64, expected float32"),
        ("scale-zero", {"k_scale": 0.0}, ValueError, r"k_scale = 0.0, expected a finite value > 0"),
        ("scale-negative", {"v_scale": -2}, ValueError, r"v_scale = -2.0, expected a finite value > 0"),
        ("scale-nan", {"k_scale": float("nan")}, ValueError, r"k_scale = nan, expected a finite value > 0"),
        ("scale-inf-array", {"v_scale": np.array([1, np.inf], np.float32)}, ValueError,
         r"v_scale\[1\] = inf, expected a finite value > 0"),
        ("scale-bool", {"k_scale": True}, TypeError, r"k_scale must be a float or a float32 array"),
        ("mixed", {"k_scale": per_head, "v_scale": 0.5}, ValueError,
         r"k_scale has one value per KV head \(2\) but v_scale has one for the whole cache"),
        ("e5m2", {"kv_cache_dtype": "fp8_e5m2"}, ValueError, r"kv_cache_dtype = 'fp8_e5m2': .* e4m3"),
        ("bad-dtype-name", {"kv_cache_dtype": "int8"}, ValueError, r"kv_cache_dtype = 'int8', expected 'auto'"),
    ]


@pytest.mark.parametrize("name,change,error,message", attention_errors(), ids=[e[0] for e in attention_errors()])
def test_attention_bad_fp8_arguments_name_them(rng, name, change, error, message):
    q, k, v, meta = small_problem(rng)
    k8, v8 = k.astype(F8), v.astype(F8)
    out = np.full_like(q, 7.0)
    with pytest.raises(error, match=message):
        wideattn.attention(q, k8, v8, out=out, **meta, **change)
    assert (out == 7.0).all(), "out was written"


def test_cache_dtype_errors(rng):
    q, k, v, meta = small_problem(rng)
    k8, v8 = k.astype(F8), v.astype(F8)
    # Scales on a 16/32-bit cache name the scale (the library's kv.k_scale check, said first).
    with pytest.raises(ValueError, match=r"attention: k_scale is given but k_cache has dtype bfloat16: "
                                         r"scales belong to an fp8 cache"):
        wideattn.attention(q.astype(BF16), k.astype(BF16), v.astype(BF16), k_scale=0.5, **meta)
    with pytest.raises(ValueError, match=r"attention: v_scale is given but k_cache has dtype float32"):
        wideattn.attention(q, k, v, v_scale=np.float32(2), **meta)
    with pytest.raises(ValueError, match=r"plan_attention: k_scale is given"):
        wideattn.plan(q, k, v, k_scale=1.0, **meta)
    # fp8 is a cache type only.
    with pytest.raises(TypeError, match=r"q has dtype float8_e4m3fn, expected float32, float16 or "
                                        r"bfloat16 \(fp8 is a storage type of the KV cache only"):
        wideattn.attention(q.astype(F8), k8, v8, **meta)
    # uint8 needs kv_cache_dtype; kv_cache_dtype needs an fp8 or uint8 cache.
    with pytest.raises(TypeError, match=r"k_cache has dtype uint8: for a cache of fp8 e4m3 bytes pass "
                                        r"kv_cache_dtype='fp8_e4m3'"):
        wideattn.attention(q, k8.view(np.uint8), v8.view(np.uint8), **meta)
    with pytest.raises(TypeError, match=r"kv_cache_dtype says fp8 e4m3 but k_cache has dtype float32"):
        wideattn.attention(q, k, v, kv_cache_dtype="fp8", **meta)
    with pytest.raises(TypeError, match=r"v_cache has dtype float32 but k_cache has dtype float8_e4m3fn"):
        wideattn.attention(q, k8, v, **meta)
    with pytest.raises(TypeError, match=r"k_cache has dtype float8_e5m2, expected float8_e4m3fn"):
        wideattn.attention(q, k.astype(ml_dtypes.float8_e5m2), v8, **meta)
    with pytest.raises(TypeError, match=r"kv_cache_dtype must be a str"):
        wideattn.attention(q, k8, v8, kv_cache_dtype=8, **meta)
    # PlannedDecode: the same checks at construction.
    offsets, lengths = np.array([0, 2, 3], np.int32), np.array([6, 1], np.int32)
    with pytest.raises(ValueError, match=r"PlannedDecode: k_scale is given but k_cache has dtype float32"):
        wideattn.PlannedDecode(q, k, v, query_offsets=offsets, kv_lengths=lengths, max_suffix=2,
                               k_scale=0.5)
    with pytest.raises(ValueError, match=r"PlannedDecode: v_scale = 0.0, expected a finite value > 0"):
        wideattn.PlannedDecode(q, k8, v8, query_offsets=offsets, kv_lengths=lengths, max_suffix=2,
                               v_scale=0.0)


@needs_torch
def test_torch_cache_dtype_errors(rng):
    q, k, v, meta = small_problem(rng)
    tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))
    with pytest.raises(TypeError, match=r"q has dtype float8_e4m3fn"):
        wideattn.attention(tq.to(torch.float8_e4m3fn), tk.to(torch.float8_e4m3fn),
                           tv.to(torch.float8_e4m3fn), **meta)
    with pytest.raises(TypeError, match=r"k_cache has dtype float8_e5m2: wideattn's fp8 KV cache is "
                                        r"float8_e4m3fn \(OCP E4M3FN\) only"):
        wideattn.attention(tq, tk.to(torch.float8_e5m2), tv.to(torch.float8_e5m2), **meta)
    with pytest.raises(ValueError, match=r"k_scale is given but k_cache has dtype bfloat16"):
        wideattn.attention(tq.bfloat16(), tk.bfloat16(), tv.bfloat16(), k_scale=torch.tensor(1.0), **meta)
    # The operator path (q requires grad; a float becomes a tensor there) checks floats too.
    with pytest.raises(ValueError, match=r"k_scale = 0.0, expected a finite value > 0"):
        wideattn.attention(tq.clone().requires_grad_(True), tk.to(torch.float8_e4m3fn),
                           tv.to(torch.float8_e4m3fn), k_scale=0.0, **meta)


WRITE_ERRORS = [
    ("scales-on-f32", dict(cache="float32", k_scale=0.5), ValueError,
     r"write_kv: k_scale is given but k_cache has dtype float32"),
    ("v-scale-on-bf16", dict(cache="bfloat16", new="bfloat16", v_scale=np.ones(1, np.float32)),
     ValueError, r"write_kv: v_scale is given but k_cache has dtype bfloat16"),
    ("scale-shape", dict(k_scale=np.ones(4, np.float32)), ValueError, r"write_kv: k_scale has shape \(4,\)"),
    ("scale-zero-in-array", dict(v_scale=np.array([1.0, 0.0], np.float32), k_scale=np.ones(2, np.float32)),
     ValueError, r"write_kv: v_scale\[1\] = 0.0, expected a finite value > 0"),
    ("fp8-k-new", dict(new="fp8"), TypeError,
     r"k_new has dtype float8_e4m3fn, expected float32, float16 or bfloat16"),
    ("uint8-without-dtype", dict(cache="uint8"), TypeError, r"write_kv: k_cache has dtype uint8: .*kv_cache_dtype"),
    ("dtype-says-fp8", dict(cache="float32", kv_cache_dtype="fp8"), TypeError,
     r"write_kv: kv_cache_dtype says fp8 e4m3 but k_cache has dtype float32"),
]


@pytest.mark.parametrize("name,change,error,message", WRITE_ERRORS, ids=[e[0] for e in WRITE_ERRORS])
def test_write_kv_bad_fp8_arguments_write_nothing(rng, name, change, error, message):
    change = dict(change)
    cache, new = change.pop("cache", "fp8"), change.pop("new", "float32")
    shape = (2, 8, 2, 64)
    initial = rng.integers(0, 100, shape, dtype=np.uint8)
    if cache == "fp8":
        k_cache, v_cache = initial.copy().view(F8), initial.copy().view(F8)
    elif cache == "uint8":
        k_cache, v_cache = initial.copy(), initial.copy()
    else:
        dtype = BF16 if cache == "bfloat16" else np.dtype(cache)
        k_cache = initial.astype(np.float32).astype(dtype)
        v_cache = k_cache.copy()
    before = (k_cache.copy(), v_cache.copy())
    k_new = rng.standard_normal((3, 2, 64)).astype(np.float32)
    if new == "fp8":
        k_new = k_new.astype(F8)
    elif new == "bfloat16":
        k_new = k_new.astype(BF16)
    slots = np.array([0, 5, 9], np.int32)
    with pytest.raises(error, match=message):
        wideattn.write_kv(k_new, k_new, k_cache, v_cache, slots, **change)
    assert k_cache.tobytes() == before[0].tobytes() and v_cache.tobytes() == before[1].tobytes(), \
        "the caches were written"


# ---- CUDA ------------------------------------------------------------------------------------------


def _cuda_ready() -> bool:
    return (torch is not None and torch.cuda.is_available() and wideattn.cuda_built
            and wideattn.backend_available("cuda")[0])


@pytest.mark.skipif(not _cuda_ready(), reason="no GPU, or no CUDA build: the CUDA fp8 decode and write_kv "
                                             "are checked on a GPU only")
def test_cuda_fp8_decode_and_write_kv_match_the_cpu():
    gen = torch.Generator().manual_seed(7)
    q = torch.randn(2, 4, 64, generator=gen).to(torch.bfloat16)
    k = (torch.randn(2, 8, 2, 64, generator=gen) * 2).to(torch.float8_e4m3fn)
    v = (torch.randn(2, 8, 2, 64, generator=gen) * 2).to(torch.float8_e4m3fn)
    meta = dict(query_offsets=[0, 1, 2], kv_lengths=[5, 8])
    k_scale = torch.tensor([0.5, 0.25])
    v_scale = torch.tensor([2.0, 1.5])
    expected = wideattn.attention(q, k, v, k_scale=k_scale, v_scale=v_scale, **meta).float()
    got = wideattn.attention(q.cuda(), k.cuda(), v.cuda(), k_scale=k_scale.cuda(), v_scale=v_scale.cuda(), **meta)
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.float().cpu(), expected, rtol=2e-2, atol=2e-2)

    # write_kv quantises on the GPU to the CPU's bytes, NaN and saturation included.
    k_new = torch.randn(3, 2, 64, generator=gen) * 300
    k_new[0, 0, 0] = float("nan")
    k_new[1, 1, 5] = float("inf")
    k_new = k_new.to(torch.bfloat16)
    v_new = torch.randn(3, 2, 64, generator=gen).to(torch.bfloat16)
    slots = torch.tensor([3, -1, 12], dtype=torch.int32)
    caches = {}
    for device in ("cpu", "cuda"):
        kc = torch.zeros(2, 8, 2, 64, dtype=torch.float8_e4m3fn, device=device)
        vc = torch.zeros_like(kc)
        wideattn.write_kv(k_new.to(device), v_new.to(device), kc, vc, slots.to(device), k_scale=0.5, v_scale=0.25)
        caches[device] = (kc.view(torch.uint8).cpu(), vc.view(torch.uint8).cpu())
    for which, new in ((0, k_new), (1, v_new)):
        cpu, cuda = caches["cpu"][which], caches["cuda"][which]
        bad = (cpu != cuda).nonzero().tolist()
        assert not bad, (f"{'kv'[which]}: {len(bad)} bytes differ, first {bad[:4]}: cpu "
                         f"{[hex(cpu[tuple(i)].item()) for i in bad[:4]]} cuda {[hex(cuda[tuple(i)].item()) for i in bad[:4]]}")


@pytest.mark.skipif(not _cuda_ready(), reason="no GPU, or no CUDA build: the CUDA fp8 prefill is checked on a GPU "
                                             "only")
def test_cuda_fp8_prefill_matches_the_cpu():
    gen = torch.Generator().manual_seed(11)
    q = torch.randn(12, 4, 64, generator=gen).to(torch.bfloat16)
    k = (torch.randn(1, 16, 2, 64, generator=gen) * 2).to(torch.float8_e4m3fn)
    v = (torch.randn(1, 16, 2, 64, generator=gen) * 2).to(torch.float8_e4m3fn)
    meta = dict(query_offsets=[0, 12], kv_lengths=[15])
    expected = wideattn.attention(q, k, v, k_scale=0.5, v_scale=2.0, **meta).float()
    got = wideattn.attention(q.cuda(), k.cuda(), v.cuda(), k_scale=0.5, v_scale=torch.tensor([2.0], device="cuda"),
                             **meta)
    torch.testing.assert_close(got.float().cpu(), expected, rtol=2e-2, atol=2e-2)
