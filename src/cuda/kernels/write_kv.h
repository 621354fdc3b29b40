// A step's new K/V rows into the cache through a slot mapping (wideattn::write_kv on CUDA).
#pragma once

#include <cuda_runtime.h>

#include "wideattn/write_kv.h"

namespace wideattn::cuda {

// Launches the write of `args` (already validated) on `stream`. Throws detail::Error.
void launch_write_kv(const WriteKvArguments& args, cudaStream_t stream);

}  // namespace wideattn::cuda
