// Basic enumerations shared by every part of the public API.
#pragma once

#include <cstddef>
#include <cstdint>

namespace wideattn {

// Storage type of a tensor. Arithmetic is always f32 (f64 in the test oracle).
// fp8_e4m3 is a storage type of KV caches only (KvCache::fp8, write_kv's cache): q, out and the
// components take f32, f16 or bf16.
enum class DType : int32_t { f32 = 0, f16 = 1, bf16 = 2, fp8_e4m3 = 3 };

// Where a Context runs its work. Pointers handed to a Context live on its device.
enum class Backend : int32_t { cpu = 0, cuda = 1 };

// The kernels `attention` can run. `automatic` lets dispatch choose (see plan.h).
enum class Kernel : int32_t {
  automatic = 0,
  single_pass = 1,      // one pass over the keys per (sequence, KV head, query block)
  two_pass = 2,         // split-KV: partial (max, sum, output) per split, then a merge
  prefill_unfused = 3,  // per KV head: matmul Q K^T, mask, softmax, matmul P V, scatter
  prefill_fused = 4,    // Hopper: one fused kernel (TMA + wgmma), head_dim 64/128/256, f16/bf16
};

const char* to_string(DType dtype);
const char* to_string(Backend backend);
const char* to_string(Kernel kernel);

// Bytes per element of `dtype`.
std::size_t dtype_size(DType dtype);

}  // namespace wideattn
