// Plans from upper bounds (ProblemBounds) and the checks of a run that uses one
// (attention_planned): the serving path whose metadata lives on the device.
#pragma once

#include <cstdint>
#include <vector>

#include "wideattn/attention.h"

namespace wideattn::detail {

// Longest suffix a plan from bounds serves: the decode kernels' limit (Tuning::max_decode_suffix).
inline constexpr int32_t kMaxBoundedSuffix = 8;

// Host metadata that stands for the bounds: `batch` slots filled with suffixes of
// bounds.max_suffix up to bounds.max_total_tokens rows, every kv_length bounds.max_kv_length.
// Validation of the tensors' extents and the workspace size both see the largest call.
struct BoundMetadata {
  std::vector<int32_t> query_offsets, kv_lengths;
};

// `problem` with its metadata replaced by `storage`'s stand-in for `bounds` (which it checks:
// an invalid_argument or unsupported error names the bound).
AttentionProblem problem_at_bounds(const char* function, const AttentionProblem& problem,
                                   const ProblemBounds& bounds, BoundMetadata& storage);

Plan plan_from_bounds(const AttentionProblem& problem, const ProblemBounds& bounds,
                      const DeviceInfo& device, Kernel forced);

// attention_planned's checks before the launch: the plan is a bounded decode plan for this
// problem's slots, and the tensors are valid for calls up to the bounds. On the CPU backend
// (host metadata) also every sequence against the bounds, naming the entry.
void check_planned_run(const AttentionProblem& problem, const Plan& plan, Backend backend);

}  // namespace wideattn::detail
