// The bugs the fuzz target found (docs/reliability.md, "Bugs found by this work"), one test
// each, so that the main suite (and its ASan+UBSan run) keeps them fixed without the fuzzer.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "attention_case.h"
#include "test_support.h"

namespace wideattn::test {
namespace {

std::unique_ptr<Context> cpu() {
  std::unique_ptr<Context> context;
  EXPECT_TRUE(Context::create(Backend::cpu, 0, nullptr, &context).ok());
  return context;
}

// 1. softmax with no columns takes null input and output (only sinks and LSE are written); the
// kernel offset the null pointers (UB under UBSan).
TEST(FuzzRegressions, SoftmaxWithoutColumnsAcceptsNullData) {
  auto context = cpu();
  std::vector<float> sinks{0.5f, -1.0f}, lse(6, 7.0f);
  SoftmaxArguments a;
  a.rows = 6;
  a.cols = 0;
  a.rows_per_block = 3;
  a.sinks = sinks.data();
  a.lse = lse.data();
  a.lse_block_stride = 3;
  a.lse_row_stride = 1;
  WA_ASSERT_OK(softmax(*context, a));
  for (int r = 0; r < 6; ++r) EXPECT_EQ(lse[r], sinks[r / 3]) << "row " << r;
  a.sinks = nullptr;
  WA_ASSERT_OK(softmax(*context, a));
  for (int r = 0; r < 6; ++r) EXPECT_EQ(lse[r], -std::numeric_limits<float>::infinity()) << "row " << r;
}

// 2. scatter_values must reject an out whose rows and heads land on the same cells.
TEST(FuzzRegressions, ScatterValuesRejectsSelfOverlappingOut) {
  auto context = cpu();
  std::vector<float> src(2 * 3 * 8, 1.0f), out(64, 5.0f);
  ScatterValuesArguments a;
  a.src = src.data();
  a.src_head_stride = 3 * 8;
  a.src_row_stride = 8;
  a.out = out.data();
  a.heads = 2;
  a.rows = 3;
  a.head_dim = 8;
  a.out_token_stride = 8;
  a.out_head_stride = 8;  // row 1 of head 0 is row 0 of head 1
  EXPECT_TRUE(has_error(scatter_values(*context, a), StatusCode::invalid_argument,
                        {"scatter_values", "out_head_stride = 8", "keeps out's elements apart"}));
  EXPECT_EQ(out, std::vector<float>(64, 5.0f));
  a.out_head_stride = 3 * 8;  // head-major: fine
  WA_EXPECT_OK(scatter_values(*context, a));
}

// 3. Validation arithmetic on huge arguments: rejected with a message, no signed overflow (UB
// under UBSan).
TEST(FuzzRegressions, ValidationSurvivesHugeArguments) {
  auto context = cpu();
  const int64_t huge = int64_t{1} << 62;
  std::vector<float> buffer(64, 0.0f), other(64, 0.0f);
  {
    ScatterScoresArguments a;
    a.scores = buffer.data();
    a.dst = other.data();
    a.heads = 2;
    a.rows = huge;
    a.cols = 4;
    a.scores_row_stride = a.dst_row_stride = 9;
    a.scores_head_stride = a.dst_head_stride = 9;
    a.mask.suffix_length = 4;
    EXPECT_TRUE(has_error(scatter_scores(*context, a), StatusCode::invalid_argument,
                          {"scatter_scores", "scores_head_stride"}));
    a.rows = 2;
    a.scores_head_stride = a.dst_head_stride = 18;
    a.first_query = huge;
    EXPECT_TRUE(has_error(scatter_scores(*context, a), StatusCode::invalid_argument, {"first_query"}));
    a.first_query = 0;
    a.mask.suffix_length = std::numeric_limits<int64_t>::max();  // rows past int64: rejected
    a.first_query = std::numeric_limits<int64_t>::max() - 1;
    EXPECT_TRUE(has_error(scatter_scores(*context, a), StatusCode::invalid_argument, {"first_query"}));
    a.mask.suffix_length = 4;
    a.first_query = 0;
    a.mask.prefix_length = std::numeric_limits<int64_t>::max();  // cache rows past int64
    a.first_key = huge;
    EXPECT_TRUE(has_error(scatter_scores(*context, a), StatusCode::invalid_argument, {"mask.prefix_length", "2^61"}));
    a.mask.prefix_length = (int64_t{1} << 61) - 4;  // the most cache rows; columns past int64
    a.first_key = std::numeric_limits<int64_t>::max() - 2;
    EXPECT_TRUE(has_error(scatter_scores(*context, a), StatusCode::invalid_argument, {"first_key"}));
    a.first_key = (int64_t{1} << 61) - 8;  // the last prefix rows of the longest cache: valid
    a.mask.spec.ring_length = 3;
    a.mask.spec.ring_offset = 5;
    WA_EXPECT_OK(scatter_scores(*context, a));
  }
  {
    ScatterValuesArguments a;
    a.src = buffer.data();
    a.out = other.data();
    a.heads = 2;
    a.rows = huge;
    a.head_dim = 8;
    a.src_row_stride = 16;
    a.src_head_stride = 16;
    a.out_token_stride = a.out_head_stride = 8;
    EXPECT_TRUE(has_error(scatter_values(*context, a), StatusCode::invalid_argument,
                          {"scatter_values", "src_head_stride"}));
  }
  {
    MatmulArguments a;
    a.a = buffer.data();
    a.b = buffer.data();
    a.d = other.data();
    a.m = huge;
    a.n = 2;
    a.k = 2;
    a.batch = 2;
    a.d_leading_dimension = 16;
    a.d_batch_stride = 1;
    EXPECT_TRUE(has_error(matmul(*context, a), StatusCode::invalid_argument, {"matmul", "overflows int64"}));
  }
  {
    SoftmaxArguments a;
    a.input = buffer.data();
    a.output = other.data();
    a.rows = 4;
    a.cols = 2;
    a.input_row_stride = a.output_row_stride = 2;
    a.rows_per_block = 2;
    a.lse = buffer.data() + 32;
    a.lse_block_stride = 1;
    a.lse_row_stride = std::numeric_limits<int64_t>::max();  // the LSE's own span overflows
    EXPECT_TRUE(has_error(softmax(*context, a), StatusCode::invalid_argument, {"softmax", "lse"}));
  }
}

// 4. Input rows may overlap (a token stride shorter than head_dim); prefill_unfused passed the
// stride to sgemm as a leading dimension, which OpenBLAS rejects (D left unwritten).
TEST(FuzzRegressions, OverlappingInputRowsRunOnEveryKernel) {
  auto context = cpu();
  std::mt19937_64 rng = test_rng();
  SCOPED_TRACE(seed_note());
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (Kernel kernel : {Kernel::single_pass, Kernel::two_pass, Kernel::prefill_unfused}) {
      SCOPED_TRACE(std::string(to_string(dtype)) + ", " + to_string(kernel));
      const int32_t q_heads = 4, kv_heads = 2, d = 24, tokens = 24;
      std::vector<int32_t> offsets{0, tokens}, lengths{tokens + 3};
      AttentionProblem p;
      p.batch = 1;
      p.q_heads = q_heads;
      p.kv_heads = kv_heads;
      p.head_dim = d;
      p.dtype = dtype;
      p.kv.capacity = tokens + 3;
      set_dense_strides(p);
      p.q_token_stride = 1;  // token t's row starts one element after token t-1's
      p.q_head_stride = d;
      p.kv.k_token_stride = 5;
      p.kv.k_head_stride = p.kv.capacity * 5 + d;
      p.kv.v_token_stride = d / 2;
      p.kv.v_head_stride = p.kv.capacity * d;
      p.query_offsets = offsets.data();
      p.kv_lengths = lengths.data();
      const HostTensor q = random_tensor(rng, dtype, (tokens - 1) + (q_heads - 1) * d + d);
      const HostTensor k = random_tensor(rng, dtype, (kv_heads - 1) * p.kv.k_head_stride + (p.kv.capacity - 1) * 5 + d);
      const HostTensor v = random_tensor(rng, dtype, (kv_heads - 1) * p.kv.v_head_stride + (p.kv.capacity - 1) * (d / 2) + d);
      HostTensor out(dtype, int64_t{tokens} * q_heads * d);
      std::vector<float> lse(tokens * q_heads);
      p.q = q.data();
      p.kv.k = k.data();
      p.kv.v = v.data();
      p.out = out.data();
      p.lse = lse.data();
      check_host_attention(*context, p, kernel, out, lse);
    }
  }
}

// 5. (CI, seed 12216284209956807454.) A -inf query against keys of one sign gives a +inf logit;
// AVX-512's max keeps or drops a NaN by lane, so the row maximum could skip the +inf behind a
// NaN and come out finite: the sum was then +inf, the row NaN and the LSE +inf, a mix the NaN
// policy forbids (docs/reliability.md). Each row here puts +inf (and NaN) in another lane order.
TEST(FuzzRegressions, SoftmaxOfAnInfiniteLogitIsNaNWithLseNaN) {
  auto context = cpu();
  constexpr float kInf = std::numeric_limits<float>::infinity();
  constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
  constexpr int kRows = 4, kCols = 48;  // three AVX-512 vectors per row
  std::vector<float> in(kRows * kCols, 0.25f), out(kRows * kCols, 7.0f), lse(kRows, 7.0f);
  std::vector<float> sinks{0.5f};
  in[0 * kCols + 5] = kInf;                                                 // +inf alone
  in[1 * kCols + 3] = kInf, in[1 * kCols + 19] = kNaN, in[1 * kCols + 35] = 1.0f;  // inf, NaN, finite
  in[2 * kCols + 3] = kNaN, in[2 * kCols + 19] = kInf;                     // NaN, then inf
  in[3 * kCols + 47] = kInf;                                                // in the last lane
  SoftmaxArguments a;
  a.input = in.data();
  a.input_row_stride = kCols;
  a.output = out.data();
  a.output_row_stride = kCols;
  a.output_dtype = DType::f32;
  a.rows = kRows;
  a.cols = kCols;
  a.lse = lse.data();
  a.lse_row_stride = 1;
  for (const float* s : {static_cast<const float*>(nullptr), static_cast<const float*>(sinks.data())}) {
    a.sinks = s;
    a.rows_per_block = s ? kRows : 0;
    a.lse_block_stride = s ? kRows : 0;
    WA_ASSERT_OK(softmax(*context, a));
    for (int r = 0; r < kRows; ++r) {
      EXPECT_TRUE(std::isnan(lse[r])) << "row " << r << (s ? " with a sink" : "") << ": LSE " << lse[r];
      for (int c = 0; c < kCols; ++c) {
        EXPECT_TRUE(std::isnan(out[r * kCols + c])) << "row " << r << " column " << c << ": " << out[r * kCols + c];
      }
    }
  }
}

}  // namespace
}  // namespace wideattn::test
