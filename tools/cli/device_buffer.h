// An owning handle to memory allocated through a Context (device memory on CUDA, host memory
// on the CPU), released when it goes out of scope.
#pragma once

#include <cstddef>
#include <utility>

#include "check.h"
#include "wideattn/context.h"

namespace wideattn::cli {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(Context& context, std::size_t bytes) : context_(&context), bytes_(bytes) {
    check(context.allocate(bytes == 0 ? 1 : bytes, &pointer_), "allocate " + std::to_string(bytes) + " bytes");
  }
  ~DeviceBuffer() {
    if (pointer_) (void)context_->release(pointer_);
  }
  DeviceBuffer(DeviceBuffer&& other) noexcept { *this = std::move(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      if (pointer_) (void)context_->release(pointer_);
      context_ = std::exchange(other.context_, nullptr);
      pointer_ = std::exchange(other.pointer_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return pointer_; }
  std::size_t bytes() const { return bytes_; }

  // Copies `bytes` from host memory to the start of this buffer.
  void upload(const void* host, std::size_t bytes) {
    check(context_->copy(pointer_, host, bytes, CopyKind::host_to_device), "upload");
  }

 private:
  Context* context_ = nullptr;
  void* pointer_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace wideattn::cli
