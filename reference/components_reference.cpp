#include "reference/components_reference.h"

#include <cmath>
#include <cstdlib>
#include <limits>

#include "wideattn/convert.h"

namespace wideattn::reference {
namespace {

constexpr double kMinusInfinity = -std::numeric_limits<double>::infinity();

double element(const void* data, DType dtype, int64_t index) {
  return load_as_float(data, dtype, static_cast<std::size_t>(index));
}

}  // namespace

bool key_visible(const MaskSpec& spec, int64_t prefix_length, int64_t suffix_length, int64_t t,
                 int64_t i) {
  (void)suffix_length;
  const bool tree = spec.tree_start != nullptr;
  const int64_t query_position = prefix_length + (tree ? spec.tree_height[t] : t);
  int64_t key_position = i;
  if (i < prefix_length) {
    if (spec.ring_length > 0) {
      const int64_t logical = (prefix_length + i - spec.ring_offset) % prefix_length;
      if (logical >= spec.ring_length) return false;
      key_position = logical;
    }
  } else {
    const int64_t j = i - prefix_length;
    if (tree) {
      const bool in_subtree = spec.tree_start[j] <= t && t <= spec.tree_end[j];
      if (!in_subtree) return false;
      key_position = prefix_length + spec.tree_height[j];
    } else if (spec.causal) {
      if (j > t) return false;
    }
  }
  if (spec.window > 0) {
    const int64_t distance = query_position - key_position;
    if (spec.causal) {
      if (!(0 <= distance && distance < spec.window)) return false;
    } else {
      if (std::llabs(distance) > spec.window / 2) return false;
    }
  }
  return true;
}

std::vector<double> matmul(const MatmulArguments& a) {
  const int64_t lda = a.a_leading_dimension ? a.a_leading_dimension : a.k;
  const int64_t ldb = a.b_leading_dimension ? a.b_leading_dimension : (a.b_transpose ? a.k : a.n);
  const int64_t ldd = a.d_leading_dimension ? a.d_leading_dimension : a.n;
  std::vector<double> d(static_cast<std::size_t>(a.batch) * a.m * a.n);
  for (int64_t batch = 0; batch < a.batch; ++batch) {
    for (int64_t row = 0; row < a.m; ++row) {
      for (int64_t col = 0; col < a.n; ++col) {
        double sum = 0.0;
        for (int64_t x = 0; x < a.k; ++x) {
          const double av = element(a.a, a.a_dtype, a.a_offset + batch * a.a_batch_stride + row * lda + x);
          const int64_t b_index = a.b_transpose ? col * ldb + x : x * ldb + col;
          const double bv = element(a.b, a.b_dtype, a.b_offset + batch * a.b_batch_stride + b_index);
          sum += av * bv;
        }
        double value = static_cast<double>(a.ab_scale) * sum;
        if (a.c == MatmulC::accumulate) {
          value += element(a.d, a.d_dtype, a.d_offset + batch * a.d_batch_stride + row * ldd + col);
        } else if (a.c == MatmulC::bias) {
          value += element(a.c_data, a.d_dtype, col);
        }
        d[(batch * a.m + row) * a.n + col] = value;
      }
    }
  }
  return d;
}

SoftmaxResult softmax(const SoftmaxArguments& a) {
  SoftmaxResult r;
  r.output.assign(static_cast<std::size_t>(a.rows * a.cols), 0.0);
  r.lse.assign(static_cast<std::size_t>(a.rows), kMinusInfinity);
  const int64_t per_block = a.rows_per_block > 0 ? a.rows_per_block : a.rows;
  for (int64_t row = 0; row < a.rows; ++row) {
    const float* in = a.input + row * a.input_row_stride;
    const bool has_sink = a.sinks != nullptr;
    const double sink = has_sink ? a.sinks[row / per_block] : kMinusInfinity;
    double maximum = sink;
    for (int64_t c = 0; c < a.cols; ++c) maximum = std::max(maximum, static_cast<double>(in[c]));
    if (maximum == kMinusInfinity) continue;  // nothing to normalise: zeros, LSE -inf
    double sum = has_sink ? std::exp(sink - maximum) : 0.0;
    for (int64_t c = 0; c < a.cols; ++c) sum += std::exp(static_cast<double>(in[c]) - maximum);
    for (int64_t c = 0; c < a.cols; ++c) {
      r.output[row * a.cols + c] = std::exp(static_cast<double>(in[c]) - maximum) / sum;
    }
    r.lse[row] = maximum + std::log(sum);
  }
  return r;
}

std::vector<double> scatter_scores(const ScatterScoresArguments& a) {
  std::vector<double> dst(static_cast<std::size_t>(a.heads) * a.rows * a.cols);
  for (int64_t h = 0; h < a.heads; ++h) {
    for (int64_t r = 0; r < a.rows; ++r) {
      for (int64_t c = 0; c < a.cols; ++c) {
        double s = a.scores[h * a.scores_head_stride + r * a.scores_row_stride + c];
        if (a.softcap > 0) s = a.softcap * std::tanh(s / a.softcap);
        const bool visible = key_visible(a.mask.spec, a.mask.prefix_length, a.mask.suffix_length,
                                         a.first_query + r, a.first_key + c);
        dst[(h * a.rows + r) * a.cols + c] = visible ? s : kMinusInfinity;
      }
    }
  }
  return dst;
}

std::vector<double> scatter_values(const ScatterValuesArguments& a) {
  std::vector<double> out(static_cast<std::size_t>(a.rows) * a.heads * a.head_dim);
  for (int64_t r = 0; r < a.rows; ++r) {
    for (int64_t h = 0; h < a.heads; ++h) {
      for (int64_t x = 0; x < a.head_dim; ++x) {
        out[(r * a.heads + h) * a.head_dim + x] =
            a.src[h * a.src_head_stride + r * a.src_row_stride + x];
      }
    }
  }
  return out;
}

MergeStatesResult merge_states(const MergeStatesArguments& a) {
  MergeStatesResult r;
  r.out.assign(static_cast<std::size_t>(a.tokens) * a.heads * a.head_dim, 0.0);
  r.lse.assign(static_cast<std::size_t>(a.tokens) * a.heads, kMinusInfinity);
  for (int64_t t = 0; t < a.tokens; ++t) {
    for (int64_t h = 0; h < a.heads; ++h) {
      const std::size_t row = static_cast<std::size_t>(t * a.heads + h);
      double top = kMinusInfinity;
      for (int32_t s = 0; s < a.num_states; ++s) {
        const AttentionState& st = a.states[s];
        top = std::fmax(top, st.lse[t * st.lse_token_stride + h * st.lse_head_stride]);
      }
      if (top == kMinusInfinity) continue;
      double total = 0.0;
      for (int32_t s = 0; s < a.num_states; ++s) {
        const AttentionState& st = a.states[s];
        const double lse = st.lse[t * st.lse_token_stride + h * st.lse_head_stride];
        if (lse != kMinusInfinity) total += std::exp(lse - top);
      }
      const double merged = top + std::log(total);
      r.lse[row] = merged;
      for (int32_t s = 0; s < a.num_states; ++s) {
        const AttentionState& st = a.states[s];
        const double lse = st.lse[t * st.lse_token_stride + h * st.lse_head_stride];
        if (lse == kMinusInfinity) continue;
        const double w = std::exp(lse - merged);
        for (int64_t x = 0; x < a.head_dim; ++x) {
          r.out[row * a.head_dim + x] +=
              w * element(st.out, st.dtype, t * st.out_token_stride + h * st.out_head_stride + x);
        }
      }
    }
  }
  return r;
}

}  // namespace wideattn::reference
