// Error checks for CUDA and cuBLASLt calls: every failure becomes detail::Error naming the call.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "core/error.h"

namespace wideattn::cuda {

inline void check_cuda(cudaError_t status, const char* what, const char* file, int line) {
  if (status != cudaSuccess) {
    const StatusCode code = status == cudaErrorMemoryAllocation ? StatusCode::out_of_memory
                                                                : StatusCode::internal;
    detail::throw_error(code, std::string(what) + " failed: " + cudaGetErrorString(status) +
                                  " (" + file + ":" + std::to_string(line) + ")");
  }
}

// Whether `stream` is being captured into a CUDA graph: host-side allocations and copies from
// pageable memory cannot be recorded, so callers turn them into a clear error instead.
inline bool stream_is_capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  check_cuda(cudaStreamIsCapturing(stream, &status), "cudaStreamIsCapturing", __FILE__, __LINE__);
  return status != cudaStreamCaptureStatusNone;
}

}  // namespace wideattn::cuda

#define WIDEATTN_CUDA_CHECK(call) ::wideattn::cuda::check_cuda((call), #call, __FILE__, __LINE__)
// After every kernel launch: catches bad configurations immediately.
#define WIDEATTN_CUDA_CHECK_LAUNCH(name) \
  ::wideattn::cuda::check_cuda(cudaGetLastError(), "launch of " name, __FILE__, __LINE__)
