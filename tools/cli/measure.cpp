#include "measure.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "check.h"
#include "reference/reference.h"
#include "timing.h"
#include "wideattn/convert.h"

namespace wideattn::cli {

Plan plan_phase(Context& context, const Phase& phase, Kernel forced) {
  Plan plan;
  check(plan_attention(phase.device_problems.front(), context.device(), forced, &plan),
        "planning the " + phase.label);
  return plan;
}

Measurement measure_phase(Context& context, Phase& phase, const MeasureOptions& options) {
  Measurement m;
  m.plan = plan_phase(context, phase, options.forced);
  m.cost = problem_cost(phase.host_problem, phase.spec.lse);
  const std::size_t copies = phase.device_problems.size();
  std::size_t call = 0;
  auto run_once = [&] {
    check(attention(context, phase.device_problems[call++ % copies], options.forced),
          "attention (" + phase.label + ")");
  };
  for (int32_t i = 0; i < options.warmup; ++i) run_once();
  check(context.synchronize(), "synchronize");
  std::unique_ptr<Timer> timer = make_timer(context);
  m.seconds = timer->time_each(options.repeat, run_once, &m.host_seconds_per_call);
  m.median_seconds = median(m.seconds);
  if (options.sample_tokens > 0) {
    m.accuracy = check_phase(context, phase, options.sample_tokens, options.all_heads_of_last);
  }
  return m;
}

Accuracy check_phase(Context& context, const Phase& phase, int32_t sample_tokens,
                     bool all_heads_of_last) {
  Accuracy a;
  check(context.synchronize(), "synchronize");
  const AttentionProblem& d = phase.device_problems.front();
  const int64_t tokens = phase.total_tokens();
  if (tokens == 0) return a;
  const int32_t heads = d.q_heads;
  const int32_t dim = d.head_dim;
  const std::size_t es = dtype_size(d.dtype);

  std::vector<int64_t> picked;
  const int64_t count = std::min<int64_t>(tokens, std::max(1, sample_tokens));
  for (int64_t i = 0; i < count; ++i) {
    picked.push_back(count == 1 ? tokens - 1 : i * (tokens - 1) / (count - 1));
  }
  picked.erase(std::unique(picked.begin(), picked.end()), picked.end());

  double max_ref = 0;
  std::vector<unsigned char> row(static_cast<std::size_t>(heads) * dim * es);
  std::vector<float> lse_row(heads);
  std::vector<double> ref(dim);
  for (std::size_t n = 0; n < picked.size(); ++n) {
    const int64_t token = picked[n];
    const auto* out = static_cast<const unsigned char*>(d.out) + token * d.out_token_stride * es;
    check(context.copy(row.data(), out, row.size(), CopyKind::device_to_host), "copy output row");
    if (d.lse) {
      for (int32_t h = 0; h < heads; ++h) {
        check(context.copy(&lse_row[h], d.lse + token * d.lse_token_stride + h * d.lse_head_stride,
                           sizeof(float), CopyKind::device_to_host),
              "copy lse");
      }
    }
    std::vector<int32_t> which;
    if (all_heads_of_last && token == tokens - 1) {
      for (int32_t h = 0; h < heads; ++h) which.push_back(h);
    } else {
      which.push_back(static_cast<int32_t>((n * 5 + token) % heads));
    }
    for (int32_t h : which) {
      const double ref_lse = reference::attention_row(phase.host_problem, token, h, ref.data());
      for (int32_t j = 0; j < dim; ++j) {
        const double got = load_as_float(row.data(), d.dtype, static_cast<std::size_t>(h) * dim + j);
        if (!std::isfinite(got) && std::isfinite(ref[j])) a.finite = false;
        a.max_abs_error = std::max(a.max_abs_error, std::abs(got - ref[j]));
        max_ref = std::max(max_ref, std::abs(ref[j]));
      }
      if (d.lse) {
        const double got = lse_row[h];
        const double diff = (std::isinf(got) && std::isinf(ref_lse) && (got < 0) == (ref_lse < 0))
                                ? 0.0
                                : std::abs(got - ref_lse);
        if (std::isnan(diff)) a.finite = false;
        a.lse_max_abs_error = std::max(a.lse_max_abs_error < 0 ? 0.0 : a.lse_max_abs_error,
                                       std::isnan(diff) ? std::numeric_limits<double>::infinity() : diff);
      }
      ++a.rows;
    }
  }
  a.relative_error = max_ref > 0 ? a.max_abs_error / max_ref : a.max_abs_error;
  if (!a.finite) a.relative_error = std::numeric_limits<double>::infinity();
  return a;
}

}  // namespace wideattn::cli
