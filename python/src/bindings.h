// The parts of the _wideattn extension module, each defined in its own file.
#pragma once

#include <nanobind/nanobind.h>

namespace wideattn::python {

void bind_attention(nanobind::module_& m);   // attention, plan
void bind_components(nanobind::module_& m);  // matmul, softmax, scatter_scores, scatter_values
void bind_devices(nanobind::module_& m);     // device_info, backend_available, synchronize
void bind_serving(nanobind::module_& m);     // write_kv, merge_states

}  // namespace wideattn::python
