// The problem `attention` solves: a batch of sequences, each with new tokens (the suffix) that
// attend to that sequence's KV cache (the prefix plus the suffix's own keys, already written).
//
// Conventions
// - Strides are in elements, int64. The last (head_dim) dimension of every tensor is contiguous.
// - Tensors (q, k, v, out, lse, sinks, tree arrays) live on the Context's device.
//   Sequence metadata (query_offsets, kv_lengths) lives on the host: dispatch reads it.
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

// A token-major KV cache: sequence b, token slot i, KV head g starts at
// k + b * k_sequence_stride + i * k_token_stride + g * k_head_stride (likewise v).
struct KvCache {
  const void* k = nullptr;  // [batch, capacity, kv_heads, head_dim] through the strides below
  const void* v = nullptr;  // [batch, capacity, kv_heads, head_dim]
  int64_t capacity = 0;     // token slots per sequence; every kv_length <= capacity
  int64_t k_sequence_stride = 0, k_token_stride = 0, k_head_stride = 0;
  int64_t v_sequence_stride = 0, v_token_stride = 0, v_head_stride = 0;
  // Paged caches (a page table of fixed-size blocks) will extend this struct; contiguous
  // caches keep working unchanged.
};

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
// Largest AttentionProblem::kv_splits (bounds the split-KV workspace).
inline constexpr int32_t kMaxKvSplits = 256;

struct AttentionProblem {
  int32_t batch = 0;     // number of sequences
  int32_t q_heads = 0;   // query heads
  int32_t kv_heads = 0;  // KV heads; q_heads % kv_heads == 0
  int32_t head_dim = 0;  // 64, 128, 256, 512 (any multiple of 8 up to 512 on the CPU)
  DType dtype = DType::bf16;  // storage of q, k, v and out

  const int32_t* query_offsets = nullptr;  // host, [batch + 1], non-decreasing, starts at 0
  const int32_t* kv_lengths = nullptr;     // host, [batch], suffix_length <= kv_length <= capacity

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
// head_dim], lse [total_tokens, q_heads], and a KV cache [batch, kv.capacity, kv_heads, head_dim].
// Shapes (batch, heads, head_dim, kv.capacity) must already be set.
void set_dense_strides(AttentionProblem& problem);

}  // namespace wideattn
