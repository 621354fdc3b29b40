// merge_states on the CPU: one (token, head) row at a time, OpenMP over rows. Each live state's
// row is converted to f32 and accumulated with weight exp(lse_s - max); dead states (lse -inf)
// are skipped rather than weighted by 0, so NaN in their rows never reaches the sum.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/convert_rows.h"
#include "cpu/cpu_components.h"

namespace wideattn::detail::cpu {

void merge_states(const MergeStatesArguments& a) {
  constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();
  const int64_t rows = a.tokens * a.heads;
  const int64_t d = a.head_dim;
  const std::size_t out_size = dtype_size(a.out_dtype);
#pragma omp parallel if (rows * d * a.num_states >= (int64_t{1} << 15))
  {
    std::vector<float> row(static_cast<std::size_t>(d)), acc(static_cast<std::size_t>(d));
    std::vector<float> weight(static_cast<std::size_t>(a.num_states));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t token = r / a.heads, head = r % a.heads;
      float top = kMinusInfinity;
      for (int32_t s = 0; s < a.num_states; ++s) {
        const AttentionState& st = a.states[s];
        weight[s] = st.lse[token * st.lse_token_stride + head * st.lse_head_stride];
        top = std::fmax(top, weight[s]);
      }
      float total = 0.0f;
      std::fill(acc.begin(), acc.end(), 0.0f);
      if (top != kMinusInfinity) {
        for (int32_t s = 0; s < a.num_states; ++s) {
          if (weight[s] == kMinusInfinity) continue;
          const AttentionState& st = a.states[s];
          const float w = std::exp(weight[s] - top);
          total += w;
          const char* in = static_cast<const char*>(st.out) +
                           (token * st.out_token_stride + head * st.out_head_stride) * dtype_size(st.dtype);
          convert_to_f32(in, st.dtype, row.data(), d);
          for (int64_t e = 0; e < d; ++e) acc[e] += w * row[e];
        }
      }
      // total >= 1 when any state is live (the largest weighs exp(0)); 0 leaves zeros.
      char* out = static_cast<char*>(a.out) + (token * a.out_token_stride + head * a.out_head_stride) * out_size;
      convert_from_f32(acc.data(), out, a.out_dtype, d, total > 0.0f ? 1.0f / total : 0.0f);
      if (a.lse) {
        a.lse[token * a.lse_token_stride + head * a.lse_head_stride] =
            total > 0.0f ? top + std::log(total) : kMinusInfinity;
      }
    }
  }
}

}  // namespace wideattn::detail::cpu
