// The one mask predicate every kernel and the reference use (semantics in problem.h, MaskSpec).
// Header-only so that CUDA kernels inline the same code.
#pragma once

#include <cstdint>

#include "wideattn/components.h"

#if defined(__CUDACC__)
#define WIDEATTN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define WIDEATTN_HOST_DEVICE inline
#endif

namespace wideattn::detail {

// Position of suffix query t (tree: prefix_length + its height).
WIDEATTN_HOST_DEVICE int64_t query_position(const SequenceMask& m, int64_t t) {
  return m.prefix_length + (m.spec.tree_height ? m.spec.tree_height[t] : t);
}

// Whether suffix query t sees cache row i (0 <= i < prefix_length + suffix_length).
WIDEATTN_HOST_DEVICE bool key_visible(const SequenceMask& m, int64_t t, int64_t i) {
  const int64_t prefix = m.prefix_length;
  const int64_t qpos = query_position(m, t);
  int64_t kpos = i;
  if (i >= prefix) {
    const int64_t j = i - prefix;
    if (m.spec.tree_start) {
      if (t < m.spec.tree_start[j] || t > m.spec.tree_end[j]) return false;
      kpos = prefix + m.spec.tree_height[j];
    } else if (m.spec.causal && j > t) {
      return false;
    }
  } else if (m.spec.ring_length > 0) {
    // (prefix + i - ring_offset) mod prefix; validation guarantees 0 <= ring_offset < prefix,
    // so one conditional subtraction is exact and avoids a 64-bit division in kernels.
    int64_t logical = prefix + i - m.spec.ring_offset;
    if (logical >= prefix) logical -= prefix;
    if (logical >= m.spec.ring_length) return false;
    kpos = logical;
  }
  if (m.spec.window > 0) {
    const int64_t distance = qpos - kpos;
    if (m.spec.causal) {
      if (distance < 0 || distance >= m.spec.window) return false;
    } else {
      const int64_t half = m.spec.window / 2;
      if (distance > half || -distance > half) return false;
    }
  }
  return true;
}

// A key range [first, last) outside which no query of [t0, t1) sees any key. Conservative:
// keys inside may still be masked. Lets chunked kernels skip hidden ranges.
struct KeyRange {
  int64_t first = 0;
  int64_t last = 0;
};

WIDEATTN_HOST_DEVICE KeyRange visible_key_range(const SequenceMask& m, int64_t t0, int64_t t1) {
  const int64_t prefix = m.prefix_length;
  KeyRange r{0, prefix + m.suffix_length};
  if (t1 <= t0) return KeyRange{0, 0};
  const bool tree = m.spec.tree_start != nullptr;
  if (!tree && m.spec.causal && prefix + t1 < r.last) r.last = prefix + t1;
  if (m.spec.window > 0 && !tree && m.spec.ring_length == 0) {
    if (m.spec.causal) {
      const int64_t lo = prefix + t0 - m.spec.window + 1;
      if (lo > r.first) r.first = lo;
    } else {
      const int64_t half = m.spec.window / 2;
      const int64_t lo = prefix + t0 - half;
      const int64_t hi = prefix + t1 + half;  // last visible position is prefix + t1 - 1 + half
      if (lo > r.first) r.first = lo;
      if (hi < r.last) r.last = hi;
    }
  }
  if (r.last < r.first) r.last = r.first;
  return r;
}

// The SequenceMask of sequence `b` of a problem (host code; query_offsets/kv_lengths on host).
SequenceMask sequence_mask(const AttentionProblem& problem, int32_t b);

}  // namespace wideattn::detail
