// The f64 oracle: plain, obviously-correct implementations of the whole problem and of each
// component, on host memory. Tests compare every backend against these; the CLI uses
// attention_row to report the error of a run on sampled rows.
#pragma once

#include <cstdint>
#include <vector>

#include "wideattn/components.h"
#include "wideattn/problem.h"

namespace wideattn::reference {

// Attention of one query row (global token index `token`, query head `head`) of `problem`,
// whose tensors (q, k, v, sinks, tree arrays) are all on the host. Writes head_dim values to
// `out_row` and returns the row's LSE (natural log of the normaliser, sink included; -inf when
// the row sees no key and has no sink, in which case out_row is all zeros).
double attention_row(const AttentionProblem& problem, int64_t token, int32_t head, double* out_row);

// Every row: out is dense [total_tokens, q_heads, head_dim], lse dense [total_tokens, q_heads].
void attention(const AttentionProblem& problem, std::vector<double>* out, std::vector<double>* lse);

}  // namespace wideattn::reference
