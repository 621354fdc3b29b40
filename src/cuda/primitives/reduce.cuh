// Warp and block reductions, and the (max, sum of exponentials) state of an online softmax.
// Device code; include from .cu files only.
#pragma once

#include <cuda_runtime.h>

#include <cmath>

namespace wideattn::cuda {

inline constexpr int kWarpSize = 32;
inline constexpr float kLog2e = 1.4426950408889634f;  // log2(e): exp(x) = exp2(x * log2(e))

// e^x through exp2f (one MUFU.EX2 plus range handling, max 2 ulp); exp(-inf) = 0.
__device__ __forceinline__ float exp_f32(float x) { return exp2f(x * kLog2e); }

// All 32 lanes of the warp must call these.
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

// Running softmax normaliser over a set of logits: max and sum of exp(logit - max).
// The empty set (or one of only -inf logits) is {-inf, 0}.
struct MaxSum {
  float max;
  float sum;

  __device__ __forceinline__ static MaxSum empty() { return MaxSum{-INFINITY, 0.0f}; }

  // Adds one logit. -inf contributes nothing.
  __device__ __forceinline__ void add(float x) {
    const float m = fmaxf(max, x);
    if (m == -INFINITY) return;
    sum = sum * exp_f32(max - m) + exp_f32(x - m);
    max = m;
  }

  // Adds four logits with one rescale.
  __device__ __forceinline__ void add4(float x0, float x1, float x2, float x3) {
    const float m = fmaxf(fmaxf(max, fmaxf(x0, x1)), fmaxf(x2, x3));
    if (m == -INFINITY) return;
    sum = sum * exp_f32(max - m) + ((exp_f32(x0 - m) + exp_f32(x1 - m)) +
                                    (exp_f32(x2 - m) + exp_f32(x3 - m)));
    max = m;
  }

  // Merges another state into this one.
  __device__ __forceinline__ void merge(const MaxSum& o) {
    const float m = fmaxf(max, o.max);
    if (m == -INFINITY) return;
    sum = sum * exp_f32(max - m) + o.sum * exp_f32(o.max - m);
    max = m;
  }
};

// All 32 lanes of the warp must call this; every lane gets the merged state.
__device__ __forceinline__ MaxSum warp_merge(MaxSum s) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    MaxSum o;
    o.max = __shfl_xor_sync(0xffffffffu, s.max, offset);
    o.sum = __shfl_xor_sync(0xffffffffu, s.sum, offset);
    s.merge(o);
  }
  return s;
}

// Every thread of the block must call this (blockDim.x a multiple of 32, at most 1024);
// every thread gets the merged state. `scratch` holds kWarpSize + 1 states in shared memory; the
// next block_merge may reuse it at once, other uses need a __syncthreads first.
__device__ __forceinline__ MaxSum block_merge(MaxSum s, MaxSum* scratch) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  s = warp_merge(s);
  if (lane == 0) scratch[warp] = s;
  __syncthreads();
  if (warp == 0) {
    MaxSum t = lane < warps ? scratch[lane] : MaxSum::empty();
    t = warp_merge(t);
    if (lane == 0) scratch[kWarpSize] = t;
  }
  __syncthreads();
  // The next call writes scratch[kWarpSize] only after its first barrier, which every thread
  // reaches after this read.
  return scratch[kWarpSize];
}

}  // namespace wideattn::cuda
