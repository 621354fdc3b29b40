// Device helpers shared by the decode kernels: storage types, the warp-level tensor-core and
// copy instructions (sm_80+), the CTA's share of the work, and the row epilogue.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "core/mask.h"
#include "cuda/kernels/decode_config.h"
#include "cuda/kernels/decode_params.h"
#include "cuda/primitives/ldmatrix.cuh"
#include "wideattn/attention.h"

namespace wideattn::cuda::decode {

inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;

__device__ __forceinline__ float neg_inf() { return -__int_as_float(0x7f800000); }

// ---- storage types ---------------------------------------------------------------------------
template <typename T>
struct Storage;

template <>
struct Storage<float> {
  static __device__ __forceinline__ float load(const float* p) { return *p; }
  static __device__ __forceinline__ void store(float* p, float x) { *p = x; }
};

template <>
struct Storage<__half> {
  static __device__ __forceinline__ float load(const __half* p) { return __half2float(*p); }
  static __device__ __forceinline__ void store(__half* p, float x) { *p = __float2half_rn(x); }
  static __device__ __forceinline__ void store2(__half* p, float a, float b) {
    *reinterpret_cast<__half2*>(p) = __floats2half2_rn(a, b);
  }
  static __device__ __forceinline__ uint32_t pack(float a, float b) {
    const __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
  static __device__ __forceinline__ float2 unpack(uint32_t x) {
    return __half22float2(*reinterpret_cast<const __half2*>(&x));
  }
  // c += a b, m16n8k16, f32 accumulation.
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                             uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

template <>
struct Storage<__nv_bfloat16> {
  static __device__ __forceinline__ float load(const __nv_bfloat16* p) {
    return __bfloat162float(*p);
  }
  static __device__ __forceinline__ void store(__nv_bfloat16* p, float x) {
    *p = __float2bfloat16_rn(x);
  }
  static __device__ __forceinline__ void store2(__nv_bfloat16* p, float a, float b) {
    *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(a, b);
  }
  static __device__ __forceinline__ uint32_t pack(float a, float b) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
  static __device__ __forceinline__ float2 unpack(uint32_t x) {
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&x));
  }
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                             uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

// ---- fp8 (e4m3) cache elements -----------------------------------------------------------------
// An fp8 cache's MMAs run in f16: every e4m3 value is exactly an f16 value, and sm_89+ widens two
// codes in one instruction (cvt.rn.f16x2.e4m3x2, NaN codes to NaN), a quarter of the integer
// instructions a bf16 widening takes. Four codes (the bytes of x, lowest first) -> elements 0-1
// in lo, 2-3 in hi.
__device__ __forceinline__ void widen_fp8x4(uint32_t x, uint32_t& lo, uint32_t& hi) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  asm("{\n .reg .b16 l, h;\n mov.b32 {l, h}, %2;\n cvt.rn.f16x2.e4m3x2 %0, l;\n cvt.rn.f16x2.e4m3x2 %1, h;\n}\n"
      : "=r"(lo), "=r"(hi)
      : "r"(x));
#else
  // Older GPUs: the magnitude moved under f16's exponent and rebiased by 2^8 (subnormals
  // included), then the NaN codes (s.1111.111, which would read 480) patched.
  auto pair = [](uint32_t t) {
    const uint32_t bits = ((t & 0x7f007f00u) >> 1) | (t & 0x80008000u);
    const __half2 r = __hmul2(*reinterpret_cast<const __half2*>(&bits), __halves2half2(__ushort_as_half(0x5c00), __ushort_as_half(0x5c00)));
    return *reinterpret_cast<const uint32_t*>(&r);
  };
  lo = pair(__byte_perm(x, 0u, 0x1404));
  hi = pair(__byte_perm(x, 0u, 0x3424));
  for (int i = 0; i < 4; ++i) {
    if (((x >> (8 * i)) & 0x7fu) == 0x7fu) {
      uint32_t& lane = i < 2 ? lo : hi;
      const int shift = 16 * (i & 1);
      lane = (lane & ~(0xffffu << shift)) | ((0x7e00u | (((x >> (8 * i + 7)) & 1u) << 15)) << shift);
    }
  }
#endif
}

// A KV head's dequantisation scale (KvCache::k_scale / v_scale, device memory; null: 1).
__device__ __forceinline__ float fp8_scale(const float* scale, bool per_head, int32_t kv_head) {
  return scale ? scale[per_head ? kv_head : 0] : 1.0f;
}

// ---- shared memory copies and loads (warp-level) -----------------------------------------------
__device__ __forceinline__ uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, bypassing L1; `valid` false writes zeros and reads nothing. Built
// with WIDEATTN_DECODE_COMPUTE_ONLY every copy zero-fills: the kernels keep all their work but
// the DRAM's (a tuning aid that measures the compute-bound rate; results are wrong).
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
#ifdef WIDEATTN_DECODE_COMPUTE_ONLY
  valid = false;
#endif
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int Pending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending));
}
// Waits until at most `pending` (0..kMaxStages-2) groups are in flight; uniform branch.
__device__ __forceinline__ void cp_async_wait_dynamic(int pending) {
  static_assert(kMaxStages - 2 <= 2, "extend cp_async_wait_dynamic");
  if (pending <= 0) {
    cp_async_wait<0>();
  } else if (pending == 1) {
    cp_async_wait<1>();
  } else {
    cp_async_wait<2>();
  }
}


// Hardware barrier `id` (1-15; 0 is __syncthreads) for `threads` threads (a multiple of 32).
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// ---- programmatic dependent launch (sm_90; no-ops elsewhere and when not launched so) ------
// Lets the grid launched after this one on the stream start scheduling.
__device__ __forceinline__ void allow_next_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
// Waits until the previous grid on the stream has completed and its writes are visible.
__device__ __forceinline__ void wait_for_previous_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// ---- the CTA's work ----------------------------------------------------------------------------
// One CTA: sequence `seq`, KV head `kv_head`, query rows [row0, row0 + rows_per_cta) of the
// sequence (row r = token r / gqa, head kv_head * gqa + r % gqa), keys [key_begin, key_end).
struct CtaWork {
  int32_t seq = 0, kv_head = 0, split = 0;
  int64_t first_token = 0;  // global index of the sequence's first query token
  int32_t rows = 0;         // the sequence's query rows: suffix * gqa
  int32_t row0 = 0;
  int64_t key_begin = 0, key_end = 0;
  int64_t unmasked_end = 0;  // keys in [key_begin, unmasked_end) are visible to every row
  SequenceMask mask;
};

// Whether one sequence's device metadata breaks the plan's bounds; `report`: OR the reasons into
// p.errors. Out of line: the check runs once per CTA and must not cost the streaming loop
// registers.
static __device__ __noinline__ bool metadata_outside_bounds(const DecodeParams& p, int32_t seq, bool report) {
  const int32_t first = p.query_offsets[seq], next = p.query_offsets[seq + 1];
  const int32_t kv_length = p.kv_lengths[seq];
  const int64_t suffix = int64_t{next} - first;
  int32_t bad = 0;
  if (first < 0 || next < first || next > p.max_total_tokens) bad |= kMetadataQueryOffsets;
  if (suffix > p.max_suffix) bad |= kMetadataSuffix;
  if (kv_length < suffix || kv_length > p.max_kv_length) bad |= kMetadataKvLength;
  if (bad && report && p.errors && threadIdx.x == 0) atomicOr(p.errors, bad);
  return bad != 0;
}

// False when the CTA has no query rows (its sequence is shorter than the grid). `p` is the
// kernel's __grid_constant__ parameter block (inline metadata is read in place). Splits are
// whole numbers of `tile_keys`-key tiles; `aligned`: tiles on multiples of tile_keys in the
// cache (a tile then never straddles a page of tile_keys rows or more; the first tile of the
// range may start before key_begin).
__device__ __forceinline__ bool cta_work(const DecodeParams& p, int rows_per_cta, CtaWork& w,
                                         int tile_keys = kKeysPerTile, bool aligned = false) {
  int32_t x = static_cast<int32_t>(blockIdx.x);
  const int32_t row_item = x % p.row_items;
  x /= p.row_items;
  w.split = x % p.splits;
  x /= p.splits;
  w.kv_head = x % p.kv_heads;
  w.seq = x / p.kv_heads;
  // The caller's device metadata, checked against the plan's bounds before any address is
  // formed from it: a sequence outside them is skipped (and reported once, by its first CTA).
  if (p.check_metadata &&
      metadata_outside_bounds(p, w.seq, row_item == 0 && w.split == 0 && w.kv_head == 0)) {
    return false;
  }
  const bool inline_metadata = p.query_offsets == nullptr;
  auto offset = [&](int32_t i) { return inline_metadata ? p.inline_metadata[i] : p.query_offsets[i]; };
  const int32_t first = offset(w.seq);
  const int32_t suffix = offset(w.seq + 1) - first;
  w.first_token = first;
  w.rows = suffix * p.gqa;
  w.row0 = row_item * rows_per_cta;
  if (w.row0 >= w.rows) return false;

  w.mask.spec = p.mask;
  w.mask.suffix_length = suffix;
  w.mask.prefix_length =
      (inline_metadata ? p.inline_metadata[p.batch + 1 + w.seq] : p.kv_lengths[w.seq]) - suffix;
  if (p.mask.tree_start) {
    w.mask.spec.tree_start += first;
    w.mask.spec.tree_end += first;
    w.mask.spec.tree_height += first;
  }
  const int64_t t0 = w.row0 / p.gqa;
  const int64_t t1 = min(w.rows - 1, w.row0 + rows_per_cta - 1) / p.gqa + 1;  // <= suffix
  const wideattn::detail::KeyRange range = wideattn::detail::visible_key_range(w.mask, t0, t1);
  // Contiguous splits, each a whole number of tiles, so every CTA streams one range.
  const int64_t base = aligned ? range.first - range.first % tile_keys : range.first;
  const int64_t keys = range.last - base;
  const int64_t per_split = ((keys + p.splits - 1) / p.splits + tile_keys - 1) / tile_keys * tile_keys;
  w.key_begin = min(range.last, max(range.first, base + w.split * per_split));
  w.key_end = max(w.key_begin, min(range.last, base + (w.split + 1) * per_split));
  if (!p.simple_mask) {
    w.unmasked_end = w.key_begin;
  } else if (p.mask.causal) {
    w.unmasked_end = max(w.key_begin, min(w.key_end, w.mask.prefix_length + t0 + 1));
  } else {
    w.unmasked_end = w.key_end;
  }
  return true;
}

// Whether row `row` (of the sequence) sees key `key` of this CTA's range.
__device__ __forceinline__ bool visible(const CtaWork& w, int gqa, int32_t row, int64_t key) {
  return row < w.rows && key < w.key_end && wideattn::detail::key_visible(w.mask, row / gqa, key);
}

// Logit of a raw dot product, in log2 units (softmax uses exp2).
__device__ __forceinline__ float logit_log2(float dot, float scale, float softcap,
                                            float inv_softcap) {
  float x = dot * scale;
  if (softcap > 0.0f) x = softcap * tanhf(x * inv_softcap);
  return x * kLog2e;
}

// ---- the row epilogue --------------------------------------------------------------------------
// Where one query row's results go.
struct RowTarget {
  int64_t token = 0;  // global query token
  int32_t head = 0;   // query head
};

__device__ __forceinline__ RowTarget row_target(const CtaWork& w, int gqa, int32_t row) {
  return RowTarget{w.first_token + row / gqa, w.kv_head * gqa + row % gqa};
}

// Final scaling of a row with running max `m_log2` (log2 units, -inf: no key) and sum `l`:
// out = acc * factor; lse (natural log, sink included; -inf when the row sees nothing).
__device__ __forceinline__ void final_scaling(float m_log2, float l, const float* sinks,
                                              int32_t head, float& factor, float& lse) {
  const float m = m_log2 * kLn2;
  const float sink = sinks ? sinks[head] : neg_inf();
  const float top = fmaxf(m, sink);
  if (top == neg_inf()) {
    factor = 0.0f;
    lse = neg_inf();
    return;
  }
  const float keep = expf(m - top);  // 0 when m = -inf
  const float total = l * keep + expf(sink - top);
  factor = keep / total;
  lse = top + logf(total);
}

}  // namespace wideattn::cuda::decode
