// Bad input to the components: each item is one test that checks the status code, that the
// message names the function, the argument and its value, and that nothing was written.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "test_support.h"

namespace wideattn::test {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

// Zeroed device inputs and poisoned guarded outputs, big enough for every valid call below.
struct Buffers {
  explicit Buffers(Context& context)
      : zeros(4096, 0.0f),
        a(to_device(context, zeros.data(), zeros.size() * sizeof(float))),
        b(to_device(context, zeros.data(), zeros.size() * sizeof(float))),
        out(context, DType::f32, 256),
        lse(context, DType::f32, 16) {
    out.upload();
    lse.upload();
  }
  float* input() const { return static_cast<float*>(a->get()); }
  std::vector<float> zeros;
  std::unique_ptr<DeviceMemory> a, b;
  GuardedOutput out, lse;
};

// Valid calls: small, dense, f32.
MatmulArguments valid_matmul(Buffers& buf) {
  MatmulArguments m;
  m.a = buf.a->get();  // [4, 8]
  m.b = buf.b->get();  // [8, 6]
  m.d = buf.out.data();  // [4, 6]
  m.m = 4;
  m.n = 6;
  m.k = 8;
  return m;
}

SoftmaxArguments valid_softmax(Buffers& buf) {
  SoftmaxArguments s;
  s.input = buf.input();  // [4, 6]
  s.input_row_stride = 6;
  s.output = buf.out.data();
  s.output_row_stride = 6;
  s.rows = 4;
  s.cols = 6;
  s.lse = static_cast<float*>(buf.lse.data());
  s.lse_row_stride = 1;
  return s;
}

ScatterScoresArguments valid_scatter_scores(Buffers& buf) {
  ScatterScoresArguments s;
  s.scores = buf.input();  // [2, 3, 5]
  s.scores_row_stride = 5;
  s.scores_head_stride = 15;
  s.dst = static_cast<float*>(buf.out.data());
  s.dst_row_stride = 5;
  s.dst_head_stride = 15;
  s.heads = 2;
  s.rows = 3;
  s.cols = 5;
  s.first_query = 1;
  s.first_key = 2;
  s.mask.prefix_length = 4;
  s.mask.suffix_length = 4;
  return s;
}

ScatterValuesArguments valid_scatter_values(Buffers& buf) {
  ScatterValuesArguments s;
  s.src = buf.input();  // [2, 3, 8]
  s.src_row_stride = 8;
  s.src_head_stride = 24;
  s.out = buf.out.data();  // [3, 2, 8]
  s.out_token_stride = 16;
  s.out_head_stride = 8;
  s.heads = 2;
  s.rows = 3;
  s.head_dim = 8;
  return s;
}

struct BadCall {
  std::string name;
  std::string function;  // the message starts with "<function>: "
  std::function<Status(Context&, Buffers&)> call;
  std::vector<std::string> fragments;
};

template <typename Mutate>
std::function<Status(Context&, Buffers&)> bad_matmul(Mutate mutate) {
  return [mutate](Context& c, Buffers& b) { MatmulArguments a = valid_matmul(b); mutate(a, b); return matmul(c, a); };
}
template <typename Mutate>
std::function<Status(Context&, Buffers&)> bad_softmax(Mutate mutate) {
  return [mutate](Context& c, Buffers& b) { SoftmaxArguments a = valid_softmax(b); mutate(a, b); return softmax(c, a); };
}
template <typename Mutate>
std::function<Status(Context&, Buffers&)> bad_scatter_scores(Mutate mutate) {
  return [mutate](Context& c, Buffers& b) {
    ScatterScoresArguments a = valid_scatter_scores(b);
    mutate(a, b);
    return scatter_scores(c, a);
  };
}
template <typename Mutate>
std::function<Status(Context&, Buffers&)> bad_scatter_values(Mutate mutate) {
  return [mutate](Context& c, Buffers& b) {
    ScatterValuesArguments a = valid_scatter_values(b);
    mutate(a, b);
    return scatter_values(c, a);
  };
}

using M = MatmulArguments;
using S = SoftmaxArguments;
using SS = ScatterScoresArguments;
using SV = ScatterValuesArguments;

const std::vector<BadCall>& bad_calls() {
  static const std::vector<BadCall> calls = {
      // matmul
      {"matmul_m_negative", "matmul", bad_matmul([](M& a, Buffers&) { a.m = -1; }), {"m = -1"}},
      {"matmul_n_negative", "matmul", bad_matmul([](M& a, Buffers&) { a.n = -3; }), {"n = -3"}},
      {"matmul_k_negative", "matmul", bad_matmul([](M& a, Buffers&) { a.k = -2; }), {"k = -2"}},
      {"matmul_batch_zero", "matmul", bad_matmul([](M& a, Buffers&) { a.batch = 0; }), {"batch = 0"}},
      {"matmul_ab_scale_infinite", "matmul",
       bad_matmul([](M& a, Buffers&) { a.ab_scale = std::numeric_limits<float>::infinity(); }), {"ab_scale = inf"}},
      {"matmul_a_dtype_unknown", "matmul", bad_matmul([](M& a, Buffers&) { a.a_dtype = static_cast<DType>(5); }),
       {"a_dtype = 5"}},
      {"matmul_b_dtype_unknown", "matmul", bad_matmul([](M& a, Buffers&) { a.b_dtype = static_cast<DType>(6); }),
       {"b_dtype = 6"}},
      {"matmul_d_dtype_unknown", "matmul", bad_matmul([](M& a, Buffers&) { a.d_dtype = static_cast<DType>(-1); }),
       {"d_dtype = -1"}},
      {"matmul_d_null", "matmul", bad_matmul([](M& a, Buffers&) { a.d = nullptr; }), {"d = null"}},
      {"matmul_a_null", "matmul", bad_matmul([](M& a, Buffers&) { a.a = nullptr; }), {"a = null"}},
      {"matmul_b_null", "matmul", bad_matmul([](M& a, Buffers&) { a.b = nullptr; }), {"b = null"}},
      {"matmul_bias_without_data", "matmul", bad_matmul([](M& a, Buffers&) { a.c = MatmulC::bias; }), {"c_data = null"}},
      {"matmul_c_unknown", "matmul", bad_matmul([](M& a, Buffers&) { a.c = static_cast<MatmulC>(7); }), {"c = 7"}},
      {"matmul_a_leading_dimension_below_k", "matmul", bad_matmul([](M& a, Buffers&) { a.a_leading_dimension = 3; }),
       {"a_leading_dimension = 3", "k = 8"}},
      {"matmul_b_leading_dimension_below_n", "matmul", bad_matmul([](M& a, Buffers&) { a.b_leading_dimension = 5; }),
       {"b_leading_dimension = 5", "n = 6"}},
      {"matmul_transposed_b_leading_dimension_below_k", "matmul",
       bad_matmul([](M& a, Buffers&) { a.b_transpose = true; a.b_leading_dimension = 7; }),
       {"b_leading_dimension = 7", "k = 8"}},
      {"matmul_d_leading_dimension_below_n", "matmul", bad_matmul([](M& a, Buffers&) { a.d_leading_dimension = 2; }),
       {"d_leading_dimension = 2", "n = 6"}},
      {"matmul_a_offset_negative", "matmul", bad_matmul([](M& a, Buffers&) { a.a_offset = -1; }), {"a_offset = -1"}},
      {"matmul_b_batch_stride_negative", "matmul", bad_matmul([](M& a, Buffers&) { a.b_batch_stride = -4; }),
       {"b_batch_stride = -4"}},
      {"matmul_d_batches_overlap", "matmul",
       bad_matmul([](M& a, Buffers&) { a.batch = 2; a.a_batch_stride = 32; a.d_batch_stride = 10; }),
       {"d_batch_stride = 10"}},
      {"matmul_d_overlaps_a", "matmul", bad_matmul([](M& a, Buffers&) { a.d = const_cast<void*>(a.a); }),
       {"d overlaps a"}},
      {"matmul_d_overlaps_b", "matmul",
       bad_matmul([](M& a, Buffers&) { a.d = static_cast<float*>(const_cast<void*>(a.b)) + 40; }), {"d overlaps b"}},
      {"matmul_a_index_overflows", "matmul",
       bad_matmul([](M& a, Buffers&) { a.batch = 2; a.a_batch_stride = kMax - 5; a.d_batch_stride = 24; }),
       {"a index arithmetic overflows int64"}},
      {"matmul_d_index_overflows", "matmul", bad_matmul([](M& a, Buffers&) { a.d_offset = kMax - 3; }),
       {"d index arithmetic overflows int64"}},
      // softmax
      {"softmax_rows_negative", "softmax", bad_softmax([](S& a, Buffers&) { a.rows = -1; }), {"rows = -1"}},
      {"softmax_cols_negative", "softmax", bad_softmax([](S& a, Buffers&) { a.cols = -2; }), {"cols = -2"}},
      {"softmax_output_dtype_unknown", "softmax",
       bad_softmax([](S& a, Buffers&) { a.output_dtype = static_cast<DType>(4); }), {"output_dtype = 4"}},
      {"softmax_input_null", "softmax", bad_softmax([](S& a, Buffers&) { a.input = nullptr; }), {"input = null"}},
      {"softmax_output_null", "softmax", bad_softmax([](S& a, Buffers&) { a.output = nullptr; }), {"output = null"}},
      {"softmax_input_row_stride_below_cols", "softmax", bad_softmax([](S& a, Buffers&) { a.input_row_stride = 5; }),
       {"input_row_stride = 5", "cols = 6"}},
      {"softmax_output_row_stride_below_cols", "softmax", bad_softmax([](S& a, Buffers&) { a.output_row_stride = 0; }),
       {"output_row_stride = 0", "cols = 6"}},
      {"softmax_rows_per_block_negative", "softmax", bad_softmax([](S& a, Buffers&) { a.rows_per_block = -1; }),
       {"rows_per_block = -1"}},
      {"softmax_rows_per_block_not_a_divisor", "softmax", bad_softmax([](S& a, Buffers&) { a.rows_per_block = 3; }),
       {"rows_per_block = 3", "rows = 4"}},
      {"softmax_in_place_into_bf16", "softmax",
       bad_softmax([](S& a, Buffers&) { a.output = const_cast<float*>(a.input); a.output_dtype = DType::bf16; }),
       {"output = input"}},
      {"softmax_in_place_with_other_strides", "softmax",
       bad_softmax([](S& a, Buffers&) { a.output = const_cast<float*>(a.input); a.output_row_stride = 7; }),
       {"output = input"}},
      {"softmax_output_overlaps_input", "softmax",
       bad_softmax([](S& a, Buffers&) { a.output = const_cast<float*>(a.input) + 2; }), {"output overlaps input"}},
      {"softmax_lse_overlaps_input", "softmax",
       bad_softmax([](S& a, Buffers&) { a.lse = const_cast<float*>(a.input); a.lse_row_stride = 1; }),
       {"lse overlaps input"}},
      // scatter_scores
      {"scatter_scores_heads_negative", "scatter_scores", bad_scatter_scores([](SS& a, Buffers&) { a.heads = -1; }),
       {"heads = -1"}},
      {"scatter_scores_rows_negative", "scatter_scores", bad_scatter_scores([](SS& a, Buffers&) { a.rows = -1; }),
       {"rows = -1"}},
      {"scatter_scores_cols_negative", "scatter_scores", bad_scatter_scores([](SS& a, Buffers&) { a.cols = -1; }),
       {"cols = -1"}},
      {"scatter_scores_scores_null", "scatter_scores", bad_scatter_scores([](SS& a, Buffers&) { a.scores = nullptr; }),
       {"scores = null"}},
      {"scatter_scores_dst_null", "scatter_scores", bad_scatter_scores([](SS& a, Buffers&) { a.dst = nullptr; }),
       {"dst = null"}},
      {"scatter_scores_scores_row_stride_below_cols", "scatter_scores",
       bad_scatter_scores([](SS& a, Buffers&) { a.scores_row_stride = 4; }), {"scores_row_stride = 4"}},
      {"scatter_scores_dst_row_stride_below_cols", "scatter_scores",
       bad_scatter_scores([](SS& a, Buffers&) { a.dst_row_stride = 4; }), {"dst_row_stride = 4"}},
      {"scatter_scores_scores_head_stride_overlaps", "scatter_scores",
       bad_scatter_scores([](SS& a, Buffers&) { a.scores_head_stride = 10; }), {"scores_head_stride = 10"}},
      {"scatter_scores_dst_head_stride_overlaps", "scatter_scores",
       bad_scatter_scores([](SS& a, Buffers&) { a.dst_head_stride = 14; }), {"dst_head_stride = 14"}},
      {"scatter_scores_rows_past_suffix", "scatter_scores",
       bad_scatter_scores([](SS& a, Buffers&) { a.first_query = 2; }), {"first_query = 2", "suffix of 4"}},
      {"scatter_scores_first_query_negative", "scatter_scores",
       bad_scatter_scores([](SS& a, Buffers&) { a.first_query = -1; }), {"first_query = -1"}},
      {"scatter_scores_cols_past_cache", "scatter_scores",
       bad_scatter_scores([](SS& a, Buffers&) { a.first_key = 4; }), {"first_key = 4", "8 cache rows"}},
      {"scatter_scores_softcap_negative", "scatter_scores",
       bad_scatter_scores([](SS& a, Buffers&) { a.softcap = -1.0f; }), {"softcap = -1"}},
      {"scatter_scores_in_place_with_other_strides", "scatter_scores",
       bad_scatter_scores([](SS& a, Buffers&) { a.dst = const_cast<float*>(a.scores); a.dst_row_stride = 6; a.dst_head_stride = 18; }),
       {"dst = scores"}},
      {"scatter_scores_dst_overlaps_scores", "scatter_scores",
       bad_scatter_scores([](SS& a, Buffers&) { a.dst = const_cast<float*>(a.scores) + 1; }),
       {"dst overlaps scores"}},
      {"scatter_scores_ring_offset_past_prefix", "scatter_scores",
       bad_scatter_scores([](SS& a, Buffers&) { a.mask.spec.ring_length = 2; a.mask.spec.ring_offset = 100; }),
       {"mask.spec.ring_offset = 100"}},
      {"scatter_scores_window_negative", "scatter_scores",
       bad_scatter_scores([](SS& a, Buffers&) { a.mask.spec.window = -3; }), {"mask.spec.window = -3"}},
      // scatter_values
      {"scatter_values_heads_negative", "scatter_values", bad_scatter_values([](SV& a, Buffers&) { a.heads = -1; }),
       {"heads = -1"}},
      {"scatter_values_rows_negative", "scatter_values", bad_scatter_values([](SV& a, Buffers&) { a.rows = -5; }),
       {"rows = -5"}},
      {"scatter_values_head_dim_zero", "scatter_values", bad_scatter_values([](SV& a, Buffers&) { a.head_dim = 0; }),
       {"head_dim = 0"}},
      {"scatter_values_dtype_unknown", "scatter_values",
       bad_scatter_values([](SV& a, Buffers&) { a.dtype = static_cast<DType>(3); }), {"dtype = 3"}},
      {"scatter_values_src_null", "scatter_values", bad_scatter_values([](SV& a, Buffers&) { a.src = nullptr; }),
       {"src = null"}},
      {"scatter_values_out_null", "scatter_values", bad_scatter_values([](SV& a, Buffers&) { a.out = nullptr; }),
       {"out = null"}},
      {"scatter_values_src_row_stride_below_head_dim", "scatter_values",
       bad_scatter_values([](SV& a, Buffers&) { a.src_row_stride = 7; }), {"src_row_stride = 7", "head_dim = 8"}},
      {"scatter_values_src_head_stride_overlaps", "scatter_values",
       bad_scatter_values([](SV& a, Buffers&) { a.src_head_stride = 20; }), {"src_head_stride = 20"}},
      {"scatter_values_out_head_stride_below_head_dim", "scatter_values",
       bad_scatter_values([](SV& a, Buffers&) { a.out_head_stride = 4; }), {"out_head_stride = 4", "head_dim = 8"}},
      {"scatter_values_out_token_stride_below_head_dim", "scatter_values",
       bad_scatter_values([](SV& a, Buffers&) { a.out_token_stride = 7; }), {"out_token_stride = 7", "head_dim = 8"}},
      {"scatter_values_out_overlaps_src", "scatter_values",
       bad_scatter_values([](SV& a, Buffers&) { a.out = const_cast<float*>(a.src) + 8; }), {"out overlaps src"}},
  };
  return calls;
}

void PrintTo(const BadCall& item, std::ostream* os) { *os << item.name; }

class ComponentRejects : public ::testing::TestWithParam<std::tuple<Backend, BadCall>> {
 protected:
  void SetUp() override { session_.start(std::get<0>(GetParam())); }
  void TearDown() override { session_.stop(); }
  BackendSession session_;
};

TEST_P(ComponentRejects, NamesArgumentAndValueAndWritesNothing) {
  const BadCall& bad = std::get<1>(GetParam());
  Buffers buffers(*session_.context);
  const Status status = bad.call(*session_.context, buffers);
  EXPECT_EQ(status.code(), StatusCode::invalid_argument) << status.message();
  EXPECT_EQ(status.message().rfind(bad.function + ": ", 0), 0u) << status.message();
  for (const std::string& fragment : bad.fragments) {
    EXPECT_NE(status.message().find(fragment), std::string::npos)
        << "message \"" << status.message() << "\" lacks \"" << fragment << "\"";
  }
  buffers.out.download();
  buffers.lse.download();
  EXPECT_TRUE(buffers.out.unchanged()) << "a rejected call wrote to its output";
  EXPECT_TRUE(buffers.lse.unchanged()) << "a rejected call wrote to lse";
}

std::string bad_call_name(const ::testing::TestParamInfo<std::tuple<Backend, BadCall>>& info) {
  return std::string(to_string(std::get<0>(info.param))) + "_" + std::get<1>(info.param).name;
}

INSTANTIATE_TEST_SUITE_P(Items, ComponentRejects,
                         ::testing::Combine(::testing::Values(Backend::cpu, Backend::cuda),
                                            ::testing::ValuesIn(bad_calls())),
                         bad_call_name);

// The unmutated calls succeed, so each rejection above is down to its one mutation.
using ComponentBaseline = BackendTest;

TEST_P(ComponentBaseline, ValidCallsRun) {
  Buffers buffers(context());
  WA_EXPECT_OK(matmul(context(), valid_matmul(buffers)));
  WA_EXPECT_OK(softmax(context(), valid_softmax(buffers)));
  WA_EXPECT_OK(scatter_scores(context(), valid_scatter_scores(buffers)));
  WA_EXPECT_OK(scatter_values(context(), valid_scatter_values(buffers)));
  // Empty calls are valid and write nothing.
  MatmulArguments empty = valid_matmul(buffers);
  empty.m = 0;
  WA_EXPECT_OK(matmul(context(), empty));
  WA_EXPECT_OK(context().synchronize());
}

WA_INSTANTIATE_BACKENDS(ComponentBaseline);

}  // namespace
}  // namespace wideattn::test
