// The prefill pipeline's read of a paged KV cache on CUDA (BackendImpl::gather_kv_rows).
#pragma once

#include <cuda_runtime.h>

#include "core/backend.h"

namespace wideattn::cuda {

// Copies the rows of `args` (K and V of one sequence and KV head) through the device block
// table into dense [rows, head_dim] buffers, on `stream`. Throws detail::Error.
void launch_gather_kv_rows(const detail::GatherKvArguments& args, cudaStream_t stream);

}  // namespace wideattn::cuda
