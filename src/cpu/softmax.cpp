// Row-wise softmax with per-block sinks and LSE, f32 math, parallel over rows.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/convert_rows.h"
#include "cpu/cpu_components.h"
#include "cpu/vector_math.h"

namespace wideattn::detail::cpu {

void softmax(const SoftmaxArguments& a) {
  const int64_t rows = a.rows, cols = a.cols;
  const int64_t per_block = a.rows_per_block > 0 ? a.rows_per_block : rows;
  const bool f32_out = a.output_dtype == DType::f32;
  const std::size_t out_size = dtype_size(a.output_dtype);

#pragma omp parallel if (rows * cols >= (int64_t{1} << 14))
  {
    std::vector<float> row_buffer(f32_out ? 0 : static_cast<std::size_t>(cols));
    // Dynamic: when another process preempts one thread, the others take its rows instead of
    // waiting for it at the barrier (the same choice in every row loop of this backend).
#pragma omp for schedule(dynamic, 8)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t block = r / per_block, in_block = r % per_block;
      // With no columns, input and output may be null (validate.cpp): no row pointers then.
      const float* in = cols > 0 ? a.input + r * a.input_row_stride : nullptr;
      void* out = cols > 0 ? static_cast<char*>(a.output) + r * a.output_row_stride * out_size : nullptr;
      const bool has_sink = a.sinks != nullptr;
      const float sink = has_sink ? a.sinks[block] : kNegInf;

      float max = cols > 0 ? row_max(in, cols) : kNegInf;
      if (sink > max) max = sink;
      float lse;
      if (max == kNegInf) {
        // Nothing visible and no sink: the row is zeros.
        if (cols > 0) {
          if (f32_out) {
            std::fill_n(static_cast<float*>(out), cols, 0.0f);
          } else {
            std::fill_n(static_cast<uint16_t*>(out), cols, uint16_t{0});
          }
        }
        lse = kNegInf;
      } else {
        float* e = f32_out ? static_cast<float*>(out) : row_buffer.data();
        // A +inf logit (from a non-finite query or key) makes the sum +inf or NaN, and so does a
        // NaN that row_max skipped while it hid a larger value: the softmax is undefined then, so
        // the row is NaN throughout and so is its LSE (docs/reliability.md), never a finite or
        // infinite LSE over a NaN row. A finite max bounds every term by 1, so a finite row
        // always has a finite sum.
        float sum = max == kPosInf ? kPosInf : cols > 0 ? exp_shift_sum(in, e, cols, max) : 0.0f;
        if (has_sink) sum += std::exp(sink - max);
        const bool undefined = !(sum <= std::numeric_limits<float>::max());
        if (undefined && cols > 0) std::fill_n(e, cols, std::numeric_limits<float>::quiet_NaN());
        if (cols > 0) {
          const float inverse = undefined ? 1.0f : 1.0f / sum;
          if (f32_out) {
            scale_row(e, cols, inverse);
          } else {
            convert_from_f32(e, out, a.output_dtype, cols, inverse);
          }
        }
        lse = undefined ? std::numeric_limits<float>::quiet_NaN() : max + std::log(sum);
      }
      if (a.lse) a.lse[block * a.lse_block_stride + in_block * a.lse_row_stride] = lse;
    }
  }
}

}  // namespace wideattn::detail::cpu
