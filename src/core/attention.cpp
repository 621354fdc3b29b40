#include "wideattn/attention.h"

#include "core/backend.h"
#include "core/error.h"
#include "core/prefill_pipeline.h"

namespace wideattn {

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
    if (plan.kernel == Kernel::prefill_unfused) {
      detail::run_prefill_pipeline(backend, problem, plan);
    } else if (plan.kernel == Kernel::prefill_fused) {
      backend.prefill_fused(problem, plan);
    } else {
      backend.decode(problem, plan);
    }
  });
}

}  // namespace wideattn
