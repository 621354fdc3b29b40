// gather_kv_rows on the CPU: the paged (or fp8) cache's rows of one sequence and KV head, copied
// through the block table (KvRows) into the prefill pipeline's dense scratch, dequantised if fp8.
#include <cstring>

#include "core/kv_layout.h"
#include "cpu/convert_rows.h"
#include "cpu/cpu_components.h"
#include "cpu/kv_rows.h"
#include "cpu/vector_math.h"

namespace wideattn::detail::cpu {

void gather_kv_rows(const GatherKvArguments& a) {
  const AttentionProblem& p = *a.problem;
  const KvRows kv(p, a.sequence, a.head);
  const std::size_t row_bytes = static_cast<std::size_t>(p.head_dim) * dtype_size(p.dtype);
  auto* k = static_cast<char*>(a.k);
  auto* v = static_cast<char*>(a.v);
  // Below this many rows a copy is not worth waking the thread team.
  constexpr int64_t kParallelRows = 256;
  if (p.kv.fp8) {  // dequantise into f32 rows (gathered_kv_dtype): e4m3 x the head's scale, exact
    const float k_scale = kv_head_scale(p.kv, p.kv.k_scale, a.head);
    const float v_scale = kv_head_scale(p.kv, p.kv.v_scale, a.head);
    auto* k32 = static_cast<float*>(a.k);
    auto* v32 = static_cast<float*>(a.v);
    const int64_t d = p.head_dim;
#pragma omp parallel for schedule(static) if (a.rows >= kParallelRows)
    for (int64_t i = 0; i < a.rows; ++i) {
      convert_to_f32(kv.k_row(a.first_row + i), DType::fp8_e4m3, k32 + i * d, d);
      scale_row(k32 + i * d, d, k_scale);
      convert_to_f32(kv.v_row(a.first_row + i), DType::fp8_e4m3, v32 + i * d, d);
      scale_row(v32 + i * d, d, v_scale);
    }
    return;
  }
#pragma omp parallel for schedule(static) if (a.rows >= kParallelRows)
  for (int64_t i = 0; i < a.rows; ++i) {
    std::memcpy(k + i * row_bytes, kv.k_row(a.first_row + i), row_bytes);
    std::memcpy(v + i * row_bytes, kv.v_row(a.first_row + i), row_bytes);
  }
}

}  // namespace wideattn::detail::cpu
