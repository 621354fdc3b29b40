"""Bad arguments raise TypeError/ValueError that name the argument."""

from __future__ import annotations

import numpy as np
import pytest

import wideattn


def arrays(tokens=3, heads=4, kv_heads=2, d=16, capacity=8, dtype=np.float32):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((tokens, heads, d)).astype(dtype)
    k = rng.standard_normal((1, capacity, kv_heads, d)).astype(dtype)
    v = rng.standard_normal((1, capacity, kv_heads, d)).astype(dtype)
    return q, k, v


def run(q, k, v, **kw):
    kw.setdefault("query_offsets", [0, q.shape[0]])
    kw.setdefault("kv_lengths", [q.shape[0]])
    return wideattn.attention(q, k, v, **kw)


def test_wrong_dtypes():
    q, k, v = arrays()
    with pytest.raises(TypeError, match=r"attention: q has dtype int32, expected float32"):
        run(q.astype(np.int32), k, v)
    with pytest.raises(TypeError, match=r"k_cache has dtype float16 but q has dtype float32"):
        run(q, k.astype(np.float16), v)
    with pytest.raises(TypeError, match=r"out has dtype float16 but q has dtype float32"):
        run(q, k, v, out=np.empty(q.shape, np.float16))
    with pytest.raises(TypeError, match=r"lse has dtype float64, expected float32"):
        run(q, k, v, lse=np.empty(q.shape[:2], np.float64))
    with pytest.raises(TypeError, match=r"sinks has dtype float16"):
        run(q, k, v, sinks=np.zeros(4, np.float16))
    with pytest.raises(TypeError, match=r"q has dtype uint16"):
        run(q.view(np.uint16)[..., ::2], k, v)
    with pytest.raises(TypeError, match=r"attention: k_cache must be an array"):
        run(q, "not an array", v)


def test_wrong_shapes():
    q, k, v = arrays()
    with pytest.raises(ValueError, match=r"q must have 3 dimensions"):
        run(q[0], k, v, query_offsets=[0, 4], kv_lengths=[4])
    with pytest.raises(ValueError, match=r"k_cache must have 4 dimensions"):
        run(q, k[0], v)
    with pytest.raises(ValueError, match=r"k_cache.shape\[3\] = 8, expected 16 \(head_dim"):
        run(q, k[..., :8], v)
    with pytest.raises(ValueError, match=r"v_cache.shape\[1\] = 7, expected 8 \(capacity"):
        run(q, k, v[:, :7])
    with pytest.raises(ValueError, match=r"out.shape\[1\] = 3, expected 4"):
        run(q, k, v, out=np.empty((3, 3, 16), np.float32))
    with pytest.raises(ValueError, match=r"sinks.shape\[0\] = 3, expected 4"):
        run(q, k, v, sinks=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"q_heads = 4, expected a multiple of kv_heads = 3"):
        run(q, np.concatenate([k, k[:, :, :1]], axis=2), np.concatenate([v, v[:, :, :1]], axis=2))


def test_non_contiguous_last_dimension():
    q, k, v = arrays(d=32)
    with pytest.raises(ValueError, match=r"q's last dimension must be contiguous \(stride 1\), got stride 2"):
        run(q[..., ::2], k[..., :16], v[..., :16])
    with pytest.raises(ValueError, match=r"v_cache's last dimension must be contiguous"):
        run(q[..., :16], k[..., :16], v[..., ::2])
    with pytest.raises(ValueError, match=r"negative stride"):
        run(q[::-1], k, v)


def test_metadata():
    q, k, v = arrays()
    with pytest.raises(ValueError, match=r"query_offsets has 3 entries, expected batch \+ 1 = 2"):
        run(q, k, v, query_offsets=[0, 1, 3])
    with pytest.raises(ValueError, match=r"kv_lengths has 2 entries, expected batch"):
        run(q, k, v, kv_lengths=[3, 3])
    with pytest.raises(ValueError, match=r"query_offsets\[-1\] = 2, expected total_tokens = q.shape\[0\] = 3"):
        run(q, k, v, query_offsets=[0, 2])
    with pytest.raises(ValueError, match=r"kv_lengths\[0\] = 9, expected <= kv.capacity = 8"):
        run(q, k, v, kv_lengths=[9])
    with pytest.raises(ValueError, match=r"kv_lengths\[0\] = 2, expected >= the sequence's suffix length 3"):
        run(q, k, v, kv_lengths=[2])
    with pytest.raises(TypeError, match=r"query_offsets\[1\] = 1.5 is not an integer"):
        run(q, k, v, query_offsets=[0, 1.5])
    with pytest.raises(ValueError, match=r"kv_lengths\[0\] = 4294967296 does not fit in int32"):
        run(q, k, v, kv_lengths=[2**32])
    with pytest.raises(TypeError, match=r"kv_lengths is required"):
        run(q, k, v, kv_lengths=None)


def test_options():
    q, k, v = arrays()
    with pytest.raises(ValueError, match=r"kernel = 'fastest'"):
        run(q, k, v, kernel="fastest")
    with pytest.raises(ValueError, match=r"scale = -1.0"):
        run(q, k, v, scale=-1.0)
    with pytest.raises(ValueError, match=r"softcap"):
        run(q, k, v, softcap=-2.0)
    with pytest.raises(ValueError, match=r"window = -1"):
        run(q, k, v, window=-1)
    with pytest.raises(TypeError, match=r"tree must be a tuple"):
        run(q, k, v, tree=np.zeros(3, np.int32))
    tree = np.zeros(3, np.int32)
    with pytest.raises(TypeError, match=r"tree_start has dtype int64, expected int32"):
        run(q, k, v, tree=(tree.astype(np.int64), tree, tree))


def test_head_dim_rejected_by_the_library():
    q, k, v = arrays(d=12)
    with pytest.raises(ValueError, match=r"head_dim = 12, expected a multiple of 8"):
        run(q, k, v)


def test_outputs_must_be_writable_and_disjoint():
    q, k, v = arrays()
    out = np.empty_like(q)
    out.flags.writeable = False
    with pytest.raises(TypeError, match=r"out must be a writable array.*read-only"):
        run(q, k, v, out=out)
    with pytest.raises(ValueError, match=r"out overlaps q"):
        run(q, k, v, out=q)


class _ArrayOnAnotherDevice:
    """A DLPack producer on a device type wideattn does not run on (kDLVulkan)."""

    shape = (3, 4, 16)
    dtype = np.float32

    def __dlpack_device__(self):
        return (7, 0)


def test_unsupported_device():
    q = _ArrayOnAnotherDevice()
    _, k, v = arrays()
    with pytest.raises(ValueError, match=r"q is on dlpack device type 7; wideattn runs on CPU memory and CUDA"):
        wideattn.attention(q, k, v, query_offsets=[0, 3], kv_lengths=[3], out=np.empty((3, 4, 16), np.float32))
