// recompute_nonfinite_products on the CPU (core/backend.h): after the prefill pipeline's P V
// GEMM, each element that is not finite is summed again over the keys of non-zero probability.
// One vectorised probe per output row finds the rows that hold inf or NaN; only those take the
// slow path, so a problem without non-finite values pays one read of the values.
#include <cmath>
#include <vector>

#include "core/error.h"
#include "cpu/convert_rows.h"
#include "cpu/cpu_components.h"

namespace wideattn::detail::cpu {
namespace {

// NaN when some element of row[0, n) is inf or NaN (x - x is 0 for finite x), else 0.
float nonfinite_probe(const float* row, int64_t n) {
  float probe = 0.0f;
#pragma omp simd reduction(+ : probe)
  for (int64_t x = 0; x < n; ++x) probe += row[x] - row[x];
  return probe;
}

}  // namespace

void recompute_nonfinite_products(const MatmulArguments& pv) {
  // The pipeline's product on the CPU: f32 probabilities (A) and values (D), V (B) of any dtype.
  if (pv.a_dtype != DType::f32 || pv.d_dtype != DType::f32 || pv.b_transpose || pv.c != MatmulC::none) {
    throw_error(StatusCode::internal, "recompute_nonfinite_products: expected f32 A and D, B not transposed, no C");
  }
  const int64_t m = pv.m, n = pv.n, k = pv.k;
  const int64_t lda = pv.a_leading_dimension ? pv.a_leading_dimension : k;
  const int64_t ldb = pv.b_leading_dimension ? pv.b_leading_dimension : n;
  const int64_t ldd = pv.d_leading_dimension ? pv.d_leading_dimension : n;
  const std::size_t b_size = dtype_size(pv.b_dtype);
  const float* a = static_cast<const float*>(pv.a) + pv.a_offset;
  const char* b = static_cast<const char*>(pv.b) + pv.b_offset * static_cast<int64_t>(b_size);
  float* d = static_cast<float*>(pv.d) + pv.d_offset;
  const int64_t lines = int64_t{pv.batch} * m;

#pragma omp parallel for schedule(static) if (lines * n >= (int64_t{1} << 16))
  for (int64_t line = 0; line < lines; ++line) {
    const int64_t batch = line / m, r = line - batch * m;
    float* d_row = d + batch * pv.d_batch_stride + r * ldd;
    if (nonfinite_probe(d_row, n) == 0.0f) continue;
    const float* a_row = a + batch * pv.a_batch_stride + r * lda;
    const char* b_matrix = b + batch * pv.b_batch_stride * static_cast<int64_t>(b_size);
    std::vector<float> v_row(static_cast<std::size_t>(n)), sum(static_cast<std::size_t>(n), 0.0f);
    for (int64_t key = 0; key < k; ++key) {
      const float probability = a_row[key];
      if (probability == 0.0f) continue;  // hidden (or underflowed): contributes nothing
      convert_to_f32(b_matrix + key * ldb * static_cast<int64_t>(b_size), pv.b_dtype, v_row.data(), n);
      for (int64_t x = 0; x < n; ++x) sum[x] += probability * v_row[x];
    }
    for (int64_t x = 0; x < n; ++x) {
      if (!std::isfinite(d_row[x])) d_row[x] = pv.ab_scale * sum[x];
    }
  }
}

}  // namespace wideattn::detail::cpu
