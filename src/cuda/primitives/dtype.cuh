// Storage types and f32 conversion for the three tensor dtypes, plus packed loads and stores of
// N consecutive elements with one memory access. Device code; include from .cu files only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "wideattn/types.h"

namespace wideattn::cuda {

// The element type that stores a DType.
template <DType D>
struct Storage;
template <>
struct Storage<DType::f32> {
  using type = float;
};
template <>
struct Storage<DType::f16> {
  using type = __half;
};
template <>
struct Storage<DType::bf16> {
  using type = __nv_bfloat16;
};
template <DType D>
using storage_t = typename Storage<D>::type;

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

// Round to nearest even.
template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// Bit images of single elements (f32: one 32-bit word; 16-bit types: half a word).
__device__ __forceinline__ unsigned bits_of(float x) { return __float_as_uint(x); }
__device__ __forceinline__ unsigned bits_of(__half x) { return __half_as_ushort(x); }
__device__ __forceinline__ unsigned bits_of(__nv_bfloat16 x) { return __bfloat16_as_ushort(x); }

template <typename T>
__device__ __forceinline__ float float_of_bits(unsigned bits);
template <>
__device__ __forceinline__ float float_of_bits<float>(unsigned bits) {
  return __uint_as_float(bits);
}
template <>
__device__ __forceinline__ float float_of_bits<__half>(unsigned bits) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
}
template <>
__device__ __forceinline__ float float_of_bits<__nv_bfloat16>(unsigned bits) {
  return __bfloat162float(__ushort_as_bfloat16(static_cast<unsigned short>(bits)));
}

// W 32-bit words with one load (4, 8 or 16 bytes, aligned to that), from any memory space.
template <int W>
__device__ __forceinline__ void load_words(const void* p, unsigned (&w)[W]) {
  static_assert(W == 1 || W == 2 || W == 4, "4, 8 or 16 bytes");
  if constexpr (W == 1) {
    w[0] = *static_cast<const unsigned*>(p);
  } else if constexpr (W == 2) {
    const uint2 v = *static_cast<const uint2*>(p);
    w[0] = v.x, w[1] = v.y;
  } else {
    const uint4 v = *static_cast<const uint4*>(p);
    w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
  }
}

// Stores to global memory go through PTX: NVVM splits a C++ 16-byte store whose address has a
// runtime row offset into four 4-byte stores (seen with nvcc 13.0). "memory": the compiler may
// not move other memory accesses across the store.
template <int W>
__device__ __forceinline__ void store_words_global(void* p, const unsigned (&w)[W]) {
  static_assert(W == 1 || W == 2 || W == 4, "4, 8 or 16 bytes");
  if constexpr (W == 1) {
    asm volatile("st.global.b32 [%0], %1;" ::"l"(p), "r"(w[0]) : "memory");
  } else if constexpr (W == 2) {
    asm volatile("st.global.v2.b32 [%0], {%1, %2};" ::"l"(p), "r"(w[0]), "r"(w[1]) : "memory");
  } else {
    asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(w[0]), "r"(w[1]),
                 "r"(w[2]), "r"(w[3])
                 : "memory");
  }
}

// N elements of T at p (aligned to N * sizeof(T), which is 4, 8 or 16 bytes) into f32, with
// one load.
template <int N, typename T>
__device__ __forceinline__ void load_packed(const T* p, float (&out)[N]) {
  constexpr int kPerWord = 4 / sizeof(T);
  constexpr int kWords = N / kPerWord;
  static_assert(N % kPerWord == 0, "whole 32-bit words");
  unsigned w[kWords];
  load_words<kWords>(p, w);
#pragma unroll
  for (int i = 0; i < N; ++i) {
    const unsigned shift = 16 * (i % kPerWord);  // 0 for f32; little-endian halves otherwise
    out[i] = float_of_bits<T>(w[i / kPerWord] >> shift);
  }
}

// N f32 values converted to T (round to nearest even) and stored at p, in global memory and
// aligned to N * sizeof(T) (4, 8 or 16 bytes), with one store.
template <int N, typename T>
__device__ __forceinline__ void store_packed(T* p, const float (&in)[N]) {
  constexpr int kPerWord = 4 / sizeof(T);
  constexpr int kWords = N / kPerWord;
  static_assert(N % kPerWord == 0, "whole 32-bit words");
  unsigned w[kWords];
#pragma unroll
  for (int i = 0; i < kWords; ++i) w[i] = 0;
#pragma unroll
  for (int i = 0; i < N; ++i) w[i / kPerWord] |= bits_of(from_float<T>(in[i])) << (16 * (i % kPerWord));
  store_words_global<kWords>(p, w);
}

// Whether p is aligned to `bytes` (a power of two).
__device__ __host__ __forceinline__ bool is_aligned(const void* p, uintptr_t bytes) {
  return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0;
}

}  // namespace wideattn::cuda
