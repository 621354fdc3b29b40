#include "wideattn/attention.h"

#include <vector>

#include "core/backend.h"
#include "core/bounded_plan.h"
#include "core/error.h"
#include "core/mixed_batch.h"
#include "core/prefill_pipeline.h"

namespace wideattn {
namespace {

void run_kernel(detail::BackendImpl& backend, const AttentionProblem& problem, const Plan& plan) {
  if (problem.total_tokens() == 0) return;
  if (plan.kernel == Kernel::prefill_unfused) {
    detail::run_prefill_pipeline(backend, problem, plan);
  } else if (plan.kernel == Kernel::prefill_fused) {
    backend.prefill_fused(problem, plan);
  } else {
    backend.decode(problem, plan);
  }
}

}  // namespace

Status attention(Context& context, const AttentionProblem& problem, Kernel forced,
                 Plan* plan_used) {
  Plan plan;
  Status status = plan_attention(problem, context.device(), forced, &plan);
  if (!status.ok()) {
    // Report the failure under this entry point's name.
    const std::string& m = status.message();
    const std::string prefix = "plan_attention: ";
    return Status(status.code(),
                  m.rfind(prefix, 0) == 0 ? "attention: " + m.substr(prefix.size()) : m);
  }
  if (plan_used) *plan_used = plan;
  return detail::guarded([&] {
    detail::BackendImpl& backend = context.impl();
    if (problem.total_tokens() == 0) return;
    if (plan.parts.empty()) {
      run_kernel(backend, problem, plan);
      return;
    }
    // A mixed batch: each run of sequences on its kernel, one after the other on the stream,
    // sharing one workspace (grown once, to the largest part's size, before the first launch).
    backend.workspace(plan.workspace_bytes);
    std::vector<int32_t> offsets;
    for (const PlanPart& part : plan.parts) {
      Plan one;
      one.kernel = part.kernel;
      one.num_splits = part.num_splits;
      one.query_rows_per_chunk = part.query_rows_per_chunk;
      one.workspace_bytes = part.workspace_bytes;
      run_kernel(backend, detail::sequence_range(problem, part.first_sequence, part.sequences, offsets),
                 one);
    }
  });
}

Status attention_planned(Context& context, const AttentionProblem& problem, const Plan& plan) {
  return detail::guarded([&] {
    const Backend backend = context.device().backend;
    detail::check_planned_run(problem, plan, backend);
    if (backend == Backend::cpu && problem.total_tokens() == 0) return;  // every slot padded
    // CUDA reads the metadata on the device only (run_decode sees plan.device_metadata); the CPU
    // backend's "device" memory is the host's, so its decode reads it as always.
    context.impl().decode(problem, plan);
  });
}

}  // namespace wideattn
