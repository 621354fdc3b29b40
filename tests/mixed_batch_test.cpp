// Mixed batches (decode steps, speculative steps and prefill chunks in one call): automatic
// dispatch gives each run of sequences its own kernel. Checked against the f64 oracle on every
// layout the runs' pointer arithmetic touches, and bitwise against the same runs called alone.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "attention_case.h"
#include "test_support.h"

namespace wideattn::test {
namespace {

using MixedBatchTest = BackendTest;

// 24-style decode sequences, a speculative step, and two prefill chunks on long prefixes.
AttentionCase mixed_case(Backend backend) {
  AttentionCase c;
  c.dtype = backend == Backend::cuda ? DType::bf16 : DType::f32;
  c.head_dim = 128;
  c.q_heads = 8;
  c.kv_heads = 2;
  c.sequences = {{1, 300}, {1, 77}, {4, 129}, {1, 1}, {70, 260}, {33, 33}, {1, 150}, {8, 400}};
  return c;
}

void expect_mixed_plan(const AttentionOutcome& outcome) {
  // decode 0-3, prefill 4-5, decode 6-7
  ASSERT_EQ(outcome.plan.parts.size(), 3u) << outcome.plan.reason;
  EXPECT_EQ(outcome.plan.parts[1].first_sequence, 4);
  EXPECT_EQ(outcome.plan.parts[1].sequences, 2);
}

TEST_P(MixedBatchTest, MatchesTheOracleOnEveryLayout) {
  for (int variant = 0; variant < 7; ++variant) {
    AttentionCase c = mixed_case(backend());
    switch (variant) {
      case 0: break;
      case 1: c.sinks = true, c.softcap = 30.0f, c.window = 64; break;
      case 2: c.q_head_major = c.out_head_major = c.kv_head_major = true; break;
      case 3: c.out_gap = 3, c.lse_gap = 2; break;
      case 4: c.page_size = 16, c.page_gap = 8; break;
      case 5: c.page_size = 64, c.kv_head_major = true, c.shared_prefix = 40; break;
      case 6: c.nan_past_kv_length = true, c.causal = true; break;
    }
    SCOPED_TRACE(c.describe());
    AttentionOutcome outcome;
    check_attention(context(), rng(), c, Kernel::automatic, &outcome);
    expect_mixed_plan(outcome);
  }
}

// Trees index their arrays by query row: each run must see its own rows' entries.
TEST_P(MixedBatchTest, SpeculativeTreesNextToPrefillChunks) {
  AttentionCase c = mixed_case(backend());
  c.tree = true;
  AttentionOutcome outcome;
  check_attention(context(), rng(), c, Kernel::automatic, &outcome);
  expect_mixed_plan(outcome);
}

// The caller's way of doing the same work: one call per run of sequences, each a problem of its
// own (tensors offset to the run, query offsets rebased).
Status call_per_run(Context& context, const AttentionProblem& p, Kernel kernel, Plan* plan) {
  Status status = plan_attention(p, context.device(), kernel, plan);
  if (!status.ok()) return status;
  if (plan->parts.empty()) return Status(StatusCode::internal, "not a mixed plan: " + plan->reason);
  for (const PlanPart& part : plan->parts) {
    AttentionProblem run = p;
    const int64_t row = p.query_offsets[part.first_sequence];
    std::vector<int32_t> offsets;
    for (int32_t b = 0; b <= part.sequences; ++b) {
      offsets.push_back(p.query_offsets[part.first_sequence + b] - static_cast<int32_t>(row));
    }
    const int64_t es = static_cast<int64_t>(dtype_size(p.dtype));
    run.batch = part.sequences;
    run.query_offsets = offsets.data();
    run.kv_lengths = p.kv_lengths + part.first_sequence;
    run.q = static_cast<const char*>(p.q) + row * p.q_token_stride * es;
    run.out = static_cast<char*>(p.out) + row * p.out_token_stride * es;
    if (p.lse) run.lse = p.lse + row * p.lse_token_stride;
    if (p.mask.tree_start) {
      run.mask.tree_start = p.mask.tree_start + row;
      run.mask.tree_end = p.mask.tree_end + row;
      run.mask.tree_height = p.mask.tree_height + row;
    }
    if (p.kv.paged()) {
      run.kv.block_table = p.kv.block_table + part.first_sequence * p.kv.block_table_stride;
    } else {
      run.kv.k = static_cast<const char*>(p.kv.k) + part.first_sequence * p.kv.k_sequence_stride * es;
      run.kv.v = static_cast<const char*>(p.kv.v) + part.first_sequence * p.kv.v_sequence_stride * es;
    }
    Plan alone;
    status = attention(context, run, kernel, &alone);
    if (!status.ok()) return status;
    if (alone.kernel != part.kernel || alone.num_splits != part.num_splits) {
      return Status(StatusCode::internal, "run planned differently alone: " + alone.reason);
    }
  }
  return Status();
}

TEST_P(MixedBatchTest, SameBitsAsOneCallPerRun) {
  for (const int32_t page_size : {0, 32}) {
    AttentionCase c = mixed_case(backend());
    c.page_size = page_size;
    c.sinks = true;
    SCOPED_TRACE(c.describe());
    std::mt19937_64 same = rng();
    AttentionOutcome together, apart;
    check_attention(context(), rng(), c, Kernel::automatic, &together);
    check_attention(context(), same, c, Kernel::automatic, &apart, call_per_run);
    expect_mixed_plan(together);
    EXPECT_EQ(together.out, apart.out);
    EXPECT_EQ(together.lse, apart.lse);
  }
}

WA_INSTANTIATE_BACKENDS(MixedBatchTest);

}  // namespace
}  // namespace wideattn::test
