// The second pass of two_pass decode: per query row, combine the splits' partial states
//   M = max(max_s, sink), total = sum_s sum_s exp(max_s - M) + exp(sink - M),
//   out = sum_s partial_s exp(max_s - M) / total, lse = M + log(total).
// Latency-bound (its few MB sit in L2), so it is built for one round trip: thread (group g,
// column c) owns float4 column c of splits g, g + G, g + 2G, ... (G = ceil(splits /
// kMergeBatch), so at most kMergeBatch splits a thread) and issues their (max, sum, partial)
// loads together, folding them into an online (max, sum, output) state; the G states then
// combine through shared memory. A CTA covers one query row and a power-of-two slice of its
// columns, the widest that keeps it within kMergeThreads threads: a few rows over many splits
// (batch 1 at long context) still spread over many SMs instead of queueing their loads on one
// per row. The slicing does not change
// the arithmetic (G depends on the split count only), so the bits depend on the split count
// alone, not on the batch. Splits that saw no key carry max -inf and sum 0. On sm_90 the merge
// is a programmatic dependent of the split pass: it is scheduled while the split pass drains
// and waits in griddepcontrol.wait for its results.
#include <algorithm>
#include <string>

#include "core/error.h"
#include "cuda/kernels/decode_common.cuh"
#include "cuda/kernels/decode_trace.h"
#include "cuda/primitives/check.h"
#include "cuda/primitives/launch.h"

namespace wideattn::cuda::decode {
namespace {

constexpr int kMergeThreads = 256;  // at most, per CTA
constexpr int kMergeMaxSplits = kMaxKvSplits;  // what validation lets kv_splits ask for
constexpr int kMergeBatch = 8;  // splits per thread, their loads in flight together
constexpr int kMergeMaxGroups = (kMergeMaxSplits + kMergeBatch - 1) / kMergeBatch;
constexpr int kMergeMinVectors = 8;  // float4 columns per CTA: a 128-byte line per group
static_assert(kMergeMaxGroups * kMergeMinVectors <= kMergeThreads, "decode_merge: CTA size");

// What the merge reads of DecodeParams: a launch copies its parameter block, and the split
// pass's carries a kilobyte of inline metadata the merge never reads.
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

// The merge's shape, a function of the split count and head_dim only (see the top).
struct MergeShape {
  int groups;   // G
  int vectors;  // float4 columns per CTA
  int slices;   // CTAs per query row
};
MergeShape merge_shape(int splits, int head_dim) {
  MergeShape m;
  m.groups = (splits + kMergeBatch - 1) / kMergeBatch;
  const int row_vectors = head_dim / 4;
  m.vectors = row_vectors;  // halved (a power of two dividing the row) until the CTA fits
  while (m.vectors > kMergeMinVectors && m.vectors * m.groups > kMergeThreads) m.vectors /= 2;
  m.slices = row_vectors / m.vectors;
  return m;
}

template <typename T>
__global__ void __launch_bounds__(kMergeThreads)
    decode_merge_kernel(const MergeParams p) {
  using S = Storage<T>;
  __shared__ float4 s_out[kMergeThreads];
  __shared__ float s_max[kMergeMaxGroups], s_sum[kMergeMaxGroups];
#ifdef WIDEATTN_DECODE_TRACE
  const bool traced = blockIdx.x < (kTraceSmBase - kTraceMergeBase) / 4;
  if (traced) WIDEATTN_TRACE(p, kTraceMergeBase + 4 * int64_t{blockIdx.x});
#endif
  wait_for_previous_grid();
  allow_next_grid();  // the next kernel may be scheduled; it waits for this grid to finish
#ifdef WIDEATTN_DECODE_TRACE
  if (traced) WIDEATTN_TRACE(p, kTraceMergeBase + 4 * int64_t{blockIdx.x} + 1);
#endif
  const int groups = p.groups, vectors = p.vectors, slices = p.slices;
  const int64_t row = blockIdx.x / slices;  // token * q_heads + head
  const int slice = static_cast<int>(blockIdx.x % slices);
  const int64_t token = row / p.q_heads;
  // A plan from bounds launches a row per token of its bound: rows past the call's own tokens
  // belong to no sequence and stay untouched (the whole CTA leaves together).
  if (p.total_tokens && token >= min(int64_t{*p.total_tokens}, p.max_total_tokens)) return;
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
  for (int s0 = group; s0 < p.splits; s0 += kMergeBatch * groups) {
    float mx[kMergeBatch], sm[kMergeBatch];
    float4 x[kMergeBatch];
#pragma unroll
    for (int i = 0; i < kMergeBatch; ++i) {
      const int s = s0 + i * groups;
      const bool valid = s < p.splits;
      mx[i] = valid ? row_max[s] : neg_inf();
      sm[i] = valid ? row_sum[s] : 0.0f;
      x[i] = valid ? partial[s * row_vectors + column] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
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
  s_out[threadIdx.x] = o;
  if (c4 == 0) {
    s_max[group] = m;
    s_sum[group] = l;
  }
  __syncthreads();
  if (group != 0) return;

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
#ifdef WIDEATTN_DECODE_TRACE
  if (traced) WIDEATTN_TRACE(p, kTraceMergeBase + 4 * int64_t{blockIdx.x} + 2);
#endif
}

template <typename T>
void launch(const DecodeParams& p, int64_t rows, bool dependent, cudaStream_t stream) {
  const MergeShape m = merge_shape(p.splits, p.head_dim);
  const int64_t ctas = rows * m.slices;
  if (ctas > 0x7fffffff) {
    wideattn::detail::throw_invalid("run_decode", "merge CTAs (tokens x heads x column slices)",
                                    ctas, "< 2^31");
  }
  MergeParams mp;
  mp.partial_out = p.partial_out;
  mp.partial_max = p.partial_max;
  mp.partial_sum = p.partial_sum;
  mp.sinks = p.sinks;
  mp.out = p.out;
  mp.out_token_stride = p.out_token_stride;
  mp.out_head_stride = p.out_head_stride;
  mp.lse = p.lse;
  mp.lse_token_stride = p.lse_token_stride;
  mp.lse_head_stride = p.lse_head_stride;
  mp.q_heads = p.q_heads;
  mp.head_dim = p.head_dim;
  mp.splits = p.splits;
  mp.total_tokens = p.check_metadata ? p.query_offsets + p.batch : nullptr;
  mp.max_total_tokens = p.max_total_tokens;
  mp.groups = m.groups;
  mp.vectors = m.vectors;
  mp.slices = m.slices;
#ifdef WIDEATTN_DECODE_TRACE
  mp.trace = p.trace;
#endif
  launch_kernel("launch of decode_merge_kernel", decode_merge_kernel<T>,
                dim3(static_cast<unsigned>(ctas)), dim3(m.groups * m.vectors), 0, stream,
                dependent, mp);
}

}  // namespace

void launch_decode_merge(const DecodeParams& p, DType dtype, int64_t rows, bool dependent,
                         cudaStream_t stream) {
  if (p.splits < 2 || p.splits > kMergeMaxSplits) {
    wideattn::detail::throw_invalid(
        "run_decode", "plan.num_splits", p.splits,
        "in [2, " + std::to_string(kMergeMaxSplits) + "] for the merge");
  }
  if (rows == 0) return;
  if (rows > 0x7fffffff) {
    wideattn::detail::throw_invalid("run_decode", "query rows (tokens x heads)", rows, "< 2^31");
  }
  if (p.head_dim < 4 * kMergeMinVectors || p.head_dim % (4 * kMergeMinVectors) != 0 ||
      (p.head_dim & (p.head_dim - 1)) != 0) {
    wideattn::detail::throw_invalid("run_decode", "head_dim", p.head_dim,
                                    "a power of two >= 32 for the merge");
  }
  switch (dtype) {
    case DType::f32:
      launch<float>(p, rows, dependent, stream);
      break;
    case DType::f16:
      launch<__half>(p, rows, dependent, stream);
      break;
    case DType::bf16:
      launch<__nv_bfloat16>(p, rows, dependent, stream);
      break;
    default:
      wideattn::detail::throw_invalid("run_decode", "dtype", static_cast<int>(dtype),
                                      "f32, f16 or bf16");
  }
}

}  // namespace wideattn::cuda::decode
