// Plans from bounds and attention_planned (serving: plan once, run many with metadata on the
// device): oracle checks on every backend, the bounds' errors, and, on CUDA, one captured graph
// replayed over decode steps whose lengths, offsets and padded slots are rewritten in place.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "attention_case.h"
#include "test_support.h"

#ifdef WIDEATTN_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace wideattn::test {
namespace {

// Runs `problem` (host metadata, as check_attention builds it) the serving way: the metadata
// copied to the device, a plan from bounds (the longest suffix 8, the cache's capacity), then
// attention_planned. On CUDA the bounds' error word must stay 0.
Status run_from_bounds(Context& context, const AttentionProblem& problem, Kernel kernel, Plan* plan) {
  const int32_t batch = problem.batch;
  auto offsets = to_device(context, problem.query_offsets, (batch + 1) * sizeof(int32_t));
  auto lengths = to_device(context, problem.kv_lengths, batch * sizeof(int32_t));
  const int32_t zero = 0;
  auto errors = to_device(context, &zero, sizeof(int32_t));
  AttentionProblem on_device = problem;
  on_device.query_offsets = static_cast<const int32_t*>(offsets->get());
  on_device.kv_lengths = static_cast<const int32_t*>(lengths->get());
  ProblemBounds bounds;
  bounds.max_total_tokens = std::max<int64_t>(1, problem.total_tokens());
  bounds.max_suffix = 8;
  bounds.max_kv_length = problem.kv.sequence_capacity();
  bounds.errors = static_cast<int32_t*>(errors->get());
  Status status = plan_attention(on_device, bounds, context.device(), kernel, plan);
  if (status.ok()) status = attention_planned(context, on_device, *plan);
  if (status.ok()) status = context.synchronize();
  int32_t reported = 0;
  if (status.ok()) status = context.copy(&reported, errors->get(), sizeof(int32_t), CopyKind::device_to_host);
  if (status.ok() && reported != 0 && context.backend() == Backend::cuda) {
    return Status(StatusCode::internal, "bounds.errors = " + std::to_string(reported) + " for valid metadata");
  }
  return status;
}

using PlannedAttentionTest = BackendTest;

AttentionCase decode_slots(Backend backend) {
  AttentionCase c;
  c.dtype = backend == Backend::cuda ? DType::bf16 : DType::f32;
  c.head_dim = 128;
  c.q_heads = 8;
  c.kv_heads = 2;
  // Decode and speculative steps, padded slots (no new token) with and without a cache.
  c.sequences = {{1, 300}, {0, 0}, {4, 129}, {1, 1}, {8, 400}, {0, 17}, {2, 64}};
  return c;
}

TEST_P(PlannedAttentionTest, MatchesTheOracle) {
  for (int variant = 0; variant < 7; ++variant) {
    AttentionCase c = decode_slots(backend());
    Kernel kernel = Kernel::automatic;
    switch (variant) {
      case 0: break;
      case 1: c.sinks = true, c.softcap = 30.0f, c.window = 50; break;
      case 2: c.page_size = 16, c.kv_head_major = true, c.page_gap = 8; break;
      case 3: c.tree = true; break;
      case 4: c.nan_past_kv_length = true; break;
      case 5: kernel = Kernel::two_pass; break;
      case 6: c.out_gap = 3, c.lse_gap = 1, c.q_head_major = true; break;
    }
    SCOPED_TRACE(c.describe() + ", " + to_string(kernel));
    AttentionOutcome outcome;
    check_attention(context(), rng(), c, kernel, &outcome, run_from_bounds);
    EXPECT_TRUE(outcome.plan.device_metadata);
    EXPECT_EQ(outcome.plan.reason.rfind("from bounds", 0), 0u) << outcome.plan.reason;
    if (kernel == Kernel::two_pass) EXPECT_GE(outcome.plan.num_splits, 2);
  }
}

WA_INSTANTIATE_BACKENDS(PlannedAttentionTest);

// ---- bad plans, bounds and metadata (CPU: the host reads the metadata and names the entry) ----

struct HostDecode {
  explicit HostDecode(std::vector<int32_t> suffixes, std::vector<int32_t> kv) : lengths(std::move(kv)) {
    offsets.push_back(0);
    for (int32_t s : suffixes) offsets.push_back(offsets.back() + s);
    p.batch = static_cast<int32_t>(suffixes.size());
    p.q_heads = 4;
    p.kv_heads = 2;
    p.head_dim = 64;
    p.dtype = DType::f32;
    p.kv.capacity = 100;
    set_dense_strides(p);
    p.query_offsets = offsets.data();
    p.kv_lengths = lengths.data();
    q.assign(static_cast<std::size_t>(16) * 4 * 64, 0.5f);
    out.assign(q.size(), 7.0f);
    cache.assign(static_cast<std::size_t>(2) * p.batch * 100 * 2 * 64, 0.25f);
    p.q = q.data();
    p.out = out.data();
    p.kv.k = cache.data();
    p.kv.v = cache.data() + cache.size() / 2;
  }
  std::vector<int32_t> offsets, lengths;
  std::vector<float> q, out, cache;
  AttentionProblem p;
};

std::unique_ptr<Context> cpu_context() {
  std::unique_ptr<Context> context;
  EXPECT_TRUE(Context::create(Backend::cpu, 0, nullptr, &context).ok());
  return context;
}

ProblemBounds bounds_of(int64_t tokens, int32_t suffix, int64_t kv) {
  ProblemBounds b;
  b.max_total_tokens = tokens;
  b.max_suffix = suffix;
  b.max_kv_length = kv;
  return b;
}

TEST(PlannedAttention, BoundsAreChecked) {
  auto context = cpu_context();
  HostDecode d({1, 1, 2}, {10, 20, 30});
  Plan plan;
  EXPECT_TRUE(has_error(plan_attention(d.p, bounds_of(4, 9, 50), context->device(), Kernel::automatic, &plan),
                        StatusCode::unsupported, {"plan_attention", "bounds.max_suffix = 9", "prefill needs host metadata"}));
  EXPECT_TRUE(has_error(plan_attention(d.p, bounds_of(4, 0, 50), context->device(), Kernel::automatic, &plan),
                        StatusCode::invalid_argument, {"bounds.max_suffix = 0"}));
  EXPECT_TRUE(has_error(plan_attention(d.p, bounds_of(7, 2, 50), context->device(), Kernel::automatic, &plan),
                        StatusCode::invalid_argument, {"bounds.max_total_tokens = 7", "batch x bounds.max_suffix = 6"}));
  EXPECT_TRUE(has_error(plan_attention(d.p, bounds_of(4, 2, 101), context->device(), Kernel::automatic, &plan),
                        StatusCode::invalid_argument, {"bounds.max_kv_length = 101", "kv.capacity = 100"}));
  EXPECT_TRUE(has_error(plan_attention(d.p, bounds_of(4, 2, 50), context->device(), Kernel::prefill_unfused, &plan),
                        StatusCode::unsupported, {"forced = prefill_unfused", "decode kernels"}));
  EXPECT_TRUE(has_error(plan_attention(d.p, bounds_of(4, 2, 50), context->device(), Kernel::automatic, nullptr),
                        StatusCode::invalid_argument, {"plan_attention", "plan"}));
  // The tensors are checked at the bounds (here: out's heads would overlap).
  HostDecode bad_stride({1}, {10});
  bad_stride.p.out_head_stride = 3;
  EXPECT_TRUE(has_error(plan_attention(bad_stride.p, bounds_of(1, 1, 50), context->device(), Kernel::automatic, &plan),
                        StatusCode::invalid_argument, {"plan_attention", "out_head_stride = 3"}));
}

TEST(PlannedAttention, MetadataOutsideTheBoundsIsRejectedWithNothingWritten) {
  auto context = cpu_context();
  HostDecode d({1, 1, 2}, {10, 20, 30});
  Plan plan;
  WA_ASSERT_OK(plan_attention(d.p, bounds_of(4, 2, 50), context->device(), Kernel::automatic, &plan));
  EXPECT_TRUE(plan.device_metadata);
  EXPECT_EQ(plan.batch, 3);
  WA_ASSERT_OK(attention_planned(*context, d.p, plan));
  EXPECT_NE(d.out[0], 7.0f);
  struct Bad {
    std::vector<int32_t> suffixes, lengths;
    std::vector<std::string> fragments;
  };
  const Bad bad[] = {
      {{1, 1, 2}, {10, 51, 30}, {"kv_lengths[1] = 51", "bounds.max_kv_length = 50"}},
      {{1, 3, 0}, {10, 20, 30}, {"query_offsets[2] - query_offsets[1] = 3", "bounds.max_suffix = 2"}},
      {{2, 2, 1}, {10, 20, 30}, {"query_offsets[3] = 5", "bounds.max_total_tokens = 4"}},
      {{1, 1, 2}, {10, 20, 1}, {"kv_lengths[2] = 1", "suffix length 2"}},
  };
  for (const Bad& b : bad) {
    HostDecode e(b.suffixes, b.lengths);
    const Status status = attention_planned(*context, e.p, plan);
    EXPECT_EQ(status.code(), StatusCode::invalid_argument) << status.message();
    for (const std::string& fragment : b.fragments) {
      EXPECT_NE(status.message().find(fragment), std::string::npos) << status.message();
    }
    EXPECT_EQ(status.message().rfind("attention_planned: ", 0), 0u) << status.message();
    EXPECT_TRUE(std::all_of(e.out.begin(), e.out.end(), [](float x) { return x == 7.0f; }));
  }
  // A plan from host metadata, or for another number of slots.
  Plan host_plan;
  WA_ASSERT_OK(plan_attention(d.p, context->device(), Kernel::automatic, &host_plan));
  EXPECT_TRUE(has_error(attention_planned(*context, d.p, host_plan), StatusCode::invalid_argument,
                        {"attention_planned", "plan", "made from host metadata"}));
  HostDecode four({1, 1, 1, 1}, {10, 10, 10, 10});
  EXPECT_TRUE(has_error(attention_planned(*context, four.p, plan), StatusCode::invalid_argument,
                        {"attention_planned", "batch = 4", "3 sequence slots"}));
  // A plan made for fewer heads has too little workspace for this problem at its bounds.
  HostDecode wide({1, 1, 2}, {10, 20, 30});
  wide.p.kv_splits = 2;
  Plan split;
  WA_ASSERT_OK(plan_attention(wide.p, bounds_of(4, 2, 50), context->device(), Kernel::automatic, &split));
  HostDecode more_heads({1, 1, 2}, {10, 20, 30});
  more_heads.p.q_heads = 8;
  set_dense_strides(more_heads.p);
  more_heads.q.assign(static_cast<std::size_t>(16) * 8 * 64, 0.5f);
  more_heads.out.assign(more_heads.q.size(), 7.0f);
  more_heads.p.q = more_heads.q.data();
  more_heads.p.out = more_heads.out.data();
  EXPECT_TRUE(has_error(attention_planned(*context, more_heads.p, split), StatusCode::invalid_argument,
                        {"attention_planned", "plan.workspace_bytes"}));
}

}  // namespace
}  // namespace wideattn::test
