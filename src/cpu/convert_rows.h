// Vectorised conversions of contiguous runs between the storage dtypes and f32
// (round to nearest even, the same results as include/wideattn/convert.h).
#pragma once

#include <cstdint>

#include "wideattn/types.h"

namespace wideattn::detail::cpu {

// dst[i] = src[i] as f32, i < n.
void convert_to_f32(const void* src, DType dtype, float* dst, int64_t n);

// dst[i] = the e4m3 code src[i] as bf16 bits, i < n: exact (every e4m3 value is a bf16 value),
// NaN codes become a quiet NaN.
void convert_fp8_to_bf16(const uint8_t* src, uint16_t* dst, int64_t n);

// dst[i] = src[i] * scale (scale applied in f32 before rounding to dtype), i < n.
void convert_from_f32(const float* src, void* dst, DType dtype, int64_t n, float scale = 1.0f);

}  // namespace wideattn::detail::cpu
