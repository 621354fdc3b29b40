// Dispatch internals shared by plan_attention and the prefill pipeline.
#pragma once

#include <cstdint>

#include "wideattn/attention.h"

namespace wideattn::detail {

struct ProblemExtents {
  int64_t max_suffix = 0;      // longest suffix in the batch
  int64_t max_kv_length = 0;   // longest KV length in the batch
  int64_t total_tokens = 0;
};
ProblemExtents problem_extents(const AttentionProblem& problem);

// The dtype the prefill pipeline stores probabilities in before the P V matmul: the CPU
// multiplies in f32 (OpenBLAS sgemm); tensor cores take the model dtype.
DType probability_dtype(Backend backend, DType model_dtype);

// One kernel for the whole of `problem` (validated): automatic dispatch or `forced`'s checks.
Plan plan_one(const AttentionProblem& problem, const DeviceInfo& device, Kernel forced);

// KV splits that fill `device` for a decode problem (1: single_pass).
int32_t choose_splits(const AttentionProblem& problem, const DeviceInfo& device);

}  // namespace wideattn::detail
