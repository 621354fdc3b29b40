#include "backend_choice.h"

#include "check.h"
#include "format.h"
#include "problem_spec.h"

namespace wideattn::cli {

std::vector<FlagSpec> backend_flags() {
  return {
      {"backend", "B", "cpu, cuda or auto (default: cuda when available, else cpu)"},
      {"device", "N", "GPU index for the cuda backend (default 0)"},
  };
}

Backend choose_backend(const Args& args) {
  const std::string name = args.get_string("backend", "auto");
  if (name == "auto") return backend_available(Backend::cuda) ? Backend::cuda : Backend::cpu;
  const Backend backend = parse_backend(name);
  std::string reason;
  if (!backend_available(backend, &reason)) {
    throw UsageError("--backend " + name + " is not available: " + reason);
  }
  return backend;
}

std::unique_ptr<Context> open_context(const Args& args, Backend backend) {
  const int device = static_cast<int>(args.get_int("device", 0, 0, 1023));
  std::unique_ptr<Context> context;
  check(Context::create(backend, device, nullptr, &context),
        std::string("create ") + to_string(backend) + " context");
  return context;
}

std::string describe_device(const DeviceInfo& d) {
  std::string s = std::string(to_string(d.backend)) + ": " + d.name + " (";
  if (d.backend == Backend::cuda) {
    s += std::to_string(d.compute_units) + " SMs, sm_" + std::to_string(d.compute_capability) + ", " +
         format_bytes(static_cast<double>(d.l2_bytes)) + " L2, ";
  } else {
    s += std::to_string(d.compute_units) + " threads, " +
         format_bytes(static_cast<double>(d.l2_bytes)) + " last-level cache, ";
  }
  return s + format_bytes(static_cast<double>(d.memory_bytes)) + " memory)";
}

}  // namespace wideattn::cli
