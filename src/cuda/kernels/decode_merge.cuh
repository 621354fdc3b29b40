// The split-KV merge of one query row's slice of columns, shared by the merge kernel
// (decode_merge.cu) and the split pass's in-grid merge (decode_grid_merge.cuh): per query row,
//   M = max(max_s, sink), total = sum_s sum_s exp(max_s - M) + exp(sink - M),
//   out = sum_s partial_s exp(max_s - M) / total, lse = M + log(total).
// Latency-bound (its few MB sit in L2), so it is built for one round trip: thread (group g,
// column c) owns float4 column c of splits g, g + G, g + 2G, ... (G = ceil(splits /
// kMergeBatch), so at most kMergeBatch splits a thread) and issues their (max, sum, partial)
// loads together, folding them into an online (max, sum, output) state; the G states then
// combine through shared memory. A slice is a power-of-two share of the row's columns, the
// widest that keeps G x its float4 columns within the CTA's threads. The slicing does not change
// the arithmetic (G depends on the split count only), so the bits depend on the split count
// alone: not on the batch, the slicing, or which kernel merges. Splits that saw no key carry max
// -inf and sum 0.
#pragma once

#include "cuda/kernels/decode_common.cuh"

namespace wideattn::cuda::decode {

inline constexpr int kMergeThreads = 256;  // at most, per merge kernel CTA
inline constexpr int kMergeMaxSplits = kMaxKvSplits;  // what validation lets kv_splits ask for
inline constexpr int kMergeBatch = 8;  // splits per thread, their loads in flight together
inline constexpr int kMergeMaxGroups = (kMergeMaxSplits + kMergeBatch - 1) / kMergeBatch;
inline constexpr int kMergeMinVectors = 8;  // float4 columns per slice: a 128-byte line per group
static_assert(kMergeMaxGroups * kMergeMinVectors <= 128, "decode merge: a 128-thread CTA must fit");

// The merge's shape for `splits` and `head_dim` within `threads` threads.
struct MergeShape {
  int groups;   // G
  int vectors;  // float4 columns per slice
  int slices;   // slices per query row
};
__host__ __device__ inline MergeShape merge_shape(int splits, int head_dim, int threads) {
  MergeShape m;
  m.groups = (splits + kMergeBatch - 1) / kMergeBatch;
  const int row_vectors = head_dim / 4;
  m.vectors = row_vectors;  // halved (a power of two dividing the row) until the CTA fits
  while (m.vectors > kMergeMinVectors && m.vectors * m.groups > threads) m.vectors /= 2;
  m.slices = row_vectors / m.vectors;
  return m;
}

// What the merge reads: a launch copies its parameter block, and the split pass's carries a
// kilobyte of inline metadata the merge never reads.
struct MergeParams {
  const float* partial_out;
  const float* partial_max;
  const float* partial_sum;
  const float* sinks;
  void* out;
  int64_t out_token_stride, out_head_stride;
  float* lse;
  int64_t lse_token_stride, lse_head_stride;
  int32_t q_heads, head_dim, splits;
  // A plan from bounds: rows past min(*total_tokens, max_total_tokens) are left alone.
  const int32_t* total_tokens;  // the caller's query_offsets[batch]; null: every row is real
  int64_t max_total_tokens;
  int32_t groups, vectors, slices;  // MergeShape
#ifdef WIDEATTN_DECODE_TRACE
  unsigned long long* trace;
#endif
};

// Merges slice `slice` of query row `row` (token * q_heads + head) into the output, with the
// CTA's threads [0, groups x vectors) (the others only join its barrier). Partial states are
// read through L2 (ld.cg): in the in-grid merge other SMs wrote them during this kernel.
template <typename T>
__device__ __forceinline__ void merge_row_slice(const MergeParams& p, int64_t row, int slice,
                                                float4* s_out, float* s_max, float* s_sum) {
  using S = Storage<T>;
  const int groups = p.groups, vectors = p.vectors;
  const bool active = threadIdx.x < groups * vectors;
  const int64_t token = row / p.q_heads;
  const int32_t head = static_cast<int32_t>(row % p.q_heads);
  const int row_vectors = p.head_dim / 4;
  const int c4 = threadIdx.x % vectors, group = threadIdx.x / vectors;
  const int column = slice * vectors + c4;  // float4 column of the row
  const float* row_max = p.partial_max + row * p.splits;
  const float* row_sum = p.partial_sum + row * p.splits;
  const float4* partial =
      reinterpret_cast<const float4*>(p.partial_out + row * p.splits * p.head_dim);

  // This thread's splits: online (max, sum, output) in natural-log units.
  float m = neg_inf(), l = 0.0f;
  float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  for (int s0 = group; active && s0 < p.splits; s0 += kMergeBatch * groups) {
    float mx[kMergeBatch], sm[kMergeBatch];
    float4 x[kMergeBatch];
#pragma unroll
    for (int i = 0; i < kMergeBatch; ++i) {
      const int s = s0 + i * groups;
      const bool valid = s < p.splits;
      mx[i] = valid ? __ldcg(row_max + s) : neg_inf();
      sm[i] = valid ? __ldcg(row_sum + s) : 0.0f;
      x[i] = valid ? __ldcg(partial + s * row_vectors + column) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    float top = m;
#pragma unroll
    for (int i = 0; i < kMergeBatch; ++i) top = fmaxf(top, mx[i]);
    if (top == neg_inf()) continue;     // nothing seen yet (the same for the whole group)
    const float alpha = expf(m - top);  // 0 while m = -inf
    l *= alpha;
    o.x *= alpha;
    o.y *= alpha;
    o.z *= alpha;
    o.w *= alpha;
#pragma unroll
    for (int i = 0; i < kMergeBatch; ++i) {
      // A split in which the row saw no key contributes nothing (selected out rather than
      // multiplied by 0: its partial output may hold 0 x inf = NaN of a hidden V row).
      if (mx[i] == neg_inf()) continue;
      const float w = expf(mx[i] - top);
      l += sm[i] * w;
      o.x += x[i].x * w;
      o.y += x[i].y * w;
      o.z += x[i].z * w;
      o.w += x[i].w * w;
    }
    m = top;
  }
  if (active) {
    s_out[threadIdx.x] = o;
    if (c4 == 0) {
      s_max[group] = m;
      s_sum[group] = l;
    }
  }
  __syncthreads();
  if (!active || group != 0) return;

  // Combine the groups. top = -inf: no split saw a key and there is no sink -> zeros, LSE -inf.
  const float sink = p.sinks ? p.sinks[head] : neg_inf();
  float top = sink;
  for (int g = 0; g < groups; ++g) top = fmaxf(top, s_max[g]);
  const float shift = top == neg_inf() ? 0.0f : top;
  float total = expf(sink - shift);
  float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  for (int g = 0; g < groups; ++g) {
    const float w = expf(s_max[g] - shift);
    const float4 x = s_out[g * vectors + c4];
    total += s_sum[g] * w;
    acc.x += x.x * w;
    acc.y += x.y * w;
    acc.z += x.z * w;
    acc.w += x.w * w;
  }
  const float inv_total = total > 0.0f ? 1.0f / total : 0.0f;
  T* out = static_cast<T*>(p.out) + token * p.out_token_stride + head * p.out_head_stride + 4 * column;
  S::store(out + 0, acc.x * inv_total);
  S::store(out + 1, acc.y * inv_total);
  S::store(out + 2, acc.z * inv_total);
  S::store(out + 3, acc.w * inv_total);
  if (column == 0 && p.lse) {
    p.lse[token * p.lse_token_stride + head * p.lse_head_stride] =
        total > 0.0f ? top + logf(total) : neg_inf();
  }
}

}  // namespace wideattn::cuda::decode
