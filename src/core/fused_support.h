// Whether the fused Hopper prefill kernel (src/cuda/fused) serves a problem on a device. Pure and
// CUDA-free: dispatch asks it, and the CUDA launcher relies on its answer.
#pragma once

#include <cstdint>
#include <string>

#include "wideattn/context.h"
#include "wideattn/problem.h"

namespace wideattn::detail {

// Empty when the fused kernel can run `problem` on `device`; otherwise why not (for the plan's
// reason). `problem` must already be valid.
std::string fused_prefill_unsupported(const AttentionProblem& problem, const DeviceInfo& device);

// KV splits of a fused prefill: 1, or more when its query tiles alone would leave SMs idle (a
// chunk of a few hundred tokens: each tile's key range is then cut into that many parts, and
// the decode merge kernel combines them). `problem` must be one the fused kernel serves.
int32_t fused_prefill_splits(const AttentionProblem& problem, const DeviceInfo& device);

// Whether a fused prefill with `splits` KV splits runs 64-row tiles whose key tiles the two
// consumer warpgroups of each CTA take in turn (alternate_keys, head_dim 512's pair only, plain
// masks): when its 128-row tiles are no more than the pairs, which would leave the longest
// causal tile's walk setting the time. Off with kv_splits set (batch-invariant) or KV splits.
bool fused_prefill_alternate_keys(const AttentionProblem& problem, const DeviceInfo& device, int32_t splits);

// One line for the plan's reason: tile shape and GQA packing of the kernel chosen.
std::string fused_prefill_summary(const AttentionProblem& problem);

}  // namespace wideattn::detail
