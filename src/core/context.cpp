#include "wideattn/context.h"

#include "core/backend_registry.h"
#include "core/error.h"

namespace wideattn {

Status Context::create(Backend backend, int device_index, void* stream,
                       std::unique_ptr<Context>* out) {
  return detail::guarded([&] {
    if (!out) detail::throw_invalid("Context::create", "out", "null", "a pointer to fill");
    std::unique_ptr<detail::BackendImpl> impl;
    if (backend == Backend::cpu) {
      impl = detail::make_cpu_backend();
    } else if (backend == Backend::cuda) {
      if (device_index < 0) detail::throw_invalid("Context::create", "device_index", device_index, ">= 0");
      impl = detail::make_cuda_backend(device_index, stream);
    } else {
      detail::throw_invalid("Context::create", "backend", static_cast<int>(backend), "cpu or cuda");
    }
    out->reset(new Context(std::move(impl)));
  });
}

Context::Context(std::unique_ptr<detail::BackendImpl> impl) : impl_(std::move(impl)) {}
Context::~Context() = default;

Backend Context::backend() const { return impl_->device().backend; }
const DeviceInfo& Context::device() const { return impl_->device(); }
void* Context::stream() const { return impl_->stream(); }
void Context::set_stream(void* stream) { impl_->set_stream(stream); }
detail::BackendImpl& Context::impl() { return *impl_; }

Status Context::allocate(std::size_t bytes, void** pointer) {
  return detail::guarded([&] {
    if (!pointer) detail::throw_invalid("Context::allocate", "pointer", "null", "a pointer to fill");
    *pointer = impl_->allocate(bytes);
  });
}

Status Context::release(void* pointer) {
  return detail::guarded([&] { impl_->release(pointer); });
}

Status Context::copy(void* destination, const void* source, std::size_t bytes, CopyKind kind) {
  return detail::guarded([&] {
    if (bytes == 0) return;
    if (!destination) detail::throw_invalid("Context::copy", "destination", "null", "a pointer");
    if (!source) detail::throw_invalid("Context::copy", "source", "null", "a pointer");
    impl_->copy(destination, source, bytes, kind);
  });
}

Status Context::synchronize() {
  return detail::guarded([&] { impl_->synchronize(); });
}

bool backend_available(Backend backend, std::string* reason) {
  if (backend == Backend::cpu) return true;
  if (backend == Backend::cuda) return detail::cuda_backend_available(reason);
  if (reason) *reason = "unknown backend";
  return false;
}

}  // namespace wideattn
