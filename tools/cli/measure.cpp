#include "measure.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>

#include "args.h"
#include "captured_calls.h"
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

CallMode parse_call_mode(const std::string& text) {
  if (text == "attention") return CallMode::attention;
  if (text == "planned") return CallMode::planned;
  if (text == "graph") return CallMode::graph;
  throw UsageError("--call " + text + ": expected attention, planned or graph");
}

const char* to_string(CallMode mode) {
  switch (mode) {
    case CallMode::attention: return "attention";
    case CallMode::planned: return "planned";
    case CallMode::graph: return "graph";
  }
  return "unknown";
}

namespace {

// A phase's query offsets and KV lengths copied to the device, for plans from bounds.
class DeviceMetadata {
 public:
  DeviceMetadata(Context& context, const Phase& phase) : context_(context) {
    offsets_ = upload(phase.query_offsets);
    lengths_ = upload(phase.kv_lengths);
  }
  ~DeviceMetadata() {
    for (void* p : {offsets_, lengths_}) {
      if (p) static_cast<void>(context_.release(p));  // best effort in a destructor
    }
  }
  DeviceMetadata(const DeviceMetadata&) = delete;
  DeviceMetadata& operator=(const DeviceMetadata&) = delete;
  const int32_t* offsets() const { return static_cast<const int32_t*>(offsets_); }
  const int32_t* lengths() const { return static_cast<const int32_t*>(lengths_); }

 private:
  void* upload(const std::vector<int32_t>& values) {
    void* p = nullptr;
    const std::size_t bytes = values.size() * sizeof(int32_t);
    check(context_.allocate(bytes, &p), "allocating device metadata");
    check(context_.copy(p, values.data(), bytes, CopyKind::host_to_device), "copying metadata");
    return p;
  }
  Context& context_;
  void* offsets_ = nullptr;
  void* lengths_ = nullptr;
};

}  // namespace

Measurement measure_phase(Context& context, Phase& phase, const MeasureOptions& options) {
  Measurement m;
  m.cost = problem_cost(phase.host_problem, phase.spec.lse);
  const std::size_t copies = phase.device_problems.size();
  const bool planned = options.call != CallMode::attention && phase.spec.suffix <= 8;
  m.call = planned ? options.call : CallMode::attention;
  std::size_t call = 0;
  std::function<void()> run_once;
  // Plans from bounds: the phase's own sizes are the bounds, its metadata lives on the device.
  std::unique_ptr<DeviceMetadata> metadata;
  std::vector<AttentionProblem> problems = phase.device_problems;
  std::unique_ptr<CapturedCalls> graphs;
  std::function<void(std::size_t)> planned_call;  // outlives the timed calls that use it
  if (planned) {
    metadata = std::make_unique<DeviceMetadata>(context, phase);
    for (AttentionProblem& p : problems) {
      p.query_offsets = metadata->offsets();
      p.kv_lengths = metadata->lengths();
    }
    ProblemBounds bounds;
    bounds.max_total_tokens = phase.total_tokens();
    bounds.max_suffix = static_cast<int32_t>(phase.spec.suffix);
    bounds.max_kv_length = phase.spec.kv_length();
    check(plan_attention(problems.front(), bounds, context.device(), options.forced, &m.plan),
          "planning the " + phase.label + " from bounds");
    planned_call = [&](std::size_t i) {
      check(attention_planned(context, problems[i], m.plan), "attention_planned (" + phase.label + ")");
    };
    if (options.call == CallMode::graph) {
      graphs = std::make_unique<CapturedCalls>(context, copies, planned_call);
      run_once = [&] { graphs->launch(call++ % copies); };
    } else {
      run_once = [&] { planned_call(call++ % copies); };
    }
  } else {
    m.plan = plan_phase(context, phase, options.forced);
    run_once = [&] {
      check(attention(context, phase.device_problems[call++ % copies], options.forced),
            "attention (" + phase.label + ")");
    };
  }
  for (int32_t i = 0; i < options.warmup; ++i) run_once();
  check(context.synchronize(), "synchronize");
  std::unique_ptr<Timer> timer = make_timer(context);  // on the graphs' stream when replaying
  m.seconds = timer->time_each(options.repeat, run_once, &m.host);
  m.median_seconds = median(m.seconds);
  check(context.synchronize(), "synchronize");
  graphs.reset();  // the context's own stream again
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
