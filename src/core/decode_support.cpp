#include "core/decode_support.h"

#include <cstdlib>
#include <cstring>

#include "core/tuning.h"

namespace wideattn::detail {
namespace {

// TMA over e4m3 bytes: strides multiples of 16 bytes, below 2^40.
bool tma_stride(int64_t bytes, int64_t extent) {
  return extent <= 1 || (bytes > 0 && bytes % 16 == 0 && bytes < (int64_t{1} << 40));
}

// WIDEATTN_DECODE_WGMMA=0: the mma.sync kernel for every decode (an A/B aid).
bool wgmma_disabled() {
  static const bool disabled = [] {
    const char* value = std::getenv("WIDEATTN_DECODE_WGMMA");
    return value && std::strcmp(value, "0") == 0;
  }();
  return disabled;
}

}  // namespace

const char* decode_wgmma_unsupported(const AttentionProblem& p, const DeviceInfo& device, int64_t max_suffix) {
#if !defined(WIDEATTN_WITH_CUDA)
  (void)p;
  (void)device;
  (void)max_suffix;
  return "built without the CUDA backend";
#else
  const int64_t rows = max_suffix * (p.q_heads / p.kv_heads);
  const KvCache& kv = p.kv;
  const int64_t outer = kv.paged() ? kv.num_pages : p.batch;
  const int64_t k_outer_stride = kv.paged() ? kv.k_page_stride : kv.k_sequence_stride;
  const int64_t v_outer_stride = kv.paged() ? kv.v_page_stride : kv.v_sequence_stride;
  const int64_t slots = kv.paged() ? kv.page_size : kv.capacity;
  auto aligned16 = [](const void* x) { return reinterpret_cast<std::uintptr_t>(x) % 16 == 0; };
  if (device.backend != Backend::cuda) return "needs a CUDA device";
  if (device.compute_capability != 90) return "built for sm_90a (Hopper)";
  if (!kv.fp8) return "16-bit caches run on the mma kernel";
  if (p.head_dim != 512) return "head_dim 512 only";
  if (p.dtype != DType::f16 && p.dtype != DType::bf16) return "needs f16 or bf16 queries";
  if (rows > kCudaWgmmaDecodeMaxRows) return "more than 32 query rows per KV head";
  if (kv.paged() && kv.page_size < 16) return "pages of fewer than 16 rows";
  if (outer >= (int64_t{1} << 31) || slots >= (int64_t{1} << 31)) return "2^31 pages or rows";
  if (!aligned16(kv.k) || !aligned16(kv.v)) return "k and v must be 16-byte aligned for TMA";
  if (!tma_stride(kv.k_token_stride, slots) || !tma_stride(kv.v_token_stride, slots) ||
      !tma_stride(kv.k_head_stride, p.kv_heads) || !tma_stride(kv.v_head_stride, p.kv_heads) ||
      !tma_stride(k_outer_stride, outer) || !tma_stride(v_outer_stride, outer)) {
    return "cache strides must be multiples of 16 bytes for TMA";
  }
  if (wgmma_disabled()) return "WIDEATTN_DECODE_WGMMA=0";
  return nullptr;
#endif
}

}  // namespace wideattn::detail
