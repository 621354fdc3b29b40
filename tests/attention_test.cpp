// attention() through every kernel on every backend against the f64 oracle: head dims,
// dtypes, GQA, masks, sinks, soft-capping, scale, awkward sizes, rows that see no key and
// non-dense layouts. Each test samples its cross product; check_attention checks out, LSE,
// exact zeros for empty rows and untouched guards and gaps.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

#include "attention_case.h"
#include "test_support.h"

namespace wideattn::test {
namespace {

class AttentionTest : public ::testing::TestWithParam<std::tuple<Backend, Kernel>> {
 protected:
  void SetUp() override { session_.start(backend()); }
  void TearDown() override { session_.stop(); }
  Backend backend() const { return std::get<0>(GetParam()); }
  Kernel kernel() const { return std::get<1>(GetParam()); }
  std::mt19937_64& session_rng() { return session_.rng; }
  void check(const AttentionCase& c, AttentionOutcome* outcome = nullptr) {
    check_attention(*session_.context, session_.rng, c, kernel(), outcome);
  }

 private:
  BackendSession session_;
};

constexpr DType kDtypes[] = {DType::f32, DType::f16, DType::bf16};

TEST_P(AttentionTest, HeadDimsAndDtypes) {
  std::vector<int32_t> head_dims{64, 128, 256, 512};
  if (backend() == Backend::cpu) {
    head_dims.push_back(72);  // the CPU takes any multiple of 8 up to 512
    head_dims.push_back(8);
  }
  int sample = 0;
  for (int32_t d : head_dims) {
    for (DType dtype : kDtypes) {
      AttentionCase c;
      c.head_dim = d;
      c.dtype = dtype;
      c.q_heads = 4;
      c.kv_heads = 2;
      // Every other case has a sequence long enough for automatic dispatch to pick prefill.
      c.sequences = {{3, 40}, {1, 17}};
      if (sample++ % 2 == 1) c.sequences.push_back({11, 30});
      check(c);
    }
  }
}

TEST_P(AttentionTest, GqaFactorsAndMqa) {
  const std::pair<int32_t, int32_t> heads[] = {{4, 4}, {8, 4}, {8, 2}, {16, 2}, {6, 1}};
  int sample = 0;
  for (auto [q_heads, kv_heads] : heads) {
    AttentionCase c;
    c.head_dim = sample % 2 ? 128 : 256;
    c.dtype = kDtypes[sample % 3];
    c.q_heads = q_heads;
    c.kv_heads = kv_heads;
    c.sequences = {{2, 33}, {9, 20}};
    check(c);
    ++sample;
  }
}

TEST_P(AttentionTest, CausalWithPrefixAndBidirectional) {
  for (bool causal : {true, false}) {
    AttentionCase c;
    c.causal = causal;
    c.dtype = causal ? DType::bf16 : DType::f32;
    c.head_dim = 128;
    c.sequences = {{5, 50}, {12, 12}, {1, 9}};
    check(c);
  }
}

TEST_P(AttentionTest, SlidingWindows) {
  const struct {
    bool causal;
    int32_t window;
  } windows[] = {{true, 16}, {false, 16}, {false, 7}, {true, 1}};
  int sample = 0;
  for (auto w : windows) {
    AttentionCase c;
    c.causal = w.causal;
    c.window = w.window;
    c.dtype = kDtypes[sample++ % 3];
    c.head_dim = 256;
    c.sequences = {{4, 70}, {13, 40}, {1, 1}};
    check(c);
  }
}

TEST_P(AttentionTest, RingCache) {
  AttentionCase ring;
  ring.ring_length = 20;
  ring.ring_offset = 13;  // every prefix below is longer than 13
  ring.head_dim = 128;
  ring.dtype = DType::f16;
  ring.sequences = {{3, 45}, {10, 30}, {1, 18}};
  check(ring);
  AttentionCase windowed = ring;  // window on logical positions
  windowed.window = 12;
  windowed.dtype = DType::f32;
  check(windowed);
  AttentionCase live = ring;  // a ring longer than the prefix hides nothing
  live.ring_length = 64;
  live.ring_offset = 5;
  live.dtype = DType::bf16;
  check(live);
}

TEST_P(AttentionTest, SpeculativeTree) {
  AttentionCase tree;
  tree.tree = true;
  tree.head_dim = 128;
  tree.dtype = DType::bf16;
  tree.sequences = {{7, 40}, {12, 30}, {1, 5}};
  check(tree);
  AttentionCase windowed = tree;
  windowed.window = 24;  // positions come from tree heights
  windowed.dtype = DType::f32;
  check(windowed);
}

TEST_P(AttentionTest, SinksSoftcapAndScale) {
  AttentionCase sinks;
  sinks.sinks = true;
  sinks.dtype = DType::bf16;
  sinks.head_dim = 128;
  sinks.sequences = {{4, 30}, {10, 25}};
  check(sinks);

  AttentionCase softcap;
  softcap.softcap = 5.0f;
  softcap.scale = 1.0f;  // large logits, so the cap matters
  softcap.head_dim = 256;
  softcap.dtype = DType::f32;
  softcap.sequences = {{2, 40}, {9, 20}};
  check(softcap);

  AttentionCase gemma;  // Gemma 4 global layers: d 512, scale 1.0, GQA 8
  gemma.scale = 1.0f;
  gemma.head_dim = 512;
  gemma.q_heads = 8;
  gemma.kv_heads = 1;
  gemma.dtype = DType::bf16;
  gemma.input_range = 0.25;
  gemma.sequences = {{1, 60}, {10, 30}};
  check(gemma);

  AttentionCase together = sinks;
  together.softcap = 20.0f;
  together.scale = 0.3f;
  together.window = 9;
  together.dtype = DType::f16;
  check(together);
}

// Logits in the hundreds: the softmax must subtract its running maximum (one-hot rows), and a
// dominant sink must leave the output near zero with LSE near the sink.
TEST_P(AttentionTest, ExtremeLogitsStayFinite) {
  AttentionCase c;
  c.scale = 1.0f;
  c.input_range = 4.0;  // |q.k| up to a few hundred at head_dim 256
  c.head_dim = 256;
  c.dtype = DType::bf16;
  c.sequences = {{3, 200}, {10, 60}};
  check(c);
  c.sinks = true;
  c.scale = 0.001f;  // logits near 0 next to sinks in [-1, 3]
  c.dtype = DType::f32;
  check(c);
}

// One long sequence: many KV splits in two_pass, long key loops elsewhere.
TEST_P(AttentionTest, LongKvCache) {
  AttentionCase c;
  c.head_dim = 128;
  c.dtype = DType::bf16;
  c.q_heads = 8;
  c.kv_heads = 1;
  c.sequences = {{1, 16384}, {4, 5000}};
  check(c);
}

TEST_P(AttentionTest, AwkwardSizes) {
  const std::vector<std::vector<SequenceShape>> shapes = {
      {{1, 1}}, {{8, 54}}, {{9, 97}}, {{1, 1025}}, {{8, 1025}, {9, 9}}};
  int sample = 0;
  for (const auto& sequences : shapes) {
    AttentionCase c;
    c.sequences = sequences;
    c.head_dim = sample % 2 ? 64 : 512;
    c.dtype = kDtypes[sample % 3];
    c.q_heads = 8;
    c.kv_heads = 2;
    check(c);
    ++sample;
  }
}

TEST_P(AttentionTest, BatchOfSeventeenWithVariedLengths) {
  std::mt19937_64 lengths(17);  // the shapes are fixed; the data still comes from the run seed
  AttentionCase c;
  c.sequences.clear();
  for (int b = 0; b < 17; ++b) {
    const int32_t suffix = b == 3 ? 0 : b % 5 == 0 ? 9 + b : 1 + static_cast<int32_t>(lengths() % 8);
    const int32_t kv = b == 3 ? 0 : suffix + static_cast<int32_t>(lengths() % 120);
    c.sequences.push_back({suffix, kv});
  }
  c.head_dim = 128;
  c.dtype = DType::bf16;
  c.q_heads = 8;
  c.kv_heads = 4;
  check(c);
  // All decode-sized: automatic dispatch stays on single/two_pass.
  for (SequenceShape& s : c.sequences) s.suffix = std::min(s.suffix, 1 + s.suffix % 8);
  c.dtype = DType::f16;
  check(c);
}

// Rows that see no key: tree entries that no query lies inside hide the suffix keys, and a
// ring plus a window hide the prefix. Such rows must give zeros and LSE -inf (or the sink).
TEST_P(AttentionTest, RowsThatSeeNoKey) {
  AttentionCase c;
  c.head_dim = 64;
  c.dtype = DType::f32;
  c.window = 10;
  c.ring_length = 5;
  c.ring_offset = 3;
  // Sequence 0: no prefix, no suffix key visible to anyone: every row is empty.
  // Sequence 1: prefix 20 (hidden: every query sits at >= 20, live ring slots at logical < 5);
  //             row 2 sits at height 15, beyond the window of key 0, and sees nothing.
  // Sequence 2: an ordinary row mix with a visible ring.
  c.sequences = {{3, 3}, {4, 24}, {2, 10}};
  c.tree_start = {1, 2, 3, /**/ 0, 1, 3, 3, /**/ 0, 1};
  c.tree_end = {0, 1, 2, /**/ 3, 1, 2, 3, /**/ 1, 0};
  c.tree_height = {0, 1, 2, /**/ 0, 1, 15, 2, /**/ 0, 0};
  for (bool sinks : {false, true}) {
    c.sinks = sinks;
    AttentionOutcome outcome;
    check(c, &outcome);
    if (::testing::Test::HasFatalFailure()) return;
    // The oracle agrees on which rows are empty: tokens 0, 1, 2 and 5.
    const double minus_infinity = -std::numeric_limits<double>::infinity();
    for (int64_t token = 0; token < c.total_tokens(); ++token) {
      const bool empty = token <= 2 || token == 5;
      for (int32_t h = 0; h < c.q_heads; ++h) {
        const double lse = outcome.ref_lse[token * c.q_heads + h];
        if (!sinks) {
          EXPECT_EQ(lse == minus_infinity, empty) << "token " << token << " head " << h;
        }
      }
    }
  }
}

TEST_P(AttentionTest, NonDenseLayouts) {
  AttentionCase c;
  c.head_dim = 128;
  c.dtype = DType::bf16;
  c.sequences = {{3, 21}, {10, 40}};
  c.q_head_major = true;  // the reference design's Q layout
  check(c);
  c.q_head_major = false;
  c.kv_head_major = true;
  c.extra_capacity = 9;
  c.dtype = DType::f16;
  check(c);
  c.kv_head_major = false;
  c.out_gap = 5;  // strided out: gaps after every row and every token
  c.lse_gap = 2;
  c.dtype = DType::f32;
  check(c);
  c.out_head_major = true;
  c.q_head_major = true;
  c.dtype = DType::bf16;
  check(c);
}

TEST_P(AttentionTest, EmptyBatchWritesNothing) {
  AttentionCase c;
  c.sequences = {{0, 5}, {0, 0}, {0, 12}};  // no query rows at all
  check(c);
}

TEST_P(AttentionTest, WithoutLse) {
  AttentionCase c;
  c.lse = false;
  c.dtype = DType::bf16;
  c.head_dim = 256;
  c.sequences = {{2, 30}, {10, 12}};
  check(c);
}

// A random draw from the whole cross product (shapes, dtypes, masks, sinks, softcap, scale,
// layouts), different every run; the failure message names the case and the seed.
AttentionCase random_case(std::mt19937_64& rng, Backend backend) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  AttentionCase c;
  std::vector<int32_t> head_dims{64, 128, 256, 512};
  if (backend == Backend::cpu) head_dims.insert(head_dims.end(), {8, 16, 72, 136, 320});
  c.head_dim = head_dims[pick(0, static_cast<int>(head_dims.size()) - 1)];
  c.dtype = kDtypes[pick(0, 2)];
  c.kv_heads = 1 << pick(0, 2);
  c.q_heads = c.kv_heads << pick(0, 3);
  c.sequences.clear();
  const int batch = pick(1, 5);
  const bool decode = pick(0, 1) == 1;  // keep automatic dispatch on both sides
  for (int b = 0; b < batch; ++b) {
    const int32_t suffix = decode ? pick(1, 8) : pick(0, 24);
    c.sequences.push_back({suffix, suffix + pick(0, 150)});
  }
  c.causal = pick(0, 3) != 0;
  if (pick(0, 2) == 0) c.window = pick(1, 64);
  int32_t shortest_prefix = std::numeric_limits<int32_t>::max();
  for (const SequenceShape& s : c.sequences) {
    if (s.kv_length > s.suffix) shortest_prefix = std::min(shortest_prefix, s.kv_length - s.suffix);
  }
  if (shortest_prefix != std::numeric_limits<int32_t>::max() && pick(0, 3) == 0) {
    c.ring_length = pick(1, shortest_prefix + 5);
    c.ring_offset = pick(0, shortest_prefix - 1);
  }
  c.tree = pick(0, 3) == 0;
  c.sinks = pick(0, 2) == 0;
  if (pick(0, 3) == 0) c.softcap = 10.0f;
  switch (pick(0, 2)) {
    case 0: c.scale = kDefaultScale; break;
    case 1: c.scale = 1.0f; c.input_range = 0.3; break;
    default: c.scale = 0.05f; break;
  }
  c.lse = pick(0, 4) != 0;
  c.q_head_major = pick(0, 3) == 0;
  c.kv_head_major = pick(0, 3) == 0;
  c.out_head_major = pick(0, 4) == 0;
  c.out_gap = pick(0, 1) ? pick(1, 3) : 0;
  c.lse_gap = pick(0, 1) ? pick(1, 2) : 0;
  c.extra_capacity = pick(0, 9);
  return c;
}

TEST_P(AttentionTest, RandomProblems) {
  for (int draw = 0; draw < 12; ++draw) {
    const AttentionCase c = random_case(session_rng(), backend());
    check(c);
    if (::testing::Test::HasFailure()) return;  // one failing draw is enough to report
  }
}

std::string attention_param_name(const ::testing::TestParamInfo<std::tuple<Backend, Kernel>>& info) {
  return std::string(to_string(std::get<0>(info.param))) + "_" + to_string(std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(BackendsAndKernels, AttentionTest,
                         ::testing::Combine(::testing::Values(Backend::cpu, Backend::cuda),
                                            ::testing::Values(Kernel::automatic, Kernel::single_pass,
                                                              Kernel::two_pass, Kernel::prefill_unfused)),
                         attention_param_name);

// Long prefill that the CPU splits into several chunks of query rows (the scratch bound), with
// a window so that later chunks start past key 0.
using PrefillTest = BackendTest;

TEST_P(PrefillTest, SpansSeveralChunks) {
  AttentionCase c;
  c.head_dim = 64;
  c.dtype = DType::bf16;
  c.q_heads = 8;
  c.kv_heads = 1;
  c.window = 300;
  c.sequences = {{520, 4100}, {1, 70}};
  AttentionOutcome outcome;
  check_attention(context(), rng(), c, Kernel::automatic, &outcome);
  const bool fused = backend() == Backend::cuda && context().device().compute_capability == 90;
  EXPECT_EQ(outcome.plan.kernel, fused ? Kernel::prefill_fused : Kernel::prefill_unfused)
      << outcome.plan.reason;
  if (backend() == Backend::cpu) {
    EXPECT_LT(outcome.plan.query_rows_per_chunk, 520) << "expected several chunks";
  }
}

WA_INSTANTIATE_BACKENDS(PrefillTest);

}  // namespace
}  // namespace wideattn::test
