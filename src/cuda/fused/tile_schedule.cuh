// Which work items (query tiles) a persistent CTA of the fused prefill kernel takes, and what
// each one covers: its sequence, rows, and the range of key tiles its mask leaves visible.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/fused/fused_params.h"

namespace wideattn::fused {

// The work item that `worker` (a CTA, or a pair of CTAs) of `workers` takes in its `round`-th
// turn, or >= total_tiles when it has no more. Items are numbered most expensive first (launch
// order), and the rounds alternate direction (a "snake"): worker i takes item i of the first
// round of `workers` items, then the (workers - 1 - i)-th of the next, so a worker that drew
// one of the costliest items of a round draws one of the cheapest of the next. Plain
// round-robin left the slowest SM 10-25% behind the average on a causal prefill (Nsight
// Compute, SM active cycles).
__device__ __forceinline__ int32_t tile_of_round(int32_t round, int32_t worker, int32_t workers) {
  const int32_t base = round * workers;
  return (round & 1) ? base + workers - 1 - worker : base + worker;
}

// One work item: a tile of query rows (tokens x packed heads) of one sequence and head group.
struct Tile {
  int32_t b, query_start, suffix, kv_length, prefix;
  int32_t tile_head, token_begin, token_end;  // tokens [begin, end) of the sequence's suffix
  int32_t key_begin, key_end;                 // key tiles [key_begin, key_end) to visit
  int32_t free_first, free_last;  // keys every row of the tile sees: no mask inside this range
  int32_t split;                  // which part of the tile's key tiles (params.splits > 1)
};

// Visible keys of the query at position `qpos`: [row_first_key, row_last_key] (problem.h).
__device__ __forceinline__ int32_t row_first_key(const FusedParams& p, int32_t qpos) {
  if (p.window <= 0) return 0;
  const int32_t reach = p.causal ? p.window - 1 : p.window / 2;
  return max(0, qpos - reach);
}
__device__ __forceinline__ int32_t row_last_key(const FusedParams& p, int32_t qpos, int32_t kv_length) {
  int32_t last = kv_length - 1;
  if (p.causal) {
    last = min(last, qpos);
  } else if (p.window > 0) {
    last = min(last, qpos + p.window / 2);
  }
  return last;
}

template <int kBlockN>
__device__ __forceinline__ Tile decode_tile(const FusedParams& p, int32_t item) {
  // Work item -> (query tile, split); the splits of one tile are neighbours in the order.
  const int32_t index = p.splits > 1 ? item / p.splits : item;
  int32_t lo = 0, hi = p.num_sequences - 1;
  while (lo < hi) {  // the sequence whose tile range holds `index`
    const int32_t mid = (lo + hi + 1) >> 1;
    if (p.tile_start[mid] <= index) lo = mid; else hi = mid - 1;
  }
  Tile t;
  t.b = p.batch_index[lo];
  t.query_start = p.query_start[lo];
  t.suffix = p.suffix[lo];
  t.kv_length = p.kv_length[lo];
  t.prefix = t.kv_length - t.suffix;
  const int32_t local = index - p.tile_start[lo];
  const int32_t blocks = (t.suffix + p.tokens_per_tile - 1) / p.tokens_per_tile;
  const int32_t block = blocks - 1 - local / p.tile_heads;  // last query block first: most keys
  t.tile_head = local % p.tile_heads;
  t.token_begin = block * p.tokens_per_tile;
  t.token_end = min(t.suffix, t.token_begin + p.tokens_per_tile);
  const int32_t first_pos = t.prefix + t.token_begin, last_pos = t.prefix + t.token_end - 1;
  const int32_t first_key = row_first_key(p, first_pos);
  const int32_t last_key = row_last_key(p, last_pos, t.kv_length);
  t.key_begin = first_key / kBlockN;
  t.key_end = last_key < first_key ? t.key_begin : last_key / kBlockN + 1;
  t.free_first = row_first_key(p, last_pos);
  t.free_last = row_last_key(p, first_pos, t.kv_length);
  t.split = 0;
  if (p.splits > 1) {  // contiguous parts of near-equal length (some may be empty)
    t.split = item - index * p.splits;
    const int32_t count = t.key_end - t.key_begin;
    const int32_t begin = t.key_begin + count * t.split / p.splits;
    t.key_end = t.key_begin + count * (t.split + 1) / p.splits;
    t.key_begin = begin;
  }
  return t;
}

}  // namespace wideattn::fused
