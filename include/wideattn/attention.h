// The main entry point, and the pure dispatch function it shares with workspace sizing and
// the CLI's report.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "wideattn/context.h"
#include "wideattn/problem.h"
#include "wideattn/status.h"
#include "wideattn/types.h"

namespace wideattn {

// What dispatch decided for one problem on one device.
struct Plan {
  Kernel kernel = Kernel::automatic;
  int32_t num_splits = 1;           // KV splits (two_pass); 1 otherwise
  int64_t query_rows_per_chunk = 0; // prefill_unfused: suffix tokens per chunk (bounds scratch)
  std::size_t workspace_bytes = 0;  // scratch the kernel needs
  std::string reason;               // one line: why this kernel
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
