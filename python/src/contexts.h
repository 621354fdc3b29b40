// One wideattn::Context per (backend, device), created on first use and kept for the life of the
// process, and the mapping of Status codes onto Python exceptions.
#pragma once

#include <functional>

#include "arrays.h"
#include "wideattn/context.h"
#include "wideattn/status.h"

namespace wideattn::python {

// Raises the Python exception for a failed Status: ValueError (invalid_argument),
// NotImplementedError (unsupported), MemoryError (out_of_memory), RuntimeError (the rest).
[[noreturn]] void raise_status(const Status& status);

// The cached Context of `device` (created on first use; creation errors raise).
Context& context_for(const Device& device);

// Runs `body` on the Context of `device` with its stream set to `stream` (CUDA; ignored on the
// CPU), without the GIL and holding that Context's lock; raises if the Status is not ok.
void run_on(const Device& device, void* stream, const std::function<Status(Context&)>& body);

}  // namespace wideattn::python
