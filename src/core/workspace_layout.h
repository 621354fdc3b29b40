// How each kernel carves the Context's workspace. Shared by dispatch (to size it) and the
// backends (to use it), so the two cannot disagree.
#pragma once

#include <cstddef>
#include <cstdint>

#include "wideattn/attention.h"
#include "wideattn/problem.h"

namespace wideattn::detail {

inline std::size_t align_up(std::size_t bytes, std::size_t alignment = 256) {
  return (bytes + alignment - 1) / alignment * alignment;
}

// Decode: per (query row, split) partial results, plus a device copy of the sequence metadata.
//   partial_out [total_tokens * q_heads, splits, head_dim] f32, unnormalised
//   partial_max [total_tokens * q_heads, splits] f32 (running max of the logits)
//   partial_sum [total_tokens * q_heads, splits] f32 (sum of exp(logit - max))
//   metadata    query_offsets [batch + 1] then kv_lengths [batch], int32
struct DecodeWorkspace {
  std::size_t partial_out = 0, partial_max = 0, partial_sum = 0, metadata = 0, bytes = 0;
};

// For `tokens` query rows; p's metadata is not read (a plan from bounds passes its bound, and its
// query_offsets may be device memory).
inline DecodeWorkspace decode_workspace_layout(int64_t tokens, const AttentionProblem& p,
                                               int32_t splits) {
  DecodeWorkspace w;
  const std::size_t rows = static_cast<std::size_t>(tokens) * p.q_heads;
  std::size_t at = 0;
  if (splits > 1) {
    w.partial_out = at;
    at += align_up(rows * splits * p.head_dim * sizeof(float));
    w.partial_max = at;
    at += align_up(rows * splits * sizeof(float));
    w.partial_sum = at;
    at += align_up(rows * splits * sizeof(float));
  }
  w.metadata = at;
  at += align_up((2 * static_cast<std::size_t>(p.batch) + 1) * sizeof(int32_t));
  w.bytes = at;
  return w;
}

inline DecodeWorkspace decode_workspace_layout(const AttentionProblem& p, int32_t splits) {
  return decode_workspace_layout(p.total_tokens(), p, splits);
}

// Row stride of a prefill score row of `cols` keys: a multiple of 8 elements so every row of
// f32 scores and 16-bit probabilities starts 16-byte aligned (the GEMMs' fast paths need it).
inline int64_t prefill_row_stride(int64_t cols) {
  const int64_t at_least_one = cols < 1 ? 1 : cols;
  return (at_least_one + 7) / 8 * 8;
}

// Whether the prefill pipeline copies K/V rows into dense model-dtype rows before its GEMMs:
// for a paged cache (one leading dimension) and an fp8 one (the GEMMs take 16/32-bit operands).
inline bool prefill_gathers_kv(const AttentionProblem& p) { return p.kv.paged() || p.kv.fp8; }

// The dtype of the gathered rows: the model's; for an fp8 cache on the CPU f32 (e4m3 x scale is
// exact in f32, and the CPU matmul multiplies in f32 anyway), on CUDA the model's again
// (cuBLASLt takes one operand type; e4m3 codes are exact in f16 and bf16, code x scale is not).
inline DType gathered_kv_dtype(const AttentionProblem& p, Backend backend) {
  return p.kv.fp8 && backend == Backend::cpu ? DType::f32 : p.dtype;
}

// Whether the gather of an fp8 cache applies the dequantisation scales (the CPU's f32 rows), or
// leaves the codes unscaled and the masked softmax applies them (CUDA: the scales live on the
// device; the logits are multiplied by the K scale, the probabilities by the V scale, so no
// value is rounded twice).
inline bool gather_applies_kv_scales(Backend backend) { return backend == Backend::cpu; }

// Prefill: one chunk of `chunk_rows` suffix tokens of one KV group at a time.
//   scores        [gqa, chunk_rows, key_capacity] f32 (masked in place, softmax may write back)
//   probabilities [gqa, chunk_rows, key_capacity] of the backend's probability dtype, or none
//                 when that is f32 (softmax runs in place)
//   values        [gqa, chunk_rows, head_dim] f32, the P V result before scatter_values
//   k_rows,       paged and fp8 caches only: one sequence's visible K and V rows of one KV
//   v_rows        head, gathered (and dequantised), [key_capacity, head_dim] each in
//                 gathered_kv_dtype
struct PrefillWorkspace {
  int64_t chunk_rows = 0, key_capacity = 0;
  std::size_t scores = 0, probabilities = 0, values = 0, k_rows = 0, v_rows = 0, bytes = 0;
  bool separate_probabilities = false;
};

inline PrefillWorkspace prefill_workspace_layout(const AttentionProblem& p, int64_t chunk_rows,
                                                 int64_t key_capacity,
                                                 std::size_t probability_size, Backend backend) {
  PrefillWorkspace w;
  w.chunk_rows = chunk_rows;
  w.key_capacity = key_capacity;
  const std::size_t gqa = static_cast<std::size_t>(p.q_heads / p.kv_heads);
  const std::size_t cells = gqa * chunk_rows * key_capacity;
  std::size_t at = 0;
  w.scores = at;
  at += align_up(cells * sizeof(float));
  w.separate_probabilities = probability_size != sizeof(float);
  w.probabilities = w.separate_probabilities ? at : w.scores;
  if (w.separate_probabilities) at += align_up(cells * probability_size);
  w.values = at;
  at += align_up(gqa * chunk_rows * p.head_dim * sizeof(float));
  if (prefill_gathers_kv(p)) {
    const std::size_t rows_bytes =
        static_cast<std::size_t>(key_capacity) * p.head_dim * dtype_size(gathered_kv_dtype(p, backend));
    w.k_rows = at;
    at += align_up(rows_bytes);
    w.v_rows = at;
    at += align_up(rows_bytes);
  }
  w.bytes = at;
  return w;
}

}  // namespace wideattn::detail
