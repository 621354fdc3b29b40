// Host side of the fused prefill: fills FusedParams (TMA descriptors, sorted per-sequence
// metadata) and launches the kernel of the problem's head_dim. One launch per call.
#pragma once

#include <cuda_runtime.h>

#include "wideattn/attention.h"
#include "wideattn/context.h"
#include "wideattn/problem.h"

namespace wideattn::fused {

// `problem` must be one that detail::fused_prefill_unsupported accepts. With plan.num_splits > 1,
// `workspace` holds plan.workspace_bytes (detail::decode_workspace_layout) for the split
// tiles' partial states, which the decode merge kernel then combines (a second launch).
void run_fused_prefill(const AttentionProblem& problem, const Plan& plan, const DeviceInfo& device,
                       void* workspace, cudaStream_t stream);

}  // namespace wideattn::fused
