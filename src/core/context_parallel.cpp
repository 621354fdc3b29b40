#include "core/context_parallel.h"

#include <limits>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "core/workspace_layout.h"
#include "core/mixed_batch.h"
#include "wideattn/attention.h"
#include "wideattn/components.h"

namespace wideattn::detail {
namespace {

constexpr const char* kFunction = "context_parallel_attention";

// How this rank's shard of a sequence is attended.
enum class ShardMode { empty, causal, visible };

// Per sequence: `causal` (the shard ends at the sequence's end and holds every new token's key;
// with one new token any shard), `visible` (wholly before every new token, or a bidirectional
// mask), `empty`. Throws for the shardings the kernels cannot serve (their queries sit at the
// end of the rows they are given: no key position offsets).
std::vector<ShardMode> shard_modes(const ContextParallelArguments& a) {
  const AttentionProblem& p = a.problem;
  const bool causal = p.mask.causal;
  std::vector<ShardMode> modes(static_cast<std::size_t>(p.batch));
  for (int32_t b = 0; b < p.batch; ++b) {
    const int64_t suffix = int64_t{p.query_offsets[b + 1]} - p.query_offsets[b];
    const int64_t start = a.shard_starts[b], local = a.shard_kv_lengths[b], length = p.kv_lengths[b];
    const std::string at = "[" + std::to_string(b) + "]";
    if (start < 0 || local < 0 || start + local > length) {
      throw_invalid(kFunction, "shard_starts" + at + " = " + std::to_string(start) + " with shard_kv_lengths" + at,
                    local, "0 <= start and start + length <= kv_lengths" + at + " = " + std::to_string(length));
    }
    ShardMode& mode = modes[static_cast<std::size_t>(b)];
    if (local == 0 || suffix == 0) {
      mode = ShardMode::empty;
    } else if (causal && suffix == 1) {
      mode = ShardMode::causal;
    } else if (!causal || start + local <= length - suffix) {
      if (local < suffix) {
        throw_error(StatusCode::unsupported,
                    std::string(kFunction) + ": shard_kv_lengths" + at + " = " + std::to_string(local) +
                        " is shorter than the sequence's " + std::to_string(suffix) +
                        " new tokens (the kernels place queries at the end of the rows they are given)");
      }
      mode = ShardMode::visible;
    } else if (start + local == length && local >= suffix) {
      mode = ShardMode::causal;
    } else {
      throw_error(StatusCode::unsupported,
                  std::string(kFunction) + ": shard_starts" + at + " = " + std::to_string(start) +
                      " with shard_kv_lengths" + at + " = " + std::to_string(local) + " holds part of the keys of the " +
                      std::to_string(suffix) + " new tokens (positions " + std::to_string(length - suffix) + " .. " +
                      std::to_string(length - 1) + "); shard so that one rank holds them all");
    }
  }
  return modes;
}

void validate(const ContextParallelGroup& group, const ContextParallelArguments& a) {
  const AttentionProblem& p = a.problem;
  validate_group(kFunction, group);
  if (p.batch < 0) throw_invalid(kFunction, "problem.batch", p.batch, ">= 0");
  if (p.batch > 0 && (!p.query_offsets || !p.kv_lengths)) {
    throw_invalid(kFunction, "problem.query_offsets/kv_lengths", "null", "host arrays of the whole sequences");
  }
  if (p.batch > 0 && (!a.shard_starts || !a.shard_kv_lengths)) {
    throw_invalid(kFunction, "shard_starts/shard_kv_lengths", "null", "host arrays of batch entries");
  }
  auto positional = [&](const char* name, bool on) {
    if (on) {
      throw_error(StatusCode::unsupported, std::string(kFunction) + ": problem.mask." + name +
                                               " is not served yet (a sharded window, ring or tree needs the keys' "
                                               "positions in the kernels)");
    }
  };
  positional("window", p.mask.window != 0);
  positional("ring_length", p.mask.ring_length != 0);
  positional("tree_start", p.mask.tree_start != nullptr);
  const std::size_t needed = context_parallel_scratch(p, group.world_size).total;
  if (!a.scratch || a.scratch_bytes < needed) {
    throw_invalid(kFunction, "scratch_bytes", a.scratch ? std::to_string(a.scratch_bytes) : std::string("(null scratch)"),
                  ">= context_parallel_scratch_bytes = " + std::to_string(needed));
  }
}

// The rank's own state as the attention problem it is written by (strides of its scratch).
AttentionProblem state_problem(const ContextParallelGroup& group, const ContextParallelArguments& a) {
  const AttentionProblem& p = a.problem;
  const ContextParallelScratch s = context_parallel_scratch(p, group.world_size);
  AttentionProblem r = p;
  char* base = static_cast<char*>(a.scratch);
  r.kv_lengths = a.shard_kv_lengths;
  r.out = base;
  r.out_token_stride = int64_t{p.q_heads} * p.head_dim;
  r.out_head_stride = p.head_dim;
  r.lse = reinterpret_cast<float*>(base + s.out_bytes);
  r.lse_token_stride = p.q_heads;
  r.lse_head_stride = 1;
  r.sinks = group.rank == 0 ? p.sinks : nullptr;  // counted once
  return r;
}

}  // namespace

void validate_group(const char* function, const ContextParallelGroup& group) {
  if (group.world_size < 1 || group.world_size > kMaxMergeStates) {
    throw_invalid(function, "group.world_size", group.world_size, "in [1, " + std::to_string(kMaxMergeStates) + "]");
  }
  if (group.rank < 0 || group.rank >= group.world_size) {
    throw_invalid(function, "group.rank", group.rank, "in [0, world_size = " + std::to_string(group.world_size) + ")");
  }
  if (group.world_size > 1 && !group.nccl_comm) {
    throw_invalid(function, "group.nccl_comm", "null", "an ncclComm_t when world_size > 1");
  }
}

ContextParallelScratch context_parallel_scratch(const AttentionProblem& p, int32_t world_size) {
  ContextParallelScratch s;
  const std::size_t rows = p.batch > 0 && p.query_offsets ? static_cast<std::size_t>(p.total_tokens()) : 0;
  const std::size_t cells = rows * static_cast<std::size_t>(p.q_heads > 0 ? p.q_heads : 0);
  s.out_bytes = align_up(cells * static_cast<std::size_t>(p.head_dim > 0 ? p.head_dim : 0) * dtype_size(p.dtype));
  s.state_bytes = s.out_bytes + align_up(cells * sizeof(float));
  s.gathered = world_size > 1 ? s.state_bytes : 0;  // one rank merges its own state in place
  s.total = s.gathered + static_cast<std::size_t>(world_size > 1 ? world_size : 1) * s.state_bytes;
  return s;
}

void context_parallel_local_state(Context& context, const ContextParallelGroup& group,
                                  const ContextParallelArguments& args) {
  validate(group, args);
  const std::vector<ShardMode> modes = shard_modes(args);
  const AttentionProblem own = state_problem(group, args);
  std::vector<int32_t> offsets;
  for (int32_t first = 0; first < own.batch;) {
    int32_t count = 1;
    while (first + count < own.batch && modes[first + count] == modes[first]) ++count;
    const ShardMode mode = modes[first];
    if (mode == ShardMode::empty) {
      // No key here: lse -inf, which merge_states counts as nothing whatever out holds.
      const int64_t row_begin = own.query_offsets[first], row_end = own.query_offsets[first + count];
      const std::vector<float> no_key(static_cast<std::size_t>((row_end - row_begin) * own.q_heads),
                                      -std::numeric_limits<float>::infinity());
      if (!no_key.empty()) {
        context.impl().copy(own.lse + row_begin * own.q_heads, no_key.data(), no_key.size() * sizeof(float),
                            CopyKind::host_to_device);
      }
    } else {
      AttentionProblem part = sequence_range(own, first, count, offsets);
      part.mask.causal = mode == ShardMode::causal && own.mask.causal;
      throw_if_failed(attention(context, part));
    }
    first += count;
  }
}

void context_parallel_merge(Context& context, const ContextParallelGroup& group, const ContextParallelArguments& args) {
  const AttentionProblem& p = args.problem;
  const ContextParallelScratch s = context_parallel_scratch(p, group.world_size);
  const char* gathered = static_cast<const char*>(args.scratch) + s.gathered;
  std::vector<AttentionState> states(static_cast<std::size_t>(group.world_size));
  for (int32_t r = 0; r < group.world_size; ++r) {
    AttentionState& state = states[static_cast<std::size_t>(r)];
    const char* base = gathered + static_cast<std::size_t>(r) * s.state_bytes;
    state.out = base;
    state.dtype = p.dtype;
    state.out_token_stride = int64_t{p.q_heads} * p.head_dim;
    state.out_head_stride = p.head_dim;
    state.lse = reinterpret_cast<const float*>(base + s.out_bytes);
    state.lse_token_stride = p.q_heads;
    state.lse_head_stride = 1;
  }
  MergeStatesArguments m;
  m.states = states.data();
  m.num_states = group.world_size;
  m.tokens = p.total_tokens();
  m.heads = p.q_heads;
  m.head_dim = p.head_dim;
  m.out = p.out;
  m.out_dtype = p.dtype;
  m.out_token_stride = p.out_token_stride;
  m.out_head_stride = p.out_head_stride;
  m.lse = p.lse;
  m.lse_token_stride = p.lse_token_stride;
  m.lse_head_stride = p.lse_head_stride;
  throw_if_failed(merge_states(context, m));
}

}  // namespace wideattn::detail

namespace wideattn {

std::size_t context_parallel_scratch_bytes(const AttentionProblem& problem, int32_t world_size) {
  return detail::context_parallel_scratch(problem, world_size).total;
}

Status context_parallel_attention(Context& context, const ContextParallelGroup& group,
                                  const ContextParallelArguments& args) {
  return detail::guarded([&] {
    detail::context_parallel_local_state(context, group, args);
    if (args.problem.batch == 0 || args.problem.total_tokens() == 0) return;
    if (group.world_size > 1) {
      const detail::ContextParallelScratch s = detail::context_parallel_scratch(args.problem, group.world_size);
      char* base = static_cast<char*>(args.scratch);
      context.impl().all_gather(group.nccl_comm, base, base + s.gathered, s.state_bytes);
    }
    detail::context_parallel_merge(context, group, args);
  });
}

Status nccl_comm_init(Context& context, int32_t world_size, const NcclUniqueId& id, int32_t rank, void** comm) {
  return detail::guarded([&] {
    if (!comm) detail::throw_invalid("nccl_comm_init", "comm", "null", "a pointer to receive the ncclComm_t");
    if (world_size < 1) detail::throw_invalid("nccl_comm_init", "world_size", world_size, ">= 1");
    if (rank < 0 || rank >= world_size) {
      detail::throw_invalid("nccl_comm_init", "rank", rank, "in [0, world_size = " + std::to_string(world_size) + ")");
    }
    *comm = context.impl().nccl_comm_init(world_size, id.bytes, rank);
  });
}

}  // namespace wideattn
