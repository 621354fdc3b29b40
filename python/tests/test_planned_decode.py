"""wideattn.PlannedDecode: a decode plan made once from bounds over fixed buffers, run over several
steps whose metadata (query offsets, KV lengths, block table) and cache contents are rewritten in
place, against `wideattn.attention` with host metadata and the float64 oracle; the bounds' and
the buffers' errors; and on CUDA one captured torch.cuda.CUDAGraph replayed over the steps
(skipped without a GPU)."""

from __future__ import annotations

import os
import re
import zlib

import numpy as np
import pytest

import wideattn
from _reference import assert_close, attention as reference_attention, to_f64

SEED = int(os.environ.get("WIDEATTN_TEST_SEED", np.random.SeedSequence().entropy % 2**32))

SLOTS, CAPACITY, PAGE, Q_HEADS, KV_HEADS, HEAD_DIM, MAX_SUFFIX = 5, 96, 16, 4, 2, 64, 2
MAX_TOKENS = SLOTS * MAX_SUFFIX
# Lengths before the first step, then each step's new tokens per slot: slot 2 starts empty (idle,
# then a new sequence), slots go idle (suffix 0) and come back; one step has no token at all.
START = [1, 40, 0, 77, 13]
SUFFIXES = [[1, 1, 0, 1, 1], [2, 1, 0, 1, 2], [1, 2, 1, 0, 1], [0, 0, 0, 0, 0], [1, 1, 2, 1, 1]]


@pytest.fixture
def rng(request):
    seed = (SEED + zlib.crc32(request.node.name.encode())) % 2**32
    print(f"seed {seed} (WIDEATTN_TEST_SEED={SEED})")
    return np.random.default_rng(seed)


def steps():
    """(suffixes, query_offsets, kv_lengths) of each step, lengths growing by the suffixes."""
    lengths = list(START)
    for suffixes in SUFFIXES:
        lengths = [n + s for n, s in zip(lengths, suffixes)]
        offsets = np.concatenate([[0], np.cumsum(suffixes)]).astype(np.int32).tolist()
        yield suffixes, offsets, list(lengths)


class Buffers:
    """The fixed buffers of a serving loop (NumPy, CPU): q/out with MAX_TOKENS rows, the metadata,
    a contiguous cache or page pools with a block table, and the logical contents of every
    sequence (`logical_k/v` [SLOTS, CAPACITY, ...]) that each step writes into them."""

    def __init__(self, rng, paged, layout="NHD", dtype=np.float32):
        self.rng, self.paged, self.layout = rng, paged, layout
        self.q = np.zeros((MAX_TOKENS, Q_HEADS, HEAD_DIM), dtype)
        self.query_offsets = np.zeros(SLOTS + 1, np.int32)
        self.kv_lengths = np.zeros(SLOTS, np.int32)
        shape = (SLOTS, CAPACITY, KV_HEADS, HEAD_DIM)
        self.logical_k = rng.standard_normal(shape).astype(dtype)
        self.logical_v = rng.standard_normal(shape).astype(dtype)
        if paged:
            self.max_pages = CAPACITY // PAGE
            self.num_pages = SLOTS * self.max_pages + 7  # spare pages
            pool = ((self.num_pages, PAGE, KV_HEADS, HEAD_DIM) if layout == "NHD"
                    else (self.num_pages, KV_HEADS, PAGE, HEAD_DIM))
            self.k_cache = np.full(pool, np.nan, dtype)
            self.v_cache = np.full(pool, np.nan, dtype)
            self.block_table = np.zeros((SLOTS, self.max_pages), np.int32)
        else:
            self.k_cache = np.full(shape, np.nan, dtype)
            self.v_cache = np.full(shape, np.nan, dtype)
            self.block_table = None

    def write_step(self, offsets, lengths):
        """Rewrites every buffer in place for one step: new q rows, the metadata, and the cache
        (NaN past each length, so a read past it shows; paged: a fresh page permutation)."""
        n = offsets[-1]
        self.q[:n] = self.rng.standard_normal((n, Q_HEADS, HEAD_DIM))
        self.q[n:] = np.nan  # rows past the step's tokens are never read
        self.query_offsets[:] = offsets
        self.kv_lengths[:] = lengths
        k = self.logical_k.copy()
        v = self.logical_v.copy()
        for b, length in enumerate(lengths):
            k[b, length:] = np.nan
            v[b, length:] = np.nan
        if not self.paged:
            self.k_cache[...] = k
            self.v_cache[...] = v
            return
        order = self.rng.permutation(self.num_pages)
        self.block_table[...] = order[: SLOTS * self.max_pages].reshape(SLOTS, self.max_pages)
        self.k_cache[...] = np.nan
        self.v_cache[...] = np.nan
        for b in range(SLOTS):
            for j in range(self.max_pages):
                rows = slice(j * PAGE, (j + 1) * PAGE)
                page = self.block_table[b, j]
                if self.layout == "NHD":
                    self.k_cache[page], self.v_cache[page] = k[b, rows], v[b, rows]
                else:
                    self.k_cache[page] = k[b, rows].transpose(1, 0, 2)
                    self.v_cache[page] = v[b, rows].transpose(1, 0, 2)

    def contiguous(self, lengths):
        """The logical caches with NaN past each length (the oracle's input)."""
        k, v = self.logical_k.copy(), self.logical_v.copy()
        for b, length in enumerate(lengths):
            k[b, length:] = np.nan
            v[b, length:] = np.nan
        return k, v

    def paged_args(self):
        return {} if not self.paged else {"block_table": self.block_table, "kv_layout": self.layout}


OPTIONS = {
    "plain": {},
    "sinks-softcap-window": {"softcap": 20.0, "window": 9, "scale": 0.2},
    "bidirectional": {"causal": False},
}


@pytest.mark.parametrize("options", list(OPTIONS), ids=list(OPTIONS))
@pytest.mark.parametrize("cache", ["contiguous", "paged-NHD", "paged-HND"])
def test_steps_match_attention_and_reference(rng, cache, options):
    options = dict(OPTIONS[options])
    if "softcap" in options:
        options["sinks"] = rng.standard_normal(Q_HEADS).astype(np.float32)
    paged = cache != "contiguous"
    buffers = Buffers(rng, paged, cache.split("-")[-1] if paged else "NHD")
    runner = wideattn.PlannedDecode(
        buffers.q, buffers.k_cache, buffers.v_cache, query_offsets=buffers.query_offsets,
        seqused_k=buffers.kv_lengths, max_suffix=MAX_SUFFIX, return_lse=True,
        **buffers.paged_args(), **options)
    assert runner.plan.kernel in ("single_pass", "two_pass")
    assert runner.plan.reason.startswith(f"from bounds ({SLOTS} slots, <= {MAX_TOKENS} tokens")
    out_buffer, lse_buffer = runner.out, runner.lse
    assert out_buffer.shape == buffers.q.shape and lse_buffer.shape == (MAX_TOKENS, Q_HEADS)
    for step, (suffixes, offsets, lengths) in enumerate(steps()):
        buffers.write_step(offsets, lengths)
        n = offsets[-1]
        runner.out[...] = 7.0
        out, lse = runner.run()
        assert out is out_buffer and lse is lse_buffer  # the same buffers every step
        assert (out[n:] == 7.0).all(), f"step {step}: rows past the step's {n} tokens were written"
        if n == 0:
            continue
        eager_out, eager_lse = wideattn.attention(
            buffers.q[:n], buffers.k_cache, buffers.v_cache, query_offsets=offsets,
            kv_lengths=lengths, return_lse=True, **buffers.paged_args(), **options)
        # The plan from bounds may split the KV differently from the eager plan: not bitwise.
        assert_close(out[:n], eager_out, 1e-5, 1e-5, f"step {step} out vs attention")
        assert_close(lse[:n], eager_lse, 1e-5, 1e-6, f"step {step} lse vs attention")
        k, v = buffers.contiguous(lengths)
        ref_out, ref_lse = reference_attention(buffers.q[:n], k, v, offsets, lengths, **options)
        assert_close(out[:n], ref_out, 2e-5, 1e-4, f"step {step} out vs reference")
        assert_close(lse[:n], ref_lse, 1e-4, 1e-5, f"step {step} lse vs reference")


def test_two_pass_and_bounds_below_the_capacity(rng):
    buffers = Buffers(rng, paged=True)
    runner = wideattn.PlannedDecode(
        buffers.q, buffers.k_cache, buffers.v_cache, query_offsets=buffers.query_offsets,
        kv_lengths=buffers.kv_lengths, block_table=buffers.block_table, max_suffix=MAX_SUFFIX,
        max_kv_length=90, max_total_tokens=8, kernel="two_pass", scale=1.0)
    assert runner.plan.kernel == "two_pass" and runner.plan.num_splits >= 2, runner.plan
    assert "<= 8 tokens" in runner.plan.reason and "KV <= 90" in runner.plan.reason
    for step, (suffixes, offsets, lengths) in enumerate(steps()):
        buffers.write_step(offsets, lengths)
        n = offsets[-1]
        out = runner.run()
        if n:
            k, v = buffers.contiguous(lengths)
            ref_out, _ = reference_attention(buffers.q[:n], k, v, offsets, lengths, scale=1.0)
            assert_close(out[:n], ref_out, 2e-5, 1e-4, f"step {step} out vs reference")


def test_torch_cpu_buffers_rewritten_with_copy(rng):
    torch = pytest.importorskip("torch")
    buffers = Buffers(rng, paged=True)
    tq = torch.zeros(MAX_TOKENS, Q_HEADS, HEAD_DIM, dtype=torch.bfloat16)
    t_offsets = torch.zeros(SLOTS + 1, dtype=torch.int32)
    t_lengths = torch.zeros(SLOTS, dtype=torch.int32)
    t_table = torch.zeros(SLOTS, buffers.max_pages, dtype=torch.int32)
    tk = torch.zeros(buffers.k_cache.shape, dtype=torch.bfloat16)
    tv = torch.zeros(buffers.v_cache.shape, dtype=torch.bfloat16)
    runner = wideattn.PlannedDecode(tq, tk, tv, query_offsets=t_offsets, kv_lengths=t_lengths,
                                    block_table=t_table, max_suffix=MAX_SUFFIX, scale=0.5)
    assert isinstance(runner.out, torch.Tensor) and runner.out.dtype == torch.bfloat16
    for step, (suffixes, offsets, lengths) in enumerate(steps()):
        buffers.write_step(offsets, lengths)
        n = offsets[-1]
        tq.copy_(torch.from_numpy(buffers.q))
        tk.copy_(torch.from_numpy(buffers.k_cache))
        tv.copy_(torch.from_numpy(buffers.v_cache))
        t_offsets.copy_(torch.tensor(offsets, dtype=torch.int32))
        t_lengths.copy_(torch.tensor(lengths, dtype=torch.int32))
        t_table.copy_(torch.from_numpy(buffers.block_table))
        out = runner.run()
        if n == 0:
            continue
        eager = wideattn.attention(tq[:n], tk, tv, query_offsets=offsets, kv_lengths=lengths,
                                   block_table=t_table, scale=0.5)
        assert_close(out[:n], to_f64(eager), 1e-2, 1e-2, f"step {step} out vs attention")
        # The oracle on the values the bf16 tensors hold.
        k, v = (torch.from_numpy(x).to(torch.bfloat16) for x in buffers.contiguous(lengths))
        ref_out, _ = reference_attention(tq[:n], k, v, offsets, lengths, scale=0.5)
        assert_close(out[:n], ref_out, 1e-2, 1e-2, f"step {step} out vs reference")


# ---- errors ---------------------------------------------------------------------------------------


def plain_buffers(rng):
    buffers = Buffers(rng, paged=False)
    suffixes, offsets, lengths = next(steps())
    buffers.write_step(offsets, lengths)
    return buffers


def make_runner(buffers, **kwargs):
    args = dict(query_offsets=buffers.query_offsets, kv_lengths=buffers.kv_lengths,
                max_suffix=MAX_SUFFIX)
    args.update(kwargs)
    return wideattn.PlannedDecode(buffers.q, buffers.k_cache, buffers.v_cache, **args)


def test_bounds_errors(rng):
    buffers = plain_buffers(rng)
    with pytest.raises(NotImplementedError, match=r"bounds.max_suffix = 9, expected at most 8.*"
                                                  r"prefill needs host metadata"):
        make_runner(buffers, max_suffix=9)
    with pytest.raises(ValueError, match=rf"bounds.max_kv_length = {CAPACITY + 1}, expected "
                                         rf"bounds.max_suffix = 2 to the cache's kv.capacity = {CAPACITY}"):
        make_runner(buffers, max_kv_length=CAPACITY + 1)
    with pytest.raises(ValueError, match=rf"max_total_tokens = {MAX_TOKENS + 1}, expected at most "
                                         rf"q.shape\[0\] = {MAX_TOKENS}"):
        make_runner(buffers, max_total_tokens=MAX_TOKENS + 1)
    with pytest.raises(ValueError, match=r"bounds.max_total_tokens = 0, expected 1 to batch x "
                                         r"bounds.max_suffix"):
        make_runner(buffers, max_total_tokens=0)
    with pytest.raises(NotImplementedError, match=r"forced = prefill_unfused with bounds"):
        make_runner(buffers, kernel="prefill_unfused")
    with pytest.raises(TypeError, match=r"max_suffix must be an int, got str"):
        make_runner(buffers, max_suffix="2")


def test_buffer_errors_name_the_argument(rng):
    buffers = plain_buffers(rng)
    with pytest.raises(TypeError, match=r"query_offsets must be an int32 array \[batch \+ 1\] on the "
                                        r"arrays' device, got list.*rewrites it in place"):
        make_runner(buffers, query_offsets=buffers.query_offsets.tolist())
    with pytest.raises(TypeError, match=r"kv_lengths must be an int32 array \[batch\].*got None"):
        make_runner(buffers, kv_lengths=None)
    with pytest.raises(TypeError, match=r"kv_lengths has dtype int64, expected int32"):
        make_runner(buffers, kv_lengths=buffers.kv_lengths.astype(np.int64))
    with pytest.raises(ValueError, match=rf"query_offsets.shape\[0\] = {SLOTS}, expected {SLOTS + 1}"):
        make_runner(buffers, query_offsets=buffers.query_offsets[:-1].copy())
    with pytest.raises(ValueError, match=r"errors.shape\[0\] = 2, expected 1"):
        make_runner(buffers, errors=np.zeros(2, np.int32))
    with pytest.raises(TypeError, match=r"errors must be a writable array"):
        read_only = np.zeros(1, np.int32)
        read_only.flags.writeable = False
        make_runner(buffers, errors=read_only)
    with pytest.raises(TypeError, match=r"give kv_lengths or seqused_k"):
        make_runner(buffers, seqused_k=buffers.kv_lengths)


BAD_METADATA = [
    # what to change in the valid step's metadata, the error's fragments
    ("kv_lengths", 1, 91, [r"kv_lengths\[1\] = 91, expected <= bounds.max_kv_length = 90"]),
    ("query_offsets", None, [0, 1, 4, 4, 5, 6],
     [r"query_offsets\[2\] - query_offsets\[1\] = 3, expected <= bounds.max_suffix = 2"]),
    ("query_offsets", None, [0, 2, 4, 4, 6, 8],
     [r"query_offsets\[5\] = 8, expected <= bounds.max_total_tokens = 7"]),
    ("kv_lengths", 0, 0, [r"kv_lengths\[0\] = 0", "suffix length 1"]),
]


@pytest.mark.parametrize("bad", BAD_METADATA, ids=["kv-past-bound", "suffix", "total", "kv-below-suffix"])
def test_metadata_outside_the_bounds_raises_and_writes_nothing(rng, bad):
    buffers = plain_buffers(rng)
    runner = make_runner(buffers, max_kv_length=90, max_total_tokens=7)
    runner.run()  # the valid step runs
    name, index, value, fragments = bad
    array = getattr(buffers, name)
    if index is None:
        array[:] = value
    else:
        array[index] = value
    runner.out[...] = 7.0
    with pytest.raises(ValueError, match=r"^attention_planned: ") as raised:
        runner.run()
    for fragment in fragments:
        assert re.search(fragment, str(raised.value)), str(raised.value)
    assert (runner.out == 7.0).all(), "out was written by a run that raised"


# ---- CUDA: one captured graph replayed over the steps ---------------------------------------------


def _cuda_ready():
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available() and wideattn.cuda_built and wideattn.backend_available("cuda")[0]


@pytest.mark.skipif(not _cuda_ready(),
                    reason="no GPU, or this build of wideattn has no CUDA backend: CUDA graph test skipped")
def test_cuda_graph_replays_every_step():
    import torch

    g = torch.Generator().manual_seed(1)
    heads, kv_heads, d, page, max_pages = 8, 2, 512, 16, 8
    slots, max_suffix = SLOTS, MAX_SUFFIX
    num_pages = slots * max_pages + 5
    dev = "cuda"
    q_buf = torch.zeros(slots * max_suffix, heads, d, dtype=torch.bfloat16, device=dev)
    k_pool = (0.2 * torch.randn(num_pages, page, kv_heads, d, generator=g)).to(torch.bfloat16).to(dev)
    v_pool = torch.randn(num_pages, page, kv_heads, d, generator=g).to(torch.bfloat16).to(dev)
    offsets_buf = torch.zeros(slots + 1, dtype=torch.int32, device=dev)
    lengths_buf = torch.zeros(slots, dtype=torch.int32, device=dev)
    table_buf = torch.zeros(slots, max_pages, dtype=torch.int32, device=dev)
    errors = torch.zeros(1, dtype=torch.int32, device=dev)
    runner = wideattn.PlannedDecode(q_buf, k_pool, v_pool, query_offsets=offsets_buf,
                                    kv_lengths=lengths_buf, block_table=table_buf,
                                    max_suffix=max_suffix, errors=errors, return_lse=True,
                                    scale=1.0)
    all_steps = list(steps())

    def write(offsets, lengths):
        n = offsets[-1]
        q_buf[:n].copy_((0.2 * torch.randn(n, heads, d, generator=g)).to(torch.bfloat16))
        offsets_buf.copy_(torch.tensor(offsets, dtype=torch.int32))
        lengths_buf.copy_(torch.tensor(lengths, dtype=torch.int32))
        table_buf.copy_(torch.randperm(num_pages, generator=g)[: slots * max_pages]
                        .view(slots, max_pages).to(torch.int32))

    write(*all_steps[0][1:])
    runner.run()  # outside the capture: sizes the runner's workspace
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        runner.run()
    for step, (suffixes, offsets, lengths) in enumerate(all_steps):
        write(offsets, lengths)
        graph.replay()
        # An eager prefill between replays grows the shared workspace of `attention`: the graph
        # must not depend on it.
        big = torch.randn(300, heads, d, dtype=torch.bfloat16, device=dev)
        big_cache = torch.randn(1, 300, kv_heads, d, dtype=torch.bfloat16, device=dev)
        wideattn.attention(big, big_cache, big_cache, query_offsets=[0, 300], kv_lengths=[300])
        torch.cuda.synchronize()
        assert errors.item() == 0, f"step {step}: errors = {errors.item()}"
        n = offsets[-1]
        if n == 0:
            continue
        out, lse = runner.out, runner.lse
        eager_out, eager_lse = wideattn.attention(q_buf[:n], k_pool, v_pool, query_offsets=offsets,
                                                  kv_lengths=lengths, block_table=table_buf,
                                                  scale=1.0, return_lse=True)
        torch.cuda.synchronize()
        assert_close(out[:n].float().cpu(), eager_out.float().cpu().numpy(), 2e-2, 2e-2,
                     f"step {step} out vs eager attention")
        assert_close(lse[:n].cpu(), eager_lse.cpu().numpy(), 2e-3, 1e-4, f"step {step} lse")
    # A length past the bounds: reported in the error word, the slot skipped.
    suffixes, offsets, lengths = all_steps[-1]
    bad = list(lengths)
    bad[1] = max_pages * page + 3
    write(offsets, bad)
    graph.replay()
    torch.cuda.synchronize()
    assert errors.item() == 4, errors.item()  # kMetadataKvLength
