// The problem `attention` solves: a batch of sequences, each with new tokens (the suffix) that
// attend to that sequence's KV cache (the prefix plus the suffix's own keys, already written).
//
// Conventions
// - Strides are in elements, int64. The last (head_dim) dimension of every tensor is contiguous.
// - Tensors (q, k, v, out, lse, sinks, tree arrays, the block table, fp8 scales) live on the
//   Context's device. Sequence metadata (query_offsets, kv_lengths) lives on the host, where
//   dispatch reads it; a plan made from bounds (attention.h: ProblemBounds, attention_planned)
//   reads it on the device instead.
// - Sequence b owns query rows [query_offsets[b], query_offsets[b+1]) (FlashAttention varlen's
//   cu_seqlens_q). Its suffix_length is that count, its kv_length is kv_lengths[b], and its
//   prefix_length = kv_length - suffix_length. Suffix token t sits at position prefix_length + t
//   and its key/value rows are cache rows prefix_length + t.
// - Query head h reads KV head h / (q_heads / kv_heads) (GQA; MQA when kv_heads == 1).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "wideattn/types.h"

namespace wideattn {

// The KV cache, contiguous or paged.
//
// Contiguous (block_table == nullptr): sequence b, token slot i, KV head g starts at
//   k + b * k_sequence_stride + i * k_token_stride + g * k_head_stride (likewise v).
//
// Paged (block_table != nullptr; vLLM's block_table, FlashInfer's page table): K and V are two
// pools of num_pages pages of page_size token slots each, and token slot i of sequence b lives in
// page P = block_table[b * block_table_stride + i / page_size], at
//   k + P * k_page_stride + (i % page_size) * k_token_stride + g * k_head_stride (likewise v).
// The token and head strides are those within a page, so both engine layouts are strides:
//   token-major [num_pages, page_size, kv_heads, head_dim]: token_stride = kv_heads * head_dim,
//                                                           head_stride = head_dim;
//   head-major  [num_pages, kv_heads, page_size, head_dim]: token_stride = head_dim,
//                                                           head_stride = page_size * head_dim;
// and any page stride (K and V may be views into one [num_pages, 2, ...] tensor). Pages may be
// shared between sequences (prefix sharing). Only the first ceil(kv_lengths[b] / page_size)
// entries of a row are read; each must be in [0, num_pages). The block table lives on the
// Context's device like the tensors (host memory on the CPU backend, where validation checks
// every entry it reads; device memory on CUDA, which validation cannot read).
struct KvCache {
  const void* k = nullptr;  // contiguous: [batch, capacity, kv_heads, head_dim]; paged: the pool
  const void* v = nullptr;  // same shape as k, through its own strides
  int64_t capacity = 0;     // contiguous: token slots per sequence, every kv_length <= capacity;
                            // paged: 0 (max_pages * page_size bounds each sequence)
  int64_t k_sequence_stride = 0, k_token_stride = 0, k_head_stride = 0;
  int64_t v_sequence_stride = 0, v_token_stride = 0, v_head_stride = 0;  // sequence: contiguous only

  // Paged caches; all zero / null for a contiguous cache.
  const int32_t* block_table = nullptr;  // [batch, max_pages] int32 page indices
  int64_t block_table_stride = 0;        // entries between consecutive sequences' rows (>= max_pages)
  int32_t max_pages = 0;                 // entries per row: sequence b holds <= max_pages * page_size
  int32_t page_size = 0;                 // token slots per page: a power of two in [1, kMaxPageSize]
  int64_t num_pages = 0;                 // pages in each pool
  int64_t k_page_stride = 0, v_page_stride = 0;  // elements between consecutive pages

  // fp8 cache: K and V hold e4m3 bytes (DType::fp8_e4m3; strides still count elements) and a
  // stored value x stands for x * scale. The scales are f32 on the Context's device: one per
  // pool, or one per KV head (scales_per_head); a null scale is 1. Halves a 16-bit cache's
  // bytes. The CPU backend serves every kernel; CUDA serves decode and speculative steps on its
  // tensor-core kernels and prefill on the unfused pipeline (the fused kernels decline it, with
  // the reason), for f16 or bf16 queries; f32 queries are refused (unsupported).
  bool fp8 = false;
  const float* k_scale = nullptr;
  const float* v_scale = nullptr;
  bool scales_per_head = false;

  bool paged() const { return block_table != nullptr; }
  // Token slots one sequence can address.
  int64_t sequence_capacity() const {
    return paged() ? int64_t{max_pages} * page_size : capacity;
  }
};

// Largest page size of a paged KV cache.
inline constexpr int32_t kMaxPageSize = 4096;

// Which keys each query sees. One predicate, shared by every kernel (src/core/mask.h):
// - suffix key j (cache row prefix_length + j) and query t:
//     tree: visible iff tree_start[j] <= t <= tree_end[j] (j's subtree in DFS order holds t);
//           positions are prefix_length + tree_height[.];
//     causal: visible iff j <= t;  bidirectional: always.
// - prefix key i: visible; with a ring (ring_length > 0) its logical position is
//     (prefix_length + i - ring_offset) mod prefix_length and it is visible iff that is < ring_length.
// - window w > 0: causal: 0 <= qpos - kpos < w; bidirectional: |qpos - kpos| <= w / 2.
struct MaskSpec {
  bool causal = true;
  int32_t window = 0;       // 0: no sliding window
  int32_t ring_length = 0;  // 0: no ring; otherwise the ring's live slots
  int32_t ring_offset = 0;  // slot of the oldest entry, in [0, prefix_length)
  // Speculative-decoding token tree, one entry per query row [total_tokens], indexed by the
  // row's suffix index within its sequence. Null: no tree. All three or none.
  const int32_t* tree_start = nullptr;
  const int32_t* tree_end = nullptr;
  const int32_t* tree_height = nullptr;
};

// Sentinel for `scale`: use 1/sqrt(head_dim).
inline constexpr float kDefaultScale = std::numeric_limits<float>::quiet_NaN();
// Largest AttentionProblem::kv_splits (bounds the split-KV workspace; the merge kernel combines
// at most this many parts per row).
inline constexpr int32_t kMaxKvSplits = 128;

struct AttentionProblem {
  int32_t batch = 0;     // number of sequences
  int32_t q_heads = 0;   // query heads
  int32_t kv_heads = 0;  // KV heads; q_heads % kv_heads == 0
  int32_t head_dim = 0;  // 64, 128, 256, 512 (any multiple of 8 up to 512 on the CPU)
  DType dtype = DType::bf16;  // storage of q, k, v and out

  const int32_t* query_offsets = nullptr;  // host, [batch + 1], non-decreasing, starts at 0
  const int32_t* kv_lengths = nullptr;     // host, [batch], suffix_length <= kv_length <=
                                           // kv.sequence_capacity()

  const void* q = nullptr;  // [total_tokens, q_heads, head_dim]
  int64_t q_token_stride = 0, q_head_stride = 0;

  KvCache kv;

  void* out = nullptr;  // [total_tokens, q_heads, head_dim]; must not overlap any input
  int64_t out_token_stride = 0, out_head_stride = 0;

  float* lse = nullptr;  // optional, f32 [total_tokens, q_heads]: natural log of the softmax
                         // normaliser (sink included); -inf for a row that sees no key and no sink
  int64_t lse_token_stride = 0, lse_head_stride = 0;

  MaskSpec mask;
  float scale = kDefaultScale;   // logits = scale * q.k (Gemma 4 uses 1.0)
  float softcap = 0.0f;          // > 0: logits = softcap * tanh(logits / softcap)
  const float* sinks = nullptr;  // optional, f32 [q_heads]: one extra logit per head in the
                                 // normaliser (not scaled, contributes no value)

  // KV splits of the decode kernels. 0: plan_attention chooses from the device and the whole
  // batch (results then depend on both, within the tolerance of docs/reliability.md). 1 to
  // kMaxKvSplits: exactly that many (1: single_pass, more: two_pass), so that a sequence's
  // output is the same bits whatever the batch around it and the device's SM count:
  // batch-invariant serving. The fused prefill splits each query tile's keys the same way
  // (it otherwise splits only when its tiles would leave SMs idle); the unfused prefill has no
  // KV splits and ignores it.
  int32_t kv_splits = 0;

  // query_offsets[batch]; 0 when query_offsets is null.
  int64_t total_tokens() const { return query_offsets ? query_offsets[batch] : 0; }
  float effective_scale() const {
    return std::isnan(scale) ? 1.0f / std::sqrt(static_cast<float>(head_dim)) : scale;
  }
};

// Fills every stride of `problem` for dense token-major tensors: q/out [total_tokens, q_heads,
// head_dim], lse [total_tokens, q_heads], and a KV cache [batch, kv.capacity, kv_heads, head_dim]
// (paged: pools [kv.num_pages, kv.page_size, kv_heads, head_dim]). Shapes (batch, heads,
// head_dim, kv.capacity or kv.page_size) must already be set.
void set_dense_strides(AttentionProblem& problem);

// Makes `problem`'s cache paged: pools `k_pool` and `v_pool` of `num_pages` dense token-major
// pages [num_pages, page_size, kv_heads, head_dim] (head_major: [num_pages, kv_heads,
// page_size, head_dim]), and a dense block table [batch, max_pages]. Sets every KvCache field;
// batch, kv_heads and head_dim must already be set.
void set_paged_kv(AttentionProblem& problem, const void* k_pool, const void* v_pool,
                  int64_t num_pages, int32_t page_size, const int32_t* block_table,
                  int32_t max_pages, bool head_major = false);

}  // namespace wideattn
