// Byte addresses of one sequence's K/V rows for one KV head, contiguous or paged
// (core/kv_layout.h): what every CPU kernel reads the cache through. A block of rows becomes an
// array of row pointers, so the inner loops are the same for both layouts.
#pragma once

#include <cstdint>

#include "core/kv_layout.h"
#include "wideattn/problem.h"

namespace wideattn::detail::cpu {

class KvRows {
 public:
  KvRows(const AttentionProblem& p, int32_t sequence, int32_t head)
      : k_(k_pool(p.kv)),
        v_(v_pool(p.kv)),
        pages_(kv_pages(p.kv)),
        sequence_(sequence),
        head_(head),
        element_size_(static_cast<int64_t>(dtype_size(p.dtype))) {}

  const char* k_row(int64_t row) const { return address(k_, row); }
  const char* v_row(int64_t row) const { return address(v_, row); }

  // k[i] and v[i] = rows first + i for i < count; entries count .. padded - 1 repeat the last
  // row (kernels that work in fixed-size groups read a valid row there). count >= 1.
  void block(int64_t first, int64_t count, int64_t padded, const char** k, const char** v) const {
    for (int64_t i = 0; i < padded; ++i) {
      const int64_t row = first + (i < count ? i : count - 1);
      const int64_t page = page_of(pages_, sequence_, row);
      k[i] = at(k_, row_offset(k_, pages_, page, row, head_));
      v[i] = at(v_, row_offset(v_, pages_, page, row, head_));
    }
  }

 private:
  const char* address(const KvPool& pool, int64_t row) const {
    return at(pool, row_offset(pool, pages_, sequence_, row, head_));
  }
  const char* at(const KvPool& pool, int64_t element) const {
    return static_cast<const char*>(pool.base) + element * element_size_;
  }

  KvPool k_, v_;
  KvPages pages_;
  int32_t sequence_, head_;
  int64_t element_size_;
};

}  // namespace wideattn::detail::cpu
