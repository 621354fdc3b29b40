#pragma once

#include "core/backend.h"

namespace wideattn::detail {

// The reference design's unfused prefill, built from the backend's components. For each
// sequence, chunk of suffix rows and KV head g:
//   1. matmul   scores[j] = scale * Q[rows, head g*gqa + j] K_g^T   (batched over j, K shared)
//   2-3. masked_softmax: soft-cap and mask, then softmax (sinks, LSE) into probabilities
//        (scatter_scores in place then softmax, unless the backend fuses them)
//   4. matmul   values[j] = P[j] V_g, over the keys of non-zero probability
//               (recompute_nonfinite_products: inf/NaN in a hidden V row stays out)
//   5. scatter_values into the token-major output
// Each chunk multiplies only against the key range its rows can see (causal / window skipping),
// and scratch is bounded by plan.query_rows_per_chunk.
void run_prefill_pipeline(BackendImpl& backend, const AttentionProblem& problem, const Plan& plan);

}  // namespace wideattn::detail
