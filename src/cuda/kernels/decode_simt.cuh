// The SIMT decode kernel: f32 storage, and 16-bit tensors whose rows are not 16-byte aligned.
// Correct, not tuned. One CTA of 128 threads per (sequence, KV head, row block of 16 query
// rows, KV split); 8 consecutive lanes own one row: each scores 2 keys of every 16-key tile and
// accumulates head_dim / 8 output columns (c = lane % 8 + 8 i).
#pragma once

#include "core/error.h"
#include "cuda/kernels/decode_common.cuh"
#include "cuda/primitives/check.h"
#include "cuda/primitives/dynamic_smem.h"

namespace wideattn::cuda::decode {

template <typename T, int D>
__global__ void __launch_bounds__(kSimtThreads)
    decode_simt_kernel(const __grid_constant__ DecodeParams p) {
  using S = Storage<T>;
  constexpr int kLanes = kSimtThreadsPerRow;
  constexpr int kKeys = kSimtKeysPerTile;
  constexpr int kCols = D / kLanes;  // output columns per thread
  constexpr int kKStride = D + 1;    // padded K rows: the 8 lanes of a row read 8 keys
  static_assert(kKeys == 2 * kLanes, "decode_simt_kernel: two keys per lane");

  extern __shared__ float smem_f32[];
  // Element offsets of the tile's K and V rows in their pools (-1: not read), one page lookup
  // per key per tile, then used by every thread that copies the row.
  auto* s_rows = reinterpret_cast<int64_t*>(smem_f32);  // [2][16]
  float* s_q = smem_f32 + 2 * kKeys * 2;  // [16][D]
  float* s_k = s_q + kRowsPerBlock * D;  // [16 keys][D + 1]
  float* s_v = s_k + kKeys * kKStride;   // [16 keys][D]
  float* s_p = s_v + kKeys * D;          // [16 rows][16 keys]

  CtaWork w;
  if (!cta_work(p, kRowsPerBlock, w)) return;
  const int tid = threadIdx.x;
  const int r = tid / kLanes, sub = tid % kLanes;
  const int32_t row = w.row0 + r;

  for (int idx = tid; idx < kRowsPerBlock * D; idx += kSimtThreads) {
    const int32_t qrow = w.row0 + idx / D;
    float x = 0.0f;
    if (qrow < w.rows) {
      const RowTarget t = row_target(w, p.gqa, qrow);
      x = S::load(static_cast<const T*>(p.q) + t.token * p.q_token_stride +
                  t.head * p.q_head_stride + idx % D);
    }
    s_q[idx] = x;
  }
  const T* k_pool = static_cast<const T*>(p.k.base);
  const T* v_pool = static_cast<const T*>(p.v.base);

  const float inv_softcap = p.softcap > 0.0f ? 1.0f / p.softcap : 0.0f;
  float acc[kCols];
#pragma unroll
  for (int i = 0; i < kCols; ++i) acc[i] = 0.0f;
  float m_run = neg_inf(), l_run = 0.0f;

  for (int64_t key0 = w.key_begin; key0 < w.key_end; key0 += kKeys) {
    __syncthreads();  // the previous tile is consumed (and Q is stored, the first time)
    if (tid < kKeys) {
      const int64_t key = key0 + tid;
      int64_t k_row = -1, v_row = -1;
      if (key < w.key_end) {
        const int64_t page = wideattn::detail::page_of(p.pages, w.seq, key);
        if (page >= 0 && page < p.num_pages) {  // else zeros, not a fault
          k_row = wideattn::detail::row_offset(p.k, p.pages, page, key, w.kv_head);
          v_row = wideattn::detail::row_offset(p.v, p.pages, page, key, w.kv_head);
        }
      }
      s_rows[tid] = k_row;
      s_rows[kKeys + tid] = v_row;
    }
    __syncthreads();
    for (int idx = tid; idx < kKeys * D; idx += kSimtThreads) {
      const int kk = idx / D, c = idx % D;
      const int64_t k_row = s_rows[kk], v_row = s_rows[kKeys + kk];
      s_k[kk * kKStride + c] = k_row >= 0 ? S::load(k_pool + k_row + c) : 0.0f;
      s_v[idx] = v_row >= 0 ? S::load(v_pool + v_row + c) : 0.0f;
    }
    __syncthreads();

    const bool check = key0 + kKeys > w.unmasked_end;
    float s[2];
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int kk = sub + j * kLanes;
      float dot = 0.0f;
      for (int d = 0; d < D; ++d) dot += s_q[r * D + d] * s_k[kk * kKStride + d];
      s[j] = logit_log2(dot, p.scale, p.softcap, inv_softcap);
      if (check && !visible(w, p.gqa, row, key0 + kk)) s[j] = neg_inf();
    }
    float m = fmaxf(s[0], s[1]);
#pragma unroll
    for (int x = 1; x < kLanes; x *= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, x));
    m = fmaxf(m, m_run);
    const float base = m == neg_inf() ? 0.0f : m;
    const float alpha = exp2f(m_run - base);
    const float p0 = exp2f(s[0] - base), p1 = exp2f(s[1] - base);
    float sum = p0 + p1;
#pragma unroll
    for (int x = 1; x < kLanes; x *= 2) sum += __shfl_xor_sync(0xffffffffu, sum, x);
    l_run = l_run * alpha + sum;
    m_run = m;
    s_p[r * kKeys + sub] = p0;
    s_p[r * kKeys + sub + kLanes] = p1;
    __syncwarp();
#pragma unroll
    for (int i = 0; i < kCols; ++i) {
      const int c = sub + i * kLanes;
      float a = acc[i] * alpha;
#pragma unroll
      for (int kk = 0; kk < kKeys; ++kk) {
        // A hidden key (probability 0) adds nothing, even with inf or NaN in its V row.
        const float pk = s_p[r * kKeys + kk];
        a = pk != 0.0f ? fmaf(pk, s_v[kk * D + c], a) : a;
      }
      acc[i] = a;
    }
  }

  allow_next_grid();  // the merge may start scheduling; it waits for this grid's writes
  if (row >= w.rows) return;
  const RowTarget t = row_target(w, p.gqa, row);
  if (p.splits == 1) {
    float factor, lse;
    final_scaling(m_run, l_run, p.sinks, t.head, factor, lse);
    T* o = static_cast<T*>(p.out) + t.token * p.out_token_stride + t.head * p.out_head_stride;
#pragma unroll
    for (int i = 0; i < kCols; ++i) S::store(o + sub + i * kLanes, acc[i] * factor);
    if (p.lse && sub == 0) p.lse[t.token * p.lse_token_stride + t.head * p.lse_head_stride] = lse;
  } else {
    const int64_t partial = (t.token * p.q_heads + t.head) * p.splits + w.split;
    float* o = p.partial_out + partial * D;
#pragma unroll
    for (int i = 0; i < kCols; ++i) o[sub + i * kLanes] = acc[i];
    if (sub == 0) {
      p.partial_max[partial] = m_run == neg_inf() ? neg_inf() : m_run * kLn2;
      p.partial_sum[partial] = l_run;
    }
  }
}

template <int D>
void launch_decode_simt(const DecodeParams& p, DType dtype, dim3 grid, cudaStream_t stream) {
  const std::size_t smem = simt_bytes(D);
  auto launch = [&](auto kernel) {
    allow_dynamic_smem(kernel, smem, "decode_simt_kernel: dynamic shared memory");
    kernel<<<grid, kSimtThreads, smem, stream>>>(p);
    WIDEATTN_CUDA_CHECK_LAUNCH("decode_simt_kernel");
  };
  switch (dtype) {
    case DType::f32:
      launch(decode_simt_kernel<float, D>);
      break;
    case DType::f16:
      launch(decode_simt_kernel<__half, D>);
      break;
    case DType::bf16:
      launch(decode_simt_kernel<__nv_bfloat16, D>);
      break;
    default:
      wideattn::detail::throw_invalid("run_decode", "dtype", static_cast<int>(dtype),
                                      "f32, f16 or bf16");
  }
}

}  // namespace wideattn::cuda::decode
