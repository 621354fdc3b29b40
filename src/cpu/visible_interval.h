// Fast form of the mask for one query row. Without a tree or a ring, the keys a query sees form
// one interval (causal end, window on both sides), so kernels can mask a row with two bounds
// instead of calling key_visible per key. The interval is checked against key_visible at its
// edges, so key_visible stays the one definition; callers fall back to it when this says no.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/mask.h"

namespace wideattn::detail::cpu {

struct KeyInterval {
  int64_t first = 0, last = 0;  // visible keys are [first, last)
};

// Whether the mask of `m` has the interval form at all (depends only on the spec).
inline bool mask_has_intervals(const SequenceMask& m) {
  return m.spec.tree_start == nullptr && m.spec.ring_length == 0;
}

// For masks with mask_has_intervals: the keys suffix query t sees. Returns false when the edge
// check disagrees with key_visible (then use key_visible per key).
inline bool visible_interval(const SequenceMask& m, int64_t t, KeyInterval* out) {
  const int64_t n = m.prefix_length + m.suffix_length;
  const int64_t qpos = m.prefix_length + t;
  int64_t lo = 0, hi = n;
  if (m.spec.causal) hi = std::min(hi, qpos + 1);
  if (m.spec.window > 0) {
    if (m.spec.causal) {
      lo = std::max<int64_t>(lo, qpos - m.spec.window + 1);
    } else {
      const int64_t half = m.spec.window / 2;
      lo = std::max(lo, qpos - half);
      hi = std::min(hi, qpos + half + 1);
    }
  }
  if (hi < lo) hi = lo;
  if (lo < hi && (!key_visible(m, t, lo) || !key_visible(m, t, hi - 1))) return false;
  if (lo > 0 && key_visible(m, t, lo - 1)) return false;
  if (hi < n && key_visible(m, t, hi)) return false;
  *out = KeyInterval{lo, hi};
  return true;
}

}  // namespace wideattn::detail::cpu
