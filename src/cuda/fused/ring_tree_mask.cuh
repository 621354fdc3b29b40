// The fused kernel's mask for ring caches and speculative trees: which key tiles every row of a
// work item sees whole (no predicate), and the predicate itself, key by key, with the semantics
// of core/mask.h's key_visible (the oracle's). The plain masks (causal, bidirectional, window)
// keep their interval test in the kernel; these two run in its kRingOrTree variant. Host and
// device code: tests/fused_walk_test.cpp checks them against key_visible.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/mask.h"
#include "cuda/fused/fused_params.h"
#include "cuda/fused/tile_schedule.cuh"

namespace wideattn::fused {

// A tree array entry, through the read-only data cache on the device.
WIDEATTN_HOST_DEVICE int32_t read_only(const int32_t* address) {
#if defined(__CUDA_ARCH__)
  return __ldg(address);
#else
  return *address;
#endif
}

// Whether every row of `t` sees every key of the key tile starting at row key0. Prefix keys by
// their logical position (a ring's slot order), which the plain free interval then bounds;
// a tile holding the ring's wrap point, dead slots, both prefix and suffix keys, or a tree's
// suffix keys (visibility is data) is a boundary tile.
template <int kBlockN>
WIDEATTN_HOST_DEVICE bool ring_tree_tile_free(const FusedParams& p, const Tile& t, int32_t key0) {
  const int32_t key1 = key0 + kBlockN - 1;
  if (key1 >= t.kv_length) return false;
  if (key0 >= t.prefix) return p.tree_start == nullptr && key0 >= t.free_first && key1 <= t.free_last;
  if (key1 >= t.prefix) return false;
  if (p.tree_start != nullptr && p.window > 0) return false;  // a tree row's position is data
  int32_t logical0 = key0;
  if (p.ring_length > 0) {
    logical0 = key0 - p.ring_offset;
    if (logical0 < 0) {
      if (key1 >= p.ring_offset) return false;  // the oldest slot (logical 0) inside the tile
      logical0 += t.prefix;
    }
    if (logical0 + kBlockN - 1 >= p.ring_length) return false;
  }
  return logical0 >= t.free_first && logical0 + kBlockN - 1 <= t.free_last;
}

// Boundary tiles that an interval serves, as in the plain kernel: no tree, and the tile wholly
// in the suffix (positions are rows) or in the prefix without the ring's oldest slot inside it
// (its logical positions are then the rows less `shift`). The rest (a tree's suffix tiles, the
// tile with the wrap point, a tile across the prefix's end) takes the key-by-key predicate.
template <int kBlockN>
WIDEATTN_HOST_DEVICE bool ring_tree_interval_tile(const FusedParams& p, const Tile& t, int32_t key0, int32_t& shift) {
  const int32_t key1 = key0 + kBlockN - 1;
  shift = 0;
  if (p.tree_start != nullptr) return false;
  if (key0 >= t.prefix) return true;
  if (key1 >= t.prefix) return false;
  if (p.ring_length == 0 || key0 >= p.ring_offset) {
    if (p.ring_length > 0) shift = p.ring_offset;
    return true;
  }
  if (key1 < p.ring_offset) {
    shift = p.ring_offset - t.prefix;
    return true;
  }
  return false;
}

// On such a tile, the keys [lo, hi] that the row of suffix index `token` sees.
WIDEATTN_HOST_DEVICE void ring_tree_row_interval(const FusedParams& p, const Tile& t, int32_t key0, int32_t shift,
                                                 int32_t token, int32_t& lo, int32_t& hi) {
  const int32_t qpos = t.prefix + token;
  lo = row_first_key(p, qpos);
  hi = row_last_key(p, qpos, t.kv_length);
  if (key0 < t.prefix) hi = std::min(hi, (p.ring_length > 0 ? std::min(p.ring_length, t.prefix) : t.prefix) - 1);
  lo += shift;
  hi += shift;
}

// The position of the row with suffix index `token` (a tree: prefix + its height).
WIDEATTN_HOST_DEVICE int64_t ring_tree_query_position(const FusedParams& p, const Tile& t, int32_t token) {
  return int64_t{t.prefix} + (p.tree_height ? read_only(p.tree_height + t.query_start + token) : token);
}

// Whether that row (suffix index `token`, position `qpos`) sees cache row `key`: key_visible.
WIDEATTN_HOST_DEVICE bool ring_tree_key_visible(const FusedParams& p, const Tile& t, int32_t token, int64_t qpos,
                                                int32_t key) {
  if (key >= t.kv_length) return false;
  int64_t kpos = key;
  if (key >= t.prefix) {
    const int32_t j = key - t.prefix;
    if (p.tree_start) {
      const int32_t row = t.query_start + j;
      if (token < read_only(p.tree_start + row) || token > read_only(p.tree_end + row)) return false;
      kpos = int64_t{t.prefix} + read_only(p.tree_height + row);
    } else if (p.causal && j > token) {
      return false;
    }
  } else if (p.ring_length > 0) {
    int32_t logical = key - p.ring_offset;  // 0 <= ring_offset < prefix (validated)
    if (logical < 0) logical += t.prefix;
    if (logical >= p.ring_length) return false;
    kpos = logical;
  }
  if (p.window > 0) {
    const int64_t distance = qpos - kpos;
    if (p.causal) return distance >= 0 && distance < p.window;
    const int64_t half = p.window / 2;
    return distance <= half && -distance <= half;
  }
  return true;
}

}  // namespace wideattn::fused
