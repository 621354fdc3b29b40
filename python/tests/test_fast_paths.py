"""The lean per-call paths give what the general ones give.

PyTorch: wideattn.attention's eager fast path (the extension called directly) against the custom
operators torch.ops.wideattn.attention / attention_out, bit for bit, over every option; and the
routing: autograd, fake/meta tensors and dispatch modes must reach the operators. NumPy: the
direct path of wideattn.attention against the general _frameworks.Call path (attention_into).
Also: no import cycle inside the package. PyTorch tests skip when PyTorch is absent.
"""

from __future__ import annotations

import ast
import pathlib
import warnings

import numpy as np
import pytest

import wideattn
from wideattn import _api

PACKAGE = pathlib.Path(wideattn.__file__).parent

# Speculative tree of 5 tokens in DFS order: 0 -> (1 -> 2, 3 -> 4).
TREE = ([0, 1, 2, 3, 4], [4, 2, 2, 4, 4], [0, 1, 2, 1, 2])

OPTIONS = [
    dict(),
    dict(return_lse=True),
    dict(window=5, softcap=3.0, scale=0.7, sinks=True, return_lse=True),
    dict(causal=False, scale=1.0),
    dict(tree=True, return_lse=True),
    dict(ring_length=10, ring_offset=3, kernel="two_pass"),
    dict(kernel="prefill_unfused", sinks=True),
    dict(kernel="single_pass", window=3),
]


def option_id(options):
    return "-".join(f"{k}={v}" for k, v in options.items()) or "defaults"


def package_imports(path: pathlib.Path) -> set:
    """The wideattn modules `path` imports (relative or absolute), at any depth."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                names.update([node.module] if node.module else [a.name for a in node.names])
            elif node.module and node.module.startswith("wideattn."):
                names.add(node.module.split(".", 1)[1])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".", 1)[1] for a in node.names if a.name.startswith("wideattn."))
    return names


def test_no_import_cycle():
    graph = {p.stem: package_imports(p) & {q.stem for q in PACKAGE.glob("*.py")}
             for p in PACKAGE.glob("*.py")}
    assert "_api" not in graph["torch_ops"], graph["torch_ops"]

    def visit(module, stack):
        assert module not in stack, f"import cycle: {' -> '.join(stack + [module])}"
        for imported in graph.get(module, ()):
            visit(imported, stack + [module])

    for module in graph:
        visit(module, [])


# ---- NumPy -------------------------------------------------------------------------------------

def numpy_problem(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    tokens, lengths = [5, 1], [12, 9]
    q = rng.standard_normal((sum(tokens), 8, 64)).astype(dtype)
    k = rng.standard_normal((2, 16, 2, 64)).astype(dtype)
    v = rng.standard_normal((2, 16, 2, 64)).astype(dtype)
    return q, k, v, [0, 5, 6], lengths


def numpy_options(options, q):
    options = dict(options)
    if options.pop("sinks", False):
        options["sinks"] = np.linspace(-1, 1, q.shape[1], dtype=np.float32)
    if options.pop("tree", False):
        options["tree"] = tuple(np.array(a + [0], dtype=np.int32) for a in TREE)
    return options


@pytest.mark.parametrize("options", OPTIONS, ids=option_id)
def test_numpy_direct_path_matches_the_general_path(options):
    q, k, v, offsets, lengths = numpy_problem()
    options = numpy_options(options, q)
    return_lse = options.pop("return_lse", False)
    result = wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths,
                                return_lse=return_lse, **options)
    out, lse = result if return_lse else (result, None)
    assert isinstance(out, np.ndarray) and out.dtype == q.dtype and out.shape == q.shape
    expected_out = np.full_like(q, np.nan)
    expected_lse = np.full(q.shape[:2], np.nan, np.float32) if return_lse else None
    full = dict(causal=True, window=0, ring_length=0, ring_offset=0, tree=None, sinks=None,
                softcap=0.0, scale=None, kernel="auto")
    full.update(options)
    plan = _api.attention_into(q, k, v, expected_out, expected_lse, offsets, lengths, **full)
    assert plan.kernel in ("single_pass", "two_pass", "prefill_unfused")
    np.testing.assert_array_equal(out, expected_out)
    if return_lse:
        np.testing.assert_array_equal(lse, expected_lse)


def test_numpy_direct_path_scalars_of_other_types():
    # NumPy scalars, bools as ints and a tuple of offsets go through the same conversion.
    q, k, v, offsets, lengths = numpy_problem()
    a = wideattn.attention(q, k, v, query_offsets=tuple(np.int64(x) for x in offsets),
                           kv_lengths=np.array(lengths), window=np.int32(4),
                           softcap=np.float32(2.0), scale=np.float64(0.5), causal=np.bool_(True))
    b = wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths, window=4,
                           softcap=2.0, scale=0.5)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match=r"window must be an int, got float"):
        wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths, window=1.5)
    with pytest.raises(TypeError, match=r"softcap must be a float, got str"):
        wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths, softcap="2")
    with pytest.raises(ValueError, match=r"scale = nan, expected a finite value > 0"):
        wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths, scale=float("nan"))


def test_numpy_bfloat16_mixed_with_float32_names_the_dtype():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    q, k, v, offsets, lengths = numpy_problem()
    # The NumPy fast path leaves ml_dtypes caches (kind "V": bfloat16, float8) to the general
    # path, which exports them and names both dtypes.
    with pytest.raises(TypeError, match=r"k_cache has dtype bfloat16 but q has dtype float32"):
        wideattn.attention(q, k.astype(ml_dtypes.bfloat16), v, query_offsets=offsets,
                           kv_lengths=lengths)


# ---- PyTorch -----------------------------------------------------------------------------------

def torch_problem(torch, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(6, 8, 64, generator=g).to(dtype)
    k = torch.randn(2, 16, 2, 64, generator=g).to(dtype)
    v = torch.randn(2, 16, 2, 64, generator=g).to(dtype)
    return q, k, v, [0, 5, 6], [12, 9]


def torch_options(torch, options, q):
    options = dict(options)
    if options.pop("sinks", False):
        options["sinks"] = torch.linspace(-1, 1, q.shape[1], dtype=torch.float32)
    if options.pop("tree", False):
        options["tree"] = tuple(torch.tensor(a + [0], dtype=torch.int32) for a in TREE)
    return options


def op_arguments(options, offsets, lengths):
    """torch.ops.wideattn.* arguments after out/lse: the operators' schema order."""
    import math

    tree = options.get("tree") or (None, None, None)
    scale = options.get("scale")
    return (offsets, lengths, options.get("causal", True), options.get("window", 0),
            options.get("ring_length", 0), options.get("ring_offset", 0), *tree,
            options.get("sinks"), options.get("softcap", 0.0),
            math.nan if scale is None else scale, options.get("kernel", "auto"))


@pytest.mark.parametrize("options", OPTIONS, ids=option_id)
@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
def test_torch_fast_path_matches_the_operators(options, dtype_name):
    torch = pytest.importorskip("torch")
    from wideattn import torch_ops

    dtype = getattr(torch, dtype_name)
    q, k, v, offsets, lengths = torch_problem(torch, dtype)
    options = torch_options(torch, options, q)
    return_lse = options.pop("return_lse", False)
    assert torch_ops.uses_fast_path(q, k, v, tree=options.get("tree"), sinks=options.get("sinks"))

    # Functional: wideattn.attention against torch.ops.wideattn.attention.
    result = wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths,
                                return_lse=return_lse, **options)
    out, lse = result if return_lse else (result, None)
    op_out, op_lse = torch.ops.wideattn.attention(q, k, v, *op_arguments(options, offsets, lengths),
                                                  return_lse)
    assert out.dtype == op_out.dtype and out.shape == op_out.shape and out.is_contiguous()
    assert torch.equal(out, op_out)
    if return_lse:
        assert lse.dtype == torch.float32 and torch.equal(lse, op_lse)

    # Into given (strided) outputs: attention_out against torch.ops.wideattn.attention_out.
    out = torch.full((8, 6, 64), float("nan"), dtype=dtype).transpose(0, 1)
    lse = torch.full((8, 6), float("nan")).t() if return_lse else None
    op_out = torch.full_like(out, float("nan"))
    op_lse = torch.full_like(lse, float("nan")) if return_lse else None
    assert torch_ops.uses_fast_path(q, k, v, out, lse)
    result = wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths, out=out,
                                lse=lse, **options)
    assert (result[0] if return_lse else result) is out
    torch.ops.wideattn.attention_out(q, k, v, op_out, op_lse,
                                     *op_arguments(options, offsets, lengths))
    assert torch.equal(out, op_out)
    if return_lse:
        assert torch.equal(lse, op_lse)


def test_torch_fast_path_errors_match_the_operators():
    torch = pytest.importorskip("torch")

    q, k, v, offsets, lengths = torch_problem(torch, torch.float32)
    cases = [
        (dict(k=k[..., :32]), ValueError, r"k_cache.shape\[3\] = 32, expected 64"),
        (dict(k=k.half()), TypeError, r"k_cache has dtype float16 but q has dtype float32"),
        (dict(lengths=[12, 99]), ValueError, r"kv_lengths\[1\] = 99, expected <= kv.capacity = 16"),
        (dict(offsets=[0, 5]), ValueError, r"query_offsets has 2 entries, expected batch \+ 1 = 3"),
    ]
    for change, error, message in cases:
        args = {**dict(q=q, k=k, v=v, offsets=offsets, lengths=lengths), **change}
        with pytest.raises(error, match=message):  # eager: the fast path
            wideattn.attention(args["q"], args["k"], args["v"], query_offsets=args["offsets"],
                               kv_lengths=args["lengths"])
        with pytest.raises(error, match=message):  # the operator
            torch.ops.wideattn.attention(args["q"], args["k"], args["v"],
                                         *op_arguments({}, args["offsets"], args["lengths"]), False)


def test_torch_routing():
    torch = pytest.importorskip("torch")
    from torch.utils._python_dispatch import TorchDispatchMode

    from wideattn import torch_ops

    q, k, v, offsets, lengths = torch_problem(torch, torch.float32)
    assert torch_ops.uses_fast_path(q, k, v)

    # Autograd: the operator records the (unimplemented) backward, so it must run.
    q_grad = q.clone().requires_grad_(True)
    assert not torch_ops.uses_fast_path(q_grad, k, v)
    out = wideattn.attention(q_grad, k, v, query_offsets=offsets, kv_lengths=lengths)
    assert out.grad_fn is not None
    with torch.no_grad():
        assert torch_ops.uses_fast_path(q_grad, k, v)
        out = wideattn.attention(q_grad, k, v, query_offsets=offsets, kv_lengths=lengths)
        assert out.grad_fn is None
    # Subclasses and other devices.
    assert not torch_ops.uses_fast_path(torch.nn.Parameter(q), k, v)
    meta = q.to("meta")
    assert not torch_ops.uses_fast_path(meta, k.to("meta"), v.to("meta"))

    # A dispatch mode sees the operator.
    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen.append(str(func))
            return func(*args, **(kwargs or {}))

    with Recorder() as recorder:
        assert not torch_ops.uses_fast_path(q, k, v)
        wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths)
    assert any("wideattn.attention" in name for name in recorder.seen), recorder.seen

    # torch.jit.trace records the operator.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace is deprecated
        traced = torch.jit.trace(
            lambda q, k, v: wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths),
            (q, k, v), check_trace=False)
    assert "wideattn::attention" in str(traced.graph)
    assert torch.equal(traced(q, k, v), wideattn.attention(q, k, v, query_offsets=offsets,
                                                           kv_lengths=lengths))

    # Fake tensors: shapes only, through the operator's fake implementation.
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        fq, fk, fv = (mode.from_tensor(t) for t in (q, k, v))
        assert not torch_ops.uses_fast_path(fq, fk, fv)
        out, lse = wideattn.attention(fq, fk, fv, query_offsets=offsets, kv_lengths=lengths,
                                      return_lse=True)
        assert out.shape == q.shape and lse.shape == q.shape[:2]


def test_torch_compile_matches_eager():
    torch = pytest.importorskip("torch")

    q, k, v, offsets, lengths = torch_problem(torch, torch.float32)
    sinks = torch.linspace(-1, 1, 8)

    def layer(q, k, v, sinks):
        return wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths, scale=1.0,
                                  sinks=sinks, window=4, return_lse=True)

    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    out, lse = compiled(q, k, v, sinks)
    eager_out, eager_lse = layer(q, k, v, sinks)
    assert torch.equal(out, eager_out) and torch.equal(lse, eager_lse)


def test_first_call_inside_torch_compile():
    # A fresh process whose first wideattn call is compiled: the operators get registered while
    # dynamo traces (torch_ops.available runs for real, not traced).
    pytest.importorskip("torch")
    import subprocess
    import sys

    script = (
        "import torch, wideattn\n"
        "q = torch.randn(1, 8, 64); k = torch.randn(1, 64, 2, 64)\n"
        "f = torch.compile(lambda q, k: wideattn.attention(q, k, k, query_offsets=[0, 1],\n"
        "                  kv_lengths=[64]), fullgraph=True, backend='aot_eager')\n"
        "out = f(q, k)\n"
        "assert torch.equal(out, wideattn.attention(q, k, k, query_offsets=[0, 1], kv_lengths=[64]))\n"
        "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
