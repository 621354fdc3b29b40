// What one fused prefill launch receives, by value (a __grid_constant__ parameter): the TMA
// descriptors of Q, K and V, the output, the mask, and the per-sequence metadata (sorted so that
// the sequences with the most tiles come first). Filled by fused_launch.cu.
#pragma once

#include <cuda.h>

#include <cstdint>

#include "core/kv_layout.h"
#include "cuda/fused/tile_config.h"

namespace wideattn::fused {

struct FusedParams {
  // Q as [tokens, q_heads, d] viewed 4-D (d, packed heads, tokens, head groups); K and V as
  // (d, capacity, kv_heads, batch), or paged (d, page_size, kv_heads, num_pages). 128-byte
  // swizzled boxes of 64 columns.
  CUtensorMap q_map;
  CUtensorMap k_map;
  CUtensorMap v_map;

  void* out = nullptr;
  int64_t out_token_stride = 0, out_head_stride = 0;
  float* lse = nullptr;  // null: not written
  int64_t lse_token_stride = 0, lse_head_stride = 0;
  const float* sinks = nullptr;  // [q_heads] or null
  int32_t out_aligned16 = 0;     // out rows can be stored 16 bytes at a time

  int32_t q_heads = 0, kv_heads = 0;
  int32_t group = 0;         // q_heads / kv_heads
  int32_t packed = 0;        // query heads per tile (packed_heads)
  int32_t packed_shift = 0;  // log2(packed): packed divides block_m (128), so a power of two
  int32_t tile_heads = 0;    // q_heads / packed: tiles side by side per query block
  int32_t tokens_per_tile = 0;  // block_m / packed (64 / packed with alternate_keys)
  // A pair only: tiles of 64 rows, which both consumer warpgroups of each CTA take, warpgroup w
  // the walk's key tiles w, w + 2, ...; their states merge at the item's end (fused_kernel.cuh).
  // For calls with fewer 128-row tiles than pairs (fused_prefill_alternate_keys).
  int32_t alternate_keys = 0;

  float scale_log2 = 0.0f;  // scale * log2(e)
  float softcap = 0.0f;     // > 0: logits = softcap * tanh(scale * q.k / softcap)
  int32_t causal = 1;
  int32_t window = 0;
  // A ring cache (ring_length > 0) and a speculative tree (tree_start not null), as MaskSpec
  // (wideattn/problem.h); the tree arrays are indexed by query row (query_start + suffix index).
  int32_t ring_length = 0, ring_offset = 0;
  const int32_t* tree_start = nullptr;
  const int32_t* tree_end = nullptr;
  const int32_t* tree_height = nullptr;

  // Paged KV cache (block_table not null): a key tile is block_n / box_rows boxes of box_rows
  // rows (block_n, or the page size when smaller), each from the page its block-table entry
  // names; an entry past the sequence's rows is not read (the box gets page -1: zeros).
  const int32_t* block_table = nullptr;
  int64_t block_table_stride = 0;
  int32_t page_shift = 0;  // log2(page_size)
  int32_t box_rows = 0;

  // The same tensors as plain pointers, for the rare rows whose output came out non-finite
  // (the NaN policy's key-by-key pass, fused_kernel.cuh): Q rows [tokens, q_heads, d] by
  // strides, K and V rows through kv_layout.h (contiguous or paged).
  const void* q_rows = nullptr;
  int64_t q_token_stride = 0, q_head_stride = 0;
  detail::KvPool k_pool, v_pool;
  detail::KvPages pages;

  // KV splits per query tile (> 1: each work item covers 1/splits of its tile's key tiles and
  // leaves its partial state, [token * q_heads + head][split], for the decode merge kernel).
  int32_t splits = 1;
  float* partial_out = nullptr;  // [rows, splits, head_dim], unnormalised
  float* partial_max = nullptr;  // [rows, splits], natural-log max (-inf: no key seen)
  float* partial_sum = nullptr;  // [rows, splits], sum of exp(logit - max)

  int32_t num_sequences = 0;  // sequences with at least one query row
  int32_t total_tiles = 0;    // work items: query tiles x splits
  // Per sequence in schedule order (most tiles first).
  int32_t batch_index[kMaxSequences];  // b, the KV cache slot
  int32_t query_start[kMaxSequences];  // query_offsets[b]
  int32_t suffix[kMaxSequences];       // query rows
  int32_t kv_length[kMaxSequences];
  int32_t tile_start[kMaxSequences + 1];  // prefix sums of tiles (query blocks x tile_heads)
};

}  // namespace wideattn::fused
