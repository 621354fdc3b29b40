// merge_states: per (token, head) row, lse = log sum_s exp(lse_s), out = sum_s exp(lse_s - lse)
// out_s. Latency-bound like the split-KV merge (decode_merge.cu), but its states are separate
// strided tensors, each of its own dtype, so it is a plain kernel: one warp per row. Lane s
// reads lse_s (kMaxMergeStates <= 32), the warp reduces max and sum, the weights go through
// shared memory, then each lane walks chunks of 4 elements (one 8- or 16-byte load per state
// when every pointer and stride allows it, one element per chunk otherwise). A state whose
// weight is 0 (lse -inf, or one so far below the others that it underflows) is skipped rather
// than multiplied by 0, so NaN in a dead state's rows never reaches the output.
#include "cuda/kernels/merge_states.h"

#include <algorithm>
#include <cstdint>

#include "core/error.h"
#include "cuda/primitives/check.h"
#include "cuda/primitives/dtype.cuh"

namespace wideattn::cuda {
namespace {

constexpr int kWarps = 4;  // rows per CTA
constexpr int kVector = 4;
constexpr int64_t kMaxGrid = int64_t{1} << 20;
static_assert(kMaxMergeStates <= 32, "merge_states: one lane per state");

struct StateParams {
  const void* out;
  int64_t out_token_stride, out_head_stride;
  const float* lse;
  int64_t lse_token_stride, lse_head_stride;
  DType dtype;
};

struct MergeParams {
  StateParams states[kMaxMergeStates];
  int32_t num_states;
  int64_t tokens;
  int32_t heads, head_dim;
  void* out;
  int64_t out_token_stride, out_head_stride;
  float* lse;
  int64_t lse_token_stride, lse_head_stride;
};

// Chunk c of a state's row (4 elements when Packed, else element c alone in v[0]), as f32.
template <bool Packed, typename T>
__device__ __forceinline__ void load_chunk_as(const void* row, int c, float (&v)[kVector]) {
  const T* p = static_cast<const T*>(row);
  if constexpr (Packed) {
    load_packed<kVector>(p + c * kVector, v);
  } else {
    v[0] = to_float(p[c]);
  }
}
template <bool Packed>
__device__ __forceinline__ void load_chunk(const StateParams& s, const void* row, int c,
                                           float (&v)[kVector]) {
  switch (s.dtype) {  // the same for the whole warp: no divergence
    case DType::f32: load_chunk_as<Packed, float>(row, c, v); break;
    case DType::f16: load_chunk_as<Packed, __half>(row, c, v); break;
    default: load_chunk_as<Packed, __nv_bfloat16>(row, c, v); break;
  }
}

template <typename Out, bool Packed>
__global__ void __launch_bounds__(kWarps * 32) merge_states_kernel(const MergeParams p) {
  __shared__ float s_weight[kWarps][32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t rows = p.tokens * p.heads;
  const int chunks = Packed ? p.head_dim / kVector : p.head_dim;
  constexpr int kWidth = Packed ? kVector : 1;
  for (int64_t r = int64_t{blockIdx.x} * kWarps + warp; r < rows; r += int64_t{gridDim.x} * kWarps) {
    const int64_t token = r / p.heads, head = r - token * p.heads;
    float lse = -INFINITY;
    if (lane < p.num_states) {
      const StateParams& s = p.states[lane];
      lse = s.lse[token * s.lse_token_stride + head * s.lse_head_stride];
    }
    float top = lse;
#pragma unroll
    for (int o = 16; o > 0; o /= 2) top = fmaxf(top, __shfl_xor_sync(0xffffffffu, top, o));
    // top = -inf: every state is dead (weights 0, total 0: zeros and lse -inf below).
    const float weight = top == -INFINITY || lse == -INFINITY ? 0.0f : expf(lse - top);
    float total = weight;
#pragma unroll
    for (int o = 16; o > 0; o /= 2) total += __shfl_xor_sync(0xffffffffu, total, o);
    const float inv_total = total > 0.0f ? 1.0f / total : 0.0f;
    __syncwarp();  // the previous row's readers of s_weight are done
    s_weight[warp][lane] = weight * inv_total;
    __syncwarp();

    Out* out = static_cast<Out*>(p.out) + token * p.out_token_stride + head * p.out_head_stride;
    for (int c = lane; c < chunks; c += 32) {
      float acc[kVector] = {0.0f, 0.0f, 0.0f, 0.0f};
      for (int s = 0; s < p.num_states; ++s) {
        const float w = s_weight[warp][s];
        if (w == 0.0f) continue;
        const StateParams& st = p.states[s];
        const void* row = static_cast<const char*>(st.out) +
                          (token * st.out_token_stride + head * st.out_head_stride) *
                              static_cast<int64_t>(st.dtype == DType::f32 ? 4 : 2);
        float v[kVector];
        load_chunk<Packed>(st, row, c, v);
#pragma unroll
        for (int i = 0; i < kWidth; ++i) acc[i] += w * v[i];
      }
      if constexpr (Packed) {
        store_packed<kVector>(out + c * kVector, acc);
      } else {
        out[c] = from_float<Out>(acc[0]);
      }
    }
    if (lane == 0 && p.lse) {
      p.lse[token * p.lse_token_stride + head * p.lse_head_stride] =
          total > 0.0f ? top + logf(total) : -INFINITY;
    }
  }
}

template <typename Out>
void launch_typed(const MergeParams& p, bool packed, cudaStream_t stream) {
  const int64_t rows = p.tokens * p.heads;
  const dim3 grid(static_cast<unsigned>(std::min((rows + kWarps - 1) / kWarps, kMaxGrid)));
  if (packed) {
    merge_states_kernel<Out, true><<<grid, kWarps * 32, 0, stream>>>(p);
  } else {
    merge_states_kernel<Out, false><<<grid, kWarps * 32, 0, stream>>>(p);
  }
  WIDEATTN_CUDA_CHECK_LAUNCH("merge_states_kernel");
}

}  // namespace

void launch_merge_states(const MergeStatesArguments& a, cudaStream_t stream) {
  if (a.tokens == 0 || a.heads == 0) return;
  MergeParams p{};
  p.num_states = a.num_states;
  p.tokens = a.tokens;
  p.heads = a.heads;
  p.head_dim = a.head_dim;
  p.out = a.out;
  p.out_token_stride = a.out_token_stride;
  p.out_head_stride = a.out_head_stride;
  p.lse = a.lse;
  p.lse_token_stride = a.lse_token_stride;
  p.lse_head_stride = a.lse_head_stride;
  // Packed chunks: every row of every tensor starts on a boundary of 4 of its elements.
  const auto aligned_rows = [&](const void* base, int64_t token_stride, int64_t head_stride, DType dtype) {
    return is_aligned(base, kVector * dtype_size(dtype)) && token_stride % kVector == 0 &&
           head_stride % kVector == 0;
  };
  bool packed = a.head_dim % kVector == 0 &&
                aligned_rows(a.out, a.out_token_stride, a.out_head_stride, a.out_dtype);
  for (int32_t s = 0; s < a.num_states; ++s) {
    const AttentionState& st = a.states[s];
    p.states[s] = StateParams{st.out, st.out_token_stride, st.out_head_stride,
                              st.lse,  st.lse_token_stride, st.lse_head_stride, st.dtype};
    packed = packed && aligned_rows(st.out, st.out_token_stride, st.out_head_stride, st.dtype);
  }
  switch (a.out_dtype) {
    case DType::f32: launch_typed<float>(p, packed, stream); break;
    case DType::f16: launch_typed<__half>(p, packed, stream); break;
    case DType::bf16: launch_typed<__nv_bfloat16>(p, packed, stream); break;
    default:
      detail::throw_invalid("merge_states", "out_dtype", static_cast<int>(a.out_dtype), "f32, f16 or bf16");
  }
}

}  // namespace wideattn::cuda
