// wideattn info: what this build and machine offer (backends, devices, kernels) and what
// dispatch plans for the default problem (or the one the flags describe) on each backend.
#include <iostream>
#include <limits>

#include "backend_choice.h"
#include "check.h"
#include "commands.h"
#include "format.h"
#include "measure.h"
#include "problem_spec.h"
#include "timing.h"
#include "workload.h"

namespace wideattn::cli {
namespace {

std::vector<FlagSpec> info_flags() {
  std::vector<FlagSpec> flags = problem_flags();
  flags.push_back({"device", "N", "GPU index for the cuda plan (default 0)"});
  flags.push_back({"help", nullptr, "this text"});
  return flags;
}

void print_plans(Context& context, const ProblemSpec& spec, int32_t decode_steps) {
  WorkloadOptions options;
  options.fill = false;
  options.rotate_kv = false;
  options.decode_steps = decode_steps > 0 ? 1 : 0;
  Workload workload(context, spec, options);
  for (auto& phase : workload.phases()) {
    Plan plan;
    const Status status = plan_attention(phase->device_problems.front(), context.device(),
                                         Kernel::automatic, &plan);
    std::cout << "    " << phase->label << " (suffix " << phase->spec.suffix << ", kv "
              << phase->spec.kv_length() << "): ";
    if (!status.ok()) {
      std::cout << "not supported: " << status.message() << "\n";
      continue;
    }
    std::cout << to_string(plan.kernel) << ", " << plan.num_splits << " split(s)";
    if (plan.query_rows_per_chunk) std::cout << ", " << plan.query_rows_per_chunk << " rows/chunk";
    std::cout << ", workspace " << format_bytes(static_cast<double>(plan.workspace_bytes)) << "\n"
              << "      " << plan.reason << "\n";
  }
}

}  // namespace

int info_command(int argc, char** argv) {
  const std::vector<FlagSpec> flags = info_flags();
  const Args args(argc, argv, 2, flags);
  if (args.has("help")) {
    std::cout << "usage: wideattn info [problem flags]\n\nLists backends, devices and kernels, and "
                 "the plan for the default problem\n(or the one the flags describe).\n\nflags:\n"
              << format_flags(flags);
    return 0;
  }
  ProblemSpec spec;
  apply_problem_flags(args, &spec);
  const bool one_call = args.has("prefix") || args.has("suffix") || args.has("kv-length");
  const int32_t decode_steps =
      static_cast<int32_t>(args.get_int("decode-steps", one_call ? 0 : 16, 0, 1 << 16));

  std::cout << "wideattn: attention for wide heads (head_dim up to 512)\n\nbackends\n";
  std::vector<Backend> usable;
  for (Backend backend : {Backend::cpu, Backend::cuda}) {
    std::string reason;
    const bool available = backend_available(backend, &reason);
    std::cout << "  " << to_string(backend) << ": "
              << (available ? "available" : "not available (" + reason + ")") << "\n";
    if (available) usable.push_back(backend);
  }
#ifdef WIDEATTN_WITH_CUDA
  std::cout << "  (this build has the CUDA backend)\n";
#else
  std::cout << "  (this build has no CUDA backend: configure where nvcc is found)\n";
#endif

  std::cout << "\ndevices\n";
  std::vector<std::unique_ptr<Context>> contexts;
  for (Backend backend : usable) {
    std::unique_ptr<Context> context;
    const int device = backend == Backend::cuda ? static_cast<int>(args.get_int("device", 0, 0, 1023)) : 0;
    const Status status = Context::create(backend, device, nullptr, &context);
    if (!status.ok()) {
      std::cout << "  " << to_string(backend) << ": cannot create a context: " << status.message() << "\n";
      continue;
    }
    std::cout << "  " << describe_device(context->device()) << "\n";
    contexts.push_back(std::move(context));
  }
  std::string gpu_error;
  const std::vector<GpuSummary> gpus = list_gpus(&gpu_error);
  for (const GpuSummary& g : gpus) {
    std::cout << "  gpu " << g.index << ": " << g.name << ", " << g.sms << " SMs, sm_" << g.compute_capability
              << ", " << format_fixed(g.memory_gib, 1) << " GiB, " << format_fixed(g.l2_mib, 0) << " MiB L2\n";
  }
  if (gpus.empty()) std::cout << "  no GPU: " << gpu_error << "\n";

  std::cout << "\nkernels\n"
               "  single_pass      decode: one pass over the keys per (sequence, KV head, query block)\n"
               "  two_pass         decode: split-KV partial (max, sum, output) per split, then a merge\n"
               "  prefill_unfused  prefill: per KV head matmul Q K^T, mask, softmax, matmul P V, scatter\n"
               "  prefill_fused    prefill on Hopper: one fused kernel (TMA + wgmma), head_dim 64/128/256\n"
               "  (dispatch: suffixes longer than the decode threshold go to prefill_fused where it\n"
               "   serves the problem, else prefill_unfused; shorter ones to single_pass, or two_pass\n"
               "   when splitting the KV range fills the device)\n";

  std::cout << "\nplan for " << describe(spec) << (decode_steps > 0 ? ", then decode" : "") << "\n";
  for (auto& context : contexts) {
    std::cout << "  " << to_string(context->backend()) << "\n";
    try {
      print_plans(*context, spec, decode_steps);
    } catch (const UsageError& e) {
      std::cout << "    " << e.what() << "\n";
    } catch (const LibraryError& e) {
      std::cout << "    " << e.what() << "\n";
    }
  }
  return 0;
}

}  // namespace wideattn::cli
