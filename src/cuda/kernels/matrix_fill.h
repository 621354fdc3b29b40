// Element-wise helpers of the cuBLASLt matmul over a strided batch of row-major matrices:
// - fill: D = 0 or a broadcast bias row (k = 0, and the bias preload where cuBLASLt has no
//   bias epilogue for the dtypes);
// - convert: D dtypes cuBLASLt cannot write (f32 x f32 -> f16, f16 x f16 -> bf16, ...) are
//   computed into an f32 staging matrix, converted in (old D or bias) and out.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "wideattn/types.h"

namespace wideattn::cuda {

struct MatrixFill {
  void* d = nullptr;  // [batch][m, n] of dtype, row stride ld, batch stride batch_stride
  DType dtype = DType::f32;
  int64_t ld = 0, batch_stride = 0;
  int64_t m = 0, n = 0;
  int32_t batch = 1;
  const void* bias = nullptr;  // [n] of dtype, or null for zeros
};

// Launches the fill on `stream`. Throws detail::Error.
void launch_matrix_fill(const MatrixFill& fill, cudaStream_t stream);

// dst[b][i, j] = (src ? src[b][i, j] : 0) + (bias ? bias[j] : 0), converted to dst_dtype.
// One side is f32, the other f16 or bf16; bias (only with an f32 destination) has src_dtype.
struct MatrixConvert {
  const void* src = nullptr;  // [batch][m, n] of src_dtype, or null for zeros
  DType src_dtype = DType::f32;
  int64_t src_ld = 0, src_batch_stride = 0;
  void* dst = nullptr;  // [batch][m, n] of dst_dtype
  DType dst_dtype = DType::f32;
  int64_t dst_ld = 0, dst_batch_stride = 0;
  int64_t m = 0, n = 0;
  int32_t batch = 1;
  const void* bias = nullptr;  // [n] of src_dtype, or null
};

// Launches the conversion on `stream`. Throws detail::Error.
void launch_matrix_convert(const MatrixConvert& convert, cudaStream_t stream);

// Whether this build has a kernel image the current device can run; when not, `reason` says why
// (e.g. built for sm_90a, running on sm_80).
bool kernel_image_available(std::string* reason);

}  // namespace wideattn::cuda
