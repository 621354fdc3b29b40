#include "problem_metrics.h"

#include <algorithm>

#include "src/core/mask.h"  // the one mask predicate (shared with every kernel)

namespace wideattn::cli {

ProblemCost problem_cost(const AttentionProblem& p, bool writes_lse) {
  ProblemCost cost;
  const double es = static_cast<double>(dtype_size(p.dtype));
  const double kv_es = p.kv.fp8 ? 1.0 : es;  // an fp8 cache: one byte per element
  int64_t kv_rows_read = 0;
  for (int32_t b = 0; b < p.batch; ++b) {
    const SequenceMask m = detail::sequence_mask(p, b);
    const bool simple = m.spec.tree_start == nullptr && m.spec.ring_length == 0;
    for (int64_t t = 0; t < m.suffix_length; ++t) {
      const detail::KeyRange r = detail::visible_key_range(m, t, t + 1);
      if (simple) {
        cost.visible_pairs += r.last - r.first;  // exact for one row without tree or ring
      } else {
        for (int64_t i = r.first; i < r.last; ++i) cost.visible_pairs += detail::key_visible(m, t, i);
      }
    }
    // Key rows a kernel must read: those some query sees (exact for short suffixes, the
    // conservative span otherwise).
    const detail::KeyRange all = detail::visible_key_range(m, 0, m.suffix_length);
    if (m.suffix_length <= 64) {
      for (int64_t i = all.first; i < all.last; ++i) {
        for (int64_t t = 0; t < m.suffix_length; ++t) {
          if (detail::key_visible(m, t, i)) {
            ++kv_rows_read;
            break;
          }
        }
      }
    } else {
      kv_rows_read += all.last - all.first;
    }
  }
  const double tokens = static_cast<double>(p.total_tokens());
  cost.flops = 4.0 * p.q_heads * static_cast<double>(cost.visible_pairs) * p.head_dim;
  cost.bytes = 2.0 * tokens * p.q_heads * p.head_dim * es                     // Q read, O written
               + 2.0 * static_cast<double>(kv_rows_read) * p.kv_heads * p.head_dim * kv_es  // K, V
               + (writes_lse ? tokens * p.q_heads * sizeof(float) : 0.0);
  return cost;
}

}  // namespace wideattn::cli
