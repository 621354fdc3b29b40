// context_parallel_prefill (include/wideattn/context_parallel.h): one sequence's prefill over
// the ranks of a group, zig-zag sharded. Each rank packs its K and V rows, the ranks' rows are
// all-gathered (one NCCL collective), put back in position order, and each of the rank's two
// query chunks attends the keys it sees in one call of attention(). Against ring attention (the
// Python side has both): one collective instead of world_size steps, no partial states, and
// the queries keep their positions (sliding windows are served); the cost is the whole
// sequence's K and V on every rank and a transfer that does not overlap the attention.
#include <string>

#include "core/backend.h"
#include "core/context_parallel.h"
#include "core/error.h"
#include "core/workspace_layout.h"
#include "wideattn/attention.h"

namespace wideattn::detail {
namespace {

constexpr const char* kFunction = "context_parallel_prefill";

// Query chunk `slot` (0 or 1) of this rank as one attention call over the sequence-ordered
// keys in the scratch: its c rows of q, out and lse, and the keys up to its chunk's end
// (causal) or all of them.
struct ChunkCall {
  AttentionProblem problem;
  int32_t offsets[2] = {0, 0};
  int32_t kv_length = 0;
};

void make_chunk_call(const ContextParallelGroup& group, const ContextParallelPrefillArguments& a, int32_t slot,
                     ChunkCall& call) {
  const AttentionProblem& p = a.problem;
  const ContextParallelPrefillScratch s = context_parallel_prefill_scratch(p, group.world_size);
  int32_t chunks[2];
  zigzag_chunks(group.rank, group.world_size, chunks);
  const int64_t c = s.chunk, total = 2 * int64_t{group.world_size} * c;
  const std::size_t element = dtype_size(p.dtype);
  AttentionProblem& r = call.problem;
  r = p;
  call.offsets[0] = 0;
  call.offsets[1] = static_cast<int32_t>(c);
  call.kv_length = static_cast<int32_t>(p.mask.causal ? (chunks[slot] + 1) * c : total);
  r.batch = 1;
  r.query_offsets = call.offsets;
  r.kv_lengths = &call.kv_length;
  r.q = static_cast<const char*>(p.q) + slot * c * p.q_token_stride * static_cast<int64_t>(element);
  r.out = static_cast<char*>(p.out) + slot * c * p.out_token_stride * static_cast<int64_t>(element);
  r.lse = p.lse ? p.lse + slot * c * p.lse_token_stride : nullptr;
  char* sequence = static_cast<char*>(a.scratch) + s.sequence;
  KvCache& kv = r.kv;
  kv.k = sequence;
  kv.v = sequence + static_cast<std::size_t>(total) * s.row_bytes;
  kv.capacity = total;
  kv.k_token_stride = kv.v_token_stride = int64_t{p.kv_heads} * p.head_dim;
  kv.k_head_stride = kv.v_head_stride = p.head_dim;
  kv.k_sequence_stride = kv.v_sequence_stride = total * kv.k_token_stride;
}

void validate(const ContextParallelGroup& group, const ContextParallelPrefillArguments& a) {
  validate_group(kFunction, group);
  const AttentionProblem& p = a.problem;
  if (p.batch != 1) throw_invalid(kFunction, "problem.batch", p.batch, "1 (one sequence's zig-zag part)");
  if (!p.query_offsets || !p.kv_lengths) {
    throw_invalid(kFunction, "problem.query_offsets/kv_lengths", "null", "host arrays {0, 2c} and {2c}");
  }
  const int64_t rows = int64_t{p.query_offsets[1]} - p.query_offsets[0];
  if (p.query_offsets[0] != 0 || rows <= 0 || rows % 2 != 0) {
    throw_invalid(kFunction, "problem.query_offsets", "{" + std::to_string(p.query_offsets[0]) + ", " +
                  std::to_string(p.query_offsets[1]) + "}", "{0, 2c}: two equal chunks of c > 0 rows");
  }
  if (p.kv_lengths[0] != rows) {
    throw_invalid(kFunction, "problem.kv_lengths[0]", p.kv_lengths[0],
                  std::to_string(rows) + " (the keys of this rank's own rows)");
  }
  const KvCache& kv = p.kv;
  auto unsupported = [](const std::string& what) {
    throw_error(StatusCode::unsupported, std::string(kFunction) + ": " + what);
  };
  if (kv.paged()) unsupported("kv.block_table: paged shards are not served (dense token-major rows)");
  if (kv.fp8) unsupported("kv.fp8: fp8 shards are not served (the keys are gathered in the queries' dtype)");
  if (p.mask.ring_length != 0) unsupported("problem.mask.ring_length: ring caches are not served");
  if (p.mask.tree_start) unsupported("problem.mask.tree_start: trees are not served");
  if (p.mask.window != 0 && !p.mask.causal) {
    unsupported("problem.mask.window with causal = false is not served (a chunk's queries sit at the end of "
                "the keys they are given)");
  }
  const int64_t row = int64_t{p.kv_heads} * p.head_dim;
  if (!kv.k || !kv.v) throw_invalid(kFunction, "problem.kv.k/v", "null", "device rows [2c, kv_heads, head_dim]");
  if (kv.k_token_stride != row || kv.v_token_stride != row || kv.k_head_stride != p.head_dim ||
      kv.v_head_stride != p.head_dim) {
    throw_invalid(kFunction, "problem.kv token/head strides",
                  std::to_string(kv.k_token_stride) + "/" + std::to_string(kv.k_head_stride) + " (k), " +
                      std::to_string(kv.v_token_stride) + "/" + std::to_string(kv.v_head_stride) + " (v)",
                  std::to_string(row) + "/" + std::to_string(p.head_dim) + ": dense token-major rows");
  }
  if (kv.capacity < rows) throw_invalid(kFunction, "problem.kv.capacity", kv.capacity, ">= " + std::to_string(rows));
  const std::size_t needed = context_parallel_prefill_scratch(p, group.world_size).total;
  if (!a.scratch || a.scratch_bytes < needed) {
    throw_invalid(kFunction, "scratch_bytes", a.scratch ? std::to_string(a.scratch_bytes) : std::string("(null scratch)"),
                  ">= context_parallel_prefill_scratch_bytes = " + std::to_string(needed));
  }
}

}  // namespace

ContextParallelPrefillScratch context_parallel_prefill_scratch(const AttentionProblem& p, int32_t world_size) {
  ContextParallelPrefillScratch s;
  const int64_t rows = p.batch == 1 && p.query_offsets ? int64_t{p.query_offsets[1]} - p.query_offsets[0] : 0;
  const int64_t world = world_size > 0 ? world_size : 1;
  s.chunk = rows > 0 ? rows / 2 : 0;
  s.row_bytes = static_cast<std::size_t>(p.kv_heads > 0 && p.head_dim > 0 ? int64_t{p.kv_heads} * p.head_dim : 0) *
                dtype_size(p.dtype);
  const std::size_t own = static_cast<std::size_t>(2 * s.chunk) * s.row_bytes;  // K or V of this rank
  s.mine_bytes = align_up(2 * own);
  s.gathered = s.mine_bytes;
  s.sequence = s.gathered + static_cast<std::size_t>(world) * s.mine_bytes;
  s.total = s.sequence + align_up(2 * static_cast<std::size_t>(world) * own);
  return s;
}

void context_parallel_prefill_pack(Context& context, const ContextParallelGroup& group,
                                   const ContextParallelPrefillArguments& args) {
  validate(group, args);
  // Both chunks' calls checked before any work (their q, out and lse strides, dtype, head_dim).
  for (int32_t slot = 0; slot < 2; ++slot) {
    ChunkCall call;
    make_chunk_call(group, args, slot, call);
    Plan plan;
    throw_if_failed(plan_attention(call.problem, context.device(), Kernel::automatic, &plan));
  }
  const AttentionProblem& p = args.problem;
  const ContextParallelPrefillScratch s = context_parallel_prefill_scratch(p, group.world_size);
  const std::size_t own = static_cast<std::size_t>(2 * s.chunk) * s.row_bytes;
  char* mine = static_cast<char*>(args.scratch);
  context.impl().copy(mine, p.kv.k, own, CopyKind::device_to_device);
  context.impl().copy(mine + own, p.kv.v, own, CopyKind::device_to_device);
}

void context_parallel_prefill_attend(Context& context, const ContextParallelGroup& group,
                                     const ContextParallelPrefillArguments& args) {
  const AttentionProblem& p = args.problem;
  const ContextParallelPrefillScratch s = context_parallel_prefill_scratch(p, group.world_size);
  const std::size_t chunk_bytes = static_cast<std::size_t>(s.chunk) * s.row_bytes;
  const std::size_t total_bytes = 2 * static_cast<std::size_t>(group.world_size) * chunk_bytes;  // K or V
  char* base = static_cast<char*>(args.scratch);
  for (int32_t r = 0; r < group.world_size; ++r) {
    // Rank r's part: [K chunk a, K chunk b, V chunk a, V chunk b], its chunks at positions
    // zigzag_chunks(r).
    const char* part = base + s.gathered + static_cast<std::size_t>(r) * s.mine_bytes;
    int32_t chunks[2];
    zigzag_chunks(r, group.world_size, chunks);
    for (int32_t slot = 0; slot < 2; ++slot) {
      char* k_at = base + s.sequence + static_cast<std::size_t>(chunks[slot]) * chunk_bytes;
      context.impl().copy(k_at, part + slot * chunk_bytes, chunk_bytes, CopyKind::device_to_device);
      context.impl().copy(k_at + total_bytes, part + (2 + slot) * chunk_bytes, chunk_bytes,
                          CopyKind::device_to_device);
    }
  }
  for (int32_t slot = 0; slot < 2; ++slot) {
    ChunkCall call;
    make_chunk_call(group, args, slot, call);
    throw_if_failed(attention(context, call.problem));
  }
}

}  // namespace wideattn::detail

namespace wideattn {

std::size_t context_parallel_prefill_scratch_bytes(const AttentionProblem& problem, int32_t world_size) {
  return detail::context_parallel_prefill_scratch(problem, world_size).total;
}

Status context_parallel_prefill(Context& context, const ContextParallelGroup& group,
                                const ContextParallelPrefillArguments& args) {
  return detail::guarded([&] {
    detail::context_parallel_prefill_pack(context, group, args);
    const detail::ContextParallelPrefillScratch s =
        detail::context_parallel_prefill_scratch(args.problem, group.world_size);
    char* base = static_cast<char*>(args.scratch);
    if (group.world_size > 1) {
      context.impl().all_gather(group.nccl_comm, base, base + s.gathered, s.mine_bytes);
    } else {
      context.impl().copy(base + s.gathered, base, s.mine_bytes, CopyKind::device_to_device);
    }
    detail::context_parallel_prefill_attend(context, group, args);
  });
}

}  // namespace wideattn
