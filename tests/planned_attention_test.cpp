// Plans from bounds and attention_planned (serving: plan once, run many with metadata on the
// device): oracle checks on every backend, the bounds' errors, and, on CUDA, one captured graph
// replayed over decode steps whose lengths, offsets and padded slots are rewritten in place.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <utility>
#include <cstdint>
#include <string>
#include <vector>

#include "attention_case.h"
#include "test_support.h"

#ifdef WIDEATTN_WITH_CUDA
#include <cuda_runtime.h>

#include "capturable_stream_test.h"
#endif

namespace wideattn::test {
namespace {

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

// ---- CUDA: one captured graph, replayed over decode steps ----------------------------------------
#ifdef WIDEATTN_WITH_CUDA

using PlannedGraphTest = CapturableStreamTest;

// One decode step's host metadata over the slots.
struct Step {
  std::vector<int32_t> offsets, lengths, table;
};

std::vector<double> download(const void* device, DType dtype, int64_t elements) {
  HostTensor host(dtype, elements);
  EXPECT_EQ(cudaMemcpy(host.data(), device, host.bytes(), cudaMemcpyDeviceToHost), cudaSuccess);
  std::vector<double> values(static_cast<std::size_t>(elements));
  for (int64_t i = 0; i < elements; ++i) values[i] = host.get(i);
  return values;
}

// A paged 31B-style decode (bf16, head_dim 512, 32/4 heads, sinks) over 5 slots: the graph is
// captured once from a plan made from bounds; between replays the offsets, lengths and block
// table are rewritten in place (lengths grow, slots go idle and come back, pages move). Every
// replay matches the eager call with host metadata and the same split count; the rows past the
// step's tokens keep what they held; a length past the bounds is reported in the error word and
// leaves the other sequences right.
TEST_F(PlannedGraphTest, OneCapturedDecodeServesEveryStep) {
  constexpr int32_t kSlots = 5, kPageSize = 16, kPagesPerSlot = 40, kMaxSuffix = 2;
  constexpr int64_t kMaxTokens = kSlots * kMaxSuffix, kMaxKv = kPageSize * kPagesPerSlot;
  AttentionProblem p;
  p.batch = kSlots;
  p.q_heads = 32;
  p.kv_heads = 4;
  p.head_dim = 512;
  p.dtype = DType::bf16;
  const int64_t num_pages = int64_t{kSlots} * kPagesPerSlot + 17;  // spare pages
  const std::size_t es = dtype_size(p.dtype);
  const int64_t q_elements = kMaxTokens * p.q_heads * p.head_dim;
  const int64_t pool_elements = num_pages * kPageSize * p.kv_heads * p.head_dim;
  auto q = to_device(context(), random_tensor(rng(), p.dtype, q_elements).data(), q_elements * es);
  auto k = to_device(context(), random_tensor(rng(), p.dtype, pool_elements).data(), pool_elements * es);
  auto v = to_device(context(), random_tensor(rng(), p.dtype, pool_elements).data(), pool_elements * es);
  DeviceMemory out(context(), q_elements * es), eager_out(context(), q_elements * es);
  DeviceMemory lse(context(), kMaxTokens * p.q_heads * sizeof(float));
  DeviceMemory eager_lse(context(), kMaxTokens * p.q_heads * sizeof(float));
  DeviceMemory offsets(context(), (kSlots + 1) * sizeof(int32_t)), lengths(context(), kSlots * sizeof(int32_t));
  DeviceMemory table(context(), int64_t{kSlots} * kPagesPerSlot * sizeof(int32_t));
  DeviceMemory errors(context(), sizeof(int32_t));
  ASSERT_EQ(cudaMemset(errors.get(), 0, sizeof(int32_t)), cudaSuccess);
  const std::vector<float> sink_values{0.5f, -1.0f, 2.0f, 0.0f, 1.0f, -0.5f, 0.25f, 3.0f,
                                       0.5f, -1.0f, 2.0f, 0.0f, 1.0f, -0.5f, 0.25f, 3.0f,
                                       0.5f, -1.0f, 2.0f, 0.0f, 1.0f, -0.5f, 0.25f, 3.0f,
                                       0.5f, -1.0f, 2.0f, 0.0f, 1.0f, -0.5f, 0.25f, 3.0f};
  auto sinks = to_device(context(), sink_values.data(), sink_values.size() * sizeof(float));
  set_paged_kv(p, k->get(), v->get(), num_pages, kPageSize, static_cast<const int32_t*>(table.get()),
               kPagesPerSlot);
  p.out_token_stride = p.q_heads * p.head_dim;
  p.out_head_stride = p.head_dim;
  p.q_token_stride = p.q_heads * p.head_dim;
  p.q_head_stride = p.head_dim;
  p.lse_token_stride = p.q_heads;
  p.lse_head_stride = 1;
  p.q = q->get();
  p.sinks = static_cast<const float*>(sinks->get());
  p.scale = 1.0f;
  AttentionProblem planned = p;
  planned.query_offsets = static_cast<const int32_t*>(offsets.get());
  planned.kv_lengths = static_cast<const int32_t*>(lengths.get());
  planned.out = out.get();
  planned.lse = static_cast<float*>(lse.get());

  ProblemBounds bounds;
  bounds.max_total_tokens = kMaxTokens;
  bounds.max_suffix = kMaxSuffix;
  bounds.max_kv_length = kMaxKv;
  bounds.errors = static_cast<int32_t*>(errors.get());
  Plan plan;
  WA_ASSERT_OK(plan_attention(planned, bounds, context().device(), Kernel::automatic, &plan));

  // The steps: lengths grow by each slot's suffix; slot 3 idles in step 2; pages are a fresh
  // permutation of the pool every step (the cache contents are whatever those pages hold).
  std::vector<int32_t> kv = {1, 300, 77, 500, 0};
  std::vector<Step> steps;
  const std::vector<std::vector<int32_t>> suffixes = {{1, 1, 1, 1, 0}, {2, 1, 1, 2, 1}, {1, 2, 2, 0, 1}, {1, 1, 1, 1, 1}};
  for (const auto& suffix : suffixes) {
    Step st;
    st.offsets.push_back(0);
    for (int32_t s = 0; s < kSlots; ++s) {
      kv[s] += suffix[s];
      st.offsets.push_back(st.offsets.back() + suffix[s]);
      st.lengths.push_back(kv[s]);
    }
    std::vector<int32_t> pages(static_cast<std::size_t>(num_pages));
    for (int64_t i = 0; i < num_pages; ++i) pages[i] = static_cast<int32_t>(i);
    std::shuffle(pages.begin(), pages.end(), rng());
    st.table.assign(pages.begin(), pages.begin() + int64_t{kSlots} * kPagesPerSlot);
    steps.push_back(st);
  }
  auto write_step = [&](const Step& st) {
    ASSERT_EQ(cudaMemcpyAsync(offsets.get(), st.offsets.data(), st.offsets.size() * sizeof(int32_t),
                              cudaMemcpyHostToDevice, stream()), cudaSuccess);
    ASSERT_EQ(cudaMemcpyAsync(lengths.get(), st.lengths.data(), st.lengths.size() * sizeof(int32_t),
                              cudaMemcpyHostToDevice, stream()), cudaSuccess);
    ASSERT_EQ(cudaMemcpyAsync(table.get(), st.table.data(), st.table.size() * sizeof(int32_t),
                              cudaMemcpyHostToDevice, stream()), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream()), cudaSuccess);  // the host vectors may go
  };

  // Warm call (sizes the workspace), then one capture.
  write_step(steps[0]);
  WA_ASSERT_OK(attention_planned(context(), planned, plan));
  WA_ASSERT_OK(context().synchronize());
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeThreadLocal), cudaSuccess);
  const Status captured = attention_planned(context(), planned, plan);
  ASSERT_EQ(cudaStreamEndCapture(stream(), &graph), cudaSuccess);
  WA_ASSERT_OK(captured);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);

  const int64_t row = int64_t{p.q_heads} * p.head_dim;
  for (std::size_t i = 0; i <= steps.size(); ++i) {
    const bool bad = i == steps.size();  // the last replay: slot 1's length past the bounds
    Step st = bad ? steps.back() : steps[i];
    if (bad) st.lengths[1] = static_cast<int32_t>(kMaxKv + 5);
    SCOPED_TRACE("step " + std::to_string(i) + (bad ? " (slot 1 past max_kv_length)" : ""));
    write_step(st);
    ASSERT_EQ(cudaMemset(out.get(), 0x7f, q_elements * es), cudaSuccess);  // bf16 0x7f7f
    ASSERT_EQ(cudaGraphLaunch(exec, stream()), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream()), cudaSuccess);
    const int64_t tokens = st.offsets.back();
    const std::vector<double> got = download(out.get(), p.dtype, q_elements);
    const std::vector<double> got_lse = download(lse.get(), DType::f32, tokens * p.q_heads);
    int32_t reported = 0;
    ASSERT_EQ(cudaMemcpy(&reported, errors.get(), sizeof(int32_t), cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(reported, bad ? kMetadataKvLength : 0);

    // Eager reference: host metadata, the same split count (the same kernel), slot 1 valid.
    Step ref = st;
    if (bad) ref.lengths[1] = steps.back().lengths[1];
    AttentionProblem eager = p;
    eager.query_offsets = ref.offsets.data();
    eager.kv_lengths = ref.lengths.data();
    eager.out = eager_out.get();
    eager.lse = static_cast<float*>(eager_lse.get());
    eager.kv_splits = plan.num_splits;
    WA_ASSERT_OK(attention(context(), eager, Kernel::automatic));
    WA_ASSERT_OK(context().synchronize());
    const std::vector<double> want = download(eager_out.get(), p.dtype, q_elements);
    const std::vector<double> want_lse = download(eager_lse.get(), DType::f32, tokens * p.q_heads);
    const int64_t bad_first = ref.offsets[1], bad_end = ref.offsets[2];
    std::vector<double> a, b, la, lb;
    for (int64_t t = 0; t < tokens; ++t) {
      if (bad && t >= bad_first && t < bad_end) continue;  // slot 1's rows are unspecified
      a.insert(a.end(), got.begin() + t * row, got.begin() + (t + 1) * row);
      b.insert(b.end(), want.begin() + t * row, want.begin() + (t + 1) * row);
      la.insert(la.end(), got_lse.begin() + t * p.q_heads, got_lse.begin() + (t + 1) * p.q_heads);
      lb.insert(lb.end(), want_lse.begin() + t * p.q_heads, want_lse.begin() + (t + 1) * p.q_heads);
    }
    EXPECT_TRUE(close_rel_l2(a, b, relative_tolerance(p.dtype), flat_index_name()));
    EXPECT_TRUE(close_abs(la, lb, lse_tolerance(p.dtype), flat_index_name()));
    // Rows past the step's tokens were not written.
    const double untouched = got[q_elements - 1];
    EXPECT_GT(untouched, 1e38);
    for (int64_t x = tokens * row; x < q_elements; ++x) {
      if (got[x] != untouched) {
        ADD_FAILURE() << "out element " << x << " past the step's " << tokens << " tokens was written: " << got[x];
        break;
      }
    }
    if (bad) ASSERT_EQ(cudaMemset(errors.get(), 0, sizeof(int32_t)), cudaSuccess);
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

#endif  // WIDEATTN_WITH_CUDA

}  // namespace
}  // namespace wideattn::test
