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

// Upper bounds of every call that one plan serves: plan once, run many times with metadata that
// lives on the device and changes between calls (CUDA graph replay, see attention_planned).
struct ProblemBounds {
  int64_t max_total_tokens = 0;  // query rows of any call (q, out and lse hold this many rows);
                                 // at most batch x max_suffix
  int32_t max_suffix = 0;        // longest suffix: 1 to 8 (decode and speculative steps)
  int64_t max_kv_length = 0;     // longest kv_length: max_suffix to the cache's sequence capacity
  // Optional device int32, zeroed by the caller: a run ORs kMetadata* bits into it for every
  // sequence whose metadata breaks these bounds. Such a sequence is not computed (its rows of
  // out and lse are unspecified) and nothing outside the problem's tensors is read or written.
  int32_t* errors = nullptr;
};

// Bits of ProblemBounds::errors.
inline constexpr int32_t kMetadataQueryOffsets = 1;  // offsets decrease, start < 0 or pass max_total_tokens
inline constexpr int32_t kMetadataSuffix = 2;        // a suffix above max_suffix
inline constexpr int32_t kMetadataKvLength = 4;      // kv_length < suffix or > max_kv_length

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
  // Made from bounds (plan_attention with ProblemBounds): attention_planned runs it with device
  // metadata for any call within `bounds` over `batch` sequence slots.
  bool device_metadata = false;
  ProblemBounds bounds;
  int32_t batch = 0;
};

// Pure: validates `problem` and chooses the kernel (or checks `forced`) for `device`.
// Used by attention(), by workspace sizing and by the CLI.
Status plan_attention(const AttentionProblem& problem, const DeviceInfo& device, Kernel forced,
                      Plan* plan);

// Plans from upper bounds only: `problem` describes the tensors and `problem.batch` sequence
// slots (a padded slot has suffix 0), but its query_offsets and kv_lengths are not read (they
// may be device pointers). Decode and speculative steps (max_suffix <= 8) on the decode kernels;
// `forced` may be automatic, single_pass or two_pass. The plan's workspace covers every call
// within the bounds.
Status plan_attention(const AttentionProblem& problem, const ProblemBounds& bounds,
                      const DeviceInfo& device, Kernel forced, Plan* plan);

// Runs a plan made from bounds. problem.query_offsets [batch + 1] and kv_lengths [batch] live on
// the Context's device (host memory on the CPU backend) and are read by the kernels only: on
// CUDA the host reads none of them, allocates nothing and does not synchronise, so the call can
// be captured into a CUDA graph once and replayed with the metadata (and block tables) rewritten
// in place between replays. The tensors (and their strides) must be those the plan was made for
// or others within the same bounds. Run the call once outside the capture (it sizes the
// Context's workspace). The CPU backend checks the metadata against the bounds and returns an
// error naming the entry; CUDA reports through bounds.errors and skips the sequence.
Status attention_planned(Context& context, const AttentionProblem& problem, const Plan& plan);

// Computes attention for `problem` on `context`'s device and stream. `forced` runs a specific
// kernel (tests and benchmarks); automatic lets plan_attention choose. Asynchronous on CUDA.
Status attention(Context& context, const AttentionProblem& problem,
                 Kernel forced = Kernel::automatic, Plan* plan_used = nullptr);

}  // namespace wideattn
