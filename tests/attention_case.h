// One attention problem as a test describes it, and the runner that builds it on a backend,
// runs one kernel and checks out and LSE against the f64 oracle.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "test_support.h"

namespace wideattn::test {

struct SequenceShape {
  int32_t suffix = 1;
  int32_t kv_length = 1;
};

struct AttentionCase {
  int32_t head_dim = 64;
  DType dtype = DType::f32;
  int32_t q_heads = 4;
  int32_t kv_heads = 2;
  std::vector<SequenceShape> sequences{{4, 40}};
  int64_t extra_capacity = 3;  // capacity = longest kv_length + this

  // Mask: MaskSpec's plain fields, plus a random DFS trie per sequence when `tree`, or these
  // explicit tree arrays (all sequences' rows, concatenated) when not empty.
  bool causal = true;
  int32_t window = 0;
  int32_t ring_length = 0;
  int32_t ring_offset = 0;
  bool tree = false;
  std::vector<int32_t> tree_start, tree_end, tree_height;

  float scale = kDefaultScale;
  float softcap = 0.0f;
  bool sinks = false;
  bool lse = true;

  // Layouts. Token-major and dense unless set.
  bool q_head_major = false;    // q [q_heads, tokens, head_dim]
  bool kv_head_major = false;   // cache [batch, kv_heads, capacity, head_dim]
  bool out_head_major = false;  // out [q_heads, tokens, head_dim], lse [q_heads, tokens]
  int64_t out_gap = 0;          // unwritten elements after every out row and every token/head
  int64_t lse_gap = 0;          // unwritten elements between LSE entries

  // Paged cache (page_size > 0): the same data scattered into the pages of K and V pools in
  // shuffled order (spare pages and unused slots hold NaN), read through a block table; the
  // oracle reads the contiguous original. kv_head_major gives head-major pages.
  int32_t page_size = 0;
  int64_t page_gap = 0;        // unused elements after every page (a page stride of any size)
  bool kv_one_tensor = false;  // K and V pages interleaved in one tensor [pages, 2, ...]
  // The first shared_prefix cache rows of every sequence equal sequence 0's (contiguous or
  // paged); paged, the whole pages among them are the same physical pages (prefix sharing).
  int32_t shared_prefix = 0;

  // fp8 cache (KvCache::fp8): K and V stored as e4m3 with random scales in [0.25, 4], one per
  // pool or one per KV head; the oracle reads the stored values times the scales.
  bool fp8_kv = false;
  bool kv_scales_per_head = false;
  double input_range = 1.0;  // q, k, v uniform in [-input_range, input_range]
  // Cache slots past each sequence's kv_length hold NaN (stale cache): no kernel may let them
  // reach an output (0 x NaN is NaN, so masking the score alone is not enough).
  bool nan_past_kv_length = false;

  int64_t total_tokens() const;
  std::string describe() const;
};

// The trie of a speculative-decoding tree: each node's parent lies on the path from the root
// to the node before it, so node indices are a DFS order. Appends start/end/height of `nodes`
// nodes (indices local to the sequence).
void append_random_trie(std::mt19937_64& rng, int32_t nodes, std::vector<int32_t>* start,
                        std::vector<int32_t>* end, std::vector<int32_t>* height);

struct AttentionOutcome {
  Plan plan;
  std::vector<double> out, lse;          // what the backend wrote, dense [tokens, q_heads(, d)]
  std::vector<double> ref_out, ref_lse;  // the oracle's
};

// How check_attention runs the call; empty: wideattn::attention.
using AttentionRunner =
    std::function<Status(Context&, const AttentionProblem&, Kernel, Plan*)>;

// Builds `c` on `context`'s device, runs attention with `kernel` and checks: out against the
// oracle (relative L2, tolerance of c.dtype), LSE (absolute), rows that see nothing are
// exactly zero, and nothing outside out and lse (guards, gaps) was written.
void check_attention(Context& context, std::mt19937_64& rng, const AttentionCase& c, Kernel kernel,
                     AttentionOutcome* outcome = nullptr, const AttentionRunner& runner = {});

// Runs `kernel` on a CPU `context` over a problem whose tensors are host memory (p.out is `out`,
// p.lse is `lse`) and checks out and LSE against the oracle with the dtype's tolerances.
void check_host_attention(Context& context, const AttentionProblem& p, Kernel kernel,
                          const HostTensor& out, const std::vector<float>& lse);

// An AttentionRunner that runs `problem` the serving way: its metadata copied to the device, a
// plan from bounds (longest suffix 8, or the capacity if smaller; the cache's capacity), then
// attention_planned. On CUDA the bounds' error word must stay 0.
Status run_from_bounds(Context& context, const AttentionProblem& problem, Kernel kernel, Plan* plan);

// Absolute LSE tolerance for a problem stored in `dtype`.
double lse_tolerance(DType dtype);

}  // namespace wideattn::test
