// The _wideattn extension module. The Python package (python/wideattn) wraps these low-level
// functions with typed, documented ones; nothing here allocates arrays or copies data.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include <string>

#include "bindings.h"
#include "contexts.h"
#include "wideattn/context.h"

namespace wideattn::python {
namespace {

Device parse_device(const std::string& backend, int index) {
  if (backend == "cpu") return Device{Backend::cpu, 0};
  if (backend == "cuda") {
    if (index < 0) throw_value_error("device index = " + std::to_string(index) + ", expected >= 0");
    return Device{Backend::cuda, index};
  }
  throw_value_error("backend = '" + backend + "', expected 'cpu' or 'cuda'");
}

}  // namespace

void bind_devices(nb::module_& m) {
  m.def(
      "backend_available",
      [](const std::string& backend) {
        std::string reason;
        const bool ok = wideattn::backend_available(parse_device(backend, 0).backend, &reason);
        return nb::make_tuple(ok, reason);
      },
      nb::arg("backend"), "(available, reason) for 'cpu' or 'cuda' in this build and machine.");
  m.def(
      "device_info",
      [](const std::string& backend, int index) {
        const DeviceInfo& d = context_for(parse_device(backend, index)).device();
        nb::dict info;
        info["backend"] = to_string(d.backend);
        info["name"] = d.name;
        info["compute_units"] = d.compute_units;
        info["compute_capability"] = d.compute_capability;
        info["shared_memory_per_block"] = d.shared_memory_per_block;
        info["l2_bytes"] = d.l2_bytes;
        info["memory_bytes"] = d.memory_bytes;
        return info;
      },
      nb::arg("backend"), nb::arg("index"), "What dispatch reads about a device.");
  m.def(
      "synchronize",
      [](const std::string& backend, int index, uintptr_t stream) {
        const Device device = parse_device(backend, index);
        run_on(device, reinterpret_cast<void*>(stream),
               [](Context& context) { return context.synchronize(); });
      },
      nb::arg("backend"), nb::arg("index"), nb::arg("stream"),
      "Waits for the work queued on `stream` (a cudaStream_t; 0: the default stream).");
  m.attr("cuda_built") =
#if defined(WIDEATTN_WITH_CUDA)
      true;
#else
      false;
#endif
}

}  // namespace wideattn::python

NB_MODULE(_wideattn, m) {
  m.doc() = "wideattn C++ bindings (low level; import wideattn instead)";
  wideattn::python::bind_attention(m);
  wideattn::python::bind_components(m);
  wideattn::python::bind_devices(m);
  wideattn::python::bind_serving(m);
}
