// A kernel's dynamic shared-memory limit, raised when a launch needs more and never lowered.
//
// cudaFuncAttributeMaxDynamicSharedMemorySize belongs to the function, process-wide: setting it
// to each call's own size lets one host thread lower it between another thread's set and launch,
// which then fails with "invalid argument" (seen with 8 threads sharing one device). Only
// raising it keeps every launch that has set its size valid, and skips the driver call (about a
// microsecond of host time) on every later call.
#pragma once

#include <cstddef>

namespace wideattn::cuda {

// Makes `kernel` launchable with `bytes` of dynamic shared memory on the current device.
// Thread-safe. Throws detail::Error naming `name` when the driver refuses.
void allow_dynamic_smem(const void* kernel, std::size_t bytes, const char* name);

template <typename... Params>
void allow_dynamic_smem(void (*kernel)(Params...), std::size_t bytes, const char* name) {
  allow_dynamic_smem(reinterpret_cast<const void*>(kernel), bytes, name);
}

// How many CTAs of `kernel` (`threads` threads, `bytes` of dynamic shared memory) the current
// device holds at once: the occupancy per SM times the SMs, cached per (kernel, device, shape).
// Call after allow_dynamic_smem. Thread-safe. Throws detail::Error naming `name` on failure.
int resident_ctas(const void* kernel, int threads, std::size_t bytes, const char* name);

template <typename... Params>
int resident_ctas(void (*kernel)(Params...), int threads, std::size_t bytes, const char* name) {
  return resident_ctas(reinterpret_cast<const void*>(kernel), threads, bytes, name);
}

}  // namespace wideattn::cuda
