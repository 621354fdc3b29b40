// Random data for a ProblemSpec on a Context: a KV cache (in several copies, so that timing
// can rotate through more bytes than the last-level cache holds), and one or more calls
// ("phases") on it: the first call of the spec, then optional decode steps that each add one
// token. Every phase keeps host copies of its inputs for the f64 oracle (a contiguous cache
// even when the device reads a paged one).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "device_buffer.h"
#include "problem_spec.h"
#include "wideattn/context.h"
#include "wideattn/problem.h"

namespace wideattn::cli {

struct Phase {
  std::string label;  // "prefill", "decode 3", ...
  ProblemSpec spec;   // prefix/suffix of this call
  std::vector<int32_t> query_offsets, kv_lengths;           // host metadata
  std::vector<int32_t> tree_start, tree_end, tree_height;   // host, [total_tokens] or empty
  std::vector<unsigned char> host_q;                        // [total_tokens, q_heads, head_dim]
  DeviceBuffer q, out, lse, tree;
  std::vector<AttentionProblem> device_problems;  // one per KV copy (same data)
  AttentionProblem host_problem;                  // host pointers: the oracle's view

  int64_t total_tokens() const { return query_offsets.back(); }
};

struct WorkloadOptions {
  uint64_t seed = 1;
  int32_t decode_steps = 0;   // single-token calls after the first call
  bool rotate_kv = true;      // copies of the KV cache totalling > 2x the last-level cache
  int32_t max_kv_copies = 32;
  bool fill = true;           // false: leave data uninitialised (planning only)
};

class Workload {
 public:
  // Allocates and fills everything. Throws UsageError when the problem does not fit the
  // device's memory, LibraryError when an allocation or copy fails.
  Workload(Context& context, const ProblemSpec& spec, const WorkloadOptions& options);

  Context& context() { return context_; }
  std::vector<std::unique_ptr<Phase>>& phases() { return phases_; }
  int32_t kv_copies() const { return static_cast<int32_t>(k_copies_.size()); }
  const ProblemSpec& spec() const { return spec_; }

 private:
  void build_phase(const std::string& label, const ProblemSpec& spec, uint64_t stream);

  Context& context_;
  ProblemSpec spec_;
  WorkloadOptions options_;
  int64_t capacity_ = 0;
  std::vector<unsigned char> host_k_, host_v_;  // [batch, capacity, kv_heads, head_dim]
  // Paged (spec.page_size > 0): the device copies are pools of batch * capacity / page_size
  // pages holding the host cache's pages in shuffled order, read through `table_`.
  std::vector<int32_t> host_table_;  // [batch, capacity / page_size]
  DeviceBuffer table_;
  std::vector<float> host_sinks_;
  std::vector<float> host_scales_;  // fp8 cache: K's and V's per-tensor scales
  std::vector<DeviceBuffer> k_copies_, v_copies_;
  DeviceBuffer sinks_;
  DeviceBuffer scales_;
  std::vector<std::unique_ptr<Phase>> phases_;
};

// Fills `count` elements of `dtype` with uniform values of standard deviation `stddev`.
void fill_random(void* data, DType dtype, std::size_t count, double stddev, uint64_t seed);

// A token tree over `length` nodes in DFS order (chain: a path; tree: random branching):
// start[j] = j, end[j] = last node of j's subtree, height[j] = depth.
void make_tree(TreeKind kind, int64_t length, uint64_t seed, int32_t* start, int32_t* end,
               int32_t* height);

}  // namespace wideattn::cli
