"""A serving engine's attention loop with wideattn: a paged KV cache, one mixed batch (prefill
chunks next to decode steps), then decode steps run from one plan made once from bounds (on CUDA:
one captured CUDA graph, replayed every step with the metadata rewritten in place).

    python3 examples/serving_loop.py                 # CUDA (bf16) when there is one, else CPU (f32)
    python3 examples/serving_loop.py --device cpu --steps 12

Every step is checked against `wideattn.attention` on a contiguous copy of the cache; the script
prints a summary and exits with status 1 on a mismatch. Random vectors stand in for the model's
projections: the point is the bookkeeping around attention (pages, slot mappings, metadata).
"""

from __future__ import annotations

import argparse
import sys
from typing import Dict, List

import torch

import wideattn

# One attention layer: 8 query heads sharing 2 KV heads (GQA), head_dim 128.
Q_HEADS, KV_HEADS, HEAD_DIM = 8, 2, 128
PAGE_SIZE, NUM_PAGES = 16, 64          # the paged pool: 64 pages of 16 tokens
SLOTS, MAX_PAGES = 8, 8                # decode slots (graph batch size); pages per sequence
MAX_KV = MAX_PAGES * PAGE_SIZE         # longest sequence: 128 tokens


class PagedCache:
    """vLLM's layout: kv_cache [2, num_pages, page_size, kv_heads, head_dim], a free list of pages
    and a block table [slots, max_pages] int32 on the device, row b listing slot b's pages."""

    def __init__(self, device: str, dtype: torch.dtype) -> None:
        self.kv_cache = torch.zeros(2, NUM_PAGES, PAGE_SIZE, KV_HEADS, HEAD_DIM, dtype=dtype,
                                    device=device)
        self.k_pages, self.v_pages = self.kv_cache.unbind(0)  # two strided views, no copy
        self.block_table = torch.zeros(SLOTS, MAX_PAGES, dtype=torch.int32, device=device)
        self.free = list(range(NUM_PAGES - 1, -1, -1))
        self.pages: Dict[int, List[int]] = {}  # slot -> its pages, in order
        self.lengths = [0] * SLOTS             # tokens in the cache per slot (host copy)

    def append(self, slot: int, tokens: int) -> torch.Tensor:
        """Reserves `tokens` more rows for `slot` (taking pages as needed, written into the block
        table in place) and returns their slot mapping: page * page_size + offset, int32."""
        pages = self.pages.setdefault(slot, [])
        start = self.lengths[slot]
        while len(pages) * PAGE_SIZE < start + tokens:
            page = self.free.pop()
            self.block_table[slot, len(pages)] = page
            pages.append(page)
        self.lengths[slot] = start + tokens
        rows = range(start, start + tokens)
        return torch.tensor([pages[r // PAGE_SIZE] * PAGE_SIZE + r % PAGE_SIZE for r in rows],
                            dtype=torch.int32)

    def release(self, slot: int) -> None:
        """The sequence in `slot` finished: its pages go back to the free list."""
        self.free.extend(self.pages.pop(slot, []))
        self.lengths[slot] = 0

    def write(self, k_new, v_new, slot_mapping) -> None:
        wideattn.write_kv(k_new, v_new, self.k_pages, self.v_pages,
                          slot_mapping.to(self.kv_cache.device), block_table=self.block_table)

    def contiguous(self, slots: int):
        """A contiguous copy [slots, MAX_KV, kv_heads, head_dim] of the first `slots` sequences
        (the check's input): page j of slot b holds its rows j * page_size ..."""
        k = torch.zeros(slots, MAX_KV, KV_HEADS, HEAD_DIM, dtype=self.kv_cache.dtype,
                        device=self.kv_cache.device)
        v = torch.zeros_like(k)
        for b in range(slots):
            for j, page in enumerate(self.pages.get(b, [])):
                k[b, j * PAGE_SIZE:(j + 1) * PAGE_SIZE] = self.k_pages[page]
                v[b, j * PAGE_SIZE:(j + 1) * PAGE_SIZE] = self.v_pages[page]
        return k, v


def offsets_of(suffixes: List[int]) -> List[int]:
    """query_offsets (cu_seqlens_q) from each sequence's new tokens."""
    offsets = [0]
    for s in suffixes:
        offsets.append(offsets[-1] + s)
    return offsets


class Checker:
    """Compares a step's output with `wideattn.attention` over a contiguous copy of the cache."""

    def __init__(self, cache: PagedCache, tolerance: float) -> None:
        self.cache, self.tolerance = cache, tolerance
        self.worst, self.failures, self.checked = 0.0, [], 0

    def __call__(self, what: str, q, out, suffixes: List[int]) -> None:
        slots = len(suffixes)
        k, v = self.cache.contiguous(slots)
        expected = wideattn.attention(q, k, v, query_offsets=offsets_of(suffixes),
                                      kv_lengths=self.cache.lengths[:slots])
        error = (out.float() - expected.float()).abs().max().item() if q.shape[0] else 0.0
        self.worst = max(self.worst, error)
        self.checked += 1
        if not error <= self.tolerance:  # NaN fails too
            self.failures.append(f"{what}: max |paged - contiguous| = {error:.3g}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--steps", type=int, default=8,
                        help="decode steps after the mixed batch (1 to 48: the cache is small)")
    args = parser.parse_args()
    if not 1 <= args.steps <= 48:
        parser.error(f"--steps {args.steps}: expected 1 to 48 (sequences stay under {MAX_KV} tokens)")
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()
                                     and wideattn.backend_available("cuda")[0])
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    generator = torch.Generator().manual_seed(0)

    def new_vectors(tokens: int, heads: int) -> torch.Tensor:
        """Stand-in for a projection's output: [tokens, heads, head_dim]."""
        x = torch.randn(tokens, heads, HEAD_DIM, generator=generator) * HEAD_DIM ** -0.25
        return x.to(device, dtype)

    cache = PagedCache(device, dtype)
    check = Checker(cache, tolerance=3e-2 if cuda else 1e-4)

    # ---- earlier steps: the prompts' keys and values are already in the cache ----------------
    # Slots 0-3 are decoding (contexts of 30, 75, 9 and 50 tokens); slot 4's prompt has had its
    # first chunk of 16 tokens prefilled; slot 5 is a new request.
    for slot, cached in enumerate([30, 75, 9, 50, 16]):
        mapping = cache.append(slot, cached)
        cache.write(new_vectors(cached, KV_HEADS), new_vectors(cached, KV_HEADS), mapping)

    # ---- one mixed batch: 4 decode steps and 2 prefill chunks in one varlen call --------------
    suffixes = [1, 1, 1, 1, 21, 20]  # slot 4: the rest of its 37-token prompt; slot 5: 20 tokens
    tokens = sum(suffixes)
    q = new_vectors(tokens, Q_HEADS)
    mapping = torch.cat([cache.append(slot, n) for slot, n in enumerate(suffixes)])
    cache.write(new_vectors(tokens, KV_HEADS), new_vectors(tokens, KV_HEADS), mapping)
    slots = len(suffixes)
    out = wideattn.attention(q, cache.k_pages, cache.v_pages, query_offsets=offsets_of(suffixes),
                             kv_lengths=cache.lengths[:slots], block_table=cache.block_table[:slots])
    plan = wideattn.plan(q, cache.k_pages, cache.v_pages, query_offsets=offsets_of(suffixes),
                         kv_lengths=cache.lengths[:slots], block_table=cache.block_table[:slots])
    check("mixed batch", q, out, suffixes)
    print(f"mixed batch: {tokens} tokens over {slots} sequences ({plan.kernel} for the prefill "
          f"part), lengths {cache.lengths[:slots]}")

    # ---- decode: fixed buffers, one plan from bounds ------------------------------------------
    # The buffers hold the largest step (SLOTS slots of 1 token); each step rewrites their
    # contents in place. Slots 6 and 7 are padding (suffix 0) until the end.
    q_buffer = torch.zeros(SLOTS, Q_HEADS, HEAD_DIM, dtype=dtype, device=device)
    query_offsets = torch.zeros(SLOTS + 1, dtype=torch.int32, device=device)
    kv_lengths = torch.zeros(SLOTS, dtype=torch.int32, device=device)
    errors = torch.zeros(1, dtype=torch.int32, device=device)  # CUDA's report of bad metadata
    decode = wideattn.PlannedDecode(q_buffer, cache.k_pages, cache.v_pages,
                                    query_offsets=query_offsets, kv_lengths=kv_lengths,
                                    block_table=cache.block_table, max_suffix=1,
                                    max_kv_length=MAX_KV, errors=errors)
    print(f"decode plan: {decode.plan.reason}")

    active = [True] * 6 + [False] * (SLOTS - 6)
    graph = None
    for step in range(args.steps):
        if step == args.steps // 2:
            active[2] = False  # slot 2's request finished: its slot idles from here on
            cache.release(2)
        suffixes = [1 if a else 0 for a in active]
        n = sum(suffixes)
        # The new token of each active sequence: its K/V into the cache, its q into the buffer.
        mapping = torch.cat([cache.append(slot, 1) for slot in range(SLOTS) if active[slot]])
        cache.write(new_vectors(n, KV_HEADS), new_vectors(n, KV_HEADS), mapping)
        q_buffer[:n] = new_vectors(n, Q_HEADS)
        # The metadata, rewritten in place (the plan and the graph hold these addresses).
        query_offsets.copy_(torch.tensor(offsets_of(suffixes), dtype=torch.int32))
        kv_lengths.copy_(torch.tensor(cache.lengths, dtype=torch.int32))
        if not cuda:
            decode.run()  # the CPU: a plain call per step
        elif graph is None:
            decode.run()  # once outside the capture: sizes the plan's workspace
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                decode.run()
        else:
            graph.replay()
        check(f"decode step {step}", q_buffer[:n], decode.out[:n], suffixes)

    if cuda:
        torch.cuda.synchronize()
    if errors.item() != 0:
        check.failures.append(f"the kernels reported metadata outside the bounds: {errors.item()}")
    how = "one captured CUDA graph, replayed" if cuda else "run() per step"
    print(f"{args.steps} decode steps ({how}); final lengths {cache.lengths}")
    print(f"{check.checked} checks against the contiguous cache on {device} "
          f"{str(dtype).replace('torch.', '')}: worst |difference| {check.worst:.3g} "
          f"(tolerance {check.tolerance:g})")
    for failure in check.failures:
        print(f"MISMATCH {failure}", file=sys.stderr)
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main())
