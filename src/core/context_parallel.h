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

// Throws invalid_argument for a group outside [1, kMaxMergeStates] ranks, a rank outside it, or
// no communicator for several ranks (`function` names the caller).
void validate_group(const char* function, const ContextParallelGroup& group);

// context_parallel_prefill's scratch: this rank's K then V rows (`mine`, 4c rows), the gathered
// ranks' (world_size x mine, from `gathered`), and the sequence's K then V in position order
// (from `sequence`, 2 x 2 world_size c rows). Offsets in bytes.
struct ContextParallelPrefillScratch {
  int64_t chunk = 0;                 // c, tokens a chunk
  std::size_t row_bytes = 0;         // one token's keys (kv_heads x head_dim elements)
  std::size_t mine_bytes = 0, gathered = 0, sequence = 0, total = 0;
};
ContextParallelPrefillScratch context_parallel_prefill_scratch(const AttentionProblem& problem, int32_t world_size);

// The prefill's halves, apart for the tests as above: validate and pack this rank's K and V
// rows into the scratch (`mine`), then, once the ranks' rows are gathered, put them in sequence
// order and attend this rank's two query chunks.
void context_parallel_prefill_pack(Context& context, const ContextParallelGroup& group,
                                   const ContextParallelPrefillArguments& args);
void context_parallel_prefill_attend(Context& context, const ContextParallelGroup& group,
                                     const ContextParallelPrefillArguments& args);

}  // namespace wideattn::detail
