// single_pass and two_pass decode on CUDA.
#pragma once

#include <cuda_runtime.h>

#include "wideattn/attention.h"
#include "wideattn/context.h"

namespace wideattn::cuda {

// Runs single_pass (plan.num_splits == 1) or two_pass (split-KV, then merge) for `problem`.
// `workspace` holds plan.workspace_bytes, laid out by detail::decode_workspace_layout; the
// sequence metadata is uploaded into it on `stream`. Throws detail::Error on failure.
void run_decode(const AttentionProblem& problem, const Plan& plan, const DeviceInfo& device,
                void* workspace, cudaStream_t stream);

}  // namespace wideattn::cuda
