#include "cpu/convert_rows.h"

#include <array>
#include <cstring>

#include "cpu/fp8_widen.h"
#include "cpu/vector_math.h"
#include "wideattn/convert.h"

namespace wideattn::detail::cpu {
namespace {

#if WIDEATTN_CPU_AVX512
// Round-to-nearest-even f32 -> bf16 bits, NaN kept quiet: float_to_bf16 in 16 lanes.
inline __m256i bf16_from_ps(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded =
      _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  const __m512i abs = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
  const __mmask16 nan = _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7f800000));
  const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  return _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(rounded, nan, quiet));
}
#endif

#if WIDEATTN_CPU_AVX512
// 16 e4m3 codes as f32, exactly: normal codes rebias the exponent (7 -> 127) into f32 bits,
// subnormal ones (exponent 0) are mantissa x 2^-9, S.1111.111 is NaN.
inline __m512 ps_from_fp8(__m128i codes) {
  const __m512i x = _mm512_cvtepu8_epi32(codes);
  const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(x, _mm512_set1_epi32(0x80)), 24);
  const __m512i exponent = _mm512_and_si512(_mm512_srli_epi32(x, 3), _mm512_set1_epi32(0xf));
  const __m512i mantissa = _mm512_and_si512(x, _mm512_set1_epi32(0x7));
  const __m512i normal_bits = _mm512_or_si512(
      _mm512_slli_epi32(_mm512_add_epi32(exponent, _mm512_set1_epi32(120)), 23),
      _mm512_slli_epi32(mantissa, 20));
  const __m512 subnormal = _mm512_mul_ps(_mm512_cvtepi32_ps(mantissa), _mm512_set1_ps(0x1p-9f));
  const __mmask16 is_subnormal = _mm512_cmpeq_epi32_mask(exponent, _mm512_setzero_si512());
  __m512i bits = _mm512_mask_mov_epi32(normal_bits, is_subnormal, _mm512_castps_si512(subnormal));
  const __mmask16 is_nan = _mm512_cmpeq_epi32_mask(_mm512_and_si512(x, _mm512_set1_epi32(0x7f)),
                                                    _mm512_set1_epi32(0x7f));
  bits = _mm512_mask_mov_epi32(bits, is_nan, _mm512_set1_epi32(0x7fc00000));
  return _mm512_castsi512_ps(_mm512_or_si512(bits, sign));
}
#endif

// Every e4m3 code as f32 (256 entries), for the tails and portable builds.
const std::array<float, 256>& fp8_e4m3_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int i = 0; i < 256; ++i) t[i] = fp8_e4m3_to_float(static_cast<uint8_t>(i));
    return t;
  }();
  return table;
}

}  // namespace

void convert_to_f32(const void* src, DType dtype, float* dst, int64_t n) {
  if (dtype == DType::f32) {
    std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(float));
    return;
  }
  if (dtype == DType::fp8_e4m3) {
    const auto* s = static_cast<const uint8_t*>(src);
    int64_t i = 0;
#if WIDEATTN_CPU_AVX512
    for (; i + 16 <= n; i += 16) {
      _mm512_storeu_ps(dst + i, ps_from_fp8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
    }
#endif
    const std::array<float, 256>& table = fp8_e4m3_table();
    for (; i < n; ++i) dst[i] = table[s[i]];
    return;
  }
  const auto* s = static_cast<const uint16_t*>(src);
  int64_t i = 0;
#if WIDEATTN_CPU_AVX512
  if (dtype == DType::bf16) {
    for (; i + 16 <= n; i += 16) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i));
      _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
    }
  } else {
    for (; i + 16 <= n; i += 16) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i));
      _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h));
    }
  }
#endif
  if (dtype == DType::bf16) {
    for (; i < n; ++i) dst[i] = bf16_to_float(s[i]);
  } else {
    for (; i < n; ++i) dst[i] = f16_to_float(s[i]);
  }
}

void convert_fp8_to_bf16(const uint8_t* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
#if WIDEATTN_CPU_FP8_WIDEN
  for (; i + 32 <= n; i += 32) {  // the table lookup (fp8_widen.h)
    _mm512_storeu_si512(dst + i, bf16_from_fp8x32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
  }
#endif
#if WIDEATTN_CPU_AVX512
  for (; i + 16 <= n; i += 16) {  // the exact f32 value's top half is the bf16 value
    const __m512 x = ps_from_fp8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                        _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(x), 16)));
  }
#endif
  const std::array<float, 256>& table = fp8_e4m3_table();
  for (; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &table[src[i]], sizeof(bits));
    dst[i] = static_cast<uint16_t>(bits >> 16);
  }
}

void convert_from_f32(const float* src, void* dst, DType dtype, int64_t n, float scale) {
  if (dtype == DType::f32) {
    auto* d = static_cast<float*>(dst);
    if (scale == 1.0f) {
      std::memcpy(d, src, static_cast<std::size_t>(n) * sizeof(float));
    } else {
      for (int64_t i = 0; i < n; ++i) d[i] = src[i] * scale;
    }
    return;
  }
  if (dtype == DType::fp8_e4m3) {  // quantising writes (write_kv): rare, scalar
    auto* d = static_cast<uint8_t*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = float_to_fp8_e4m3(src[i] * scale);
    return;
  }
  auto* d = static_cast<uint16_t*>(dst);
  int64_t i = 0;
#if WIDEATTN_CPU_AVX512
  const __m512 vs = _mm512_set1_ps(scale);
  if (dtype == DType::bf16) {
    for (; i + 16 <= n; i += 16) {
      const __m512 x = _mm512_mul_ps(_mm512_loadu_ps(src + i), vs);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), bf16_from_ps(x));
    }
  } else {
    for (; i + 16 <= n; i += 16) {
      const __m512 x = _mm512_mul_ps(_mm512_loadu_ps(src + i), vs);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i),
                          _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
  }
#endif
  if (dtype == DType::bf16) {
    for (; i < n; ++i) d[i] = float_to_bf16(src[i] * scale);
  } else {
    for (; i < n; ++i) d[i] = float_to_f16(src[i] * scale);
  }
}

}  // namespace wideattn::detail::cpu
