// The fused Hopper prefill kernel (Kernel::prefill_fused) against the f64 oracle: awkward
// lengths, every mask (causal, bidirectional, windows, ring caches, speculative trees), GQA
// packings, sinks, soft-cap, LSE, strided layouts, varlen batches with prefixes, and NaN in the
// stale cache slots past each kv_length. CUDA on sm_90 only; elsewhere the tests skip and say why.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "attention_case.h"
#include "core/debug_options.h"
#include "test_support.h"

namespace wideattn::test {
namespace {

// (head_dim, dtype, alternate_keys: -1 as the call's size decides, 0 off, 1 wherever possible).
// At head_dim 512 most of these small problems have fewer 128-row tiles than the pairs, so
// automatic dispatch runs them with alternate_keys; the 0 and 1 instantiations keep both of the
// pair's kernels covered on every case.
class FusedPrefillTest : public ::testing::TestWithParam<std::tuple<int32_t, DType, int>> {
 protected:
  void SetUp() override {
    detail::set_fused_alternate_override(std::get<2>(GetParam()));
    if (!session_.start(Backend::cuda)) return;
    if (context().device().compute_capability != 90) {
      GTEST_SKIP() << "the fused prefill kernel is built for sm_90a; this device is sm_"
                   << context().device().compute_capability;
    }
  }
  void TearDown() override {
    session_.stop();
    detail::set_fused_alternate_override(-1);
  }
  Context& context() { return *session_.context; }
  std::mt19937_64& rng() { return session_.rng; }
  int32_t head_dim() const { return std::get<0>(GetParam()); }
  DType dtype() const { return std::get<1>(GetParam()); }

  AttentionCase base() const {
    AttentionCase c;
    c.head_dim = head_dim();
    c.dtype = dtype();
    c.q_heads = 8;
    c.kv_heads = 2;
    c.nan_past_kv_length = true;
    c.extra_capacity = 37;
    return c;
  }
  void check(const AttentionCase& c) {
    AttentionOutcome outcome;
    check_attention(context(), rng(), c, Kernel::prefill_fused, &outcome);
    EXPECT_EQ(outcome.plan.kernel, Kernel::prefill_fused) << outcome.plan.reason;
  }

 private:
  BackendSession session_;
};

TEST_P(FusedPrefillTest, CausalAwkwardLengths) {
  for (const SequenceShape s : {SequenceShape{9, 9}, SequenceShape{77, 77}, SequenceShape{129, 129},
                                SequenceShape{300, 1357}, SequenceShape{1000, 1000}}) {
    AttentionCase c = base();
    c.sequences = {s};
    check(c);
  }
}

TEST_P(FusedPrefillTest, Bidirectional) {
  AttentionCase c = base();
  c.causal = false;
  c.sequences = {{200, 333}, {65, 65}};
  check(c);
}

TEST_P(FusedPrefillTest, SlidingWindows) {
  for (const bool causal : {true, false}) {
    for (const int32_t window : {1, 2, 64, 127, 300}) {
      AttentionCase c = base();
      c.causal = causal;
      c.window = window;
      c.sequences = {{700, 900}, {130, 130}};
      check(c);
      if (HasFailure()) return;
    }
  }
}

TEST_P(FusedPrefillTest, GqaPackings) {
  // Query heads per KV head: 1, 2, 4, 8, 16 pack into one tile; 3 and 6 do not divide 128 rows
  // (each query head then has its own tiles).
  for (const auto heads : {std::pair{4, 4}, std::pair{8, 4}, std::pair{8, 2}, std::pair{16, 2},
                           std::pair{16, 1}, std::pair{6, 2}, std::pair{6, 1}}) {
    AttentionCase c = base();
    c.q_heads = heads.first;
    c.kv_heads = heads.second;
    c.sequences = {{150, 170}};
    check(c);
    if (HasFailure()) return;
  }
}

TEST_P(FusedPrefillTest, PagedCaches) {
  // Pages of 16 (four TMA boxes a 64-key tile), 64 and 128 tokens, shuffled, token- and
  // head-major, over a varlen batch with a prefix.
  for (const int32_t page_size : {16, 64, 128}) {
    AttentionCase c = base();
    c.sequences = {{150, 400}, {70, 70}, {9, 300}};
    c.page_size = page_size;
    c.kv_head_major = page_size == 64;
    check(c);
    if (HasFailure()) return;
  }
}

TEST_P(FusedPrefillTest, SinksSoftcapScaleNoLse) {
  AttentionCase c = base();
  c.sinks = true;
  c.softcap = 10.0f;
  c.scale = 1.0f;
  c.input_range = 0.5;
  c.sequences = {{260, 400}};
  check(c);
  c.lse = false;
  c.sinks = false;
  c.softcap = 0.0f;
  c.scale = 0.05f;
  check(c);
}

TEST_P(FusedPrefillTest, SplitKeyRangesOfFewTiles) {
  // Few query tiles over long key ranges (a chunk on a long prefix): the plan splits each
  // tile's keys and the merge combines the parts, applying sinks and writing LSE. Some parts
  // are empty or fully masked for some rows (windows), and the stale slots hold NaN.
  struct Shape {
    std::vector<SequenceShape> sequences;
    bool causal, sinks;
    int32_t window;
    float softcap;
  };
  const Shape shapes[] = {{{{64, 2000}}, true, true, 0, 0.0f},
                          {{{9, 3000}, {40, 1300}}, true, false, 700, 0.0f},
                          {{{100, 1500}}, false, true, 0, 15.0f},
                          {{{33, 2500}}, true, false, 90, 0.0f}};
  for (const Shape& shape : shapes) {
    AttentionCase c = base();
    c.sequences = shape.sequences;
    c.causal = shape.causal;
    c.sinks = shape.sinks;
    c.window = shape.window;
    c.softcap = shape.softcap;
    AttentionOutcome outcome;
    check_attention(context(), rng(), c, Kernel::prefill_fused, &outcome);
    if (std::get<2>(GetParam()) == 1) {  // alternate_keys instead of splits, where the mask allows
      EXPECT_EQ(outcome.plan.num_splits, 1) << outcome.plan.reason;
    } else {
      EXPECT_GT(outcome.plan.num_splits, 1) << outcome.plan.reason;
    }
    if (HasFailure()) return;
  }
}

TEST_P(FusedPrefillTest, RingCaches) {
  // A ring of `prefix` slots before the new tokens: the oldest slot anywhere (the window's live
  // slots then wrap around the ring's end: the walk skips the hole between its two runs of key
  // tiles), dead slots (ring_length < prefix), windows that hide the whole ring, and splits.
  struct Ring {
    std::vector<SequenceShape> sequences;
    int32_t ring_length, ring_offset, window;
    bool causal;
  };
  const Ring rings[] = {{{{200, 900}}, 700, 100, 300, true},   // live slots [601, 700) and [0, 100)
                        {{{200, 900}}, 700, 0, 0, true},       // no window: every slot
                        {{{130, 830}}, 450, 333, 0, true},     // dead slots, wrapped
                        {{{130, 830}}, 999, 699, 64, true},    // ring_length past the prefix
                        {{{77, 1100}, {300, 400}}, 90, 37, 150, false},
                        {{{300, 400}}, 100, 50, 20, true},     // later query tiles skip the whole ring
                        {{{24, 3000}}, 2900, 1234, 0, true},   // few query tiles: KV splits
                        {{{40, 2500}}, 2460, 2000, 700, true}};
  for (const Ring& ring : rings) {
    AttentionCase c = base();
    c.sequences = ring.sequences;
    c.ring_length = ring.ring_length;
    c.ring_offset = ring.ring_offset;
    c.window = ring.window;
    c.causal = ring.causal;
    c.sinks = ring.window == 0;
    check(c);
    if (HasFailure()) return;
  }
  AttentionCase paged = base();  // paged, head-major pages
  paged.sequences = {{150, 650}, {90, 1000}};
  paged.ring_length = 480;
  paged.ring_offset = 411;
  paged.window = 257;
  paged.page_size = 64;
  paged.kv_head_major = true;
  check(paged);
}

TEST_P(FusedPrefillTest, SpeculativeTrees) {
  // Random DFS tries of more than 8 nodes (the decode kernels take up to 8), on prefixes, with
  // windows (positions from the tree heights), a ring, sinks, soft-cap and KV splits.
  struct Tree {
    std::vector<SequenceShape> sequences;
    int32_t window, ring_length, ring_offset;
    bool causal;
  };
  const Tree trees[] = {{{{9, 9}}, 0, 0, 0, true},
                        {{{40, 500}, {150, 150}}, 0, 0, 0, true},
                        {{{64, 700}}, 30, 0, 0, true},
                        {{{129, 600}}, 100, 0, 0, false},
                        {{{33, 800}}, 200, 700, 333, true},
                        {{{17, 3000}}, 0, 0, 0, true}};  // few query tiles: KV splits
  for (const Tree& tree : trees) {
    AttentionCase c = base();
    c.sequences = tree.sequences;
    c.tree = true;
    c.window = tree.window;
    c.ring_length = tree.ring_length;
    c.ring_offset = tree.ring_offset;
    c.causal = tree.causal;
    c.sinks = tree.window == 0;
    if (tree.causal && tree.window == 0) c.softcap = 25.0f;
    check(c);
    if (HasFailure()) return;
  }
}

TEST_P(FusedPrefillTest, StridedLayouts) {
  AttentionCase c = base();
  c.q_head_major = true;
  c.kv_head_major = true;
  c.out_head_major = true;
  c.out_gap = 3;  // rows not 16-byte aligned: the epilogue's element-wise path
  c.lse_gap = 2;
  c.sequences = {{140, 200}, {33, 90}};
  check(c);
  c.out_head_major = false;
  c.out_gap = 8;
  check(c);
}

TEST_P(FusedPrefillTest, RandomVarlenBatches) {
  std::mt19937_64& r = rng();
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(r); };
  for (int draw = 0; draw < 6; ++draw) {
    AttentionCase c = base();
    const int batch = pick(1, 40);
    c.sequences.clear();
    for (int b = 0; b < batch; ++b) {
      const int suffix = pick(0, 5) == 0 ? pick(0, 8) : pick(9, 300);
      c.sequences.push_back({suffix, suffix + (pick(0, 1) ? pick(0, 500) : 0)});
    }
    SequenceShape& longest = c.sequences[pick(0, batch - 1)];  // at least one prefill
    longest.suffix = std::max(longest.suffix, 9);
    for (SequenceShape& s : c.sequences) s.kv_length = std::max(s.kv_length, s.suffix);
    c.causal = pick(0, 3) != 0;
    c.window = pick(0, 2) == 0 ? pick(1, 400) : 0;
    c.sinks = pick(0, 2) == 0;
    if (pick(0, 3) == 0) c.softcap = 20.0f;
    c.lse = pick(0, 4) != 0;
    c.q_head_major = pick(0, 3) == 0;
    c.kv_head_major = pick(0, 3) == 0;
    c.out_head_major = pick(0, 3) == 0;
    c.extra_capacity = pick(0, 70);
    static const std::pair<int, int> kHeads[] = {{8, 2}, {4, 1}, {16, 8}, {12, 4}, {6, 3}};
    const auto heads = kHeads[pick(0, 4)];
    c.q_heads = heads.first;
    c.kv_heads = heads.second;
    check(c);
    if (HasFailure()) return;
  }
}

TEST_P(FusedPrefillTest, AutomaticDispatchChoosesIt) {
  AttentionCase c = base();
  c.sequences = {{100, 100}};
  AttentionOutcome outcome;
  check_attention(context(), rng(), c, Kernel::automatic, &outcome);
  EXPECT_EQ(outcome.plan.kernel, Kernel::prefill_fused) << outcome.plan.reason;
  c.sequences = {{100, 400}};
  c.ring_length = 250;
  c.ring_offset = 120;
  check_attention(context(), rng(), c, Kernel::automatic, &outcome);
  EXPECT_EQ(outcome.plan.kernel, Kernel::prefill_fused) << outcome.plan.reason;
}

std::string fused_param_name(const ::testing::TestParamInfo<std::tuple<int32_t, DType, int>>& info) {
  const int alternate = std::get<2>(info.param);
  return "d" + std::to_string(std::get<0>(info.param)) + "_" + to_string(std::get<1>(info.param)) +
         (alternate < 0 ? "" : alternate ? "_alternate_keys" : "_whole_tiles");
}

INSTANTIATE_TEST_SUITE_P(HeadDimsAndTypes, FusedPrefillTest,
                         ::testing::Combine(::testing::Values(64, 128, 256, 512),
                                            ::testing::Values(DType::bf16, DType::f16), ::testing::Values(-1)),
                         fused_param_name);
INSTANTIATE_TEST_SUITE_P(PairModes, FusedPrefillTest,
                         ::testing::Combine(::testing::Values(512), ::testing::Values(DType::bf16, DType::f16),
                                            ::testing::Values(0, 1)),
                         fused_param_name);

}  // namespace
}  // namespace wideattn::test
