// recompute_nonfinite_products on CUDA (core/backend.h): the prefill pipeline's P V product
// without the keys of probability 0.
#pragma once

#include <cuda_runtime.h>

#include "wideattn/components.h"

namespace wideattn::cuda {

// After the GEMM `pv` (A = probabilities, B = V not transposed, same dtype; D = f32, no C):
// every element of D that is not finite becomes the sum over the keys whose probability is not
// 0. Launches on `stream`; throws detail::Error.
void launch_recompute_nonfinite_products(const MatmulArguments& pv, cudaStream_t stream);

}  // namespace wideattn::cuda
