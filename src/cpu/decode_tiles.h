// Register-tiled inner loops of the CPU decode kernel (AVX-512).
//   qk_tile: RT query rows x KT keys of dot products (RT * KT = 16 accumulators), each K chunk
//            loaded once and used by all RT rows; one transposing reduction per tile.
//   pv_tile: RT rows x 64 output columns accumulated in registers over a block of keys, each
//            V chunk loaded and converted once for all RT rows; keys of probability 0 can be
//            skipped (hidden keys: inf or NaN in their V rows must not reach the row).
// K/V come straight from the cache in their storage dtype; bf16 dot products use AVX512-BF16
// (exact bf16 products, f32 accumulation) when the target has it. Rows come one stride apart
// (contiguous caches, blocks inside one page: the code is that of an unpaged cache) or listed
// (blocks that cross pages); what to prefetch is the next block's same row, a fixed distance on
// (AheadBy) or listed (AheadList).
#pragma once

#include <cstdint>

#include "cpu/fp8_widen.h"
#include "cpu/vector_math.h"

#if WIDEATTN_CPU_AVX512
namespace wideattn::detail::cpu::tiles {

// Lane i of the result is the sum of the 16 lanes of a[i].
inline __m512 reduce16(__m512 (&a)[16]) {
  __m512 b[8], c[4], e[2];
  for (int i = 0; i < 8; ++i) {
    b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                         _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d x = _mm512_castps_pd(b[2 * i]), y = _mm512_castps_pd(b[2 * i + 1]);
    c[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  for (int i = 0; i < 2; ++i) {
    e[i] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  }
  return _mm512_add_ps(_mm512_shuffle_f32x4(e[0], e[1], _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(e[0], e[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

// Storage policies: how a K/V chunk becomes f32 lanes (or bf16 pairs for the dot instruction).
struct F32 {
  using T = float;
  using Q = float;
  static constexpr int kStep = 16;
  using Mask = __mmask16;
  static Mask tail(int64_t remaining) { return tail_mask(remaining); }
  static __m512 load(const T* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static __m512 madd(__m512 acc, __m512 q, __m512 k) { return _mm512_fmadd_ps(q, k, acc); }
  static __m512 load_q(const Q* p) { return _mm512_load_ps(p); }
};
struct F16 {
  using T = uint16_t;
  using Q = float;
  static constexpr int kStep = 16;
  using Mask = __mmask16;
  static Mask tail(int64_t remaining) { return tail_mask(remaining); }
  static __m512 load(const T* p, Mask m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }
  static __m512 madd(__m512 acc, __m512 q, __m512 k) { return _mm512_fmadd_ps(q, k, acc); }
  static __m512 load_q(const Q* p) { return _mm512_load_ps(p); }
};
struct BF16 {
  using T = uint16_t;
  using Q = float;
  static constexpr int kStep = 16;
  using Mask = __mmask16;
  static Mask tail(int64_t remaining) { return tail_mask(remaining); }
  static __m512 load(const T* p, Mask m) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
  }
  static __m512 madd(__m512 acc, __m512 q, __m512 k) { return _mm512_fmadd_ps(q, k, acc); }
  static __m512 load_q(const Q* p) { return _mm512_load_ps(p); }
};
#if defined(__AVX512BF16__)
// Q kept as bf16 (exact: it is stored as bf16); 32 products per instruction.
struct BF16Dot {
  using T = uint16_t;
  using Q = uint16_t;
  static constexpr int kStep = 32;
  using Mask = __mmask32;
  static Mask tail(int64_t remaining) {
    return remaining >= 32 ? static_cast<__mmask32>(0xffffffffu)
                           : static_cast<__mmask32>((1u << remaining) - 1u);
  }
  static __m512 load(const T* p, Mask m) { return _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(m, p)); }
  static __m512 madd(__m512 acc, __m512 q, __m512 k) {
    return _mm512_dpbf16_ps(acc, (__m512bh)q, (__m512bh)k);
  }
  static __m512 load_q(const Q* p) { return _mm512_castsi512_ps(_mm512_load_si512(p)); }
};
#endif

#if WIDEATTN_CPU_FP8_WIDEN
// An e4m3 (fp8) cache read as it is: each chunk of codes widened in registers as it loads
// (fp8_widen.h, exact), so K and V are read at one byte an element and never staged as 16-bit
// rows. The cache's scales are the caller's (applied to the scores and to the output).
struct FP8 {  // f32 lanes: P V, and Q K^T with f32 queries
  using T = uint8_t;
  using Q = float;
  static constexpr int kStep = 16;
  using Mask = __mmask16;
  static Mask tail(int64_t remaining) { return tail_mask(remaining); }
  static __m512 load(const T* p, Mask m) {
    const __m512i bf16 = bf16_from_fp8x32(_mm256_castsi128_si256(_mm_maskz_loadu_epi8(m, p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(bf16)), 16));
  }
  static __m512 madd(__m512 acc, __m512 q, __m512 k) { return _mm512_fmadd_ps(q, k, acc); }
  static __m512 load_q(const Q* p) { return _mm512_load_ps(p); }
};
#if defined(__AVX512BF16__)
// Q K^T with bf16 queries kept as they are: 32 codes widened to bf16 pairs a load.
struct FP8Dot {
  using T = uint8_t;
  using Q = uint16_t;
  static constexpr int kStep = 32;
  using Mask = __mmask32;
  static Mask tail(int64_t remaining) { return BF16Dot::tail(remaining); }
  static __m512 load(const T* p, Mask m) { return _mm512_castsi512_ps(bf16_from_fp8x32(_mm256_maskz_loadu_epi8(m, p))); }
  static __m512 madd(__m512 acc, __m512 q, __m512 k) { return BF16Dot::madd(acc, q, k); }
  static __m512 load_q(const Q* p) { return BF16Dot::load_q(p); }
};
#endif
#endif

// Software prefetch into L2 of the line at p: the next key block's rows are requested while
// this block computes. The hardware prefetcher alone keeps too few misses in flight for one
// core on the strided K/V rows (heads interleaved in the cache, or pages anywhere).
inline void prefetch_line(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1); }

// The next block's row i, at the place `here` (column c) of this block's row i: `bytes` further
// on (0: no prefetch), or listed.
struct AheadBy {
  int64_t bytes;
  bool on() const { return bytes != 0; }
  template <class T>
  const void* at(int64_t, const T* here, int64_t) const {
    return reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(here) + bytes);
  }
};
template <class T>
struct AheadList {
  const T* const* next;  // null: no prefetch
  bool on() const { return next != nullptr; }
  const void* at(int64_t i, const T*, int64_t c) const { return next[i] + c; }
};

// The V rows of a block: one stride apart, or listed.
template <class T>
struct StridedRows {
  const T* base;
  int64_t stride;  // elements
  AheadBy ahead;
  const T* row(int64_t j) const { return base + j * stride; }
};
template <class T>
struct ListedRows {
  const T* const* rows;
  AheadList<T> ahead;
  const T* row(int64_t j) const { return rows[j]; }
};

// out[r * out_stride + kk] = dot(q row r, key kk), q rows padded with zeros to a multiple of
// 32 elements (q_stride). ahead: what to prefetch for key kk (AheadBy / AheadList).
template <class P, int RT, int KT, class Ahead>
inline void qk_tile(const typename P::Q* q, int64_t q_stride, const typename P::T* const* keys,
                    int64_t d, float* out, int64_t out_stride, const Ahead& ahead) {
  static_assert(RT * KT == 16, "one reduction per 16 accumulators");
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();
  auto step = [&](int64_t c, typename P::Mask m) {
    __m512 qv[RT];
    for (int r = 0; r < RT; ++r) qv[r] = P::load_q(q + r * q_stride + c);
    for (int kk = 0; kk < KT; ++kk) {
      if (ahead.on()) prefetch_line(ahead.at(kk, keys[kk] + c, c));
      const __m512 kv = P::load(keys[kk] + c, m);
      for (int r = 0; r < RT; ++r) acc[r * KT + kk] = P::madd(acc[r * KT + kk], qv[r], kv);
    }
  };
  int64_t c = 0;
  for (; c + P::kStep <= d; c += P::kStep) step(c, P::tail(P::kStep));
  if (c < d) step(c, P::tail(d - c));
  alignas(64) float result[16];
  _mm512_store_ps(result, reduce16(acc));
  for (int r = 0; r < RT; ++r)
    for (int kk = 0; kk < KT; ++kk) out[r * out_stride + kk] = result[r * KT + kk];
}

// acc[r][c..c+64) = acc * alpha[r] + sum_j p[r][j] * v_j[c..c+64) for RT rows, over all columns,
// v_j = v.row(j) (StridedRows / ListedRows, whose `ahead` says what to prefetch). SkipZeros:
// terms with p[r][j] == 0 are left out (callers set it only for tiles that hold a zero: masking
// every FMA made the whole loop twice as slow on the development machine).
template <class P, int RT, bool SkipZeros, class Rows>
inline void pv_tile(const float* p, int64_t p_stride, const Rows& v, int64_t n, const float* alpha,
                    float* acc, int64_t acc_stride, int64_t d) {
  for (int64_t c = 0; c < d; c += 64) {
    __mmask16 m[4];
    for (int w = 0; w < 4; ++w) m[w] = tail_mask(d - c - 16 * w > 0 ? d - c - 16 * w : 0);
    __m512 a[RT][4];
    for (int r = 0; r < RT; ++r) {
      const __m512 s = _mm512_set1_ps(alpha[r]);
      for (int w = 0; w < 4; ++w)
        a[r][w] = _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m[w], acc + r * acc_stride + c + 16 * w));
    }
    // Bytes of each V row this chunk covers (the cache lines to prefetch).
    constexpr int64_t es = sizeof(typename P::T);
    const int64_t chunk_bytes = (d - c < 64 ? d - c : 64) * es;
    for (int64_t j = 0; j < n; ++j) {
      const typename P::T* vj = v.row(j) + c;
      if (v.ahead.on()) {
        const char* next = static_cast<const char*>(v.ahead.at(j, vj, c));
        for (int64_t off = 0; off < chunk_bytes; off += 64) prefetch_line(next + off);
      }
      __m512 vv[4];
      for (int w = 0; w < 4; ++w) vv[w] = P::load(vj + 16 * w, m[w]);
      for (int r = 0; r < RT; ++r) {
        const float pr = p[r * p_stride + j];
        const __m512 pj = _mm512_set1_ps(pr);
        if (SkipZeros) {
          // A key of probability exactly 0 (hidden from this row) adds nothing, even when its
          // V row holds inf or NaN (0 x inf = NaN): the FMA is masked off, not multiplied by 0.
          const __mmask16 live = static_cast<__mmask16>(pr != 0.0f ? 0xffff : 0);
          for (int w = 0; w < 4; ++w) a[r][w] = _mm512_mask3_fmadd_ps(pj, vv[w], a[r][w], live);
        } else {
          for (int w = 0; w < 4; ++w) a[r][w] = _mm512_fmadd_ps(pj, vv[w], a[r][w]);
        }
      }
    }
    for (int r = 0; r < RT; ++r)
      for (int w = 0; w < 4; ++w) _mm512_mask_storeu_ps(acc + r * acc_stride + c + 16 * w, m[w], a[r][w]);
  }
}

}  // namespace wideattn::detail::cpu::tiles
#endif
