// Which work items (query tiles) a persistent CTA of the fused prefill kernel takes, and what
// each one covers: its sequence, rows, and the range of key tiles its mask leaves visible.
// Host and device code: tests/fused_walk_test.cpp checks the walks against core/mask.h.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/mask.h"
#include "cuda/fused/fused_params.h"

namespace wideattn::fused {

// The work item that `worker` (a CTA, or a pair of CTAs) of `workers` takes in its `round`-th
// turn, or >= total_tiles when it has no more. Items are numbered most expensive first (launch
// order), and the rounds alternate direction (a "snake"): worker i takes item i of the first
// round of `workers` items, then the (workers - 1 - i)-th of the next, so a worker that drew
// one of the costliest items of a round draws one of the cheapest of the next. Plain
// round-robin left the slowest SM 10-25% behind the average on a causal prefill (Nsight
// Compute, SM active cycles).
WIDEATTN_HOST_DEVICE int32_t tile_of_round(int32_t round, int32_t worker, int32_t workers) {
  const int32_t base = round * workers;
  return (round & 1) ? base + workers - 1 - worker : base + worker;
}

// One work item: a tile of query rows (tokens x packed heads) of one sequence and head group.
// Its key tiles are walked from key_end - 1 down to key_begin (the diagonal, masked tile first),
// by next_key_tile. With a ring cache or a tree (the kernel's kRingOrTree variant) the walk
// skips a hole of key tiles that no row sees: a ring's dead or out-of-window slots between its
// live ones.
struct Tile {
  int32_t b, query_start, suffix, kv_length, prefix;
  int32_t tile_head, token_begin, token_end;  // tokens [begin, end) of the sequence's suffix
  int32_t key_begin, key_end;                 // key tiles [key_begin, key_end) to visit
  int32_t hole_begin, hole_end;               // less these (kRingOrTree only; else empty)
  int32_t free_first, free_last;  // keys every row of the tile sees: no mask inside this range
  int32_t split;                  // which part of the tile's key tiles (params.splits > 1)
};

template <bool kRingOrTree>
WIDEATTN_HOST_DEVICE int32_t next_key_tile(const Tile& t, int32_t n) {
  if constexpr (kRingOrTree) {
    if (n == t.hole_end) return t.hole_begin - 1;  // an empty hole: n - 1 as well
  }
  return n - 1;
}

// min(cap, base + add) for base, add >= 0, without the int32 overflow of a huge window.
WIDEATTN_HOST_DEVICE int32_t capped_sum(int32_t cap, int32_t base, int32_t add) {
  return int64_t{base} + add < cap ? base + add : cap;
}

// Visible keys of the query at position `qpos`: [row_first_key, row_last_key] (problem.h).
WIDEATTN_HOST_DEVICE int32_t row_first_key(const FusedParams& p, int32_t qpos) {
  if (p.window <= 0) return 0;
  const int32_t reach = p.causal ? p.window - 1 : p.window / 2;
  return std::max(0, qpos - reach);
}
WIDEATTN_HOST_DEVICE int32_t row_last_key(const FusedParams& p, int32_t qpos, int32_t kv_length) {
  int32_t last = kv_length - 1;
  if (p.causal) {
    last = std::min(last, qpos);
  } else if (p.window > 0) {
    last = capped_sum(last, qpos, p.window / 2);
  }
  return last;
}

// The walk of a ring cache or a tree (mask.h's semantics): the key rows the tile's rows may see
// are at most three intervals, each mapped to key tiles: the ring's live slots in a window, as
// physical rows [0, x] (wrapped) and [y, prefix) or one interval, and the suffix keys. The window
// bounds positions, which are rows in the suffix (not with a tree: its heights are data, so
// a tree's walk bounds nothing but the ring) and the ring's logical slots in the prefix. With a
// nonempty prefix part the suffix part starts at row `prefix` (a window that hides the suffix's
// first keys hides every older one), so the tiles form at most two runs: one hole. Conservative
// by construction: a tile is left out only when no row can see any of its keys.
template <int kBlockN>
WIDEATTN_HOST_DEVICE void ring_or_tree_walk(const FusedParams& p, Tile& t, int32_t first_pos,
                                            int32_t last_pos) {
  const bool tree = p.tree_start != nullptr;
  const bool window = p.window > 0 && !tree;
  const int32_t reach = p.causal ? p.window - 1 : p.window / 2;
  const int32_t prefix = t.prefix;
  // Suffix keys [s_lo, s_hi] (rows = positions without a tree).
  int32_t s_lo = prefix, s_hi = t.kv_length - 1;
  if (!tree) {
    if (p.causal) s_hi = std::min(s_hi, last_pos);
    if (window) {
      s_lo = std::max(s_lo, first_pos - reach);
      if (!p.causal) s_hi = capped_sum(s_hi, last_pos, reach);
    }
  }
  // Prefix keys by logical position [l_lo, l_hi] (the row itself without a ring).
  int32_t l_lo = 0, l_hi = p.ring_length > 0 ? std::min(p.ring_length, prefix) - 1 : prefix - 1;
  if (window) {
    l_lo = std::max(l_lo, first_pos - reach);
    if (!p.causal) l_hi = capped_sum(l_hi, last_pos, reach);
  }
  // The intervals' tiles, merged from the top down (scalars: an indexed array went to local memory).
  t.key_begin = t.key_end = 0;
  bool any = false;
  auto add = [&](int32_t lo, int32_t hi) {
    if (lo > hi) return;
    const int32_t begin = lo / kBlockN, end = hi / kBlockN + 1;
    if (!any) {
      any = true;
      t.key_begin = begin;
      t.key_end = end;
      return;
    }
    if (end < t.key_begin && t.hole_end == t.hole_begin) {  // the first gap becomes the hole
      t.hole_begin = end;
      t.hole_end = t.key_begin;
    }  // a further gap (none, by the argument above) would be walked: masked, still correct
    t.key_begin = std::min(t.key_begin, begin);
  };
  add(s_lo, s_hi);
  if (l_lo <= l_hi) {
    const int32_t shift = p.ring_length > 0 ? p.ring_offset : 0;
    const int32_t a = l_lo + shift, z = l_hi + shift;  // both below 2 prefix
    if (z < prefix) {
      add(a, z);
    } else if (a >= prefix) {
      add(a - prefix, z - prefix);
    } else {  // wrapped: [a, prefix) and [0, z - prefix]
      add(a, prefix - 1);
      add(0, z - prefix);
    }
  }
}

template <int kBlockN, bool kRingOrTree>
WIDEATTN_HOST_DEVICE Tile decode_tile(const FusedParams& p, int32_t item) {
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
  t.token_end = std::min(t.suffix, t.token_begin + p.tokens_per_tile);
  const int32_t first_pos = t.prefix + t.token_begin, last_pos = t.prefix + t.token_end - 1;
  t.free_first = row_first_key(p, last_pos);
  t.free_last = row_last_key(p, first_pos, t.kv_length);
  t.hole_begin = t.hole_end = 0;
  if constexpr (!kRingOrTree) {  // positions are rows: one interval of keys
    const int32_t first_key = row_first_key(p, first_pos);
    const int32_t last_key = row_last_key(p, last_pos, t.kv_length);
    t.key_begin = first_key / kBlockN;
    t.key_end = last_key < first_key ? t.key_begin : last_key / kBlockN + 1;
  } else {
    ring_or_tree_walk<kBlockN>(p, t, first_pos, last_pos);
  }
  t.split = 0;
  if (p.splits > 1) {  // contiguous parts of the walk, of near-equal length (some may be empty)
    t.split = item - index * p.splits;
    const int32_t hole = t.hole_end - t.hole_begin;
    const int32_t steps = t.key_end - t.key_begin - hole;
    const int32_t first = steps * t.split / p.splits, end = steps * (t.split + 1) / p.splits;
    auto tile_at = [&](int32_t step) {  // the step-th visited tile from the bottom
      const int32_t n = t.key_begin + step;
      return n >= t.hole_begin ? n + hole : n;
    };
    if (first < end) {
      t.key_end = tile_at(end - 1) + 1;
      t.key_begin = tile_at(first);
    } else {
      t.key_end = t.key_begin;
    }
  }
  return t;
}

}  // namespace wideattn::fused
