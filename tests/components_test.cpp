// The four building blocks (matmul, softmax, scatter_scores, scatter_values) against their
// f64 oracles, on every backend, with poisoned outputs and guard regions.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <sstream>
#include <vector>

#include "attention_case.h"
#include "reference/components_reference.h"
#include "test_support.h"

namespace wideattn::test {
namespace {

constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();

// ---- matmul ------------------------------------------------------------------------------------

struct MatmulCase {
  DType a_dtype = DType::f32, b_dtype = DType::f32, d_dtype = DType::f32;
  bool b_transpose = false;
  int64_t m = 5, n = 7, k = 9;
  int32_t batch = 1;
  bool share_b = false;  // b_batch_stride 0 (GQA: one K head for a group of query heads)
  int64_t a_offset = 0, b_offset = 0, d_offset = 0;
  int64_t a_pad = 0, b_pad = 0, d_pad = 0;  // leading dimension minus the dense one
  bool default_leading_dimensions = false;   // pass 0 for every leading dimension
  float ab_scale = 1.0f;
  MatmulC c = MatmulC::none;

  std::string describe() const {
    std::ostringstream s;
    s << to_string(a_dtype) << " x " << to_string(b_dtype) << " -> " << to_string(d_dtype) << ", m " << m
      << " n " << n << " k " << k << ", batch " << batch << (share_b ? " (shared B)" : "")
      << (b_transpose ? ", B transposed" : "") << ", offsets " << a_offset << "/" << b_offset << "/"
      << d_offset << ", pads " << a_pad << "/" << b_pad << "/" << d_pad
      << (default_leading_dimensions ? ", leading dimensions 0" : "") << ", ab_scale " << ab_scale
      << ", c " << (c == MatmulC::none ? "none" : c == MatmulC::accumulate ? "accumulate" : "bias");
    return s.str();
  }
};

void check_matmul(Context& context, std::mt19937_64& rng, const MatmulCase& mc) {
  SCOPED_TRACE(mc.describe());
  const int64_t lda = mc.k + mc.a_pad;
  const int64_t ldb = (mc.b_transpose ? mc.k : mc.n) + mc.b_pad;
  const int64_t ldd = mc.n + mc.d_pad;
  const int64_t b_rows = mc.b_transpose ? mc.n : mc.k;
  const int64_t a_batch_stride = mc.m * lda + 3;
  const int64_t b_batch_stride = mc.share_b ? 0 : b_rows * ldb + 5;
  const int64_t d_batch_stride = mc.m * ldd + 2;
  const int64_t a_elements = mc.a_offset + (mc.batch - 1) * a_batch_stride + mc.m * lda;
  const int64_t b_elements = mc.b_offset + (mc.batch - 1) * b_batch_stride + b_rows * ldb;
  const int64_t d_elements = mc.d_offset + (mc.batch - 1) * d_batch_stride + mc.m * ldd;

  const HostTensor a = random_tensor(rng, mc.a_dtype, a_elements);
  const HostTensor b = random_tensor(rng, mc.b_dtype, b_elements);
  const HostTensor bias = random_tensor(rng, mc.d_dtype, mc.n);
  HostTensor d_initial(mc.d_dtype, d_elements);  // the old D, for the oracle
  GuardedOutput d(context, mc.d_dtype, d_elements);
  std::vector<int64_t> written;
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  for (int64_t batch = 0; batch < mc.batch; ++batch) {
    for (int64_t i = 0; i < mc.m; ++i) {
      for (int64_t j = 0; j < mc.n; ++j) {
        const int64_t at = mc.d_offset + batch * d_batch_stride + i * ldd + j;
        written.push_back(at);
        if (mc.c == MatmulC::accumulate) {
          d_initial.set(at, uniform(rng));
          d.set_initial(at, d_initial.get(at));
        }
      }
    }
  }
  d.upload();
  const auto a_device = to_device(context, a.data(), a.bytes());
  const auto b_device = to_device(context, b.data(), b.bytes());
  const auto bias_device = to_device(context, bias.data(), bias.bytes());

  MatmulArguments args;
  args.a_dtype = mc.a_dtype;
  args.b_dtype = mc.b_dtype;
  args.d_dtype = mc.d_dtype;
  args.a_offset = mc.a_offset;
  args.a_leading_dimension = mc.default_leading_dimensions ? 0 : lda;
  args.a_batch_stride = a_batch_stride;
  args.b_offset = mc.b_offset;
  args.b_leading_dimension = mc.default_leading_dimensions ? 0 : ldb;
  args.b_transpose = mc.b_transpose;
  args.b_batch_stride = b_batch_stride;
  args.c = mc.c;
  args.d_offset = mc.d_offset;
  args.d_leading_dimension = mc.default_leading_dimensions ? 0 : ldd;
  args.d_batch_stride = d_batch_stride;
  args.m = mc.m;
  args.n = mc.n;
  args.k = mc.k;
  args.batch = mc.batch;
  args.ab_scale = mc.ab_scale;

  MatmulArguments on_device = args;
  on_device.a = a_device->get();
  on_device.b = b_device->get();
  on_device.c_data = mc.c == MatmulC::bias ? bias_device->get() : nullptr;
  on_device.d = d.data();
  const Status status = matmul(context, on_device);
  ASSERT_TRUE(status.ok()) << status.message();
  d.download();

  MatmulArguments on_host = args;
  on_host.a = a.data();
  on_host.b = b.data();
  on_host.c_data = bias.data();
  on_host.d = d_initial.data();
  const std::vector<double> expected = reference::matmul(on_host);
  EXPECT_TRUE(close_rel_l2(d.gather(written), expected, relative_tolerance(mc.d_dtype),
                           shape_index_name({"batch", "row", "col"}, {mc.batch, mc.m, mc.n})));
  EXPECT_TRUE(d.untouched_except(written)) << "D guards and gaps";
}

using MatmulTest = BackendTest;

// Runs `args` (f32 D, rows `d_leading_dimension` apart, batches dense) on random A and B of
// `a_elements` and `b_elements` into fresh device scratch that nothing initialised (never
// uploaded), reads every written cell back row by row with the context's copy (never the padding
// past n), and compares with the oracle run on the host copies of A and B.
void check_fresh_scratch_gemm(Context& context, std::mt19937_64& rng, const MatmulArguments& args,
                              int64_t a_elements, int64_t b_elements) {
  const int64_t m = args.m, n = args.n, ld = args.d_leading_dimension, batch = args.batch;
  const HostTensor a = random_tensor(rng, args.a_dtype, a_elements);
  const HostTensor b = random_tensor(rng, args.b_dtype, b_elements);
  const auto a_device = to_device(context, a.data(), a.bytes());
  const auto b_device = to_device(context, b.data(), b.bytes());
  DeviceMemory d(context, static_cast<std::size_t>(batch * m * ld) * sizeof(float));
  MatmulArguments on_device = args;
  on_device.a = a_device->get();
  on_device.b = b_device->get();
  on_device.d = d.get();
  WA_ASSERT_OK(matmul(context, on_device));
  std::vector<float> row(n);
  std::vector<double> got;
  for (int64_t r = 0; r < batch * m; ++r) {
    WA_ASSERT_OK(context.copy(row.data(), static_cast<float*>(d.get()) + r * ld, n * sizeof(float),
                              CopyKind::device_to_host));
    got.insert(got.end(), row.begin(), row.end());
  }
  HostTensor d_host(DType::f32, batch * m * ld);
  MatmulArguments on_host = args;
  on_host.a = a.data();
  on_host.b = b.data();
  on_host.d = d_host.data();
  const std::vector<double> expected = reference::matmul(on_host);  // dense [batch, m, n]
  EXPECT_TRUE(close_rel_l2(got, expected, relative_tolerance(DType::f32),
                           shape_index_name({"batch", "row", "col"}, {batch, m, n})));
}

TEST_P(MatmulTest, DenseMatchesOracle) {
  MatmulCase mc;
  mc.m = 17;
  mc.n = 33;
  mc.k = 64;
  check_matmul(context(), rng(), mc);
  mc.default_leading_dimensions = true;
  mc.b_transpose = true;
  check_matmul(context(), rng(), mc);
}

TEST_P(MatmulTest, OffsetsAndLeadingDimensions) {
  for (bool transpose : {false, true}) {
    MatmulCase mc;
    mc.m = 13;
    mc.n = 29;
    mc.k = 72;
    mc.b_transpose = transpose;
    mc.a_offset = 5;
    mc.b_offset = 11;
    mc.d_offset = 3;
    mc.a_pad = 8;
    mc.b_pad = 3;
    mc.d_pad = 6;
    check_matmul(context(), rng(), mc);
  }
}

TEST_P(MatmulTest, BatchWithSharedB) {
  for (bool shared : {true, false}) {
    MatmulCase mc;
    mc.m = 9;
    mc.n = 40;
    mc.k = 128;
    mc.batch = 4;
    mc.share_b = shared;
    mc.b_transpose = true;  // Q K^T of one query group
    mc.a_offset = 7;
    mc.d_pad = 5;
    check_matmul(context(), rng(), mc);
  }
}

// The prefill pipeline's Q K^T: D lives in scratch that nothing initialised (fresh from
// allocate, never uploaded), rows padded to 8 elements. Every written cell is read back on its
// own (the padding is never written, so it is not read either) and compared with the oracle;
// under compute-sanitizer initcheck this also shows whether the tool sees the GEMM's stores.
TEST_P(MatmulTest, IntoUninitialisedScratch) {
  const int64_t m = 37, n = 203, k = 512, ld = 208;
  const int32_t batch = 4;
  MatmulArguments args;
  args.a_dtype = args.b_dtype = DType::bf16;
  args.d_dtype = DType::f32;
  args.a_leading_dimension = k;
  args.a_batch_stride = m * k;
  args.b_leading_dimension = k;
  args.b_transpose = true;
  args.b_batch_stride = 0;
  args.d_leading_dimension = ld;
  args.d_batch_stride = m * ld;
  args.m = m;
  args.n = n;
  args.k = k;
  args.batch = batch;
  args.ab_scale = 0.0625f;
  check_fresh_scratch_gemm(context(), rng(), args, batch * m * k, n * k);
}

// The prefill pipeline's Q K^T GEMM as the CUDA pipeline issues it (few query rows, the query
// heads of a GQA group interleaved in Q, K shared, D rows padded to 8 floats) into fresh
// scratch, read back cell by cell with cudaMemcpy. Under compute-sanitizer initcheck, a report
// here (a host read of D) would mean the sanitizer does not see cuBLASLt's stores for this
// shape, as opposed to the softmax reading cells nothing wrote (docs/reliability.md).
TEST_P(MatmulTest, PipelineShapedGemmIntoFreshScratch) {
  const int64_t m = 9, n = 97, k = 512, ld = 104, q_heads = 8, kv_heads = 2;
  const int32_t batch = 4;  // query heads per KV head
  MatmulArguments args;
  args.a_dtype = args.b_dtype = DType::bf16;
  args.d_dtype = DType::f32;
  args.a_leading_dimension = q_heads * k;  // token-major Q: heads of a token are adjacent
  args.a_batch_stride = k;
  args.b_offset = k;  // KV head 1
  args.b_leading_dimension = kv_heads * k;
  args.b_transpose = true;
  args.d_leading_dimension = ld;
  args.d_batch_stride = m * ld;
  args.m = m;
  args.n = n;
  args.k = k;
  args.batch = batch;
  args.ab_scale = 0.0625f;
  check_fresh_scratch_gemm(context(), rng(), args, m * q_heads * k, n * kv_heads * k);
}

// The pipeline's P V GEMM at the shape of SanitizerSmallProblems.UnfusedPrefillPipeline's tree
// case (f16, 12 query rows, 40 keys, head_dim 128, 2 query heads per KV head, V rows token-major
// over 2 KV heads) into fresh scratch, read back cell by cell. initcheck reported the scatter
// and the non-finite repair reading that GEMM's output there: a report here too (a host read of
// D) says the tool does not see cuBLASLt's stores at this shape.
TEST_P(MatmulTest, PipelinePvGemmIntoFreshScratch) {
  const int64_t m = 12, n = 128, k = 40, kv_heads = 2;
  const int32_t batch = 2;  // query heads per KV head
  MatmulArguments args;
  args.a_dtype = args.b_dtype = DType::f16;
  args.d_dtype = DType::f32;
  args.a_leading_dimension = k;
  args.a_batch_stride = m * k;
  args.b_offset = n;  // KV head 1
  args.b_leading_dimension = kv_heads * n;
  args.b_transpose = false;
  args.b_batch_stride = 0;
  args.d_leading_dimension = n;
  args.d_batch_stride = m * n;
  args.m = m;
  args.n = n;
  args.k = k;
  args.batch = batch;
  args.ab_scale = 1.0f;
  check_fresh_scratch_gemm(context(), rng(), args, batch * m * k, k * kv_heads * n);
}

TEST_P(MatmulTest, ScaleAccumulateAndBias) {
  for (MatmulC c : {MatmulC::none, MatmulC::accumulate, MatmulC::bias}) {
    MatmulCase mc;
    mc.m = 11;
    mc.n = 19;
    mc.k = 40;
    mc.batch = 2;
    mc.ab_scale = 0.125f;
    mc.c = c;
    mc.d_pad = 4;
    check_matmul(context(), rng(), mc);
  }
}

TEST_P(MatmulTest, OperandAndResultDtypes) {
  const DType all[] = {DType::f32, DType::f16, DType::bf16};
  int sample = 0;
  for (DType a : all) {
    for (DType b : all) {
      if (backend() == Backend::cuda && a != b) continue;  // CUDA needs a_dtype == b_dtype
      for (DType d : {DType::f32, DType::bf16}) {
        MatmulCase mc;
        mc.a_dtype = a;
        mc.b_dtype = b;
        mc.d_dtype = d;
        mc.m = 6 + sample % 5;
        mc.n = 21;
        mc.k = 256;
        mc.b_transpose = sample % 2 == 0;
        mc.batch = 2;
        mc.share_b = sample % 3 == 0;
        mc.c = sample % 4 == 1 ? MatmulC::accumulate : MatmulC::none;
        mc.ab_scale = 0.5f;
        check_matmul(context(), rng(), mc);
        ++sample;
      }
    }
  }
}

TEST_P(MatmulTest, CudaRejectsMixedOperandDtypes) {
  if (backend() != Backend::cuda) GTEST_SKIP() << "the CPU converts each operand to f32";
  std::vector<float> a(16), b(16);
  const auto a_device = to_device(context(), a.data(), a.size() * sizeof(float));
  const auto b_device = to_device(context(), b.data(), b.size() * 2);
  GuardedOutput d(context(), DType::f32, 16);
  d.upload();
  MatmulArguments args;
  args.a_dtype = DType::f32;
  args.b_dtype = DType::bf16;
  args.a = a_device->get();
  args.b = b_device->get();
  args.d = d.data();
  args.m = args.n = args.k = 4;
  EXPECT_TRUE(has_error(matmul(context(), args), StatusCode::unsupported, {"a_dtype = f32", "b_dtype = bf16"}));
  d.download();
  EXPECT_TRUE(d.unchanged());
}

WA_INSTANTIATE_BACKENDS(MatmulTest);

// ---- softmax ------------------------------------------------------------------------------------

struct SoftmaxCase {
  int64_t rows = 12, cols = 37;
  int64_t rows_per_block = 0;
  int64_t input_pad = 0, output_pad = 0;
  DType output_dtype = DType::f32;
  bool in_place = false;
  bool sinks = false;
  bool lse = true;
  double masked_fraction = 0.2;            // entries set to -inf
  std::vector<int64_t> fully_masked_rows;  // rows of -inf only

  std::string describe() const {
    std::ostringstream s;
    s << "rows " << rows << " cols " << cols << ", rows_per_block " << rows_per_block << ", pads "
      << input_pad << "/" << output_pad << ", output " << to_string(output_dtype)
      << (in_place ? ", in place" : "") << (sinks ? ", sinks" : "") << (lse ? "" : ", no lse")
      << ", " << fully_masked_rows.size() << " fully masked row(s)";
    return s.str();
  }
};

void check_softmax(Context& context, std::mt19937_64& rng, const SoftmaxCase& sc) {
  SCOPED_TRACE(sc.describe());
  const int64_t in_stride = sc.cols + sc.input_pad;
  const int64_t out_stride = sc.in_place ? in_stride : sc.cols + sc.output_pad;
  const int64_t blocks = sc.rows_per_block > 0 ? sc.rows / sc.rows_per_block : 1;
  const int64_t per_block = sc.rows_per_block > 0 ? sc.rows_per_block : sc.rows;

  std::vector<float> input(static_cast<std::size_t>(std::max<int64_t>(1, sc.rows * in_stride)),
                           std::numeric_limits<float>::quiet_NaN());  // gaps: NaN, never read
  std::uniform_real_distribution<float> logit(-6.0f, 6.0f), unit(0.0f, 1.0f);
  for (int64_t r = 0; r < sc.rows; ++r) {
    const bool all_masked = std::find(sc.fully_masked_rows.begin(), sc.fully_masked_rows.end(), r) !=
                            sc.fully_masked_rows.end();
    for (int64_t c = 0; c < sc.cols; ++c) {
      input[r * in_stride + c] = all_masked || unit(rng) < sc.masked_fraction ? kMinusInfinity : logit(rng);
    }
  }
  std::vector<float> sinks(static_cast<std::size_t>(blocks));
  for (float& s : sinks) s = logit(rng);

  // The output (and, in place, the input) with guards; LSE at block stride 2 * per_block + 1
  // and row stride 2, so every other entry is a gap.
  const int64_t lse_row_stride = 2, lse_block_stride = 2 * per_block + 1;
  GuardedOutput output(context, sc.in_place ? DType::f32 : sc.output_dtype, std::max<int64_t>(1, sc.rows * out_stride));
  GuardedOutput lse(context, DType::f32, blocks * lse_block_stride);
  std::vector<int64_t> written, lse_written;
  for (int64_t r = 0; r < sc.rows; ++r) {
    for (int64_t c = 0; c < sc.cols; ++c) written.push_back(r * out_stride + c);
    lse_written.push_back((r / per_block) * lse_block_stride + (r % per_block) * lse_row_stride);
  }
  if (sc.in_place) {
    for (int64_t r = 0; r < sc.rows; ++r) {
      for (int64_t c = 0; c < sc.cols; ++c) output.set_initial(r * in_stride + c, input[r * in_stride + c]);
    }
  }
  output.upload();
  lse.upload();
  const auto input_device = to_device(context, input.data(), input.size() * sizeof(float));
  const auto sinks_device = to_device(context, sinks.data(), sinks.size() * sizeof(float));

  SoftmaxArguments args;
  args.input_row_stride = in_stride;
  args.output_dtype = sc.in_place ? DType::f32 : sc.output_dtype;
  args.output_row_stride = out_stride;
  args.rows = sc.rows;
  args.cols = sc.cols;
  args.rows_per_block = sc.rows_per_block;
  args.lse_block_stride = lse_block_stride;
  args.lse_row_stride = lse_row_stride;
  SoftmaxArguments on_device = args;
  on_device.input = sc.in_place ? static_cast<const float*>(output.data())
                                : static_cast<const float*>(input_device->get());
  on_device.output = output.data();
  on_device.sinks = sc.sinks ? static_cast<const float*>(sinks_device->get()) : nullptr;
  on_device.lse = sc.lse ? static_cast<float*>(lse.data()) : nullptr;
  const Status status = softmax(context, on_device);
  ASSERT_TRUE(status.ok()) << status.message();
  output.download();
  lse.download();

  SoftmaxArguments on_host = args;
  on_host.input = input.data();
  on_host.sinks = sc.sinks ? sinks.data() : nullptr;
  const reference::SoftmaxResult expected = reference::softmax(on_host);
  const IndexName name = shape_index_name({"row", "col"}, {sc.rows, sc.cols});
  EXPECT_TRUE(close_rel_l2(output.gather(written), expected.output, relative_tolerance(args.output_dtype), name));
  EXPECT_TRUE(output.untouched_except(written)) << "output guards and gaps";
  for (int64_t r : sc.fully_masked_rows) {
    for (int64_t c = 0; c < sc.cols; ++c) {
      EXPECT_EQ(output.value(r * out_stride + c), 0.0) << "fully masked row " << r << " col " << c;
    }
  }
  if (sc.lse) {
    EXPECT_TRUE(close_abs(lse.gather(lse_written), expected.lse, lse_tolerance(DType::f32),
                          shape_index_name({"row"}, {sc.rows})))
        << "lse";
    EXPECT_TRUE(lse.untouched_except(lse_written)) << "lse guards and gaps";
  } else {
    EXPECT_TRUE(lse.unchanged());
  }
}

using SoftmaxTest = BackendTest;

TEST_P(SoftmaxTest, RowsMatchOracle) {
  SoftmaxCase sc;
  sc.input_pad = 3;
  sc.output_pad = 5;
  check_softmax(context(), rng(), sc);
  sc.cols = 1025;
  sc.rows = 3;
  check_softmax(context(), rng(), sc);
}

TEST_P(SoftmaxTest, SinksPerBlockAndLse) {
  SoftmaxCase sc;
  sc.rows = 12;
  sc.rows_per_block = 4;
  sc.sinks = true;
  sc.fully_masked_rows = {1, 6};  // with a sink: zeros, LSE = the sink
  check_softmax(context(), rng(), sc);
}

TEST_P(SoftmaxTest, FullyMaskedRowsGiveZerosAndMinusInfinity) {
  SoftmaxCase sc;
  sc.rows = 6;
  sc.cols = 54;
  sc.fully_masked_rows = {0, 3, 5};
  check_softmax(context(), rng(), sc);
}

TEST_P(SoftmaxTest, InPlace) {
  SoftmaxCase sc;
  sc.in_place = true;
  sc.input_pad = 4;
  sc.rows_per_block = 3;
  sc.sinks = true;
  sc.fully_masked_rows = {2};
  check_softmax(context(), rng(), sc);
}

TEST_P(SoftmaxTest, IntoSixteenBitOutputs) {
  for (DType dtype : {DType::bf16, DType::f16}) {
    SoftmaxCase sc;
    sc.output_dtype = dtype;
    sc.output_pad = 2;
    sc.rows_per_block = 6;
    sc.sinks = dtype == DType::bf16;
    sc.fully_masked_rows = {4};
    check_softmax(context(), rng(), sc);
  }
}

TEST_P(SoftmaxTest, WithoutLse) {
  SoftmaxCase sc;
  sc.lse = false;
  check_softmax(context(), rng(), sc);
}

TEST_P(SoftmaxTest, NoColumnsGivesLseOfTheSinkOnly) {
  SoftmaxCase sc;
  sc.rows = 4;
  sc.cols = 0;
  sc.input_pad = 1;
  sc.output_pad = 1;
  sc.rows_per_block = 2;
  sc.sinks = true;
  check_softmax(context(), rng(), sc);
}

WA_INSTANTIATE_BACKENDS(SoftmaxTest);

// ---- scatter_scores ---------------------------------------------------------------------------

struct ScatterScoresCase {
  int32_t heads = 3;
  int64_t rows = 5, cols = 11;
  int64_t first_query = 2, first_key = 4;
  int64_t prefix = 10, suffix = 9;
  bool causal = true;
  int32_t window = 0, ring_length = 0, ring_offset = 0;
  bool tree = false;
  float softcap = 0.0f;
  bool in_place = false;

  std::string describe() const {
    std::ostringstream s;
    s << "heads " << heads << " rows " << rows << " cols " << cols << " from query " << first_query
      << " key " << first_key << ", prefix " << prefix << " suffix " << suffix
      << (causal ? ", causal" : ", bidirectional") << ", window " << window << ", ring " << ring_length
      << "@" << ring_offset << (tree ? ", tree" : "") << ", softcap " << softcap << (in_place ? ", in place" : "");
    return s.str();
  }
};

void check_scatter_scores(Context& context, std::mt19937_64& rng, const ScatterScoresCase& sc) {
  SCOPED_TRACE(sc.describe());
  const int64_t src_row = sc.cols + 3, src_head = sc.rows * src_row + 2;
  const int64_t dst_row = sc.in_place ? src_row : sc.cols + 1;
  const int64_t dst_head = sc.in_place ? src_head : sc.rows * dst_row + 5;
  std::vector<float> scores(static_cast<std::size_t>(sc.heads * src_head), std::numeric_limits<float>::quiet_NaN());
  std::uniform_real_distribution<float> logit(-20.0f, 20.0f);
  std::vector<int64_t> written;
  for (int64_t h = 0; h < sc.heads; ++h) {
    for (int64_t r = 0; r < sc.rows; ++r) {
      for (int64_t c = 0; c < sc.cols; ++c) {
        scores[h * src_head + r * src_row + c] = logit(rng);
        written.push_back(h * dst_head + r * dst_row + c);
      }
    }
  }
  std::vector<int32_t> start, end, height;
  if (sc.tree) append_random_trie(rng, static_cast<int32_t>(sc.suffix), &start, &end, &height);
  const std::size_t tree_bytes = start.size() * sizeof(int32_t);
  const auto start_device = to_device(context, start.data(), tree_bytes);
  const auto end_device = to_device(context, end.data(), tree_bytes);
  const auto height_device = to_device(context, height.data(), tree_bytes);
  const auto scores_device = to_device(context, scores.data(), scores.size() * sizeof(float));
  GuardedOutput dst(context, DType::f32, sc.heads * dst_head);
  if (sc.in_place) {
    for (std::size_t i = 0; i < scores.size(); ++i) {
      if (!std::isnan(scores[i])) dst.set_initial(static_cast<int64_t>(i), scores[i]);
    }
  }
  dst.upload();

  ScatterScoresArguments args;
  args.scores_head_stride = src_head;
  args.scores_row_stride = src_row;
  args.dst_head_stride = dst_head;
  args.dst_row_stride = dst_row;
  args.heads = sc.heads;
  args.rows = sc.rows;
  args.cols = sc.cols;
  args.first_query = sc.first_query;
  args.first_key = sc.first_key;
  args.mask.prefix_length = sc.prefix;
  args.mask.suffix_length = sc.suffix;
  args.mask.spec.causal = sc.causal;
  args.mask.spec.window = sc.window;
  args.mask.spec.ring_length = sc.ring_length;
  args.mask.spec.ring_offset = sc.ring_offset;
  args.softcap = sc.softcap;
  ScatterScoresArguments on_device = args;
  on_device.scores = sc.in_place ? static_cast<const float*>(dst.data())
                                 : static_cast<const float*>(scores_device->get());
  on_device.dst = static_cast<float*>(dst.data());
  if (sc.tree) {
    on_device.mask.spec.tree_start = static_cast<const int32_t*>(start_device->get());
    on_device.mask.spec.tree_end = static_cast<const int32_t*>(end_device->get());
    on_device.mask.spec.tree_height = static_cast<const int32_t*>(height_device->get());
  }
  const Status status = scatter_scores(context, on_device);
  ASSERT_TRUE(status.ok()) << status.message();
  dst.download();

  ScatterScoresArguments on_host = args;
  on_host.scores = scores.data();
  if (sc.tree) {
    on_host.mask.spec.tree_start = start.data();
    on_host.mask.spec.tree_end = end.data();
    on_host.mask.spec.tree_height = height.data();
  }
  EXPECT_TRUE(close_rel_l2(dst.gather(written), reference::scatter_scores(on_host), relative_tolerance(DType::f32),
                           shape_index_name({"head", "row", "col"}, {sc.heads, sc.rows, sc.cols})));
  EXPECT_TRUE(dst.untouched_except(written)) << "dst guards and gaps";
}

using ScatterScoresTest = BackendTest;

TEST_P(ScatterScoresTest, CausalAndBidirectional) {
  for (bool causal : {true, false}) {
    ScatterScoresCase sc;
    sc.causal = causal;
    check_scatter_scores(context(), rng(), sc);
  }
}

TEST_P(ScatterScoresTest, Windows) {
  for (bool causal : {true, false}) {
    ScatterScoresCase sc;
    sc.causal = causal;
    sc.window = 7;
    sc.first_key = 0;
    sc.cols = 19;
    check_scatter_scores(context(), rng(), sc);
  }
}

TEST_P(ScatterScoresTest, RingAndTree) {
  ScatterScoresCase ring;
  ring.ring_length = 4;
  ring.ring_offset = 7;
  ring.first_key = 0;
  ring.cols = 19;
  check_scatter_scores(context(), rng(), ring);
  ScatterScoresCase tree;
  tree.tree = true;
  tree.window = 5;
  tree.first_key = 8;
  check_scatter_scores(context(), rng(), tree);
}

TEST_P(ScatterScoresTest, SoftcapAndInPlace) {
  ScatterScoresCase sc;
  sc.softcap = 7.5f;
  check_scatter_scores(context(), rng(), sc);
  sc.in_place = true;
  sc.window = 5;  // keys 0..8: query 2 (position 12) sees key 8 only, later queries none
  sc.first_key = 0;
  sc.cols = 9;
  check_scatter_scores(context(), rng(), sc);
}

WA_INSTANTIATE_BACKENDS(ScatterScoresTest);

// ---- scatter_values ---------------------------------------------------------------------------

void check_scatter_values(Context& context, std::mt19937_64& rng, DType dtype, int32_t heads, int64_t rows,
                          int32_t head_dim, int64_t out_head_stride, int64_t out_token_stride) {
  SCOPED_TRACE(std::string(to_string(dtype)) + ", heads " + std::to_string(heads) + " rows " + std::to_string(rows) +
               " head_dim " + std::to_string(head_dim) + ", out strides token " + std::to_string(out_token_stride) +
               " head " + std::to_string(out_head_stride));
  const int64_t src_row = head_dim + 4, src_head = rows * src_row + 1;
  std::vector<float> src(static_cast<std::size_t>(heads * src_head), std::numeric_limits<float>::quiet_NaN());
  std::uniform_real_distribution<float> value(-3.0f, 3.0f);
  std::vector<int64_t> written;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t x = 0; x < head_dim; ++x) {
        src[h * src_head + r * src_row + x] = value(rng);
        written.push_back(r * out_token_stride + h * out_head_stride + x);
      }
    }
  }
  const auto src_device = to_device(context, src.data(), src.size() * sizeof(float));
  const int64_t extent = (rows - 1) * out_token_stride + (heads - 1) * out_head_stride + head_dim + 3;
  GuardedOutput out(context, dtype, extent);
  out.upload();

  ScatterValuesArguments args;
  args.src_head_stride = src_head;
  args.src_row_stride = src_row;
  args.dtype = dtype;
  args.out_token_stride = out_token_stride;
  args.out_head_stride = out_head_stride;
  args.heads = heads;
  args.rows = rows;
  args.head_dim = head_dim;
  ScatterValuesArguments on_device = args;
  on_device.src = static_cast<const float*>(src_device->get());
  on_device.out = out.data();
  const Status status = scatter_values(context, on_device);
  ASSERT_TRUE(status.ok()) << status.message();
  out.download();

  ScatterValuesArguments on_host = args;
  on_host.src = src.data();
  std::vector<double> expected = reference::scatter_values(on_host);
  // A conversion, so exact: the oracle's value rounded to nearest even in the dtype.
  HostTensor rounded(dtype, 1);
  for (double& e : expected) {
    rounded.set(0, e);
    e = rounded.get(0);
  }
  EXPECT_TRUE(close_rel_l2(out.gather(written), expected, 0.0,
                           shape_index_name({"row", "head", "dim"}, {rows, heads, head_dim})));
  EXPECT_TRUE(out.untouched_except(written)) << "out guards and gaps";
}

using ScatterValuesTest = BackendTest;

TEST_P(ScatterValuesTest, TokenMajorWithGaps) {
  for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    check_scatter_values(context(), rng(), dtype, 3, 5, 64, /*head=*/64 + 3, /*token=*/4 * (64 + 3) + 1);
  }
}

TEST_P(ScatterValuesTest, HeadMajorAndWideHeads) {
  check_scatter_values(context(), rng(), DType::bf16, 2, 7, 512, /*head=*/7 * 512 + 9, /*token=*/512);
  check_scatter_values(context(), rng(), DType::f32, 4, 1, 72, /*head=*/80, /*token=*/4 * 80);
}

WA_INSTANTIATE_BACKENDS(ScatterValuesTest);

}  // namespace
}  // namespace wideattn::test
