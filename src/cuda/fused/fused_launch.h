// Host side of the fused prefill: fills FusedParams (TMA descriptors, sorted per-sequence
// metadata) and launches the kernel of the problem's head_dim. One launch per call.
#pragma once

#include <cuda_runtime.h>

#include "wideattn/context.h"
#include "wideattn/problem.h"

namespace wideattn::fused {

// `problem` must be one that detail::fused_prefill_unsupported accepts.
void run_fused_prefill(const AttentionProblem& problem, const DeviceInfo& device, cudaStream_t stream);

}  // namespace wideattn::fused
