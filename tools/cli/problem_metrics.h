// What a call costs, counted from the problem itself: visible query-key pairs (with the
// library's own mask predicate, so masks, windows, rings and trees are all counted exactly),
// the FLOPs of those pairs and the bytes a call must move.
#pragma once

#include <cstdint>

#include "wideattn/problem.h"

namespace wideattn::cli {

struct ProblemCost {
  int64_t visible_pairs = 0;  // (query row, key) pairs one head sees, summed over the batch
  double flops = 0;           // 4 * q_heads * visible_pairs * head_dim (Q K^T and P V)
  double bytes = 0;           // Q, and K/V rows some query sees, read; O (and LSE) written
};

// `problem` must have host metadata and host tree arrays (a Phase's host_problem).
// `writes_lse`: the call also writes the f32 LSE of every row.
ProblemCost problem_cost(const AttentionProblem& problem, bool writes_lse);

}  // namespace wideattn::cli
