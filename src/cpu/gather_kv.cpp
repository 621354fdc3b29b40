// gather_kv_rows on the CPU: the paged cache's rows of one sequence and KV head, copied through
// the block table (KvRows) into the prefill pipeline's dense scratch.
#include <cstring>

#include "cpu/cpu_components.h"
#include "cpu/kv_rows.h"

namespace wideattn::detail::cpu {

void gather_kv_rows(const GatherKvArguments& a) {
  const AttentionProblem& p = *a.problem;
  const KvRows kv(p, a.sequence, a.head);
  const std::size_t row_bytes = static_cast<std::size_t>(p.head_dim) * dtype_size(p.dtype);
  auto* k = static_cast<char*>(a.k);
  auto* v = static_cast<char*>(a.v);
  // Below this many rows a copy is not worth waking the thread team.
  constexpr int64_t kParallelRows = 256;
#pragma omp parallel for schedule(static) if (a.rows >= kParallelRows)
  for (int64_t i = 0; i < a.rows; ++i) {
    std::memcpy(k + i * row_bytes, kv.k_row(a.first_row + i), row_bytes);
    std::memcpy(v + i * row_bytes, kv.v_row(a.first_row + i), row_bytes);
  }
}

}  // namespace wideattn::detail::cpu
