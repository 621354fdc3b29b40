// Row-wise softmax with sinks and LSE (wideattn::softmax on CUDA).
#pragma once

#include <cuda_runtime.h>

#include "wideattn/components.h"

namespace wideattn::cuda {

// Masking applied while the softmax reads its input (the prefill pipeline's fused step): the
// element of row r (r % rows_per_block = query first_query + that) and column c (key first_key
// + c) is soft-capped when the mask shows the key, -inf when it hides it.
struct SoftmaxMask {
  SequenceMask mask;  // tree pointers are device pointers
  int64_t first_query = 0, first_key = 0;
  float softcap = 0.0f;  // > 0: softcap * tanh(x / softcap)
  // Device floats, null = 1 (detail::MaskedSoftmaxArguments): each element times *logit_scale
  // before the soft-cap, each probability times *probability_scale (not the LSE).
  const float* logit_scale = nullptr;
  const float* probability_scale = nullptr;
};

// Launches the softmax of `args` (already validated) on `stream`, masked by `mask` when it is
// given. Throws detail::Error.
void launch_softmax(const SoftmaxArguments& args, cudaStream_t stream,
                    const SoftmaxMask* mask = nullptr);

}  // namespace wideattn::cuda
