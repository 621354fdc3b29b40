// A Context is one backend on one device: it owns the library handles (cuBLASLt), the stream
// it runs on and a workspace that grows on demand and is reused across calls. Create one per
// device and stream, once; calls on one Context are not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "wideattn/status.h"
#include "wideattn/types.h"

namespace wideattn {

namespace detail {
class BackendImpl;
}

// What dispatch reads about the device.
struct DeviceInfo {
  Backend backend = Backend::cpu;
  std::string name;                      // "NVIDIA H100 80GB HBM3", or the CPU model
  int32_t compute_units = 0;             // SMs on CUDA, worker threads on the CPU
  int32_t compute_capability = 0;        // 90 for sm_90; 0 on the CPU
  int64_t shared_memory_per_block = 0;   // opt-in maximum, bytes; 0 on the CPU
  int64_t l2_bytes = 0;                  // last-level cache, bytes
  int64_t memory_bytes = 0;              // device (or host) memory, bytes
};

enum class CopyKind : int32_t { host_to_device = 0, device_to_host = 1, device_to_device = 2 };

class Context {
 public:
  // device_index: which GPU (ignored on the CPU). stream: a cudaStream_t, or null for the
  // default stream (ignored on the CPU).
  static Status create(Backend backend, int device_index, void* stream,
                       std::unique_ptr<Context>* out);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Backend backend() const;
  const DeviceInfo& device() const;
  void* stream() const;
  void set_stream(void* stream);

  // Memory on this context's device (plain host memory on the CPU).
  Status allocate(std::size_t bytes, void** pointer);
  Status release(void* pointer);
  Status copy(void* destination, const void* source, std::size_t bytes, CopyKind kind);
  Status synchronize();

  detail::BackendImpl& impl();

 private:
  explicit Context(std::unique_ptr<detail::BackendImpl> impl);
  std::unique_ptr<detail::BackendImpl> impl_;
};

// Whether this build and machine can create a Context of `backend`; when not, `reason` says why.
bool backend_available(Backend backend, std::string* reason = nullptr);

}  // namespace wideattn
