// Where a KV cache row lives: one formula for contiguous and paged caches (problem.h, KvCache),
// shared by the CPU kernels, the prefill pipeline's gather, validation and the CUDA kernels.
//
// A contiguous cache is the degenerate paged one: one "page" per sequence (page index b, page
// stride = sequence stride) that no row index ever leaves, so kernels need no second code path.
#pragma once

#include <cstdint>

#include "core/mask.h"  // WIDEATTN_HOST_DEVICE
#include "wideattn/problem.h"

namespace wideattn::detail {

// The addressing of one pool (K or V) of a cache, in elements.
struct KvPool {
  const void* base = nullptr;
  int64_t page_stride = 0;  // paged: between pages; contiguous: between sequences
  int64_t token_stride = 0, head_stride = 0;
};

// The row -> page mapping, common to K and V.
struct KvPages {
  const int32_t* block_table = nullptr;  // null: contiguous (page of sequence b is b)
  int64_t table_stride = 0;
  int32_t page_shift = 62;  // log2(page_size); contiguous: no row index reaches 2^62
  int64_t page_mask = (int64_t{1} << 62) - 1;
};

inline KvPool k_pool(const KvCache& kv) {
  return KvPool{kv.k, kv.paged() ? kv.k_page_stride : kv.k_sequence_stride, kv.k_token_stride,
                kv.k_head_stride};
}
inline KvPool v_pool(const KvCache& kv) {
  return KvPool{kv.v, kv.paged() ? kv.v_page_stride : kv.v_sequence_stride, kv.v_token_stride,
                kv.v_head_stride};
}

// log2 of a power of two (validation guarantees page sizes are).
WIDEATTN_HOST_DEVICE int32_t log2_exact(int64_t power_of_two) {
  int32_t shift = 0;
  while ((int64_t{1} << shift) < power_of_two) ++shift;
  return shift;
}

inline KvPages kv_pages(const KvCache& kv) {
  KvPages pages;
  if (kv.paged()) {
    pages.block_table = kv.block_table;
    pages.table_stride = kv.block_table_stride;
    pages.page_shift = log2_exact(kv.page_size);
    pages.page_mask = int64_t{kv.page_size} - 1;
  }
  return pages;
}

// The page holding cache row `row` of sequence `sequence` (reads the block table when paged).
WIDEATTN_HOST_DEVICE int64_t page_of(const KvPages& pages, int32_t sequence, int64_t row) {
  return pages.block_table
             ? pages.block_table[sequence * pages.table_stride + (row >> pages.page_shift)]
             : sequence;
}

// Element offset of cache row `row`, KV head `head`, given its page.
WIDEATTN_HOST_DEVICE int64_t row_offset(const KvPool& pool, const KvPages& pages, int64_t page,
                                        int64_t row, int32_t head) {
  return page * pool.page_stride + (row & pages.page_mask) * pool.token_stride +
         head * pool.head_stride;
}

// Element offset of cache row `row` of `sequence`, KV head `head`.
WIDEATTN_HOST_DEVICE int64_t row_offset(const KvPool& pool, const KvPages& pages,
                                        int32_t sequence, int64_t row, int32_t head) {
  return row_offset(pool, pages, page_of(pages, sequence, row), row, head);
}

// Storage of the cache's elements: e4m3 for an fp8 cache, else the problem's dtype.
inline DType kv_dtype(const KvCache& kv, DType problem_dtype) {
  return kv.fp8 ? DType::fp8_e4m3 : problem_dtype;
}

// Dequantisation scale of KV head `head` for `scale` (KvCache::k_scale or v_scale): 1 when
// null. Reads the scale, so host memory only (the CPU backend).
inline float kv_head_scale(const KvCache& kv, const float* scale, int32_t head) {
  return scale ? scale[kv.scales_per_head ? head : 0] : 1.0f;
}

}  // namespace wideattn::detail
