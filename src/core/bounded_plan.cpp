#include "core/bounded_plan.h"

#include <algorithm>
#include <climits>
#include <string>

#include "core/dispatch.h"
#include "core/error.h"
#include "core/tuning.h"
#include "core/validate.h"
#include "core/workspace_layout.h"

namespace wideattn::detail {
namespace {

bool is_decode(Kernel k) { return k == Kernel::single_pass || k == Kernel::two_pass; }

}  // namespace

AttentionProblem problem_at_bounds(const char* f, const AttentionProblem& p, const ProblemBounds& b,
                                   BoundMetadata& storage) {
  if (p.batch < 1) throw_invalid(f, "batch", p.batch, ">= 1 (sequence slots)");
  const int64_t most_suffix = kMaxBoundedSuffix;
  if (b.max_suffix < 1) throw_invalid(f, "bounds.max_suffix", b.max_suffix, ">= 1");
  if (b.max_suffix > most_suffix) {
    throw_error(StatusCode::unsupported,
                std::string(f) + ": bounds.max_suffix = " + std::to_string(b.max_suffix) +
                    ", expected at most " + std::to_string(most_suffix) +
                    ": plans from bounds serve decode and speculative steps (the decode kernels); "
                    "prefill needs host metadata (plan_attention without bounds)");
  }
  const int64_t most_tokens = int64_t{p.batch} * b.max_suffix;
  if (b.max_total_tokens < 1 || b.max_total_tokens > most_tokens) {
    throw_invalid(f, "bounds.max_total_tokens", b.max_total_tokens,
                  "1 to batch x bounds.max_suffix = " + std::to_string(most_tokens));
  }
  const int64_t capacity = p.kv.sequence_capacity();
  if (b.max_kv_length < b.max_suffix || b.max_kv_length > capacity) {
    throw_invalid(f, "bounds.max_kv_length", b.max_kv_length,
                  "bounds.max_suffix = " + std::to_string(b.max_suffix) + " to the cache's " +
                      (p.kv.paged() ? "kv.max_pages x kv.page_size = " : "kv.capacity = ") +
                      std::to_string(capacity));
  }
  if (b.max_kv_length > INT_MAX) throw_invalid(f, "bounds.max_kv_length", b.max_kv_length, "<= 2^31 - 1");
  storage.query_offsets.resize(static_cast<std::size_t>(p.batch) + 1);
  storage.kv_lengths.assign(static_cast<std::size_t>(p.batch), static_cast<int32_t>(b.max_kv_length));
  for (int32_t s = 0; s <= p.batch; ++s) {
    storage.query_offsets[s] =
        static_cast<int32_t>(s == p.batch ? b.max_total_tokens
                                          : std::min<int64_t>(int64_t{s} * b.max_suffix, b.max_total_tokens));
  }
  AttentionProblem r = p;
  r.query_offsets = storage.query_offsets.data();
  r.kv_lengths = storage.kv_lengths.data();
  return r;
}

Plan plan_from_bounds(const AttentionProblem& p, const ProblemBounds& bounds, const DeviceInfo& device,
                      Kernel forced) {
  const char* f = "plan_attention";
  if (forced != Kernel::automatic && !is_decode(forced)) {
    throw_error(StatusCode::unsupported,
                std::string(f) + ": forced = " + to_string(forced) +
                    " with bounds, expected automatic, single_pass or two_pass (plans from bounds "
                    "run the decode kernels)");
  }
  BoundMetadata storage;
  const AttentionProblem at_bounds = problem_at_bounds(f, p, bounds, storage);
  validate_problem(f, at_bounds, device.backend, /*check_block_table=*/false);
  Plan plan = plan_one(at_bounds, device, forced);
  if (!is_decode(plan.kernel)) {  // only if the tuning table's decode limit fell below 8
    throw_error(StatusCode::unsupported, std::string(f) + ": bounds.max_suffix = " +
                                             std::to_string(bounds.max_suffix) + " plans " +
                                             to_string(plan.kernel) + ", expected a decode kernel");
  }
  plan.device_metadata = true;
  plan.bounds = bounds;
  plan.batch = p.batch;
  plan.reason = "from bounds (" + std::to_string(p.batch) + " slots, <= " +
                std::to_string(bounds.max_total_tokens) + " tokens, suffix <= " +
                std::to_string(bounds.max_suffix) + ", KV <= " + std::to_string(bounds.max_kv_length) +
                "): " + plan.reason;
  return plan;
}

void check_planned_run(const AttentionProblem& p, const Plan& plan, Backend backend) {
  const char* f = "attention_planned";
  if (!plan.device_metadata) {
    throw_invalid(f, "plan", "made from host metadata",
                  "a plan from plan_attention(problem, bounds, ...)");
  }
  if (!is_decode(plan.kernel)) throw_invalid(f, "plan.kernel", to_string(plan.kernel), "single_pass or two_pass");
  if (p.batch != plan.batch) {
    throw_invalid(f, "batch", p.batch, "the plan's " + std::to_string(plan.batch) + " sequence slots");
  }
  // The tensors must hold the largest call the plan allows, and the plan's workspace must cover
  // it for this problem's heads and head_dim.
  thread_local BoundMetadata storage;  // no allocation per call once grown
  const AttentionProblem at_bounds = problem_at_bounds(f, p, plan.bounds, storage);
  validate_problem(f, at_bounds, backend, /*check_block_table=*/false);
  const std::size_t needed = decode_workspace_layout(at_bounds, plan.num_splits).bytes;
  if (plan.workspace_bytes < needed) {
    throw_invalid(f, "plan.workspace_bytes", plan.workspace_bytes,
                  ">= " + std::to_string(needed) +
                      " for this problem at the plan's bounds (was the plan made for other heads or "
                      "head_dim?)");
  }
  if (backend != Backend::cpu) return;  // device metadata: the kernels check it
  // Host metadata: the whole problem as attention() checks it, then each sequence's bounds.
  validate_problem(f, p, backend);
  const ProblemBounds& b = plan.bounds;
  if (p.total_tokens() > b.max_total_tokens) {
    throw_invalid(f, "query_offsets[" + std::to_string(p.batch) + "]", p.total_tokens(),
                  "<= bounds.max_total_tokens = " + std::to_string(b.max_total_tokens));
  }
  for (int32_t s = 0; s < p.batch; ++s) {
    const auto idx = [s] { return "[" + std::to_string(s) + "]"; };  // text only for an error
    const int64_t suffix = int64_t{p.query_offsets[s + 1]} - p.query_offsets[s];
    if (suffix > b.max_suffix) {
      throw_invalid(f, "query_offsets[" + std::to_string(s + 1) + "] - query_offsets" + idx(), suffix,
                    "<= bounds.max_suffix = " + std::to_string(b.max_suffix));
    }
    if (p.kv_lengths[s] > b.max_kv_length) {
      throw_invalid(f, "kv_lengths" + idx(), p.kv_lengths[s],
                    "<= bounds.max_kv_length = " + std::to_string(b.max_kv_length));
    }
  }
}

}  // namespace wideattn::detail
