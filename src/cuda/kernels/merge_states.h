// Partial attention states combined through their LSE (wideattn::merge_states on CUDA).
#pragma once

#include <cuda_runtime.h>

#include "wideattn/components.h"

namespace wideattn::cuda {

// Launches the merge of `args` (already validated) on `stream`. Throws detail::Error.
void launch_merge_states(const MergeStatesArguments& args, cudaStream_t stream);

}  // namespace wideattn::cuda
