// Row-wise softmax with sinks and LSE (wideattn::softmax on CUDA).
#pragma once

#include <cuda_runtime.h>

#include "wideattn/components.h"

namespace wideattn::cuda {

// Launches the softmax of `args` (already validated) on `stream`. Throws detail::Error.
void launch_softmax(const SoftmaxArguments& args, cudaStream_t stream);

}  // namespace wideattn::cuda
