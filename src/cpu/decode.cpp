// single_pass and two_pass decode for short suffixes (<= 8 tokens).
//
// One work item is (sequence, KV head, split). It takes all gqa heads x suffix tokens of its
// KV group as rows, so every K and V row is read from memory once for all of them: per block
// of keys it computes the scores of all rows (qk_tile), masks, updates an f32 online softmax
// per row, and accumulates P V (pv_tile). Single pass normalises and writes the output at the
// end; two pass writes unnormalised partials (output, max, sum) per split and merges them.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/dispatch.h"
#include "core/mask.h"
#include "core/workspace_layout.h"
#include "cpu/convert_rows.h"
#include "cpu/cpu_components.h"
#include "cpu/decode_tiles.h"
#include "cpu/kv_rows.h"
#include "cpu/vector_math.h"
#include "cpu/visible_interval.h"

namespace wideattn::detail::cpu {
namespace {

constexpr int64_t kKeyBlock = 64;  // keys per online-softmax step (a multiple of 16)
constexpr int64_t kQAlign = 32;    // q rows padded to this many elements (the bf16 dot step)

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Per-thread scratch, carved from one buffer.
struct ThreadScratch {
  void* q;                 // [rows, q_stride] f32, or raw bf16 for the bf16 dot path
  float* scores;           // [rows, kKeyBlock]; probabilities after the softmax step
  float* acc;              // [rows, d] unnormalised output
  float* row_max;          // [rows]
  float* row_sum;          // [rows]
  float* alpha;            // [rows] rescale of acc for the current block
  KeyInterval* intervals;  // [suffix]
  uint8_t* visible;        // [kKeyBlock]
  float* row;              // [d] one converted K/V row (portable path only)
  uint16_t* fp8_rows;      // [2, kKeyBlock, d] a block's K then V rows as bf16 (staged fp8 caches)
};

// Byte offsets of the ThreadScratch arrays for `rows` rows, 64-byte aligned.
struct ScratchLayout {
  int64_t rows = 0, q_stride = 0, d = 0;
  std::size_t q = 0, scores = 0, acc = 0, row_max = 0, row_sum = 0, alpha = 0, intervals = 0,
              visible = 0, row = 0, fp8_rows = 0, bytes = 0;
};

ScratchLayout scratch_layout(int64_t rows, int64_t d, int64_t suffix, bool staged_fp8) {
  ScratchLayout l;
  l.rows = rows;
  l.q_stride = round_up(d, kQAlign);
  l.d = d;
  std::size_t at = 0;
  auto take = [&](std::size_t bytes) {
    const std::size_t offset = at;
    at += (bytes + 63) / 64 * 64;
    return offset;
  };
  l.q = take(rows * l.q_stride * sizeof(float));
  l.scores = take(rows * kKeyBlock * sizeof(float));
  l.acc = take(rows * d * sizeof(float));
  l.row_max = take(rows * sizeof(float));
  l.row_sum = take(rows * sizeof(float));
  l.alpha = take(rows * sizeof(float));
  l.intervals = take(suffix * sizeof(KeyInterval));
  l.visible = take(kKeyBlock);
  l.row = take(d * sizeof(float));
  l.fp8_rows = take(staged_fp8 ? 2 * kKeyBlock * d * sizeof(uint16_t) : 0);
  l.bytes = at;
  return l;
}

ThreadScratch carve(char* base, const ScratchLayout& l) {
  ThreadScratch t;
  t.q = base + l.q;
  t.scores = reinterpret_cast<float*>(base + l.scores);
  t.acc = reinterpret_cast<float*>(base + l.acc);
  t.row_max = reinterpret_cast<float*>(base + l.row_max);
  t.row_sum = reinterpret_cast<float*>(base + l.row_sum);
  t.alpha = reinterpret_cast<float*>(base + l.alpha);
  t.intervals = reinterpret_cast<KeyInterval*>(base + l.intervals);
  t.visible = reinterpret_cast<uint8_t*>(base + l.visible);
  t.row = reinterpret_cast<float*>(base + l.row);
  t.fp8_rows = reinterpret_cast<uint16_t*>(base + l.fp8_rows);
  return t;
}

// Which inner loops run, by storage dtype.
// fp8 / fp8_dot: an fp8 cache read in place, widened in registers (f32 or bf16 queries).
enum class Path { f32, f16, bf16, bf16_dot, fp8, fp8_dot, scalar };

Path choose_path(DType dtype) {
#if WIDEATTN_CPU_AVX512
  switch (dtype) {
    case DType::f32: return Path::f32;
    case DType::f16: return Path::f16;
    case DType::bf16:
#if defined(__AVX512BF16__)
      return Path::bf16_dot;
#else
      return Path::bf16;
#endif
    default:
      break;
  }
#endif
  (void)dtype;
  return Path::scalar;
}

// An fp8 cache: read in place where AVX-512BW widens it in registers (bf16 queries raw with
// AVX512-BF16 dot products, others as f32); else staged as bf16 rows (run_item) for the bf16
// loops, whose dot-product path reads the queries raw, so only bf16 queries take that.
Path choose_fp8_path(DType query_dtype) {
#if WIDEATTN_CPU_FP8_WIDEN
#if defined(__AVX512BF16__)
  if (query_dtype == DType::bf16) return Path::fp8_dot;
#endif
  return Path::fp8;
#else
  if (query_dtype == DType::bf16) return choose_path(DType::bf16);
  return choose_path(DType::bf16) == Path::scalar ? Path::scalar : Path::bf16;
#endif
}

// Whether an fp8 cache's blocks go through the scratch as bf16 rows (a path that cannot read
// the codes in place).
bool stages_fp8(bool fp8_cache, Path path) { return fp8_cache && path != Path::fp8 && path != Path::fp8_dot; }

// Everything one work item needs about the problem.
struct Item {
  const AttentionProblem* p;
  SequenceMask mask;
  int64_t first_row;  // global token index of suffix token 0
  int32_t group;      // KV head
  int32_t gqa;
  int64_t suffix;
  int64_t key_first, key_last;  // this split's keys
  Path path;
};

// The K and V rows of one key block. Strided: rows one stride apart, the next block kKeyBlock
// rows on (every block of a contiguous cache; a paged block that, with the next, stays in one
// page). Listed: a pointer per row, padded to kKeyBlock with the last row, and the next block's.
struct StridedBlock {
  const char* k;
  const char* v;
  int64_t k_stride, v_stride;  // bytes
  bool prefetch;               // a next block follows
};
struct ListedBlock {
  const char* k[kKeyBlock];
  const char* v[kKeyBlock];
  const char* next_k[kKeyBlock];
  const char* next_v[kKeyBlock];
  bool prefetch;
};

#if WIDEATTN_CPU_AVX512
// The tile loops of one block, for either row layout: `keys(c0, count, kp)` fills the tile's key
// pointers and `ahead(c0)` says what the first row tile prefetches (`none` for the others).
template <class P, class Keys, class AheadOf, class Ahead>
[[gnu::always_inline]] inline void qk_rows(const void* q, int64_t q_stride, int64_t rows, int64_t n,
                                           int64_t d, float* scores, const Keys& keys,
                                           const AheadOf& ahead, const Ahead& none) {
  using T = typename P::T;
  using Q = typename P::Q;
  const T* kp[16];
  const Q* qr = static_cast<const Q*>(q);
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    for (int64_t c = 0; c < n; c += 4) {
      keys(c, 4, kp);
      tiles::qk_tile<P, 4, 4>(qr + r * q_stride, q_stride, kp, d, scores + r * kKeyBlock + c, kKeyBlock, r == 0 ? ahead(c) : none);
    }
  }
  if (r + 2 <= rows) {
    for (int64_t c = 0; c < n; c += 8) {
      keys(c, 8, kp);
      tiles::qk_tile<P, 2, 8>(qr + r * q_stride, q_stride, kp, d, scores + r * kKeyBlock + c, kKeyBlock, r == 0 ? ahead(c) : none);
    }
    r += 2;
  }
  if (r < rows) {
    for (int64_t c = 0; c < n; c += 16) {
      keys(c, 16, kp);
      tiles::qk_tile<P, 1, 16>(qr + r * q_stride, q_stride, kp, d, scores + r * kKeyBlock + c, kKeyBlock, r == 0 ? ahead(c) : none);
    }
  }
}

// Whether rows [0, rows) of probabilities (row stride kKeyBlock) hold an exact 0 in [0, n).
bool has_zero_probability(const float* probs, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      if (probs[r * kKeyBlock + c] == 0.0f) return true;
    }
  }
  return false;
}

// One tile of RT rows; keys of probability 0 are skipped where the tile has any (hidden keys:
// inf or NaN in their V rows must not reach the rows they are hidden from).
template <class P, int RT, class Rows>
[[gnu::always_inline]] inline void pv_tile_skipping_zeros(const float* probs, int64_t p_stride, const Rows& v,
                                                          int64_t n, const float* alpha, float* acc,
                                                          int64_t acc_stride, int64_t d) {
  if (has_zero_probability(probs, RT, n)) {
    tiles::pv_tile<P, RT, true>(probs, p_stride, v, n, alpha, acc, acc_stride, d);
  } else {
    tiles::pv_tile<P, RT, false>(probs, p_stride, v, n, alpha, acc, acc_stride, d);
  }
}

template <class P>
void qk_block(const void* q, int64_t q_stride, int64_t rows, const StridedBlock& b, int64_t n,
              int64_t d, float* scores) {
  using T = typename P::T;
  const tiles::AheadBy ahead{b.prefetch ? kKeyBlock * b.k_stride : 0}, none{0};
  auto keys = [&](int64_t c0, int count, const T** kp) {
    for (int kk = 0; kk < count; ++kk) {
      const int64_t c = std::min(c0 + kk, n - 1);  // pad the tail with the last key
      kp[kk] = reinterpret_cast<const T*>(b.k + c * b.k_stride);
    }
  };
  qk_rows<P>(q, q_stride, rows, n, d, scores, keys, [&](int64_t) { return ahead; }, none);
}

// Out of line: blocks that cross pages keep the strided blocks' code as it was.
template <class P>
[[gnu::noinline]] void qk_block(const void* q, int64_t q_stride, int64_t rows, const ListedBlock& b,
                                int64_t n, int64_t d, float* scores) {
  using T = typename P::T;
  const auto* rows_k = reinterpret_cast<const T* const*>(b.k);
  const auto* next_k = reinterpret_cast<const T* const*>(b.next_k);
  auto keys = [&](int64_t c0, int count, const T** kp) {
    for (int kk = 0; kk < count; ++kk) kp[kk] = rows_k[c0 + kk];  // padded past n
  };
  auto ahead = [&](int64_t c0) { return tiles::AheadList<T>{b.prefetch ? next_k + c0 : nullptr}; };
  qk_rows<P>(q, q_stride, rows, n, d, scores, keys, ahead, tiles::AheadList<T>{nullptr});
}

template <class P, class Rows>
[[gnu::always_inline]] inline void pv_rows(const float* probs, int64_t rows, const Rows& v,
                                           const Rows& v_no_prefetch, int64_t n,
                                           const float* alpha, float* acc, int64_t d) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4)
    pv_tile_skipping_zeros<P, 4>(probs + r * kKeyBlock, kKeyBlock, r == 0 ? v : v_no_prefetch, n, alpha + r, acc + r * d, d, d);
  const float* pr = probs + r * kKeyBlock;
  const Rows& vr = r == 0 ? v : v_no_prefetch;
  switch (rows - r) {
    case 3: pv_tile_skipping_zeros<P, 3>(pr, kKeyBlock, vr, n, alpha + r, acc + r * d, d, d); break;
    case 2: pv_tile_skipping_zeros<P, 2>(pr, kKeyBlock, vr, n, alpha + r, acc + r * d, d, d); break;
    case 1: pv_tile_skipping_zeros<P, 1>(pr, kKeyBlock, vr, n, alpha + r, acc + r * d, d, d); break;
    default: break;
  }
}

template <class P>
void pv_block(const float* probs, int64_t rows, const StridedBlock& b, int64_t n,
              const float* alpha, float* acc, int64_t d) {
  using T = typename P::T;
  const auto* v = reinterpret_cast<const T*>(b.v);
  const int64_t stride = b.v_stride / static_cast<int64_t>(sizeof(T));
  const tiles::StridedRows<T> ahead{v, stride, {b.prefetch ? kKeyBlock * b.v_stride : 0}};
  const tiles::StridedRows<T> none{v, stride, {0}};
  pv_rows<P>(probs, rows, ahead, none, n, alpha, acc, d);
}

template <class P>
[[gnu::noinline]] void pv_block(const float* probs, int64_t rows, const ListedBlock& b, int64_t n,
                                const float* alpha, float* acc, int64_t d) {
  using T = typename P::T;
  const auto* v = reinterpret_cast<const T* const*>(b.v);
  const auto* next = reinterpret_cast<const T* const*>(b.next_v);
  const tiles::ListedRows<T> ahead{v, {b.prefetch ? next : nullptr}}, none{v, {nullptr}};
  pv_rows<P>(probs, rows, ahead, none, n, alpha, acc, d);
}
#endif

// Row c of a block's K and V, for the portable loops.
inline auto block_key_row(const StridedBlock& b) {
  return [&b](int64_t c) { return b.k + c * b.k_stride; };
}
inline auto block_value_row(const StridedBlock& b) {
  return [&b](int64_t c) { return b.v + c * b.v_stride; };
}
inline auto block_key_row(const ListedBlock& b) { return [&b](int64_t c) { return b.k[c]; }; }
inline auto block_value_row(const ListedBlock& b) { return [&b](int64_t c) { return b.v[c]; }; }

// Portable fallback: convert each key row to f32 and use plain loops.
// (key_row(c), value_row(c): the address of the block's row c.)
template <class KeyRow>
void qk_block_scalar(const float* q, int64_t q_stride, int64_t rows, const KeyRow& key_row,
                     DType dtype, int64_t n, int64_t d, float* scores, float* row) {
  for (int64_t c = 0; c < n; ++c) {
    convert_to_f32(key_row(c), dtype, row, d);
    for (int64_t r = 0; r < rows; ++r) {
      float s = 0.0f;
      for (int64_t i = 0; i < d; ++i) s += q[r * q_stride + i] * row[i];
      scores[r * kKeyBlock + c] = s;
    }
  }
}

template <class ValueRow>
void pv_block_scalar(const float* probs, int64_t rows, const ValueRow& value_row, DType dtype,
                     int64_t n, const float* alpha, float* acc, int64_t d, float* row) {
  for (int64_t r = 0; r < rows; ++r) scale_row(acc + r * d, d, alpha[r]);
  for (int64_t c = 0; c < n; ++c) {
    convert_to_f32(value_row(c), dtype, row, d);
    for (int64_t r = 0; r < rows; ++r) {
      const float pc = probs[r * kKeyBlock + c];
      if (pc == 0.0f) continue;  // hidden key: inf/NaN in its V row must not reach this row
      for (int64_t i = 0; i < d; ++i) acc[r * d + i] += pc * row[i];
    }
  }
}

// Runs one item's keys; leaves per row (token t, head j: row t * gqa + j) the running max,
// sum and unnormalised output in the scratch.
void run_item(const Item& it, const KvRows& kv, const ThreadScratch& s, const ScratchLayout& sz) {
  const AttentionProblem& p = *it.p;
  const int64_t d = p.head_dim;
  const int64_t rows = it.suffix * it.gqa;
  const std::size_t es = dtype_size(p.dtype);
  const float scale = p.effective_scale();
  const float cap = p.softcap;

  // Q rows of the group, padded with zeros to q_stride.
  const bool raw_q = it.path == Path::bf16_dot || it.path == Path::fp8_dot;
  for (int64_t t = 0; t < it.suffix; ++t) {
    for (int32_t j = 0; j < it.gqa; ++j) {
      const int64_t r = t * it.gqa + j;
      const int64_t head = int64_t{it.group} * it.gqa + j;
      const char* src = static_cast<const char*>(p.q) +
                        ((it.first_row + t) * p.q_token_stride + head * p.q_head_stride) * es;
      if (raw_q) {
        auto* dst = static_cast<uint16_t*>(s.q) + r * sz.q_stride;
        std::memcpy(dst, src, d * es);
        std::fill(dst + d, dst + sz.q_stride, uint16_t{0});
      } else {
        float* dst = static_cast<float*>(s.q) + r * sz.q_stride;
        convert_to_f32(src, p.dtype, dst, d);
        std::fill(dst + d, dst + sz.q_stride, 0.0f);
      }
    }
  }
  std::fill_n(s.row_max, rows, kNegInf);
  std::fill_n(s.row_sum, rows, 0.0f);
  std::fill_n(s.acc, rows * d, 0.0f);

  bool intervals = mask_has_intervals(it.mask);
  for (int64_t t = 0; intervals && t < it.suffix; ++t) {
    intervals = visible_interval(it.mask, t, &s.intervals[t]);
  }

  // An fp8 cache: with AVX-512BW the tile loops read the codes in place and widen them in
  // registers (Path::fp8, fp8_dot); without, each block's K and V rows are widened to bf16
  // (exact) into the thread's scratch first and the bf16 loops read those (`staged`). The
  // head's scales are constants of this item, so they are applied once: K's with the softmax
  // scale to the scores, V's to the accumulated output at the end.
  const bool fp8 = p.kv.fp8;
  const bool staged = stages_fp8(fp8, it.path);
  const DType row_dtype = staged ? DType::bf16 : p.dtype;
  const float k_scale = kv_head_scale(p.kv, p.kv.k_scale, it.group);
  const float v_scale = kv_head_scale(p.kv, p.kv.v_scale, it.group);
  uint16_t* k_rows = s.fp8_rows;
  uint16_t* v_rows = s.fp8_rows + kKeyBlock * d;
  const float logit_scale = fp8 ? scale * k_scale : scale;
  const StridedBlock converted{reinterpret_cast<const char*>(k_rows), reinterpret_cast<const char*>(v_rows),
                                 d * static_cast<int64_t>(sizeof(uint16_t)),
                                 d * static_cast<int64_t>(sizeof(uint16_t)), false};
  auto convert_block = [&](const auto& block, int64_t n) {
    const auto key_row = block_key_row(block);
    const auto value_row = block_value_row(block);
    for (int64_t c = 0; c < n; ++c) {
      convert_fp8_to_bf16(reinterpret_cast<const uint8_t*>(key_row(c)), k_rows + c * d, d);
      convert_fp8_to_bf16(reinterpret_cast<const uint8_t*>(value_row(c)), v_rows + c * d, d);
    }
  };

  // Steps 1 and 4 read the block as a StridedBlock or a ListedBlock.
  auto score_block = [&](const auto& block, int64_t n) {
    switch (it.path) {
#if WIDEATTN_CPU_AVX512
      case Path::f32: qk_block<tiles::F32>(s.q, sz.q_stride, rows, block, n, d, s.scores); break;
      case Path::f16: qk_block<tiles::F16>(s.q, sz.q_stride, rows, block, n, d, s.scores); break;
      case Path::bf16: qk_block<tiles::BF16>(s.q, sz.q_stride, rows, block, n, d, s.scores); break;
#if defined(__AVX512BF16__)
      case Path::bf16_dot: qk_block<tiles::BF16Dot>(s.q, sz.q_stride, rows, block, n, d, s.scores); break;
#endif
#endif
#if WIDEATTN_CPU_FP8_WIDEN
      case Path::fp8: qk_block<tiles::FP8>(s.q, sz.q_stride, rows, block, n, d, s.scores); break;
#if defined(__AVX512BF16__)
      case Path::fp8_dot: qk_block<tiles::FP8Dot>(s.q, sz.q_stride, rows, block, n, d, s.scores); break;
#endif
#endif
      default:
        qk_block_scalar(static_cast<const float*>(s.q), sz.q_stride, rows, block_key_row(block),
                        row_dtype, n, d, s.scores, s.row);
        break;
    }
  };
  auto accumulate_block = [&](const auto& block, int64_t n) {
    switch (it.path) {
#if WIDEATTN_CPU_AVX512
      case Path::f32: pv_block<tiles::F32>(s.scores, rows, block, n, s.alpha, s.acc, d); break;
      case Path::f16: pv_block<tiles::F16>(s.scores, rows, block, n, s.alpha, s.acc, d); break;
      case Path::bf16:
      case Path::bf16_dot: pv_block<tiles::BF16>(s.scores, rows, block, n, s.alpha, s.acc, d); break;
#endif
#if WIDEATTN_CPU_FP8_WIDEN
      case Path::fp8:
      case Path::fp8_dot: pv_block<tiles::FP8>(s.scores, rows, block, n, s.alpha, s.acc, d); break;
#endif
      default:
        pv_block_scalar(s.scores, rows, block_value_row(block), row_dtype, n, s.alpha, s.acc, d, s.row);
        break;
    }
  };

  ListedBlock listed;
  for (int64_t i0 = it.key_first; i0 < it.key_last; i0 += kKeyBlock) {
    const int64_t n = std::min(kKeyBlock, it.key_last - i0);
    const int64_t n_next = std::min(kKeyBlock, it.key_last - i0 - n);  // 0: nothing to prefetch
    // Every block of a contiguous cache, and a paged block that stays (with the next) in one
    // page, is strided; the others list their rows.
    const bool strided = kv.one_page(i0, n + n_next);
    const StridedBlock block{kv.k_row(i0), kv.v_row(i0), kv.k_stride_bytes(), kv.v_stride_bytes(),
                             n_next > 0};
    if (!strided) {
      kv.block(i0, n, kKeyBlock, listed.k, listed.v);
      if (n_next > 0) kv.block(i0 + n, n_next, kKeyBlock, listed.next_k, listed.next_v);
      listed.prefetch = n_next > 0;
    }

    // 1. Scores of all rows against the block.
    if (staged) {
      if (strided) {
        convert_block(block, n);
      } else {
        convert_block(listed, n);
      }
      score_block(converted, n);
    } else if (strided) {
      score_block(block, n);
    } else {
      score_block(listed, n);
    }

    // 2. Scale, soft-cap, mask.
    for (int64_t r = 0; r < rows; ++r) {
      float* sr = s.scores + r * kKeyBlock;
      scale_row(sr, n, logit_scale);
      if (cap > 0.0f) {
        const float inv = 1.0f / cap;
        for (int64_t c = 0; c < n; ++c) sr[c] = cap * std::tanh(sr[c] * inv);
      }
    }
    for (int64_t t = 0; t < it.suffix; ++t) {
      int64_t lo = 0, hi = n;
      if (intervals) {
        lo = std::clamp<int64_t>(s.intervals[t].first - i0, 0, n);
        hi = std::clamp<int64_t>(s.intervals[t].last - i0, lo, n);
        if (lo == 0 && hi == n) continue;
      } else {
        for (int64_t c = 0; c < n; ++c) s.visible[c] = key_visible(it.mask, t, i0 + c);
      }
      for (int32_t j = 0; j < it.gqa; ++j) {
        float* sr = s.scores + (t * it.gqa + j) * kKeyBlock;
        if (intervals) {
          std::fill(sr, sr + lo, kNegInf);
          std::fill(sr + hi, sr + n, kNegInf);
        } else {
          for (int64_t c = 0; c < n; ++c)
            if (!s.visible[c]) sr[c] = kNegInf;
        }
      }
    }

    // 3. Online softmax: scores become exp(s - running max); alpha rescales the old state.
    for (int64_t r = 0; r < rows; ++r) {
      float* sr = s.scores + r * kKeyBlock;
      const float m_new = std::max(s.row_max[r], row_max(sr, n));
      if (m_new == kNegInf) {
        std::fill(sr, sr + n, 0.0f);
        s.alpha[r] = 1.0f;
        continue;
      }
      const float alpha = s.row_max[r] == kNegInf ? 0.0f : std::exp(s.row_max[r] - m_new);
      s.alpha[r] = alpha;
      s.row_sum[r] = s.row_sum[r] * alpha + exp_shift_sum(sr, sr, n, m_new);
      s.row_max[r] = m_new;
    }

    // 4. acc = acc * alpha + P V.
    if (staged) {
      accumulate_block(converted, n);
    } else if (strided) {
      accumulate_block(block, n);
    } else {
      accumulate_block(listed, n);
    }
  }
  if (fp8 && v_scale != 1.0f) scale_row(s.acc, rows * d, v_scale);
}

// Normalises (max, sum, acc) with the head's sink into the output row and LSE.
void finish_row(const AttentionProblem& p, int64_t token, int64_t head, float max, float sum,
                const float* acc) {
  const std::size_t es = dtype_size(p.dtype);
  char* out = static_cast<char*>(p.out) + (token * p.out_token_stride + head * p.out_head_stride) * es;
  float m = max;
  const bool sink = p.sinks != nullptr;
  if (sink) m = std::max(m, p.sinks[head]);
  float lse;
  if (m == kNegInf) {
    std::memset(out, 0, p.head_dim * es);
    lse = kNegInf;
  } else {
    const float w = max == kNegInf ? 0.0f : std::exp(max - m);
    float total = sum * w;
    if (sink) total += std::exp(p.sinks[head] - m);
    convert_from_f32(acc, out, p.dtype, p.head_dim, w / total);
    lse = m + std::log(total);
  }
  if (p.lse) p.lse[token * p.lse_token_stride + head * p.lse_head_stride] = lse;
}

}  // namespace

void decode(const AttentionProblem& p, const Plan& plan, void* workspace, AlignedBuffer& scratch) {
  const int32_t splits = std::max(1, plan.num_splits);
  const int32_t gqa = p.q_heads / p.kv_heads;
  const int64_t d = p.head_dim;
  const ProblemExtents e = problem_extents(p);
  const int64_t max_rows = std::max<int64_t>(1, e.max_suffix) * gqa;
  const Path path = !p.kv.fp8 ? choose_path(p.dtype) : choose_fp8_path(p.dtype);
  const ScratchLayout sz =
      scratch_layout(max_rows, d, std::max<int64_t>(1, e.max_suffix), stages_fp8(p.kv.fp8, path));
  const int threads = omp_get_max_threads();
  char* scratch_base = static_cast<char*>(scratch.reserve(sz.bytes * threads));
  const DecodeWorkspace layout = decode_workspace_layout(p, splits);
  auto* ws = static_cast<char*>(workspace);
  auto* partial_out = reinterpret_cast<float*>(ws + layout.partial_out);
  auto* partial_max = reinterpret_cast<float*>(ws + layout.partial_max);
  auto* partial_sum = reinterpret_cast<float*>(ws + layout.partial_sum);

  const int64_t items = int64_t{p.batch} * p.kv_heads * splits;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t index = 0; index < items; ++index) {
    const int32_t split = static_cast<int32_t>(index % splits);
    const int32_t group = static_cast<int32_t>(index / splits % p.kv_heads);
    const int32_t b = static_cast<int32_t>(index / splits / p.kv_heads);
    Item it;
    it.p = &p;
    it.mask = sequence_mask(p, b);
    it.suffix = it.mask.suffix_length;
    if (it.suffix == 0) continue;
    it.first_row = p.query_offsets[b];
    it.group = group;
    it.gqa = gqa;
    it.path = path;
    // Keys no row can see are skipped; the rest is cut into equal, block-aligned splits.
    const KeyRange range = visible_key_range(it.mask, 0, it.suffix);
    const int64_t span = range.last - range.first;
    const int64_t per_split = round_up((span + splits - 1) / splits, kKeyBlock);
    it.key_first = std::min(range.last, range.first + split * per_split);
    it.key_last = std::min(range.last, it.key_first + per_split);

    const ThreadScratch s = carve(scratch_base + sz.bytes * omp_get_thread_num(), sz);
    run_item(it, KvRows(p, b, group), s, sz);

    for (int64_t t = 0; t < it.suffix; ++t) {
      for (int32_t j = 0; j < gqa; ++j) {
        const int64_t r = t * gqa + j;
        const int64_t token = it.first_row + t, head = int64_t{group} * gqa + j;
        if (splits == 1) {
          finish_row(p, token, head, s.row_max[r], s.row_sum[r], s.acc + r * d);
        } else {
          const int64_t slot = (token * p.q_heads + head) * splits + split;
          partial_max[slot] = s.row_max[r];
          partial_sum[slot] = s.row_sum[r];
          std::memcpy(partial_out + slot * d, s.acc + r * d, d * sizeof(float));
        }
      }
    }
  }
  if (splits == 1) return;

  // Merge: rescale each split's partials to the common max, then normalise once.
  const int64_t rows = e.total_tokens * p.q_heads;
#pragma omp parallel
  {
    std::vector<float> merged(d);
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; ++row) {
      const float* maxes = partial_max + row * splits;
      const float* sums = partial_sum + row * splits;
      float m = kNegInf;
      for (int32_t sp = 0; sp < splits; ++sp) m = std::max(m, maxes[sp]);
      std::fill(merged.begin(), merged.end(), 0.0f);
      float total = 0.0f;
      if (m != kNegInf) {
        for (int32_t sp = 0; sp < splits; ++sp) {
          if (maxes[sp] == kNegInf) continue;
          const float w = std::exp(maxes[sp] - m);
          total += sums[sp] * w;
          const float* part = partial_out + (row * splits + sp) * d;
          for (int64_t i = 0; i < d; ++i) merged[i] += w * part[i];
        }
      }
      finish_row(p, row / p.q_heads, row % p.q_heads, m, total, merged.data());
    }
  }
}

}  // namespace wideattn::detail::cpu
