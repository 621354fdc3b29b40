// Byte addresses of one sequence's K/V rows for one KV head, contiguous or paged
// (core/kv_layout.h): what every CPU kernel reads the cache through. A block of rows inside one
// page (any block of a contiguous cache) is one address and a stride; a block that crosses
// pages becomes an array of row pointers.
#pragma once

#include <algorithm>
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
        element_size_(static_cast<int64_t>(dtype_size(kv_dtype(p.kv, p.dtype)))) {}

  const char* k_row(int64_t row) const { return address(k_, row); }
  const char* v_row(int64_t row) const { return address(v_, row); }
  int64_t k_stride_bytes() const { return k_.token_stride * element_size_; }
  int64_t v_stride_bytes() const { return v_.token_stride * element_size_; }
  // Whether rows [first, first + count) are in one page (always, for a contiguous cache).
  bool one_page(int64_t first, int64_t count) const {
    return (first >> pages_.page_shift) == ((first + count - 1) >> pages_.page_shift);
  }

  // k[i] and v[i] = rows first + i for i < count; entries count .. padded - 1 repeat the last
  // row (kernels that work in fixed-size groups read a valid row there). count >= 1.
  // One table lookup per page; within a page (all of a contiguous cache) rows are one stride
  // apart, so the per-row cost is two additions.
  void block(int64_t first, int64_t count, int64_t padded, const char** k, const char** v) const {
    const int64_t k_step = k_stride_bytes(), v_step = v_stride_bytes();
    for (int64_t i = 0; i < count;) {
      const int64_t row = first + i;
      const int64_t page = page_of(pages_, sequence_, row);
      const int64_t run = std::min(count - i, pages_.page_mask - (row & pages_.page_mask) + 1);
      const char* kp = at(k_, row_offset(k_, pages_, page, row, head_));
      const char* vp = at(v_, row_offset(v_, pages_, page, row, head_));
      for (const int64_t end = i + run; i < end; ++i, kp += k_step, vp += v_step) {
        k[i] = kp;
        v[i] = vp;
      }
    }
    for (int64_t i = count; i < padded; ++i) {
      k[i] = k[count - 1];
      v[i] = v[count - 1];
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
