// The second pass of two_pass decode: per query row, combine the splits' partial states
//   M = max(max_s, sink), total = sum_s sum_s exp(max_s - M) + exp(sink - M),
//   out = sum_s partial_s exp(max_s - M) / total, lse = M + log(total).
// One CTA per query row: each thread loads one split's (max, sum) and the block reduces them to
// weights, then each thread streams one float4 column over the splits, kBatch loads in flight
// before the first use (the merge is latency-bound: its data sits in L2).
// Splits that saw no key carry max -inf and sum 0. On sm_90 the merge is launched as a
// programmatic dependent of the split pass (it starts while the split pass drains and waits in
// griddepcontrol.wait for its results).
#include <string>

#include "core/error.h"
#include "cuda/kernels/decode_common.cuh"
#include "cuda/primitives/check.h"

namespace wideattn::cuda::decode {
namespace {

constexpr int kMergeThreads = 128;
constexpr int kMergeMaxSplits = 128;
static_assert(kMergeThreads >= kMergeMaxSplits, "decode_merge: one split per thread");
static_assert(kMergeThreads * 4 >= 512, "decode_merge: one float4 column per thread at d = 512");

template <typename T>
__global__ void __launch_bounds__(kMergeThreads) decode_merge_kernel(const DecodeParams p) {
  using S = Storage<T>;
  constexpr int kWarps = kMergeThreads / 32;
  constexpr int kBatch = 16;  // partial loads issued before the first use
  __shared__ float s_weight[kMergeMaxSplits];
  __shared__ float s_reduce[kWarps];
  wait_for_previous_grid();
  const int64_t row = blockIdx.x;  // token * q_heads + head
  const int64_t token = row / p.q_heads;
  const int32_t head = static_cast<int32_t>(row % p.q_heads);
  const int tid = threadIdx.x;
  const int lane = tid % 32, warp = tid / 32;

  // One split per thread (splits <= kMergeThreads): a single round trip for every (max, sum).
  const float split_max = tid < p.splits ? p.partial_max[row * p.splits + tid] : neg_inf();
  const float split_sum = tid < p.splits ? p.partial_sum[row * p.splits + tid] : 0.0f;
  const float sink = p.sinks ? p.sinks[head] : neg_inf();
  float top = fmaxf(split_max, sink);
#pragma unroll
  for (int x = 16; x >= 1; x /= 2) top = fmaxf(top, __shfl_xor_sync(0xffffffffu, top, x));
  if (lane == 0) s_reduce[warp] = top;
  __syncthreads();
  top = s_reduce[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) top = fmaxf(top, s_reduce[w]);
  // top = -inf: no split saw a key and there is no sink -> zeros, LSE -inf.
  const float shift = top == neg_inf() ? 0.0f : top;
  const float weight = tid < p.splits ? expf(split_max - shift) : 0.0f;  // 0 for empty splits
  if (tid < p.splits) s_weight[tid] = weight;
  float total = split_sum * weight;
#pragma unroll
  for (int x = 16; x >= 1; x /= 2) total += __shfl_xor_sync(0xffffffffu, total, x);
  __syncthreads();  // every warp has read s_reduce (max) before it is reused
  if (lane == 0) s_reduce[warp] = total;
  __syncthreads();
  total = expf(sink - shift);
#pragma unroll
  for (int w = 0; w < kWarps; ++w) total += s_reduce[w];
  const float inv_total = total > 0.0f ? 1.0f / total : 0.0f;
  if (tid == 0 && p.lse) {
    p.lse[token * p.lse_token_stride + head * p.lse_head_stride] =
        total > 0.0f ? top + logf(total) : neg_inf();
  }

  const int vectors = p.head_dim / 4;
  const float4* partial =
      reinterpret_cast<const float4*>(p.partial_out + row * p.splits * p.head_dim);
  T* out = static_cast<T*>(p.out) + token * p.out_token_stride + head * p.out_head_stride;
  for (int c4 = tid; c4 < vectors; c4 += kMergeThreads) {
    float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int s0 = 0; s0 < p.splits; s0 += kBatch) {
      float4 x[kBatch];
#pragma unroll
      for (int i = 0; i < kBatch; ++i) {
        x[i] = s0 + i < p.splits ? partial[(s0 + i) * vectors + c4]
                                 : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      }
#pragma unroll
      for (int i = 0; i < kBatch; ++i) {
        const float w = s0 + i < p.splits ? s_weight[s0 + i] : 0.0f;
        o.x += x[i].x * w;
        o.y += x[i].y * w;
        o.z += x[i].z * w;
        o.w += x[i].w * w;
      }
    }
    S::store(out + 4 * c4 + 0, o.x * inv_total);
    S::store(out + 4 * c4 + 1, o.y * inv_total);
    S::store(out + 4 * c4 + 2, o.z * inv_total);
    S::store(out + 4 * c4 + 3, o.w * inv_total);
  }
}

template <typename T>
void launch(const DecodeParams& p, int64_t rows, bool dependent, cudaStream_t stream) {
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(rows));
  config.blockDim = dim3(kMergeThreads);
  config.dynamicSmemBytes = 0;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attribute;
  config.numAttrs = dependent ? 1 : 0;
  cudaError_t status = cudaLaunchKernelEx(&config, decode_merge_kernel<T>, p);
  if (status != cudaSuccess && dependent) {  // no programmatic launch here: launch in order
    (void)cudaGetLastError();
    config.numAttrs = 0;
    status = cudaLaunchKernelEx(&config, decode_merge_kernel<T>, p);
  }
  WIDEATTN_CUDA_CHECK(status);
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
  WIDEATTN_CUDA_CHECK_LAUNCH("decode_merge_kernel");
}

}  // namespace wideattn::cuda::decode
