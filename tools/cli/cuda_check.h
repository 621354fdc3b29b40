// The CLI's CUDA runtime error check (CUDA builds only): a failed call becomes a LibraryError
// naming the call and the runtime's error.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "check.h"

namespace wideattn::cli {

inline void check_cuda(cudaError_t error, const char* what) {
  if (error != cudaSuccess) {
    throw LibraryError(StatusCode::internal, std::string(what) + ": " + cudaGetErrorName(error) +
                                                 " (" + cudaGetErrorString(error) + ")");
  }
}

}  // namespace wideattn::cli
