// TMA tensor maps (cuTensorMapEncodeTiled) for the Hopper kernels: 4-D tensors, 128-byte
// swizzled boxes, out-of-range elements read as zeros. Shared by the fused prefill and the
// wgmma decode launchers.
#pragma once

#include <cuda.h>

#include <cstdint>

#include "wideattn/problem.h"

namespace wideattn::cuda {

// Element types the kernels stream.
enum class TensorMapElement { f16, bf16, u8 };

// A 4-D tensor of `element`s at `base`: dims[0] contiguous, strides of dims 1..3 in elements;
// boxes of box[0..3] elements, 128-byte swizzled (box[0] x element size must be 128 bytes or
// less). Throws detail::Error naming `what` when the driver refuses the map.
CUtensorMap encode_tensor_map(const void* base, TensorMapElement element, const int64_t dims[4],
                              const int64_t strides[3], const uint32_t box[4], const char* what);

// K and V of `problem`'s cache: (head_dim, rows, kv_heads, sequences) when contiguous, (head_dim,
// page rows, kv_heads, pages) when paged; boxes of box_columns x box rows, the box rows being
// tile_rows, or the page size where that is smaller (a box never straddles pages). Returns the
// box rows.
int32_t encode_kv_tensor_maps(const AttentionProblem& problem, TensorMapElement element, uint32_t box_columns,
                              int32_t tile_rows, CUtensorMap& k_map, CUtensorMap& v_map);

}  // namespace wideattn::cuda
