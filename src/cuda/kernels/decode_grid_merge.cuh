// The split pass merging its own splits (two_pass decode in one launch). When the whole grid is
// resident at once (a cooperative launch guarantees it; batch-1 decode at long context runs one
// CTA per SM), each CTA, after storing its partial state, arrives at a barrier of its (sequence,
// KV head) group, waits for the group's last CTA, and then merges its share of the group's
// (query row, column slice) items with the merge kernel's code (decode_merge.cuh: same bits).
// This replaces the merge kernel's launch (a host launch, ~4 us of a call's host time) and its
// wait for the whole split pass with a barrier through L2.
//
// The barrier words, one 64-bit word per group (arrivals, generation), belong to the backend
// (zeroed once) and every call leaves the arrivals at zero, so graph replays need no reset: the
// last CTA to arrive zeroes the count and bumps the generation that the others wait on. Used
// where each CTA has at most one (row, slice) item to merge: more would run one after another
// (a speculative step's 32 rows over 4 splits took 5% longer than the merge kernel's spread).
#pragma once

#include "cuda/kernels/decode_common.cuh"
#include "cuda/kernels/decode_merge.cuh"
#include "cuda/kernels/decode_trace.h"

namespace wideattn::cuda::decode {

// Arrives at the group barrier `word` of `arrivals` CTAs and waits for the last of them. The
// CTA's stores before it are visible to every CTA of the group after it. The word holds the
// arrivals in its low half and a generation in its high half: an arrival is one atomic that also
// returns the generation to wait on, and the last arrival zeroes the count and bumps the
// generation with a second one (count + 2^32 - arrivals carries into the high half).
__device__ __forceinline__ void group_barrier(unsigned long long* word, uint32_t arrivals) {
  __syncthreads();  // every thread's partial state stored
  if (threadIdx.x == 0) {
    __threadfence();  // our CTA's stores, then the arrival
    const unsigned long long old = atomicAdd(word, 1ull);
    if (static_cast<uint32_t>(old) == arrivals - 1) {
      atomicAdd(word, (1ull << 32) - arrivals);
    } else {
      const volatile unsigned long long* poll = word;
      while ((*poll >> 32) == (old >> 32)) __nanosleep(20);
    }
    __threadfence();
  }
  __syncthreads();
}

// The tail of a split pass CTA launched with p.merge_barriers: the group barrier, then this CTA's
// share of the group's merge. Every CTA of the grid calls it exactly once, whatever work it had
// (none, when its sequence is shorter than the grid or outside a plan's bounds). `smem`: room for
// kMergeThreads float4 and two kMergeMaxGroups float arrays (the kernel's own, idle by then).
template <typename T>
__device__ __forceinline__ void merge_in_grid(const DecodeParams& p, unsigned char* smem) {
  int32_t x = static_cast<int32_t>(blockIdx.x);
  const int32_t row_item = x % p.row_items;
  x /= p.row_items;
  const int32_t split = x % p.splits;
  x /= p.splits;
  const int32_t kv_head = x % p.kv_heads;
  const int32_t seq = x / p.kv_heads;
  const int32_t group_ctas = p.row_items * p.splits;
#ifdef WIDEATTN_DECODE_TRACE
  const bool traced = blockIdx.x < (kTraceSmBase - kTraceMergeBase) / 4;
  if (traced) WIDEATTN_TRACE(p, kTraceMergeBase + 4 * int64_t{blockIdx.x});
#endif
  group_barrier(p.merge_barriers + int64_t{seq} * p.kv_heads + kv_head, group_ctas);
#ifdef WIDEATTN_DECODE_TRACE
  if (traced) WIDEATTN_TRACE(p, kTraceMergeBase + 4 * int64_t{blockIdx.x} + 1);
#endif
  // The group's query rows (row r: token r / gqa, head kv_head * gqa + r % gqa): none when the
  // sequence breaks a plan's bounds (its CTAs did nothing either).
  if (p.check_metadata && metadata_outside_bounds(p, seq, false)) return;
  const bool inline_metadata = p.query_offsets == nullptr;
  auto offset = [&](int32_t i) { return inline_metadata ? p.inline_metadata[i] : p.query_offsets[i]; };
  const int32_t first = offset(seq);
  const int32_t rows = (offset(seq + 1) - first) * p.gqa;

  const MergeShape shape = merge_shape(p.splits, p.head_dim, static_cast<int>(blockDim.x));
  MergeParams m;
  m.partial_out = p.partial_out;
  m.partial_max = p.partial_max;
  m.partial_sum = p.partial_sum;
  m.sinks = p.sinks;
  m.out = p.out;
  m.out_token_stride = p.out_token_stride;
  m.out_head_stride = p.out_head_stride;
  m.lse = p.lse;
  m.lse_token_stride = p.lse_token_stride;
  m.lse_head_stride = p.lse_head_stride;
  m.q_heads = p.q_heads;
  m.head_dim = p.head_dim;
  m.splits = p.splits;
  m.groups = shape.groups;
  m.vectors = shape.vectors;
  m.slices = shape.slices;
  float4* s_out = reinterpret_cast<float4*>(smem);
  float* s_max = reinterpret_cast<float*>(s_out + kMergeThreads);
  float* s_sum = s_max + kMergeMaxGroups;
  const int32_t items = rows * shape.slices;
  for (int32_t item = row_item + p.row_items * split; item < items; item += group_ctas) {
    const int32_t r = item / shape.slices;
    const int64_t row = (int64_t{first} + r / p.gqa) * p.q_heads + kv_head * p.gqa + r % p.gqa;
    merge_row_slice<T>(m, row, item % shape.slices, s_out, s_max, s_sum);
    __syncthreads();  // s_out is the next item's
  }
#ifdef WIDEATTN_DECODE_TRACE
  if (traced) WIDEATTN_TRACE(p, kTraceMergeBase + 4 * int64_t{blockIdx.x} + 2);
#endif
}

}  // namespace wideattn::cuda::decode
