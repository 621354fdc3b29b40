// Tells compute-sanitizer's initcheck which memory a library call wrote. The tool does not see
// cuBLASLt's stores at some shapes (a lone GEMM read back with cudaMemcpy is reported as
// uninitialised: docs/reliability.md), so every kernel that reads a GEMM's output would be
// reported too. With WIDEATTN_SANITIZER_NVTX=1 (scripts/gpu_check.sh sets it, and runs
// initcheck with --nvtx yes) the written rows are marked initialised through NVTX's memory API;
// otherwise this does nothing and costs one cached flag test.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace wideattn::cuda {

// `batches` x `rows` rows of `row_bytes` bytes, row r of batch b at
// base + b * batch_stride + r * row_stride (strides in bytes), were written on `stream`.
void mark_rows_initialized(const void* base, int64_t batches, int64_t batch_stride, int64_t rows,
                           int64_t row_stride, std::size_t row_bytes, cudaStream_t stream);

}  // namespace wideattn::cuda
