"""wideattn.distributed: context_parallel_attention, a KV cache sharded by position over the
processes of a torch.distributed group (gloo on the CPU here; NCCL on GPUs), each rank's partial
state gathered and merged, against one call over the whole cache: decode and speculative steps,
GQA, sinks, soft-cap, bidirectional masks, uneven and empty shards, each sequence's newest keys
on a different rank; and the shardings it refuses (errors naming the argument). Then the
prefill of one sequence with zig-zag sharding, by ring attention and by an all-gather of K/V
(causal, bidirectional, a sliding window), against one call over the sequence."""

from __future__ import annotations

import os
import socket
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available():
    pytest.skip("torch.distributed is not available", allow_module_level=True)

import wideattn  # noqa: E402
import wideattn.distributed  # noqa: E402
from _reference import assert_close  # noqa: E402

SEED = int(os.environ.get("WIDEATTN_TEST_SEED", np.random.SeedSequence().entropy % 2**32))

CASES = {
    # decode: one new token a sequence; one shard empty, the newest keys on rank b % world
    "decode": dict(world=3, suffixes=[1, 1, 1, 1], lengths=[300, 47, 129, 5], q_heads=8, kv_heads=2,
                   head_dim=64, causal=True, sinks=True, softcap=0.0),
    # speculative steps: 3 and 4 new tokens, their keys on the last shard of their sequence
    "speculative": dict(world=3, suffixes=[3, 1, 4], lengths=[200, 90, 64], q_heads=4, kv_heads=1,
                        head_dim=128, causal=True, sinks=True, softcap=20.0),
    # bidirectional: every shard visible to every new token
    "bidirectional": dict(world=2, suffixes=[2, 5], lengths=[77, 150], q_heads=8, kv_heads=2, head_dim=64,
                          causal=False, sinks=False, softcap=0.0),
}


def make_case(name, seed):
    c = CASES[name]
    rng = np.random.default_rng(seed)
    batch, capacity = len(c["lengths"]), max(c["lengths"])
    offsets = np.concatenate([[0], np.cumsum(c["suffixes"])]).astype(int).tolist()
    q = rng.standard_normal((offsets[-1], c["q_heads"], c["head_dim"])).astype(np.float32)
    k = rng.standard_normal((batch, capacity, c["kv_heads"], c["head_dim"])).astype(np.float32)
    v = rng.standard_normal((batch, capacity, c["kv_heads"], c["head_dim"])).astype(np.float32)
    sinks = rng.standard_normal(c["q_heads"]).astype(np.float32) if c["sinks"] else None
    # Shard boundaries: each sequence cut in `world` ranges (one of them possibly empty), the
    # last range holding every new token's key; range j of sequence b lives on rank (b + j + 1)
    # % world, so the newest keys of different sequences sit on different ranks.
    # Every non-empty range holds at least the sequence's new-token count of keys (what the
    # kernels need of a visible shard), and the last holds all of the new tokens' keys.
    bounds = []
    for b, (length, suffix) in enumerate(zip(c["lengths"], c["suffixes"])):
        world, sizes, left = c["world"], [], length
        for j in range(world - 1):
            sizes.append(int(rng.integers(suffix, left - suffix * (world - 1 - j) + 1)))
            left -= sizes[-1]
        sizes.append(left)
        if b == 0 and world > 2:  # an empty range: its keys go to the next one
            sizes[1] += sizes[0]
            sizes[0] = 0
        bounds.append(np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist())
    return c, q, k, v, offsets, sinks, bounds


def shard_of(c, k, v, bounds, rank):
    """This rank's shard: (k, v) caches holding its range of each sequence in rows 0.., the
    ranges' starts and lengths."""
    world, batch = c["world"], len(c["lengths"])
    starts, locals_ = [], []
    for b in range(batch):
        j = (rank - b - 1) % world  # the range of sequence b on this rank
        starts.append(bounds[b][j])
        locals_.append(bounds[b][j + 1] - bounds[b][j])
    capacity = max(max(locals_), 1)
    k_shard = np.zeros((batch, capacity) + k.shape[2:], np.float32)
    v_shard = np.zeros_like(k_shard)
    for b in range(batch):
        k_shard[b, :locals_[b]] = k[b, starts[b]:starts[b] + locals_[b]]
        v_shard[b, :locals_[b]] = v[b, starts[b]:starts[b] + locals_[b]]
    return k_shard, v_shard, starts, locals_


def join_group(backend, rank, world, port):
    """Joins the test's process group; returns this rank's device (one GPU a process on NCCL,
    NVLink multicast off) and the inputs' dtype there."""
    device, dtype = "cpu", torch.float32
    if backend == "nccl":
        os.environ["NCCL_NVLS_ENABLE"] = "0"
        torch.cuda.set_device(rank)
        device, dtype = f"cuda:{rank}", torch.bfloat16
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    return device, dtype


def spawn(target, world, args):
    """Runs target(rank, *args, results) in `world` spawned processes; returns what each put on
    the results queue, (rank, out, lse, error), in rank order."""
    context = torch.multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=target, args=(r, *args, results)) for r in range(world)]
    for w in workers:
        w.start()
    got = [results.get(timeout=180) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    return sorted(got, key=lambda x: x[0])


def check_ranks(got, expected_out, expected_lse, rows_of_rank, bf16, what):
    """Every rank's result against the one-call reference (its rows_of_rank(rank) rows)."""
    out_tolerance, lse_tolerance = ((3e-2, 3e-2), (3e-2, 1e-2)) if bf16 else ((2e-5, 1e-4), (1e-4, 1e-5))
    for rank, out, lse, error in got:
        assert not error, f"rank {rank}: {error}"
        rows = rows_of_rank(rank)
        assert_close(out, expected_out[rows], *out_tolerance, f"rank {rank} out ({what})")
        assert_close(lse, expected_lse[rows], *lse_tolerance, f"rank {rank} lse ({what})")


def gpus_or_skip(world):
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < world or not dist.is_nccl_available():
        pytest.skip(f"needs {world} CUDA GPUs and NCCL ({count} GPUs here)")
    if not wideattn.backend_available("cuda")[0]:
        pytest.skip("wideattn was built without its CUDA backend")


def worker(rank, name, seed, port, backend, results):
    c = CASES[name]
    device, dtype = join_group(backend, rank, c["world"], port)
    try:
        c, q, k, v, offsets, sinks, bounds = make_case(name, seed)
        k_shard, v_shard, starts, locals_ = shard_of(c, k, v, bounds, rank)
        on = lambda x: torch.from_numpy(x).to(device=device, dtype=dtype)  # noqa: E731
        out, lse = wideattn.distributed.context_parallel_attention(
            on(q), on(k_shard), on(v_shard), query_offsets=offsets,
            kv_lengths=c["lengths"], shard_starts=starts, shard_kv_lengths=locals_, causal=c["causal"],
            sinks=None if sinks is None else torch.from_numpy(sinks).to(device), softcap=c["softcap"], scale=0.3,
            return_lse=True)
        results.put((rank, out.float().cpu().numpy(), lse.cpu().numpy(), ""))
    except Exception as error:  # reported to the test, not swallowed
        results.put((rank, None, None, f"{type(error).__name__}: {error}"))
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_sharded(name, backend):
    """Case `name` over `backend`, every rank's (out, lse) against one call over the whole
    cache (bf16 on GPUs: the reference takes the inputs rounded to bf16)."""
    seed = (SEED + zlib.crc32(name.encode())) % 2**32
    print(f"seed {seed} (WIDEATTN_TEST_SEED={SEED})")
    c, q, k, v, offsets, sinks, bounds = make_case(name, seed)
    if backend == "nccl":
        q, k, v = (torch.from_numpy(x).to(torch.bfloat16).float().numpy() for x in (q, k, v))
    out, lse = wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=c["lengths"], causal=c["causal"],
                                  sinks=sinks, softcap=c["softcap"], scale=0.3, return_lse=True)
    got = spawn(worker, c["world"], (name, seed, free_port(), backend))
    check_ranks(got, out, lse, lambda rank: slice(None), backend == "nccl", f"{name}, {backend}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_sharded_cache_equals_one_call_over_the_whole_cache(name):
    run_sharded(name, "gloo")


@pytest.mark.parametrize("name", sorted(CASES))
def test_nccl_over_the_gpus_of_one_host(name):
    """The same over NCCL, one process a GPU, bf16 (needs as many GPUs as the case's ranks)."""
    gpus_or_skip(CASES[name]["world"])
    run_sharded(name, "nccl")


@pytest.fixture
def one_process_group():
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_one_rank_is_the_plain_call(one_process_group):
    c, q, k, v, offsets, sinks, _ = make_case("speculative", 11)
    out = wideattn.distributed.context_parallel_attention(
        torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v), query_offsets=offsets,
        kv_lengths=c["lengths"], shard_starts=[0] * 3, shard_kv_lengths=c["lengths"], softcap=20.0)
    expected = wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=c["lengths"], softcap=20.0)
    assert_close(out.numpy(), expected, 2e-5, 1e-4, "out")


def test_refused_shardings_and_masks_name_the_argument(one_process_group):
    c, q, k, v, offsets, _, _ = make_case("speculative", 3)
    q, k, v = torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v)
    common = dict(query_offsets=offsets, kv_lengths=c["lengths"])
    # Sequence 0 (3 new tokens at 197..199): a shard ending at 198 holds part of their keys.
    with pytest.raises(NotImplementedError, match=r"shard_starts\[0\]"):
        wideattn.distributed.context_parallel_attention(q, k, v, shard_starts=[0, 0, 0],
                                                        shard_kv_lengths=[198, 90, 64], **common)
    # A visible shard shorter than its sequence's new tokens.
    with pytest.raises(NotImplementedError, match=r"shard_kv_lengths\[2\]"):
        wideattn.distributed.context_parallel_attention(q, k, v, shard_starts=[0, 0, 0],
                                                        shard_kv_lengths=[200, 90, 3], causal=False, **common)
    with pytest.raises(ValueError, match=r"shard_starts\[1\]"):
        wideattn.distributed.context_parallel_attention(q, k, v, shard_starts=[0, 50, 0],
                                                        shard_kv_lengths=[200, 90, 64], **common)
    with pytest.raises(ValueError, match="shard_kv_lengths has 2 entries"):
        wideattn.distributed.context_parallel_attention(q, k, v, shard_starts=[0, 0, 0],
                                                        shard_kv_lengths=[200, 90], **common)
    for name, value in (("window", 16), ("window_left", 15), ("ring_length", 8)):
        with pytest.raises(NotImplementedError, match=name):
            wideattn.distributed.context_parallel_attention(q, k, v, shard_starts=[0, 0, 0],
                                                            shard_kv_lengths=c["lengths"], **common, **{name: value})
    with pytest.raises(TypeError, match="torch.Tensor"):
        wideattn.distributed.context_parallel_attention(q.numpy(), k, v, shard_starts=[0, 0, 0],
                                                        shard_kv_lengths=c["lengths"], **common)


# ---- ring prefill -------------------------------------------------------------------------------

RING_CASES = {
    "causal-2": dict(world=2, chunk=24, causal=True),
    "causal-3": dict(world=3, chunk=16, causal=True),
    "bidirectional-2": dict(world=2, chunk=20, causal=False),
}
RING_HEADS = dict(q_heads=8, kv_heads=2, head_dim=64)


def ring_inputs(name, seed):
    c = RING_CASES[name]
    rng = np.random.default_rng(seed)
    length = 2 * c["world"] * c["chunk"]
    q = rng.standard_normal((length, RING_HEADS["q_heads"], RING_HEADS["head_dim"])).astype(np.float32)
    k = rng.standard_normal((length, RING_HEADS["kv_heads"], RING_HEADS["head_dim"])).astype(np.float32)
    v = rng.standard_normal((length, RING_HEADS["kv_heads"], RING_HEADS["head_dim"])).astype(np.float32)
    sinks = rng.standard_normal(RING_HEADS["q_heads"]).astype(np.float32)
    return c, q, k, v, sinks


def rows_of(rank, c):
    chunk = c["chunk"]
    return np.concatenate([np.arange(i * chunk, (i + 1) * chunk)
                           for i in wideattn.distributed.zigzag_chunks(rank, c["world"])])


def zigzag_worker(rank, method, name, window, seed, port, backend, results):
    """One rank of a zig-zag prefill (`method`: ring_prefill_attention or
    allgather_prefill_attention) of RING_CASES[name]."""
    c = RING_CASES[name]
    device, dtype = join_group(backend, rank, c["world"], port)
    try:
        c, q, k, v, sinks = ring_inputs(name, seed)
        rows = rows_of(rank, c)
        on = lambda x: torch.from_numpy(np.ascontiguousarray(x)).to(device=device, dtype=dtype)  # noqa: E731
        windowed = {"window": window} if window else {}
        out, lse = getattr(wideattn.distributed, method)(
            on(q[rows]), on(k[rows]), on(v[rows]), causal=c["causal"], sinks=torch.from_numpy(sinks).to(device),
            softcap=30.0, return_lse=True, **windowed)
        results.put((rank, out.float().cpu().numpy(), lse.cpu().numpy(), ""))
    except Exception as error:
        results.put((rank, None, None, f"{type(error).__name__}: {error}"))
    finally:
        dist.destroy_process_group()


def run_zigzag(method, name, backend, window=0, label=None):
    """A zig-zag prefill over RING_CASES[name]'s ranks against one call over the sequence."""
    label = label or name
    seed = (SEED + zlib.crc32(label.encode())) % 2**32
    print(f"seed {seed} (WIDEATTN_TEST_SEED={SEED})")
    c, q, k, v, sinks = ring_inputs(name, seed)
    if backend == "nccl":
        q, k, v = (torch.from_numpy(x).to(torch.bfloat16).float().numpy() for x in (q, k, v))
    length = q.shape[0]
    out, lse = wideattn.attention(q, k[None], v[None], query_offsets=[0, length], kv_lengths=[length],
                                  causal=c["causal"], sinks=sinks, softcap=30.0, window=window, return_lse=True)
    got = spawn(zigzag_worker, c["world"], (method, name, window, seed, free_port(), backend))
    check_ranks(got, out, lse, lambda rank: rows_of(rank, c), backend == "nccl", f"{method} {label}, {backend}")


def run_ring(name, backend):
    run_zigzag("ring_prefill_attention", name, backend)


@pytest.mark.parametrize("name", sorted(RING_CASES))
def test_ring_prefill_equals_one_call_over_the_sequence(name):
    run_ring(name, "gloo")


@pytest.mark.parametrize("name", sorted(RING_CASES))
def test_ring_prefill_over_nccl(name):
    gpus_or_skip(RING_CASES[name]["world"])
    run_ring(name, "nccl")


def test_ring_prefill_refusals_name_the_argument(one_process_group):
    q = torch.zeros((7, 4, 64))
    kv = torch.zeros((7, 2, 64))
    with pytest.raises(ValueError, match="even count"):
        wideattn.distributed.ring_prefill_attention(q, kv, kv)
    q, kv = q[:6], kv[:6]
    with pytest.raises(NotImplementedError, match="window"):
        wideattn.distributed.ring_prefill_attention(q, kv, kv, window=4)
    with pytest.raises(TypeError, match="k must be"):
        wideattn.distributed.ring_prefill_attention(q, kv.numpy(), kv)


# allgather_prefill_attention: the same zig-zag inputs, every rank's K/V gathered first; it
# also serves causal sliding windows (each query keeps its position).
ALLGATHER_CASES = {
    "causal-2": dict(ring="causal-2", window=0),
    "causal-3-window": dict(ring="causal-3", window=21),
    "bidirectional-2": dict(ring="bidirectional-2", window=0),
}


def run_allgather(name, backend):
    a = ALLGATHER_CASES[name]
    run_zigzag("allgather_prefill_attention", a["ring"], backend, window=a["window"], label=name)


@pytest.mark.parametrize("name", sorted(ALLGATHER_CASES))
def test_allgather_prefill_equals_one_call_over_the_sequence(name):
    run_allgather(name, "gloo")


@pytest.mark.parametrize("name", sorted(ALLGATHER_CASES))
def test_allgather_prefill_over_nccl(name):
    gpus_or_skip(RING_CASES[ALLGATHER_CASES[name]["ring"]]["world"])
    run_allgather(name, "nccl")


def test_allgather_prefill_refusals_name_the_argument(one_process_group):
    q = torch.zeros((7, 4, 64))
    kv = torch.zeros((7, 2, 64))
    with pytest.raises(ValueError, match="even count"):
        wideattn.distributed.allgather_prefill_attention(q, kv, kv)
    q, kv = q[:6], kv[:6]
    with pytest.raises(NotImplementedError, match="causal=False"):
        wideattn.distributed.allgather_prefill_attention(q, kv, kv, causal=False, window=4)
    with pytest.raises(NotImplementedError, match="ring_length"):
        wideattn.distributed.allgather_prefill_attention(q, kv, kv, ring_length=4)
    with pytest.raises(TypeError, match="k must be"):
        wideattn.distributed.allgather_prefill_attention(q, kv.numpy(), kv)
    # One rank: the plain call.
    out = wideattn.distributed.allgather_prefill_attention(q + 1, kv + 1, kv + 2, window=3)
    expected = wideattn.attention(q + 1, (kv + 1)[None], (kv + 2)[None], query_offsets=[0, 6], kv_lengths=[6],
                                  causal=True, window=3)
    assert_close(out.numpy(), np.asarray(expected), 1e-6, 1e-6, "one rank")
