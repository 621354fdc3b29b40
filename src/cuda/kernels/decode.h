// single_pass and two_pass decode on CUDA.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "wideattn/attention.h"
#include "wideattn/context.h"

namespace wideattn::cuda {

// The in-grid merge's barrier words (cuda/kernels/decode_grid_merge.cuh): `count` 64-bit words,
// zeroed once by their owner (the backend) and left zero by every call; one a (sequence, KV
// head). Calls that share them must run in stream order, as calls that share a workspace do.
struct MergeBarriers {
  unsigned long long* words = nullptr;  // null: the merge kernel always
  int64_t count = 0;
};
inline constexpr int64_t kMergeBarrierWords = int64_t{1} << 14;  // (sequence, KV head) pairs

// Runs single_pass (plan.num_splits == 1) or two_pass (split-KV, then merge) for `problem`.
// `workspace` holds plan.workspace_bytes, laid out by detail::decode_workspace_layout; the
// sequence metadata is uploaded into it on `stream`. Throws detail::Error on failure.
void run_decode(const AttentionProblem& problem, const Plan& plan, const DeviceInfo& device,
                void* workspace, MergeBarriers barriers, cudaStream_t stream);

}  // namespace wideattn::cuda
