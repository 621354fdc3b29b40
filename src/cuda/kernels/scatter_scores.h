// Soft-capping and masking of one sequence's per-head scores (wideattn::scatter_scores on CUDA).
#pragma once

#include <cuda_runtime.h>

#include "wideattn/components.h"

namespace wideattn::cuda {

// Launches the scatter of `args` (already validated) on `stream`. Throws detail::Error.
void launch_scatter_scores(const ScatterScoresArguments& args, cudaStream_t stream);

}  // namespace wideattn::cuda
