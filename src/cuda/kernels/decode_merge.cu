// The second pass of two_pass decode: per query row, combine the splits' partial states
//   M = max(max_s, sink), total = sum_s sum_s exp(max_s - M) + exp(sink - M),
//   out = sum_s partial_s exp(max_s - M) / total, lse = M + log(total).
// One warp per query row, four rows per CTA; splits that saw no key carry max -inf, sum 0.
#include "core/error.h"
#include "cuda/kernels/decode_common.cuh"
#include "cuda/primitives/check.h"

namespace wideattn::cuda::decode {
namespace {

constexpr int kMergeWarps = 4;
constexpr int kMergeMaxSplits = 128;
static_assert(kMergeMaxSplits >= 1, "decode_merge: splits");

template <typename T>
__global__ void __launch_bounds__(32 * kMergeWarps) decode_merge_kernel(const DecodeParams p,
                                                                         int64_t rows) {
  using S = Storage<T>;
  __shared__ float s_weight[kMergeWarps][kMergeMaxSplits];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = int64_t{blockIdx.x} * kMergeWarps + warp;
  if (row >= rows) return;
  const int64_t token = row / p.q_heads;
  const int32_t head = static_cast<int32_t>(row % p.q_heads);
  const float* maxes = p.partial_max + row * p.splits;
  const float* sums = p.partial_sum + row * p.splits;

  float top = p.sinks ? p.sinks[head] : neg_inf();
  for (int s = lane; s < p.splits; s += 32) top = fmaxf(top, maxes[s]);
#pragma unroll
  for (int x = 16; x >= 1; x /= 2) top = fmaxf(top, __shfl_xor_sync(0xffffffffu, top, x));

  T* out = static_cast<T*>(p.out) + token * p.out_token_stride + head * p.out_head_stride;
  float* lse = p.lse ? p.lse + token * p.lse_token_stride + head * p.lse_head_stride : nullptr;
  if (top == neg_inf()) {  // no split saw a key and there is no sink
    for (int c = lane; c < p.head_dim; c += 32) S::store(out + c, 0.0f);
    if (lse && lane == 0) *lse = neg_inf();
    return;
  }
  float total = 0.0f;
  for (int s = lane; s < p.splits; s += 32) {
    const float weight = expf(maxes[s] - top);  // 0 for an empty split (max -inf)
    s_weight[warp][s] = weight;
    total += sums[s] * weight;
  }
#pragma unroll
  for (int x = 16; x >= 1; x /= 2) total += __shfl_xor_sync(0xffffffffu, total, x);
  if (p.sinks) total += expf(p.sinks[head] - top);
  __syncwarp();

  const float inv_total = 1.0f / total;
  const float4* partial = reinterpret_cast<const float4*>(p.partial_out + row * p.splits * p.head_dim);
  const int vectors = p.head_dim / 4;
  for (int c4 = lane; c4 < vectors; c4 += 32) {
    float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int s = 0; s < p.splits; ++s) {
      const float weight = s_weight[warp][s];
      const float4 x = partial[s * vectors + c4];
      o.x += x.x * weight;
      o.y += x.y * weight;
      o.z += x.z * weight;
      o.w += x.w * weight;
    }
    S::store(out + 4 * c4 + 0, o.x * inv_total);
    S::store(out + 4 * c4 + 1, o.y * inv_total);
    S::store(out + 4 * c4 + 2, o.z * inv_total);
    S::store(out + 4 * c4 + 3, o.w * inv_total);
  }
  if (lse && lane == 0) *lse = top + logf(total);
}

}  // namespace

void launch_decode_merge(const DecodeParams& p, DType dtype, int64_t rows, cudaStream_t stream) {
  if (p.splits < 2 || p.splits > kMergeMaxSplits) {
    wideattn::detail::throw_invalid("run_decode", "plan.num_splits", p.splits,
                                    "in [2, " + std::to_string(kMergeMaxSplits) + "] for the merge");
  }
  if (rows == 0) return;
  const int64_t blocks = (rows + kMergeWarps - 1) / kMergeWarps;
  const dim3 grid(static_cast<unsigned>(blocks)), block(32 * kMergeWarps);
  switch (dtype) {
    case DType::f32:
      decode_merge_kernel<float><<<grid, block, 0, stream>>>(p, rows);
      break;
    case DType::f16:
      decode_merge_kernel<__half><<<grid, block, 0, stream>>>(p, rows);
      break;
    case DType::bf16:
      decode_merge_kernel<__nv_bfloat16><<<grid, block, 0, stream>>>(p, rows);
      break;
    default:
      wideattn::detail::throw_invalid("run_decode", "dtype", static_cast<int>(dtype),
                                      "f32, f16 or bf16");
  }
  WIDEATTN_CUDA_CHECK_LAUNCH("decode_merge_kernel");
}

}  // namespace wideattn::cuda::decode
