// The main entry point, and the pure dispatch function it shares with workspace sizing and
// the CLI's report.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "wideattn/context.h"
#include "wideattn/problem.h"
#include "wideattn/status.h"
#include "wideattn/types.h"

namespace wideattn {

// One kernel's share of a mixed batch: sequences [first_sequence, first_sequence + sequences).
struct PlanPart {
  int32_t first_sequence = 0;
  int32_t sequences = 0;
  Kernel kernel = Kernel::automatic;
  int32_t num_splits = 1;
  int64_t query_rows_per_chunk = 0;
  std::size_t workspace_bytes = 0;
};

// What dispatch decided for one problem on one device.
struct Plan {
  Kernel kernel = Kernel::automatic;
  int32_t num_splits = 1;           // KV splits (two_pass); 1 otherwise
  int64_t query_rows_per_chunk = 0; // prefill_unfused: suffix tokens per chunk (bounds scratch)
  std::size_t workspace_bytes = 0;  // scratch the kernel needs (the largest part's, when mixed)
  std::string reason;               // one line: why this kernel
  // A mixed batch under automatic dispatch (decode steps of at most 8 new tokens next to
  // prefill chunks): the runs of consecutive sequences that go to the decode and the prefill
  // kernels, in batch order, run one after the other on the stream. `kernel` and its fields
  // then describe the first prefill part. Empty: `kernel` serves the whole batch.
  std::vector<PlanPart> parts;
};

// Pure: validates `problem` and chooses the kernel (or checks `forced`) for `device`.
// Used by attention(), by workspace sizing and by the CLI.
Status plan_attention(const AttentionProblem& problem, const DeviceInfo& device, Kernel forced,
                      Plan* plan);

// Computes attention for `problem` on `context`'s device and stream. `forced` runs a specific
// kernel (tests and benchmarks); automatic lets plan_attention choose. Asynchronous on CUDA.
Status attention(Context& context, const AttentionProblem& problem,
                 Kernel forced = Kernel::automatic, Plan* plan_used = nullptr);

}  // namespace wideattn
