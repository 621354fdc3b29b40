#!/usr/bin/env python3
"""A mixed batch in one call against the same work as separate calls (issue 10's target: the one
call is no slower).

The batch of the issue: 24 sequences decoding one token each over caches of 4K-32K tokens, and
2 prefill chunks of 512 new tokens (one on an empty cache, one on an 8K prefix), Gemma 4 31B's
global layer (32 query heads over 4 KV heads, head_dim 512, bfloat16, causal, scale 1), one
contiguous cache. Timed three ways on one stream with CUDA events, the median of --repeat
rounds after warm-up:
  mixed      one wideattn.attention call over all 26 sequences
  separate   the decode call over the 24, then the prefill call over the 2 (one event pair)
  each       the decode call alone, the prefill call alone
Also printed: the host's time to issue each (the median of the rounds), and whether the mixed
call's output equals the separate calls' (bitwise where the same kernels ran).

    python3 bench/mixed_batch.py [--repeat 20] [--small] [--json out.json]

--small runs a scaled-down batch (fewer, shorter sequences, head_dim 64) that any machine with
PyTorch can check, on the GPU when there is one, else on the CPU (then times are wall clock).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import wideattn


def build(small: bool, device: str):
    if small:
        decode_lengths = [64 + 37 * i for i in range(6)]
        prefill = [(0, 40), (100, 24)]  # (prefix, new tokens)
        q_heads, kv_heads, head_dim = 4, 2, 64
    else:
        decode_lengths = [4096 + (32768 - 4096) * i // 23 for i in range(24)]
        prefill = [(0, 512), (8192, 512)]
        q_heads, kv_heads, head_dim = 32, 4, 512
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    suffixes = [1] * len(decode_lengths) + [n for _, n in prefill]
    lengths = decode_lengths + [p + n for p, n in prefill]
    offsets = [0]
    for s in suffixes:
        offsets.append(offsets[-1] + s)
    gen = torch.Generator(device="cpu").manual_seed(5)
    capacity = max(lengths)
    cache_shape = (len(lengths), capacity, kv_heads, head_dim)
    k = torch.randn(cache_shape, generator=gen).to(device=device, dtype=dtype)
    v = torch.randn(cache_shape, generator=gen).to(device=device, dtype=dtype)
    q = (0.05 * torch.randn(offsets[-1], q_heads, head_dim, generator=gen)).to(device=device, dtype=dtype)
    return q, k, v, offsets, lengths, len(decode_lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() and wideattn.backend_available("cuda")[0] else "cpu"
    if device == "cpu" and not args.small:
        parser.error("the full batch needs a GPU; --small runs a scaled-down one on the CPU")
    q, k, v, offsets, lengths, n_decode = build(args.small, device)
    split = offsets[n_decode]
    decode_offsets = offsets[: n_decode + 1]
    prefill_offsets = [o - split for o in offsets[n_decode:]]
    common = dict(causal=True, scale=1.0)

    def mixed():
        return wideattn.attention(q, k, v, query_offsets=offsets, kv_lengths=lengths, **common)

    def decode():
        return wideattn.attention(q[:split], k[:n_decode], v[:n_decode], query_offsets=decode_offsets,
                                  kv_lengths=lengths[:n_decode], **common)

    def prefill():
        return wideattn.attention(q[split:], k[n_decode:], v[n_decode:], query_offsets=prefill_offsets,
                                  kv_lengths=lengths[n_decode:], **common)

    def separate():
        return decode(), prefill()

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def timed(fn):
        for _ in range(args.warmup):
            fn()
        sync()
        gpu, host = [], []
        for _ in range(args.repeat):
            if device == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
            t0 = time.perf_counter()
            fn()
            host.append((time.perf_counter() - t0) * 1e6)
            if device == "cuda":
                end.record()
                end.synchronize()
                gpu.append(start.elapsed_time(end) * 1e3)
            else:
                gpu.append(host[-1])
        return statistics.median(gpu), statistics.median(host)

    results = {name: timed(fn) for name, fn in
               (("mixed", mixed), ("separate", separate), ("decode", decode), ("prefill", prefill))}
    one = mixed()
    apart = torch.cat(separate())
    sync()
    same_bits = bool(torch.equal(one, apart))
    max_diff = float((one.float() - apart.float()).abs().max())
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"{name}: {n_decode} decode sequences (KV {lengths[0]}-{lengths[n_decode - 1]}) + "
          f"{len(lengths) - n_decode} prefill chunks {[offsets[i + 1] - offsets[i] for i in range(n_decode, len(lengths))]}"
          f" (KV {lengths[n_decode:]}), heads {q.shape[1]}/{k.shape[2]}, d={q.shape[2]}, {q.dtype}")
    print(f"{'call':10s} {'time (us)':>10s} {'host (us)':>10s}")
    for key, (t, h) in results.items():
        print(f"{key:10s} {t:10.1f} {h:10.1f}")
    ratio = results["separate"][0] / results["mixed"][0]
    print(f"mixed / separate: the one call at {ratio:.3f}x the separate calls' speed "
          f"({'no slower' if ratio >= 1.0 else 'SLOWER'}); outputs {'bitwise equal' if same_bits else f'differ by {max_diff:.2e}'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "results_us": {k2: {"time": t, "host": h} for k2, (t, h) in results.items()},
                       "ratio": ratio, "same_bits": same_bits, "max_diff": max_diff}, f, indent=1)


if __name__ == "__main__":
    main()
