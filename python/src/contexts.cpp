#include "contexts.h"

#include <map>
#include <memory>
#include <mutex>
#include <utility>

namespace wideattn::python {
namespace {

struct CachedContext {
  std::unique_ptr<Context> context;
  std::mutex mutex;  // calls on one Context are not thread-safe; the GIL is released during them
};

// Deliberately never destroyed: a CUDA Context torn down after the CUDA runtime has shut down
// (at interpreter exit) would fail, and the process is ending anyway.
std::map<std::pair<int, int>, CachedContext*>& cache() {
  static auto* contexts = new std::map<std::pair<int, int>, CachedContext*>();
  return *contexts;
}

CachedContext& cached(const Device& device) {
  const std::pair<int, int> key{static_cast<int>(device.backend), device.index};
  auto& contexts = cache();  // guarded by the GIL
  auto it = contexts.find(key);
  if (it != contexts.end()) return *it->second;
  auto entry = std::make_unique<CachedContext>();
  Status status;
  {
    nb::gil_scoped_release release;
    status = Context::create(device.backend, device.index, nullptr, &entry->context);
  }
  if (!status.ok()) raise_status(status);
  // Another thread may have created it while the GIL was released.
  it = contexts.find(key);
  if (it != contexts.end()) return *it->second;
  CachedContext* raw = entry.release();
  contexts.emplace(key, raw);
  return *raw;
}

}  // namespace

void raise_status(const Status& status) {
  PyObject* type = PyExc_RuntimeError;
  switch (status.code()) {
    case StatusCode::invalid_argument: type = PyExc_ValueError; break;
    case StatusCode::unsupported: type = PyExc_NotImplementedError; break;
    case StatusCode::out_of_memory: type = PyExc_MemoryError; break;
    default: break;
  }
  std::string message = status.message();
  if (status.code() == StatusCode::backend_unavailable || status.code() == StatusCode::internal) {
    message += std::string(" [") + to_string(status.code()) + "]";
  }
  PyErr_SetString(type, message.c_str());
  throw nb::python_error();
}

Context& context_for(const Device& device) { return *cached(device).context; }

void run_on(const Device& device, void* stream, const std::function<Status(Context&)>& body) {
  CachedContext& entry = cached(device);
  Status status;
  {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(entry.mutex);
    if (device.backend == Backend::cuda) entry.context->set_stream(stream);
    status = body(*entry.context);
  }
  if (!status.ok()) raise_status(status);
}

}  // namespace wideattn::python
