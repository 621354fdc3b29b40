// Small vectorised row primitives (max, exp-and-sum, scale) shared by softmax and decode.
// AVX-512 when the build targets it; plain loops otherwise.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#if defined(__AVX512F__)
// GCC 12 warns falsely about _mm512_undefined_* inside the intrinsics headers (bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#define WIDEATTN_CPU_AVX512 1
#endif

namespace wideattn::detail::cpu {

inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();
inline constexpr float kPosInf = std::numeric_limits<float>::infinity();

#if WIDEATTN_CPU_AVX512
// e^x, about 1 ulp on the range softmax uses. Inputs below -110 (including -inf) give exactly 0.
inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-110.0f));
  x = _mm512_min_ps(x, _mm512_set1_ps(88.8f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  // Taylor to degree 7 on |r| <= ln2/2: truncation error below 1e-8 relative.
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

inline __mmask16 tail_mask(int64_t remaining) {
  return remaining >= 16 ? static_cast<__mmask16>(0xffff)
                         : static_cast<__mmask16>((1u << remaining) - 1u);
}
#endif

inline float row_max(const float* x, int64_t n) {
  float m = kNegInf;
  int64_t i = 0;
#if WIDEATTN_CPU_AVX512
  __m512 vm = _mm512_set1_ps(kNegInf);
  for (; i + 16 <= n; i += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(x + i));
  if (i < n) vm = _mm512_mask_max_ps(vm, tail_mask(n - i), vm, _mm512_maskz_loadu_ps(tail_mask(n - i), x + i));
  m = _mm512_reduce_max_ps(vm);
  i = n;
#endif
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// dst[i] = exp(x[i] - shift); returns the sum. dst may equal x. shift must be finite.
inline float exp_shift_sum(const float* x, float* dst, int64_t n, float shift) {
  int64_t i = 0;
  float sum = 0.0f;
#if WIDEATTN_CPU_AVX512
  const __m512 vs = _mm512_set1_ps(shift);
  __m512 acc = _mm512_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    const __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vs));
    _mm512_storeu_ps(dst + i, e);
    acc = _mm512_add_ps(acc, e);
  }
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vs)));
    _mm512_mask_storeu_ps(dst + i, m, e);
    acc = _mm512_add_ps(acc, e);
  }
  sum = _mm512_reduce_add_ps(acc);
  i = n;
#endif
  for (; i < n; ++i) {
    dst[i] = std::exp(x[i] - shift);
    sum += dst[i];
  }
  return sum;
}

inline void scale_row(float* x, int64_t n, float s) {
  int64_t i = 0;
#if WIDEATTN_CPU_AVX512
  const __m512 vs = _mm512_set1_ps(s);
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), vs));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vs));
  }
  i = n;
#endif
  for (; i < n; ++i) x[i] *= s;
}

}  // namespace wideattn::detail::cpu
