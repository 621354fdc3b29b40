// What one attention call looks like, independent of where its data lives: every field a flag
// can set. The default is the Gemma 4 E4B global layer (8 query heads, 2 KV heads, head_dim 512,
// scale 1.0, causal) with a 2048-token prompt.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "args.h"
#include "wideattn/types.h"

namespace wideattn::cli {

enum class TreeKind { none, chain, tree };

struct ProblemSpec {
  std::string name;  // label in reports
  int32_t batch = 1;
  int32_t q_heads = 8;
  int32_t kv_heads = 2;
  int32_t head_dim = 512;
  DType dtype = DType::bf16;
  int64_t prefix = 0;    // cached tokens before the new ones (per sequence)
  int64_t suffix = 2048; // new tokens (per sequence)
  float scale = 1.0f;    // Gemma 4; NaN = 1/sqrt(head_dim)
  float softcap = 0.0f;
  int32_t window = 0;
  bool causal = true;
  int32_t ring_length = 0;
  int32_t ring_offset = 0;
  TreeKind tree = TreeKind::none;  // generated token tree over the suffix
  bool sinks = false;
  bool lse = false;
  int32_t page_size = 0;  // > 0: a paged cache, pages in shuffled order (0: contiguous)
  bool pages_in_order = false;  // paged: pool order instead of shuffled
  bool kv_fp8 = false;    // fp8 (e4m3) cache with per-tensor scales (KvCache::fp8)
  int32_t kv_splits = 0;  // AttentionProblem::kv_splits (0: the plan chooses)

  int64_t kv_length() const { return prefix + suffix; }
};

// The flags that set a ProblemSpec (shared by `run` and `info`).
std::vector<FlagSpec> problem_flags();

// Fills `spec` from the flags in `args`, starting from `spec`'s values. Throws UsageError.
void apply_problem_flags(const Args& args, ProblemSpec* spec);

DType parse_dtype(const std::string& text);      // f32, f16, bf16; UsageError otherwise
Kernel parse_kernel(const std::string& text);    // auto, single_pass, two_pass, prefill_unfused
Backend parse_backend(const std::string& text);  // cpu, cuda
const char* to_string(TreeKind tree);

// "b=1 heads 8/2 d=512 bf16 prefix 0 + suffix 2048 causal scale 1"
std::string describe(const ProblemSpec& spec);

}  // namespace wideattn::cli
