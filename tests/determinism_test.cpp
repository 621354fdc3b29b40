// Determinism (docs/reliability.md): the same inputs give bitwise-identical out and LSE on
// repeated calls, for every kernel and every KV split count, on one Context (its workspace
// reused) and on a fresh one. Every run is also checked against the f64 oracle by
// check_attention. CUDA cases skip without a GPU; prefill_fused runs on Hopper only.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "attention_case.h"
#include "core/backend.h"
#include "core/debug_options.h"
#include "core/error.h"
#include "core/workspace_layout.h"
#include "test_support.h"

namespace wideattn::test {
namespace {

// Same values and same bits (NaN payloads and the sign of zero included).
bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

std::string first_difference(const std::vector<double>& a, const std::vector<double>& b) {
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(double)) != 0) {
      return "element " + std::to_string(i) + ": " + std::to_string(a[i]) + " vs " + std::to_string(b[i]);
    }
  }
  return a.size() == b.size() ? "none" : "sizes differ";
}

// The cases: decode and prefill shapes, GQA and MQA, every mask feature, sinks, soft-cap.
std::vector<AttentionCase> cases(Kernel kernel) {
  std::vector<AttentionCase> all;
  const bool prefill = kernel == Kernel::prefill_unfused || kernel == Kernel::prefill_fused;
  for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    AttentionCase c;
    c.dtype = dtype;
    c.head_dim = dtype == DType::f32 ? 64 : 128;
    c.q_heads = 8;
    c.kv_heads = 2;
    c.sequences = prefill ? std::vector<SequenceShape>{{40, 200}, {9, 9}, {20, 300}}
                          : std::vector<SequenceShape>{{1, 2000}, {4, 700}, {8, 8}};
    c.sinks = true;
    c.softcap = dtype == DType::f16 ? 20.0f : 0.0f;
    all.push_back(c);
  }
  AttentionCase windowed = all[0];
  windowed.window = 100;
  windowed.q_heads = 4;
  windowed.kv_heads = 1;
  all.push_back(windowed);
  if (kernel != Kernel::prefill_fused) {  // no trees or rings in the fused kernel
    AttentionCase tree = all[2];
    tree.tree = true;
    all.push_back(tree);
    AttentionCase ring = all[1];
    ring.ring_length = 200;
    ring.ring_offset = 5;
    all.push_back(ring);
  }
  if (kernel == Kernel::prefill_fused) {
    for (AttentionCase& c : all) {
      if (c.dtype == DType::f32) c.dtype = DType::bf16;
      c.head_dim = 128;
    }
  }
  return all;
}

class DeterminismTest : public ::testing::TestWithParam<std::tuple<Backend, Kernel>> {
 protected:
  void SetUp() override {
    if (!session_.start(backend())) return;
    if (kernel() == Kernel::prefill_fused &&
        (backend() != Backend::cuda || session_.context->device().compute_capability != 90)) {
      GTEST_SKIP() << "prefill_fused needs a Hopper GPU";
    }
  }
  void TearDown() override { session_.stop(); }
  Backend backend() const { return std::get<0>(GetParam()); }
  Kernel kernel() const { return std::get<1>(GetParam()); }

  // Runs `c` `repeats` times on the test's Context and once on a fresh one, with the same
  // inputs (the generator is copied), and compares the bits.
  void check_repeatable(const AttentionCase& c, Kernel kernel, const AttentionRunner& runner = {}, int repeats = 3) {
    SCOPED_TRACE(c.describe());
    const std::mt19937_64 start = session_.rng;
    AttentionOutcome first;
    std::mt19937_64 rng = start;
    check_attention(*session_.context, rng, c, kernel, &first, runner);
    if (HasFailure()) return;
    for (int i = 1; i <= repeats; ++i) {
      AttentionOutcome again;
      rng = start;
      std::unique_ptr<Context> fresh;
      Context* context = session_.context.get();
      if (i == repeats) {  // the last repeat on a new Context: a cold workspace
        ASSERT_TRUE(Context::create(backend(), 0, nullptr, &fresh).ok());
        context = fresh.get();
      }
      check_attention(*context, rng, c, kernel, &again, runner);
      EXPECT_EQ(again.plan.num_splits, first.plan.num_splits);
      EXPECT_TRUE(same_bits(again.out, first.out)) << "run " << i << " out: " << first_difference(again.out, first.out);
      EXPECT_TRUE(same_bits(again.lse, first.lse)) << "run " << i << " lse: " << first_difference(again.lse, first.lse);
      if (HasFailure()) return;
    }
    session_.rng = rng;  // the next case draws new inputs
  }

  BackendSession session_;
};

TEST_P(DeterminismTest, RepeatedCallsGiveIdenticalBits) {
  for (const AttentionCase& c : cases(kernel())) {
    check_repeatable(c, kernel());
    if (HasFailure()) return;
  }
}

// two_pass at chosen split counts (plan_attention picks one per device; these force others),
// through the backend's decode entry with a hand-made plan.
TEST_P(DeterminismTest, EverySplitCountIsRepeatable) {
  if (kernel() != Kernel::two_pass) GTEST_SKIP() << "split counts are a two_pass parameter";
  for (int32_t splits : {2, 3, 5, 8, 17, 64}) {
    SCOPED_TRACE("num_splits " + std::to_string(splits));
    const AttentionRunner runner = [splits](Context& context, const AttentionProblem& p, Kernel, Plan* plan) {
      Status status = plan_attention(p, context.device(), Kernel::two_pass, plan);
      if (!status.ok()) return status;
      plan->num_splits = splits;
      plan->workspace_bytes = detail::decode_workspace_layout(p, splits).bytes;  // sized for this count
      return detail::guarded([&] {
        if (p.total_tokens() > 0) context.impl().decode(p, *plan);
      });
    };
    AttentionCase c = cases(Kernel::two_pass)[splits % 3];
    c.sequences = {{1, 3000}, {3, 65}, {8, 700}};
    check_repeatable(c, Kernel::two_pass, runner, 2);
    if (HasFailure()) return;
  }
}

// AttentionProblem::kv_splits fixes the split count (docs/reliability.md, batch-invariant
// serving): the first sequence's output is the same bits alone and inside the batch, whatever
// dispatch would have chosen for either; and each split count agrees with one split within the
// dtype's tolerance (check_attention also checks every run against the oracle). The fused
// prefill cuts each query tile's keys from that tile's own range: the same holds.
TEST_P(DeterminismTest, FixedKvSplitsAreBatchInvariant) {
  const bool fused = kernel() == Kernel::prefill_fused;
  if (kernel() != Kernel::two_pass && kernel() != Kernel::single_pass && !fused) {
    GTEST_SKIP() << "decode kernels and the fused prefill only (the unfused prefill has no splits)";
  }
  const std::vector<int32_t> split_counts = kernel() == Kernel::single_pass ? std::vector<int32_t>{1}
                                            : fused                         ? std::vector<int32_t>{2, 3, 8}
                                                                            : std::vector<int32_t>{2, 7, 64};
  for (int32_t splits : split_counts) {
    SCOPED_TRACE("kv_splits " + std::to_string(splits));
    bool same = false;
    std::string difference;
    const AttentionRunner runner = [&](Context& context, const AttentionProblem& p, Kernel k, Plan* plan) {
      AttentionProblem alone = p;
      alone.batch = 1;  // the first sequence only, the same buffers
      alone.kv_splits = splits;
      AttentionProblem whole = p;
      whole.kv_splits = splits;
      const std::size_t bytes = static_cast<std::size_t>(p.query_offsets[1]) * p.out_token_stride * dtype_size(p.dtype);
      std::vector<unsigned char> first(bytes), second(bytes);
      Status status = attention(context, alone, k);
      if (status.ok()) status = context.copy(first.data(), p.out, bytes, CopyKind::device_to_host);
      if (status.ok()) status = attention(context, whole, k, plan);
      if (status.ok()) status = context.copy(second.data(), p.out, bytes, CopyKind::device_to_host);
      same = first == second;
      if (!same) difference = "the first sequence's output differs alone and in the batch";
      return status;
    };
    AttentionCase c = cases(kernel())[2];  // bf16, sinks
    c.sequences = fused ? std::vector<SequenceShape>{{40, 1500}, {100, 4000}, {64, 300}, {20, 90}}
                        : std::vector<SequenceShape>{{3, 1500}, {1, 4000}, {8, 300}, {2, 9}};
    AttentionOutcome outcome;
    check_attention(*session_.context, session_.rng, c, kernel(), &outcome, runner);
    EXPECT_EQ(outcome.plan.num_splits, splits);
    EXPECT_TRUE(same) << difference;
    if (HasFailure()) return;
  }
}

TEST_P(DeterminismTest, SplitCountsAgreeWithinTolerance) {
  if (kernel() != Kernel::two_pass) GTEST_SKIP() << "split counts are a two_pass parameter";
  for (const AttentionCase& base : cases(Kernel::two_pass)) {
    AttentionCase c = base;
    c.sequences = {{1, 3000}, {4, 700}};
    const std::mt19937_64 start = session_.rng;
    std::vector<double> one_split;
    for (int32_t splits : {1, 2, 5, 16, 64}) {
      SCOPED_TRACE(c.describe() + ", kv_splits " + std::to_string(splits));
      const AttentionRunner runner = [splits](Context& context, const AttentionProblem& p, Kernel, Plan* plan) {
        AttentionProblem fixed = p;
        fixed.kv_splits = splits;
        return attention(context, fixed, Kernel::automatic, plan);
      };
      std::mt19937_64 rng = start;  // the same inputs for every split count
      AttentionOutcome outcome;
      check_attention(*session_.context, rng, c, Kernel::automatic, &outcome, runner);
      EXPECT_EQ(outcome.plan.num_splits, splits);
      if (splits == 1) {
        one_split = outcome.out;
      } else {
        EXPECT_TRUE(close_rel_l2(outcome.out, one_split, relative_tolerance(c.dtype), flat_index_name()))
            << "two_pass with " << splits << " splits against single_pass";
      }
      if (HasFailure()) return;
    }
  }
}

// The CUDA split pass merges its own splits where its grid can be resident at once and each CTA
// has at most one (row, slice) item to merge (cuda/kernels/decode_grid_merge.cuh); it must give
// the merge kernel's bits exactly (the same arithmetic), for every head_dim it is built at,
// sequences without rows, sinks and the LSE. CudaGraphTest checks that it runs (one kernel).
TEST_P(DeterminismTest, GridMergeGivesTheMergeKernelsBits) {
  if (backend() != Backend::cuda || kernel() != Kernel::two_pass) {
    GTEST_SKIP() << "the CUDA split pass's in-grid merge";
  }
  struct Restore {
    ~Restore() { detail::set_decode_grid_merge_override(-1); }
  } restore;
  for (int32_t head_dim : {128, 256, 512}) {
    for (int32_t splits : {2, 7, 64}) {
      AttentionCase c = cases(Kernel::two_pass)[head_dim == 256 ? 1 : 2];  // f16 soft-capped, bf16
      c.head_dim = head_dim;
      c.q_heads = head_dim == 128 ? 16 : 8;  // 128: two row blocks a (sequence, KV head)
      c.kv_heads = head_dim == 512 ? 2 : 1;
      // One new token a sequence: at most one merge item a CTA, so the split pass merges (a
      // sequence without rows among them); several: the merge kernel runs either way.
      c.sequences = splits == 2 ? std::vector<SequenceShape>{{1, 3000}, {0, 500}, {4, 700}, {3, 3}}
                                : std::vector<SequenceShape>{{1, 6000}, {0, 500}, {1, 700}, {1, 3}};
      SCOPED_TRACE(c.describe() + ", kv_splits " + std::to_string(splits));
      const std::mt19937_64 start = session_.rng;
      AttentionOutcome merged[2];
      for (int mode : {0, 1}) {
        detail::set_decode_grid_merge_override(mode);
        const AttentionRunner runner = [splits](Context& context, const AttentionProblem& p, Kernel, Plan* plan) {
          AttentionProblem fixed = p;
          fixed.kv_splits = splits;
          return attention(context, fixed, Kernel::two_pass, plan);
        };
        std::mt19937_64 rng = start;
        check_attention(*session_.context, rng, c, Kernel::two_pass, &merged[mode], runner);
        EXPECT_EQ(merged[mode].plan.num_splits, splits);
        if (HasFailure()) return;
        session_.rng = rng;
      }
      EXPECT_TRUE(same_bits(merged[1].out, merged[0].out)) << "out: " << first_difference(merged[1].out, merged[0].out);
      EXPECT_TRUE(same_bits(merged[1].lse, merged[0].lse)) << "lse: " << first_difference(merged[1].lse, merged[0].lse);
      if (HasFailure()) return;
    }
  }
}

std::string param_name(const ::testing::TestParamInfo<std::tuple<Backend, Kernel>>& info) {
  return std::string(to_string(std::get<0>(info.param))) + "_" + to_string(std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(BackendsAndKernels, DeterminismTest,
                         ::testing::Combine(::testing::Values(Backend::cpu, Backend::cuda),
                                            ::testing::Values(Kernel::single_pass, Kernel::two_pass,
                                                              Kernel::prefill_unfused, Kernel::prefill_fused)),
                         param_name);

}  // namespace
}  // namespace wideattn::test
