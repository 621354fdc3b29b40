// Which CUDA decode kernel serves a problem: the wgmma kernel (head_dim 512 over an fp8 cache,
// sm_90a: src/cuda/kernels/decode_wgmma.cuh) or the mma.sync one. Pure and CUDA-free: dispatch
// names the choice in the plan's reason, and run_decode launches by the same answer.
#pragma once

#include <cstdint>

#include "wideattn/context.h"
#include "wideattn/problem.h"

namespace wideattn::detail {

// Null when the wgmma decode kernel runs `problem` (valid) on `device`, with at most
// `max_suffix` new tokens per sequence; otherwise why not. A static string: every CUDA decode
// call asks, twice (dispatch and the launcher), so the answer allocates nothing.
const char* decode_wgmma_unsupported(const AttentionProblem& problem, const DeviceInfo& device, int64_t max_suffix);

}  // namespace wideattn::detail
