// e4m3 (fp8) codes widened to bf16 on the CPU: every e4m3 value is a bf16 value, so a table of
// the 128 magnitudes' bf16 bits (built at compile time) and the sign bit give the exact result.
// With AVX-512BW, 32 codes at a time: the table in four registers, two two-source word permutes
// (index bits 0-5), a blend on bit 6, then the sign (8 instructions per 32 codes, a quarter of
// the arithmetic route's). convert_rows.cpp widens rows with it; the decode's tile loops
// (decode_tiles.h) widen K/V chunks in registers as they load them.
#pragma once

#include <array>
#include <cstdint>

#include "cpu/vector_math.h"

namespace wideattn::detail::cpu {

// bf16 bits of e4m3 magnitude code c (0-127; bias 7, no infinity, S.1111.111 is NaN).
constexpr uint16_t fp8_e4m3_bf16_magnitude(int c) {
  const int exponent = c >> 3, mantissa = c & 7;
  if (c == 0x7f) return 0x7fc0;  // NaN (quiet)
  if (exponent > 0) return static_cast<uint16_t>(((exponent + 120) << 7) | (mantissa << 4));
  if (mantissa == 0) return 0;
  // Subnormal: mantissa x 2^-9 = 2^(h - 9) x 1.f, h the mantissa's top bit.
  const int h = mantissa >= 4 ? 2 : mantissa >= 2 ? 1 : 0;
  return static_cast<uint16_t>(((118 + h) << 7) | ((mantissa - (1 << h)) << (7 - h)));
}

alignas(64) inline constexpr std::array<uint16_t, 128> kFp8Bf16Magnitudes = [] {
  std::array<uint16_t, 128> table{};
  for (int c = 0; c < 128; ++c) table[c] = fp8_e4m3_bf16_magnitude(c);
  return table;
}();

#if WIDEATTN_CPU_AVX512 && defined(__AVX512BW__)
#define WIDEATTN_CPU_FP8_WIDEN 1
// 32 codes -> their 32 bf16 values (word lanes), exactly.
inline __m512i bf16_from_fp8x32(__m256i codes) {
  const __m512i t0 = _mm512_load_si512(kFp8Bf16Magnitudes.data());
  const __m512i t1 = _mm512_load_si512(kFp8Bf16Magnitudes.data() + 32);
  const __m512i t2 = _mm512_load_si512(kFp8Bf16Magnitudes.data() + 64);
  const __m512i t3 = _mm512_load_si512(kFp8Bf16Magnitudes.data() + 96);
  const __m512i wide = _mm512_cvtepu8_epi16(codes);
  const __m512i magnitude = _mm512_and_si512(wide, _mm512_set1_epi16(0x7f));
  const __m512i low = _mm512_permutex2var_epi16(t0, magnitude, t1);
  const __m512i high = _mm512_permutex2var_epi16(t2, magnitude, t3);
  const __m512i value = _mm512_mask_mov_epi16(low, _mm512_test_epi16_mask(magnitude, _mm512_set1_epi16(0x40)), high);
  return _mm512_or_si512(value, _mm512_slli_epi16(_mm512_and_si512(wide, _mm512_set1_epi16(0x80)), 8));
}
#endif

}  // namespace wideattn::detail::cpu
