// write_kv on the CPU: each token's K and V rows (every KV head) copied to its slot. Validation
// has checked every slot, so a slot here is -1 (skipped) or inside the cache.
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/kv_layout.h"
#include "cpu/convert_rows.h"
#include "cpu/cpu_components.h"

namespace wideattn::detail::cpu {

namespace {

// An fp8 cache: each row converted to f32, divided by its head's scale and rounded to e4m3
// (saturating at +-448, convert.h).
void write_kv_quantised(const WriteKvArguments& a) {
  const KvCache& kv = a.kv;
  const bool paged = kv.paged();
  const int64_t slots = paged ? kv.page_size : kv.capacity;
  const int64_t k_outer = paged ? kv.k_page_stride : kv.k_sequence_stride;
  const int64_t v_outer = paged ? kv.v_page_stride : kv.v_sequence_stride;
  const int64_t es = static_cast<int64_t>(dtype_size(a.dtype));
  auto* k = static_cast<uint8_t*>(const_cast<void*>(kv.k));  // the cache is written (write_kv.h)
  auto* v = static_cast<uint8_t*>(const_cast<void*>(kv.v));
  const auto* k_new = static_cast<const char*>(a.k_new);
  const auto* v_new = static_cast<const char*>(a.v_new);
  std::vector<float> row(static_cast<std::size_t>(a.head_dim));
  // x / scale, divided (not multiplied by the reciprocal: that rounds twice, and overflows for a
  // scale below 2^-126), then rounded once to e4m3.
  auto quantise = [&](const char* src, uint8_t* dst, float scale) {
    convert_to_f32(src, a.dtype, row.data(), a.head_dim);
    for (float& x : row) x /= scale;
    convert_from_f32(row.data(), dst, DType::fp8_e4m3, a.head_dim, 1.0f);
  };
  for (int64_t t = 0; t < a.tokens; ++t) {
    const int64_t slot = a.slot_mapping[t];
    if (slot < 0) continue;
    const int64_t outer = slot / slots, at = slot % slots;
    for (int32_t g = 0; g < a.kv_heads; ++g) {
      quantise(k_new + (t * a.k_new_token_stride + g * a.k_new_head_stride) * es,
               k + outer * k_outer + at * kv.k_token_stride + g * kv.k_head_stride, kv_head_scale(kv, kv.k_scale, g));
      quantise(v_new + (t * a.v_new_token_stride + g * a.v_new_head_stride) * es,
               v + outer * v_outer + at * kv.v_token_stride + g * kv.v_head_stride, kv_head_scale(kv, kv.v_scale, g));
    }
  }
}

}  // namespace

void write_kv(const WriteKvArguments& a) {
  const KvCache& kv = a.kv;
  const bool paged = kv.paged();
  const int64_t slots = paged ? kv.page_size : kv.capacity;  // rows of one page or sequence
  const int64_t k_outer = paged ? kv.k_page_stride : kv.k_sequence_stride;
  const int64_t v_outer = paged ? kv.v_page_stride : kv.v_sequence_stride;
  const int64_t es = static_cast<int64_t>(dtype_size(a.dtype));
  const std::size_t row_bytes = static_cast<std::size_t>(a.head_dim) * es;
  if (kv.fp8) {
    write_kv_quantised(a);
    return;
  }
  auto* k = static_cast<char*>(const_cast<void*>(kv.k));  // the cache is written (write_kv.h)
  auto* v = static_cast<char*>(const_cast<void*>(kv.v));
  const auto* k_new = static_cast<const char*>(a.k_new);
  const auto* v_new = static_cast<const char*>(a.v_new);
  // A decode step's few rows are not worth waking the thread team.
  constexpr int64_t kParallelRows = 256;
#pragma omp parallel for schedule(static) if (a.tokens * a.kv_heads >= kParallelRows)
  for (int64_t t = 0; t < a.tokens; ++t) {
    const int64_t slot = a.slot_mapping[t];
    if (slot < 0) continue;
    const int64_t outer = slot / slots, row = slot % slots;
    for (int64_t g = 0; g < a.kv_heads; ++g) {
      std::memcpy(k + (outer * k_outer + row * kv.k_token_stride + g * kv.k_head_stride) * es,
                  k_new + (t * a.k_new_token_stride + g * a.k_new_head_stride) * es, row_bytes);
      std::memcpy(v + (outer * v_outer + row * kv.v_token_stride + g * kv.v_head_stride) * es,
                  v_new + (t * a.v_new_token_stride + g * a.v_new_head_stride) * es, row_bytes);
    }
  }
}

}  // namespace wideattn::detail::cpu
