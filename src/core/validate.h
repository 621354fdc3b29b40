// Argument checks for every public entry point. Each failure throws detail::Error with a
// message naming the function, the argument, its value and what was expected.
#pragma once

#include "wideattn/attention.h"
#include "wideattn/components.h"
#include "wideattn/write_kv.h"

namespace wideattn::detail {

// `backend` decides which head dims are allowed (the CPU takes any multiple of 8 up to 512).
// `check_block_table`: read the (host) block table's entries on the CPU backend; off when the
// lengths are bounds rather than the call's own (entries past a real length may be anything).
void validate_problem(const char* function, const AttentionProblem& problem, Backend backend,
                      bool check_block_table = true);
void validate_matmul(const MatmulArguments& args);
void validate_softmax(const SoftmaxArguments& args);
void validate_scatter_scores(const ScatterScoresArguments& args);
void validate_scatter_values(const ScatterValuesArguments& args);
void validate_merge_states(const MergeStatesArguments& args);
// `backend` decides whether the slot mapping is host memory that validation reads (the CPU).
void validate_write_kv(const WriteKvArguments& args, Backend backend);

}  // namespace wideattn::detail
