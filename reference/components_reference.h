// f64 oracles of the building blocks in wideattn/components.h and of the mask predicate,
// written from the comments in components.h and problem.h. Every pointer in the arguments is
// host memory. Results come back dense, in the order documented on each function, so a test
// can gather the backend's (possibly strided) output into the same order and compare.
#pragma once

#include <cstdint>
#include <vector>

#include "wideattn/components.h"
#include "wideattn/problem.h"

namespace wideattn::reference {

// Whether suffix query t sees cache row i of a sequence with the given prefix and suffix
// lengths, straight from MaskSpec's comment in problem.h (tree pointers already offset to the
// sequence's first row). Written apart from src/core/mask.h so that each checks the other.
bool key_visible(const MaskSpec& spec, int64_t prefix_length, int64_t suffix_length, int64_t t,
                 int64_t i);

// D of every batch, dense [batch, m, n]. Reads the old D (accumulate) from args.d.
std::vector<double> matmul(const MatmulArguments& args);

struct SoftmaxResult {
  std::vector<double> output;  // dense [rows, cols]
  std::vector<double> lse;     // [rows]
};
SoftmaxResult softmax(const SoftmaxArguments& args);

// dst, dense [heads, rows, cols]; -inf where the mask hides the key.
std::vector<double> scatter_scores(const ScatterScoresArguments& args);

// The values written to out, dense [rows, heads, head_dim] (exact f64 of src).
std::vector<double> scatter_values(const ScatterValuesArguments& args);

struct MergeStatesResult {
  std::vector<double> out;  // dense [tokens, heads, head_dim]
  std::vector<double> lse;  // dense [tokens, heads]
};
// Straight from MergeStatesArguments' comment: live states (lse_s > -inf) weighted by
// exp(lse_s - lse); no live state gives zeros and -inf.
MergeStatesResult merge_states(const MergeStatesArguments& args);

}  // namespace wideattn::reference
