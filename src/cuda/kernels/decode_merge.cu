// The second pass of two_pass decode as its own kernel (the merge itself: decode_merge.cuh). A
// CTA covers one query row and one slice of its columns, so a few rows over many splits (batch 1
// at long context) still spread over many SMs instead of queueing their loads on one per row. On
// sm_90 the merge is a programmatic dependent of the split pass: it is scheduled while the split
// pass drains and waits in griddepcontrol.wait for its results. Where the split pass's grid is
// co-resident it merges in the grid instead (decode_grid_merge.cuh) and this kernel is not
// launched.
#include <algorithm>
#include <string>

#include "core/error.h"
#include "cuda/kernels/decode_common.cuh"
#include "cuda/kernels/decode_merge.cuh"
#include "cuda/kernels/decode_trace.h"
#include "cuda/primitives/check.h"
#include "cuda/primitives/launch.h"

namespace wideattn::cuda::decode {
namespace {

template <typename T>
__global__ void __launch_bounds__(kMergeThreads)
    decode_merge_kernel(const MergeParams p) {
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
  const int64_t row = blockIdx.x / p.slices;  // token * q_heads + head
  const int slice = static_cast<int>(blockIdx.x % p.slices);
  // A plan from bounds launches a row per token of its bound: rows past the call's own tokens
  // belong to no sequence and stay untouched (the whole CTA leaves together).
  if (p.total_tokens && row / p.q_heads >= min(int64_t{*p.total_tokens}, p.max_total_tokens)) return;
  merge_row_slice<T>(p, row, slice, s_out, s_max, s_sum);
#ifdef WIDEATTN_DECODE_TRACE
  if (traced) WIDEATTN_TRACE(p, kTraceMergeBase + 4 * int64_t{blockIdx.x} + 2);
#endif
}

template <typename T>
void launch(const DecodeParams& p, int64_t rows, bool dependent, cudaStream_t stream) {
  const MergeShape m = merge_shape(p.splits, p.head_dim, kMergeThreads);
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
