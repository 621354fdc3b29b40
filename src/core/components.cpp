// Public wrappers of the components: validate, then hand to the context's backend.
#include "wideattn/components.h"

#include "core/backend.h"
#include "core/error.h"
#include "core/validate.h"
#include "wideattn/context.h"

namespace wideattn {

Status matmul(Context& context, const MatmulArguments& args) {
  return detail::guarded([&] {
    detail::validate_matmul(args);
    if (args.m == 0 || args.n == 0) return;
    context.impl().matmul(args);
  });
}

Status softmax(Context& context, const SoftmaxArguments& args) {
  return detail::guarded([&] {
    detail::validate_softmax(args);
    if (args.rows == 0) return;
    context.impl().softmax(args);
  });
}

Status scatter_scores(Context& context, const ScatterScoresArguments& args) {
  return detail::guarded([&] {
    detail::validate_scatter_scores(args);
    if (args.heads == 0 || args.rows == 0 || args.cols == 0) return;
    context.impl().scatter_scores(args);
  });
}

Status scatter_values(Context& context, const ScatterValuesArguments& args) {
  return detail::guarded([&] {
    detail::validate_scatter_values(args);
    if (args.heads == 0 || args.rows == 0) return;
    context.impl().scatter_values(args);
  });
}

Status merge_states(Context& context, const MergeStatesArguments& args) {
  return detail::guarded([&] {
    detail::validate_merge_states(args);
    if (args.tokens == 0 || args.heads == 0) return;
    context.impl().merge_states(args);
  });
}

}  // namespace wideattn
