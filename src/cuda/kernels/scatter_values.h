// Group-major f32 results into token-major output rows (wideattn::scatter_values on CUDA).
#pragma once

#include <cuda_runtime.h>

#include "wideattn/components.h"

namespace wideattn::cuda {

// Launches the scatter of `args` (already validated) on `stream`. Throws detail::Error.
void launch_scatter_values(const ScatterValuesArguments& args, cudaStream_t stream);

}  // namespace wideattn::cuda
