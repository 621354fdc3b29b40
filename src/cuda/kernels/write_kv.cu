// write_kv on CUDA: one CTA per token (blockIdx.x) and pool (blockIdx.y: K, V); its threads copy
// the token's kv_heads rows, in 16-byte units when every address and stride allows it, else in
// elements. The slot mapping is device memory the host never reads, so the kernel is what keeps
// a bad slot from writing outside the cache: a slot outside [0, slots) is skipped like -1.
// An fp8 cache quantises instead: each element times 1 / its head's scale, rounded to nearest
// even e4m3, saturating at +-448, inf and NaN to NaN (as the CPU backend, bit for bit).
#include "cuda/kernels/write_kv.h"

#include <cuda_fp8.h>

#include <climits>
#include <cstdint>

#include "core/error.h"
#include "cuda/primitives/check.h"
#include "cuda/primitives/dtype.cuh"

namespace wideattn::cuda {
namespace {

constexpr int kThreads = 128;

struct WriteParams {
  const int32_t* slot_mapping;
  int64_t total_slots;  // pages * page_size, or sequences * capacity
  int64_t slots;        // rows of one page (paged) or one sequence (contiguous)
  const char* src[2];   // k_new, v_new
  int64_t src_token_stride[2], src_head_stride[2];  // bytes
  char* dst[2];         // the K and V pools
  int64_t dst_outer_stride[2], dst_token_stride[2], dst_head_stride[2];  // bytes
  int32_t kv_heads;
  int32_t row_units;  // copy units per row
};

template <typename Unit>
__global__ void __launch_bounds__(kThreads) write_kv_kernel(const WriteParams p) {
  const int which = blockIdx.y;
  const int64_t t = blockIdx.x;
  const int64_t slot = p.slot_mapping[t];
  if (slot < 0 || slot >= p.total_slots) return;  // -1 skips; out of range: skipped, not written
  const int64_t outer = slot / p.slots, row = slot - outer * p.slots;
  const char* src = p.src[which] + t * p.src_token_stride[which];
  char* dst = p.dst[which] + outer * p.dst_outer_stride[which] + row * p.dst_token_stride[which];
  const int64_t units = int64_t{p.kv_heads} * p.row_units;
  for (int64_t i = threadIdx.x; i < units; i += kThreads) {
    const int64_t head = i / p.row_units, u = i - head * p.row_units;
    reinterpret_cast<Unit*>(dst + head * p.dst_head_stride[which])[u] =
        reinterpret_cast<const Unit*>(src + head * p.src_head_stride[which])[u];
  }
}

struct QuantiseParams {
  WriteParams rows;  // strides in bytes; rows.row_units unused
  DType dtype;       // of k_new and v_new
  int32_t head_dim;
  const float* scale[2];  // device; null: 1
  bool scales_per_head;
};

__device__ __forceinline__ float load_element(const char* row, DType dtype, int32_t i) {
  switch (dtype) {
    case DType::f16: return to_float(reinterpret_cast<const __half*>(row)[i]);
    case DType::bf16: return to_float(reinterpret_cast<const __nv_bfloat16*>(row)[i]);
    default: return reinterpret_cast<const float*>(row)[i];
  }
}

__global__ void __launch_bounds__(kThreads) write_kv_fp8_kernel(const QuantiseParams q) {
  const WriteParams& p = q.rows;
  const int which = blockIdx.y;
  const int64_t t = blockIdx.x;
  const int64_t slot = p.slot_mapping[t];
  if (slot < 0 || slot >= p.total_slots) return;
  const int64_t outer = slot / p.slots, row = slot - outer * p.slots;
  const char* src = p.src[which] + t * p.src_token_stride[which];
  char* dst = p.dst[which] + outer * p.dst_outer_stride[which] + row * p.dst_token_stride[which];
  const int64_t elements = int64_t{p.kv_heads} * q.head_dim;
  for (int64_t i = threadIdx.x; i < elements; i += kThreads) {
    const int32_t head = static_cast<int32_t>(i / q.head_dim), c = static_cast<int32_t>(i - int64_t{head} * q.head_dim);
    const float* scale = q.scale[which];
    const float raw = load_element(src + head * p.src_head_stride[which], q.dtype, c);
    // Divided, as on the CPU: the reciprocal rounds twice and overflows below 2^-126.
    const float x = raw / (scale ? scale[q.scales_per_head ? head : 0] : 1.0f);
    // satfinite keeps finite values at +-448; inf and NaN become the NaN code with the input's
    // sign, as on the CPU (a GPU multiply returns the canonical, positive NaN).
    const unsigned char code =
        isfinite(x) ? static_cast<unsigned char>(__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3))
                    : static_cast<unsigned char>(signbit(raw) ? 0xff : 0x7f);
    reinterpret_cast<unsigned char*>(dst + head * p.dst_head_stride[which])[c] = code;
  }
}

}  // namespace

void launch_write_kv(const WriteKvArguments& a, cudaStream_t stream) {
  if (a.tokens <= 0) return;
  if (a.tokens > INT_MAX) detail::throw_invalid("write_kv", "tokens", a.tokens, "<= 2^31 - 1");
  const KvCache& kv = a.kv;
  const bool paged = kv.paged();
  const int64_t es = static_cast<int64_t>(dtype_size(a.dtype));
  WriteParams p{};
  p.slot_mapping = a.slot_mapping;
  p.slots = paged ? kv.page_size : kv.capacity;
  p.total_slots = p.slots * (paged ? kv.num_pages : a.sequences);  // validation: fits in int64
  p.src[0] = static_cast<const char*>(a.k_new);
  p.src[1] = static_cast<const char*>(a.v_new);
  p.src_token_stride[0] = a.k_new_token_stride * es;
  p.src_token_stride[1] = a.v_new_token_stride * es;
  p.src_head_stride[0] = a.k_new_head_stride * es;
  p.src_head_stride[1] = a.v_new_head_stride * es;
  p.dst[0] = static_cast<char*>(const_cast<void*>(kv.k));  // the cache is written (write_kv.h)
  p.dst[1] = static_cast<char*>(const_cast<void*>(kv.v));
  p.dst_outer_stride[0] = (paged ? kv.k_page_stride : kv.k_sequence_stride) * es;
  p.dst_outer_stride[1] = (paged ? kv.v_page_stride : kv.v_sequence_stride) * es;
  p.dst_token_stride[0] = kv.k_token_stride * es;
  p.dst_token_stride[1] = kv.v_token_stride * es;
  p.dst_head_stride[0] = kv.k_head_stride * es;
  p.dst_head_stride[1] = kv.v_head_stride * es;
  p.kv_heads = a.kv_heads;
  if (kv.fp8) {  // pool strides count bytes
    p.dst_outer_stride[0] = paged ? kv.k_page_stride : kv.k_sequence_stride;
    p.dst_outer_stride[1] = paged ? kv.v_page_stride : kv.v_sequence_stride;
    p.dst_token_stride[0] = kv.k_token_stride;
    p.dst_token_stride[1] = kv.v_token_stride;
    p.dst_head_stride[0] = kv.k_head_stride;
    p.dst_head_stride[1] = kv.v_head_stride;
    QuantiseParams q{p, a.dtype, a.head_dim, {kv.k_scale, kv.v_scale}, kv.scales_per_head};
    write_kv_fp8_kernel<<<dim3(static_cast<unsigned>(a.tokens), 2), kThreads, 0, stream>>>(q);
    WIDEATTN_CUDA_CHECK_LAUNCH("write_kv_fp8_kernel");
    return;
  }
  const int64_t row_bytes = int64_t{a.head_dim} * es;
  bool wide = row_bytes % 16 == 0;
  for (int which = 0; which < 2; ++which) {
    wide = wide && is_aligned(p.src[which], 16) && is_aligned(p.dst[which], 16) &&
           p.src_token_stride[which] % 16 == 0 && p.src_head_stride[which] % 16 == 0 &&
           p.dst_outer_stride[which] % 16 == 0 && p.dst_token_stride[which] % 16 == 0 &&
           p.dst_head_stride[which] % 16 == 0;
  }
  const dim3 grid(static_cast<unsigned>(a.tokens), 2);
  if (wide) {
    p.row_units = static_cast<int32_t>(row_bytes / 16);
    write_kv_kernel<uint4><<<grid, kThreads, 0, stream>>>(p);
  } else if (es == 4) {
    p.row_units = a.head_dim;
    write_kv_kernel<uint32_t><<<grid, kThreads, 0, stream>>>(p);
  } else {
    p.row_units = a.head_dim;
    write_kv_kernel<uint16_t><<<grid, kThreads, 0, stream>>>(p);
  }
  WIDEATTN_CUDA_CHECK_LAUNCH("write_kv_kernel");
}

}  // namespace wideattn::cuda
