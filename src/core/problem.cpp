#include "wideattn/problem.h"

#include "core/mask.h"

namespace wideattn {

void set_dense_strides(AttentionProblem& p) {
  const int64_t d = p.head_dim;
  p.q_head_stride = d;
  p.q_token_stride = int64_t{p.q_heads} * d;
  p.out_head_stride = d;
  p.out_token_stride = int64_t{p.q_heads} * d;
  p.lse_head_stride = 1;
  p.lse_token_stride = p.q_heads;
  p.kv.k_head_stride = p.kv.v_head_stride = d;
  p.kv.k_token_stride = p.kv.v_token_stride = int64_t{p.kv_heads} * d;
  p.kv.k_sequence_stride = p.kv.v_sequence_stride = p.kv.capacity * p.kv_heads * d;
}

namespace detail {

SequenceMask sequence_mask(const AttentionProblem& p, int32_t b) {
  SequenceMask m;
  m.spec = p.mask;
  const int32_t first = p.query_offsets[b];
  m.suffix_length = p.query_offsets[b + 1] - first;
  m.prefix_length = p.kv_lengths[b] - m.suffix_length;
  if (m.spec.tree_start) {
    m.spec.tree_start += first;
    m.spec.tree_end += first;
    m.spec.tree_height += first;
  }
  return m;
}

}  // namespace detail
}  // namespace wideattn
