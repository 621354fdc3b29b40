// The two halves of context_parallel_attention (include/wideattn/context_parallel.h), apart so
// that the tests can run several ranks in one process with the all-gather in between
// (tests/context_parallel_test.cpp): each rank's partial state into its scratch, then the
// gathered states merged into the output.
#pragma once

#include "wideattn/context_parallel.h"

namespace wideattn::detail {

// Where a rank's scratch holds its own partial state (out [tokens, heads, head_dim] of the
// problem's dtype, then lse [tokens, heads] f32: `state_bytes` in all) and the gathered ones
// (world_size states of state_bytes, from `gathered`).
struct ContextParallelScratch {
  std::size_t out_bytes = 0, state_bytes = 0, gathered = 0, total = 0;
};
ContextParallelScratch context_parallel_scratch(const AttentionProblem& problem, int32_t world_size);

// Validates the arguments, then attends this rank's shard into its partial state (throws
// detail::Error).
void context_parallel_local_state(Context& context, const ContextParallelGroup& group,
                                  const ContextParallelArguments& args);

// Merges the world_size states at scratch + gathered into the problem's out (and lse).
void context_parallel_merge(Context& context, const ContextParallelGroup& group, const ContextParallelArguments& args);

}  // namespace wideattn::detail
