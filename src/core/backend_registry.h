// Factories for the backends compiled into this build.
#pragma once

#include <memory>
#include <string>

#include "core/backend.h"

namespace wideattn::detail {

std::unique_ptr<BackendImpl> make_cpu_backend();

// Throws Error(backend_unavailable) when this build has no CUDA or the machine no GPU.
std::unique_ptr<BackendImpl> make_cuda_backend(int device_index, void* stream);
bool cuda_backend_available(std::string* reason);

}  // namespace wideattn::detail
