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
  if (p.kv.paged()) {
    p.kv.k_sequence_stride = p.kv.v_sequence_stride = 0;
    p.kv.k_page_stride = p.kv.v_page_stride = int64_t{p.kv.page_size} * p.kv_heads * d;
  } else {
    p.kv.k_sequence_stride = p.kv.v_sequence_stride = p.kv.capacity * p.kv_heads * d;
  }
}

void set_paged_kv(AttentionProblem& p, const void* k_pool, const void* v_pool, int64_t num_pages,
                  int32_t page_size, const int32_t* block_table, int32_t max_pages,
                  bool head_major) {
  const int64_t d = p.head_dim;
  KvCache& kv = p.kv;
  kv.k = k_pool;
  kv.v = v_pool;
  kv.capacity = 0;
  kv.block_table = block_table;
  kv.block_table_stride = max_pages;
  kv.max_pages = max_pages;
  kv.page_size = page_size;
  kv.num_pages = num_pages;
  kv.k_sequence_stride = kv.v_sequence_stride = 0;
  kv.k_page_stride = kv.v_page_stride = int64_t{page_size} * p.kv_heads * d;
  kv.k_token_stride = kv.v_token_stride = head_major ? d : int64_t{p.kv_heads} * d;
  kv.k_head_stride = kv.v_head_stride = head_major ? int64_t{page_size} * d : d;
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
