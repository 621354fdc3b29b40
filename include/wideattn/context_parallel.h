// Context parallelism over NCCL: one attention call of decode and speculative steps over a KV
// cache sharded by position across the GPUs of a host, and the prefill of one sequence sharded
// zig-zag, one process per GPU (the C++ side of python/wideattn/distributed.py's
// context_parallel_attention and allgather_prefill_attention; docs/design.md, issue 14).
//
// Every rank passes the same queries (the step's new tokens, replicated), the same query
// offsets and KV lengths (each sequence's whole length, host arrays), and its own shard: a
// cache as attention() takes it (contiguous or paged) whose rows 0 .. shard_kv_lengths[b] - 1
// hold positions [shard_starts[b], shard_starts[b] + shard_kv_lengths[b]) of sequence b. Each
// rank attends its shard with the kernels of attention() into a partial output and log-sum-exp,
// the partial states are all-gathered over NCCL on the Context's stream, and merge_states
// combines them: every rank writes the whole result, equal to one call over the whole cache
// within the usual tolerance. The exchange is tokens x heads x (head_dim x dtype + 4) bytes a
// rank.
//
// Served: causal and bidirectional masks, sinks (counted once: rank 0's state carries them),
// soft-cap, LSE output, f16/bf16/f32, fp8 and paged shards. A shard that ends at its sequence's
// end holds its new tokens' keys and is attended causally; a shard wholly before the first new
// token is visible to every new token; with one new token (decode) any sharding is served.
// Refused (`unsupported`, naming the argument): sliding windows, ring caches and trees (the
// kernels would need the keys' positions), a shard holding only part of a step's new keys, and
// a visible shard shorter than the step's new tokens.
//
// NCCL is loaded at run time: the libnccl.so.2 the process already has (PyTorch's, an
// engine's), else dlopen of $WIDEATTN_NCCL_LIBRARY or "libnccl.so.2". Building wideattn needs
// no NCCL. Keep NVLink multicast off in multi-GPU runs (NCCL_NVLS_ENABLE=0).
#pragma once

#include <cstddef>
#include <cstdint>

#include "wideattn/context.h"
#include "wideattn/problem.h"
#include "wideattn/status.h"

namespace wideattn {

// An NCCL communicator (an ncclComm_t) of world_size ranks, this process being `rank`.
struct ContextParallelGroup {
  void* nccl_comm = nullptr;  // may be null when world_size is 1
  int32_t rank = 0;
  int32_t world_size = 1;     // 1 to kMaxMergeStates (32)
};

struct ContextParallelArguments {
  // q, out, lse, scale, masks, sinks, soft-cap as for attention(); kv is this rank's shard;
  // query_offsets [batch + 1] and kv_lengths [batch] (host) describe the whole sequences.
  AttentionProblem problem;
  const int32_t* shard_starts = nullptr;      // host [batch]: the shard's first position
  const int32_t* shard_kv_lengths = nullptr;  // host [batch]: its rows (0: none of the sequence)
  void* scratch = nullptr;                    // device memory, context_parallel_scratch_bytes
  std::size_t scratch_bytes = 0;
};

// Bytes of scratch one call over `problem` (its tokens, heads, head_dim, dtype) needs.
std::size_t context_parallel_scratch_bytes(const AttentionProblem& problem, int32_t world_size);

// Asynchronous on the Context's stream (the all-gather included). Every rank of the group must
// make the call, with the same queries, offsets and lengths.
Status context_parallel_attention(Context& context, const ContextParallelGroup& group,
                                  const ContextParallelArguments& args);

// Prefill of one sequence over the group, zig-zag sharded (the C++ side of
// python/wideattn/distributed.py's allgather_prefill_attention): the sequence is cut into
// 2 x world_size equal chunks of c tokens and this rank holds chunks `rank` and
// 2 x world_size - 1 - rank (zigzag_chunks), concatenated in that order, so every rank has the
// same causal work. `problem` describes this rank's part as one sequence: batch 1,
// query_offsets {0, 2c} and kv_lengths {2c} (host arrays), q and out (and lse) its 2c rows, and
// kv.k / kv.v those positions' keys and values as dense token-major rows ([2c, kv_heads,
// head_dim]: token stride kv_heads x head_dim, head stride head_dim; capacity >= 2c). Every
// rank's K and V are all-gathered over NCCL on the Context's stream (one collective of
// 4c x kv_heads x head_dim elements a rank), put back in sequence order in the scratch, and
// each query chunk attends the keys up to its own end (causal, with sliding windows too) or all
// of them (bidirectional) in one call of attention(): sinks, soft-cap, scale and LSE as there,
// no partial states to merge. The result equals one call over the whole sequence within the
// usual tolerance. Refused (`unsupported`, naming the argument): ring caches, trees, paged or
// fp8 shards, a window with a bidirectional mask; (`invalid_argument`) an odd row count, a
// batch other than one sequence, strided K/V rows, scratch too small.
// (Ring attention with K/V passed between neighbours, overlapped with the attention, is served
// from Python over torch.distributed: ring_prefill_attention.)
struct ContextParallelPrefillArguments {
  AttentionProblem problem;
  void* scratch = nullptr;  // device memory, context_parallel_prefill_scratch_bytes
  std::size_t scratch_bytes = 0;
};
std::size_t context_parallel_prefill_scratch_bytes(const AttentionProblem& problem, int32_t world_size);
Status context_parallel_prefill(Context& context, const ContextParallelGroup& group,
                                const ContextParallelPrefillArguments& args);

// The two query chunks (of 2 x world_size) that `rank` holds under zig-zag sharding.
inline void zigzag_chunks(int32_t rank, int32_t world_size, int32_t chunks[2]) {
  chunks[0] = rank;
  chunks[1] = 2 * world_size - 1 - rank;
}

// NCCL set-up for a caller without a communicator: one rank makes the id and shares it with
// the others (over MPI, a file, a TCP store), then every rank creates its communicator on the
// Context's device. backend_unavailable without CUDA or without a loadable NCCL.
struct NcclUniqueId {
  char bytes[128];
};
Status nccl_unique_id(NcclUniqueId* id);
Status nccl_comm_init(Context& context, int32_t world_size, const NcclUniqueId& id, int32_t rank,
                      void** comm);
Status nccl_comm_destroy(void* comm);

}  // namespace wideattn
