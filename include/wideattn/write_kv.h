// write_kv: a step's new keys and values into the KV cache, through a slot mapping (vLLM's
// reshape_and_cache, FlashInfer's append_paged_kv_cache), before attention reads them.
#pragma once

#include <cstdint>

#include "wideattn/problem.h"
#include "wideattn/status.h"
#include "wideattn/types.h"

namespace wideattn {

class Context;

// Token t's K and V rows (every KV head) go to cache slot s = slot_mapping[t]:
//   paged cache (kv.paged()): page s / kv.page_size, slot s % kv.page_size of that page
//     (s in [0, kv.num_pages * kv.page_size)); the block table is not read;
//   contiguous cache: sequence s / kv.capacity, row s % kv.capacity (s in
//     [0, sequences * kv.capacity)); for one sequence, s is the token's row.
// s = -1 skips the token (padding). Two tokens must not map to the same slot.
// k_new and v_new are strided, so the K and V slices of a fused QKV projection
// [tokens, (q_heads + 2 kv_heads) * head_dim] are passed as they are: k_new = qkv +
// q_heads * head_dim, v_new = qkv + (q_heads + kv_heads) * head_dim, token strides
// (q_heads + 2 kv_heads) * head_dim, head strides head_dim.
// The cache is written through kv.k and kv.v (its memory must be writable) in its own dtype,
// which is also that of k_new and v_new (no conversion), except an fp8 cache (kv.fp8; both
// backends, the same bytes): there each value is stored as e4m3 of x / scale (its head's
// kv.k_scale or kv.v_scale), rounded to nearest even and saturated at +-448, inf and NaN as NaN
// with their sign. The cache must not overlap k_new,
// v_new or slot_mapping.
//
// Bad slots: on the CPU backend (host memory) every slot is checked before anything is written;
// a slot outside the cache or below -1 is an invalid_argument error naming the token and slot.
// On CUDA the slot mapping is device memory that the host does not read: the kernel skips a
// token whose slot is outside the cache (it writes nothing for it and reports nothing).
struct WriteKvArguments {
  DType dtype = DType::bf16;  // of k_new, v_new and the cache
  int64_t tokens = 0;
  int32_t kv_heads = 0;
  int32_t head_dim = 0;
  const void* k_new = nullptr;  // [tokens, kv_heads, head_dim]
  int64_t k_new_token_stride = 0, k_new_head_stride = 0;
  const void* v_new = nullptr;  // [tokens, kv_heads, head_dim]
  int64_t v_new_token_stride = 0, v_new_head_stride = 0;
  const int32_t* slot_mapping = nullptr;  // [tokens], on the Context's device
  KvCache kv;             // the destination, as attention reads it
  int32_t sequences = 1;  // contiguous caches: sequences held (kv.k_sequence_stride apart)
};

Status write_kv(Context& context, const WriteKvArguments& args);

}  // namespace wideattn
