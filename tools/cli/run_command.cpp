// wideattn run: one attention scenario on random data. By default the Gemma 4 E4B global layer
// (8/2 heads, head_dim 512, scale 1, causal, bf16) with a 2048-token prompt (one prefill call)
// and then 16 decode calls on the growing cache. Reports the plan, the median time, the
// effective rate and the error against the f64 oracle of each phase.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <limits>

#include "backend_choice.h"
#include "commands.h"
#include "format.h"
#include "measure.h"
#include "problem_spec.h"
#include "timing.h"
#include "workload.h"

namespace wideattn::cli {
namespace {

std::vector<FlagSpec> run_flags() {
  std::vector<FlagSpec> flags = problem_flags();
  const std::vector<FlagSpec> more = {
      {"kernel", "K", "force a kernel: auto (default), single_pass, two_pass, prefill_unfused, prefill_fused"},
      {"repeat", "N", "timed calls per phase; the median is reported (default 5 on the CPU, 20 on CUDA)"},
      {"warmup", "N", "untimed calls first (default 1 on the CPU, 3 on CUDA)"},
      {"seed", "N", "random data seed (default 1)"},
      {"tolerance", "X", "largest relative error accepted (default: 1e-3 f32, 1e-2 f16, 3e-2 bf16)"},
      {"verbose", nullptr, "one line per decode step"},
      {"help", nullptr, "this text"},
  };
  flags.insert(flags.end(), more.begin(), more.end());
  const std::vector<FlagSpec> backend = backend_flags();
  flags.insert(flags.end(), backend.begin(), backend.end());
  return flags;
}

void print_usage() {
  std::cout << "usage: wideattn run [flags]\n\n"
               "Runs attention on random data and reports, per phase, the kernel dispatch chose,\n"
               "the median time, effective GFLOP/s (4 * heads * visible pairs * head_dim / time)\n"
               "and GB/s (Q, K, V read + O written / time), and the relative error of sampled\n"
               "rows (the last row of each phase included) against the f64 oracle.\n\n"
               "Default scenario: Gemma 4 E4B global layer (8 query heads, 2 KV heads, head_dim\n"
               "512, scale 1.0, causal), bf16 storage on every backend (the models' KV dtype; the\n"
               "CPU computes in f32), a 2048-token prompt then 16 decode steps.\n"
               "--prefix/--suffix/--kv-length describe one call instead (no decode steps unless\n"
               "--decode-steps is given).\n\nflags:\n"
            << format_flags(run_flags());
}

double default_tolerance(DType dtype) {
  switch (dtype) {
    case DType::f32: return 1e-3;
    case DType::f16: return 1e-2;
    case DType::bf16: return 3e-2;
  }
  return 3e-2;
}

std::string rates(const Measurement& m) {
  const double s = m.median_seconds;
  return format_flops(m.cost.flops / s) + ", " + format_bandwidth(m.cost.bytes / s);
}

std::string accuracy_text(const Accuracy& a) {
  std::string text = "rel error " + format_scientific(a.relative_error) + " (" + std::to_string(a.rows) +
                     (a.rows == 1 ? " row" : " rows") + ", max abs " + format_scientific(a.max_abs_error);
  if (a.lse_max_abs_error >= 0) text += ", lse max abs " + format_scientific(a.lse_max_abs_error);
  return text + ")";
}

}  // namespace

int run_command(int argc, char** argv) {
  const std::vector<FlagSpec> flags = run_flags();
  const Args args(argc, argv, 2, flags);
  if (args.has("help")) {
    print_usage();
    return 0;
  }
  const Backend backend = choose_backend(args);
  ProblemSpec spec;
  spec.name = "run";
  apply_problem_flags(args, &spec);
  const bool one_call = args.has("prefix") || args.has("suffix") || args.has("kv-length");
  WorkloadOptions options;
  options.decode_steps = static_cast<int32_t>(args.get_int("decode-steps", one_call ? 0 : 16, 0, 1 << 16));
  options.seed = static_cast<uint64_t>(args.get_int("seed", 1, 0, std::numeric_limits<int64_t>::max()));
  MeasureOptions measure;
  measure.forced = parse_kernel(args.get_string("kernel", "auto"));
  const bool cuda = backend == Backend::cuda;
  measure.repeat = static_cast<int32_t>(args.get_int("repeat", cuda ? 20 : 5, 1, 100000));
  measure.warmup = static_cast<int32_t>(args.get_int("warmup", cuda ? 3 : 1, 0, 100000));
  const double tolerance = args.get_double("tolerance", default_tolerance(spec.dtype), 0.0, 1e30);
  const bool verbose = args.get_switch("verbose");

  std::unique_ptr<Context> context = open_context(args, backend);
  std::cout << "device   " << describe_device(context->device()) << "\n"
            << "problem  " << describe(spec);
  if (options.decode_steps > 0) std::cout << ", then " << options.decode_steps << " decode steps";
  std::cout << "\n";
  std::cout.flush();

  Workload workload(*context, spec, options);
  std::cout << "timing   median of " << measure.repeat << " calls after " << measure.warmup
            << " warm-up, " << (cuda ? "CUDA events" : "steady clock") << ", rotating over "
            << workload.kv_copies() << " KV cache cop" << (workload.kv_copies() == 1 ? "y" : "ies")
            << "\n\n";

  double worst_error = 0;
  auto& phases = workload.phases();
  // The first call.
  {
    Phase& phase = *phases.front();
    const Measurement m = measure_phase(*context, phase, measure);
    worst_error = std::max(worst_error, m.accuracy.relative_error);
    std::cout << phase.label << " (" << phase.total_tokens() << " new tokens, kv " << phase.spec.kv_length()
              << ")\n"
              << "  kernel   " << to_string(m.plan.kernel) << ", " << m.plan.num_splits << " split(s)"
              << (m.plan.query_rows_per_chunk ? ", " + std::to_string(m.plan.query_rows_per_chunk) + " rows/chunk" : "")
              << ", workspace " << format_bytes(static_cast<double>(m.plan.workspace_bytes)) << "\n"
              << "  reason   " << m.plan.reason << "\n"
              << "  time     " << format_seconds(m.median_seconds) << "  (" << rates(m) << ")"
              << (cuda ? "; the host issues a call in " + format_seconds(m.host.back_to_back) : "")
              << "\n"
              << "  work     " << m.cost.visible_pairs << " visible pairs per head, "
              << format_fixed(m.cost.flops * 1e-9, 2) << " GFLOP, " << format_bytes(m.cost.bytes) << "\n"
              << "  accuracy " << accuracy_text(m.accuracy) << "\n";
    std::cout.flush();
  }
  // The decode steps: each timed on its own; summarised (and listed with --verbose).
  if (phases.size() > 1) {
    double total_seconds = 0, total_bytes = 0, total_flops = 0;
    std::vector<double> step_seconds;
    Measurement last;
    Accuracy worst;
    std::cout << "\ndecode (" << phases.size() - 1 << " steps, kv " << phases[1]->spec.kv_length() << ".."
              << phases.back()->spec.kv_length() << ")\n";
    for (std::size_t i = 1; i < phases.size(); ++i) {
      MeasureOptions step = measure;
      step.sample_tokens = i + 1 == phases.size() ? 8 : 1;
      step.all_heads_of_last = i + 1 == phases.size();
      const Measurement m = measure_phase(*context, *phases[i], step);
      total_seconds += m.median_seconds;
      total_bytes += m.cost.bytes;
      total_flops += m.cost.flops;
      step_seconds.push_back(m.median_seconds);
      if (m.accuracy.relative_error >= worst.relative_error) worst = m.accuracy;
      worst_error = std::max(worst_error, m.accuracy.relative_error);
      if (verbose) {
        std::cout << "  " << phases[i]->label << ": " << to_string(m.plan.kernel) << " x" << m.plan.num_splits
                  << ", " << format_seconds(m.median_seconds) << " (" << rates(m) << "), "
                  << accuracy_text(m.accuracy) << "\n";
      }
      last = m;
    }
    std::cout << "  kernel   " << to_string(last.plan.kernel) << ", " << last.plan.num_splits
              << " split(s), workspace " << format_bytes(static_cast<double>(last.plan.workspace_bytes)) << " (last step)\n"
              << "  reason   " << last.plan.reason << "\n"
              << "  time     median step " << format_seconds(median(step_seconds)) << ", all steps "
              << format_seconds(total_seconds) << "  (" << format_bandwidth(total_bytes / total_seconds) << ", "
              << format_flops(total_flops / total_seconds) << ")\n"
              << "  work     " << format_bytes(total_bytes / static_cast<double>(phases.size() - 1))
              << " moved per step\n"
              << "  accuracy worst step " << accuracy_text(worst) << "\n";
  }
  if (!(worst_error <= tolerance)) {
    std::cout << "\nFAILED: relative error " << format_scientific(worst_error) << " > tolerance "
              << format_scientific(tolerance) << "\n";
    return 1;
  }
  std::cout << "\nok: worst relative error " << format_scientific(worst_error) << " <= "
            << format_scientific(tolerance) << "\n";
  return 0;
}

}  // namespace wideattn::cli
