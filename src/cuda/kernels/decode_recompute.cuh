// The NaN policy's slow path of the decode kernels (docs/reliability.md, "Non-finite values"),
// shared by the mma.sync kernel (decode_split_kv.cuh) and the wgmma kernel (decode_wgmma.cuh).
#pragma once

#include <cuda_fp8.h>

#include <type_traits>

#include "cuda/kernels/decode_common.cuh"

namespace wideattn::cuda::decode {

// The NaN policy's slow path (docs/reliability.md, "Non-finite values"): this thread's output
// elements of row `row` (columns col0 + 8n, +1) again, stored as the epilogue stores them, from
// global memory: every key of the CTA's range the row sees, its probability against the row's
// final maximum m_log2 (log2 units) rounded to the MMA type, keys of probability 0 left out.
// Slow (a head_dim dot product per key), rare: only for rows whose output came out inf or NaN.
template <typename T, int D, bool Fp8, int NTiles>
__device__ __forceinline__ void recompute_row_output(const DecodeParams& p, const CtaWork& w, int32_t row, int col0,
                                                     float m_log2, float l, float v_scale) {
  using Tc = std::conditional_t<Fp8, __half, T>;
  using KvT = std::conditional_t<Fp8, uint8_t, T>;
  float acc[NTiles][2];
#pragma unroll
  for (int n = 0; n < NTiles; ++n) acc[n][0] = acc[n][1] = 0.0f;
  if (row >= w.rows) return;  // a padding row
  auto widen = [](const KvT* x) {
    if constexpr (Fp8) {
      return __half2float(__half(__nv_cvt_fp8_to_halfraw(*x, __NV_E4M3)));
    } else {
      return Storage<T>::load(x);
    }
  };
  const RowTarget target = row_target(w, p.gqa, row);
  const T* q = static_cast<const T*>(p.q) + target.token * p.q_token_stride + target.head * p.q_head_stride;
  const float scale = Fp8 ? p.scale * fp8_scale(p.k_scale, p.scales_per_head, w.kv_head) : p.scale;
  const float inv_softcap = p.softcap > 0.0f ? 1.0f / p.softcap : 0.0f;
  for (int64_t key = w.key_begin; key < w.key_end && m_log2 != neg_inf(); ++key) {  // -inf: sees no key
    if (!visible(w, p.gqa, row, key)) continue;
    const int64_t page = wideattn::detail::page_of(p.pages, w.seq, key);
    const KvT* k = static_cast<const KvT*>(p.k.base) + wideattn::detail::row_offset(p.k, p.pages, page, key, w.kv_head);
    float dot = 0.0f;
#pragma unroll 1
    for (int c = 0; c < D; ++c) dot = fmaf(Storage<T>::load(q + c), widen(k + c), dot);
    const float logit = logit_log2(dot, scale, p.softcap, inv_softcap);
    const float probability = Storage<Tc>::unpack(Storage<Tc>::pack(exp2f(logit - m_log2), 0.0f)).x;
    if (probability == 0.0f) continue;  // select, not multiply: a hidden or vanished key adds nothing
    const KvT* v = static_cast<const KvT*>(p.v.base) +
                   wideattn::detail::row_offset(p.v, p.pages, page, key, w.kv_head) + col0;
#pragma unroll
    for (int n = 0; n < NTiles; ++n) {
      acc[n][0] = fmaf(probability, widen(v + n * 8), acc[n][0]);
      acc[n][1] = fmaf(probability, widen(v + n * 8 + 1), acc[n][1]);
    }
  }
  // Stored over what the epilogue wrote, as it does.
  const RowTarget& t = target;
  if (p.splits == 1) {
    float factor, lse;
    final_scaling(m_log2, l, p.sinks, t.head, factor, lse);
    factor *= v_scale;
    T* o = static_cast<T*>(p.out) + t.token * p.out_token_stride + t.head * p.out_head_stride + col0;
#pragma unroll
    for (int n = 0; n < NTiles; ++n) Storage<T>::store2(o + n * 8, acc[n][0] * factor, acc[n][1] * factor);
  } else {
    float* o = p.partial_out + ((t.token * p.q_heads + t.head) * p.splits + w.split) * D + col0;
#pragma unroll
    for (int n = 0; n < NTiles; ++n) {
      *reinterpret_cast<float2*>(o + n * 8) = make_float2(acc[n][0] * v_scale, acc[n][1] * v_scale);
    }
  }
}

}  // namespace wideattn::cuda::decode
