// Mixed batches: decode steps and prefill chunks in one call. Dispatch cuts the batch into runs
// of consecutive sequences of one kind and gives each run its own kernel, so decode rows stream
// K/V at the decode kernels' rate instead of filling 1-token tiles of the prefill kernel.
#pragma once

#include <cstdint>
#include <vector>

#include "wideattn/problem.h"

namespace wideattn::detail {

// At most this many runs: past it (decode and prefill sequences interleaved), one kernel serves
// the whole batch, since every run costs a launch sequence.
inline constexpr int32_t kMaxMixedRuns = 8;

struct SequenceRun {
  int32_t first_sequence = 0;
  int32_t sequences = 0;
  bool decode = false;  // every suffix <= the decode kernels' limit
};

// The runs of consecutive sequences whose suffixes are all <= max_decode_suffix, or all longer
// (empty sequences join the run before them). One run when the batch is not mixed.
std::vector<SequenceRun> sequence_runs(const AttentionProblem& problem, int64_t max_decode_suffix);

// Sequences [first, first + count) of `problem` as a problem of their own: the same tensors,
// pointers advanced to the run's first query row and first sequence (or block-table row), and
// query offsets rebased to 0 in `offsets` (which must outlive the result). No data is copied.
AttentionProblem sequence_range(const AttentionProblem& problem, int32_t first, int32_t count,
                                std::vector<int32_t>& offsets);

}  // namespace wideattn::detail
