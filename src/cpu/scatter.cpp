// scatter_scores (soft-cap, then mask) and scatter_values (group-major f32 -> token-major).
#include <algorithm>
#include <cmath>

#include "cpu/convert_rows.h"
#include "cpu/cpu_components.h"
#include "cpu/vector_math.h"
#include "cpu/visible_interval.h"

namespace wideattn::detail::cpu {

void scatter_scores(const ScatterScoresArguments& a) {
  const int64_t rows = a.rows, cols = a.cols;
  const int64_t total = int64_t{a.heads} * rows;
  const bool intervals = mask_has_intervals(a.mask);
  const float cap = a.softcap;
#pragma omp parallel for schedule(dynamic, 8) if (total * cols >= (int64_t{1} << 14))
  for (int64_t hr = 0; hr < total; ++hr) {
    const int64_t hd = hr / rows, r = hr % rows;
    const float* src = a.scores + hd * a.scores_head_stride + r * a.scores_row_stride;
    float* dst = a.dst + hd * a.dst_head_stride + r * a.dst_row_stride;
    const int64_t t = a.first_query + r;
    if (cap > 0.0f) {
      const float inv = 1.0f / cap;
      for (int64_t c = 0; c < cols; ++c) dst[c] = cap * std::tanh(src[c] * inv);
    } else if (dst != src) {
      std::copy_n(src, cols, dst);
    }
    KeyInterval iv;
    if (intervals && visible_interval(a.mask, t, &iv)) {
      // Columns outside [first - first_key, last - first_key) are hidden.
      const int64_t lo = std::clamp<int64_t>(iv.first - a.first_key, 0, cols);
      const int64_t hi = std::clamp<int64_t>(iv.last - a.first_key, lo, cols);
      std::fill(dst, dst + lo, kNegInf);
      std::fill(dst + hi, dst + cols, kNegInf);
    } else {
      for (int64_t c = 0; c < cols; ++c) {
        if (!key_visible(a.mask, t, a.first_key + c)) dst[c] = kNegInf;
      }
    }
  }
}

void scatter_values(const ScatterValuesArguments& a) {
  const int64_t total = int64_t{a.heads} * a.rows;
  const std::size_t es = dtype_size(a.dtype);
#pragma omp parallel for schedule(dynamic, 16) if (total * a.head_dim >= (int64_t{1} << 15))
  for (int64_t hr = 0; hr < total; ++hr) {
    const int64_t hd = hr / a.rows, r = hr % a.rows;
    const float* src = a.src + hd * a.src_head_stride + r * a.src_row_stride;
    char* out = static_cast<char*>(a.out) + (r * a.out_token_stride + hd * a.out_head_stride) * es;
    convert_from_f32(src, out, a.dtype, a.head_dim);
  }
}

}  // namespace wideattn::detail::cpu
