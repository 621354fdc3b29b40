// A grow-on-demand, 64-byte aligned host buffer. Growing discards the old contents.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>

namespace wideattn::detail {

class AlignedBuffer {
 public:
  static constexpr std::size_t kAlignment = 64;

  AlignedBuffer() = default;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { std::free(data_); }

  // At least `bytes` long; the pointer changes only when the buffer grows.
  void* reserve(std::size_t bytes) {
    if (bytes <= size_ && data_) return data_;
    // Grow geometrically so that a slowly increasing demand does not reallocate every call.
    std::size_t size = size_ + size_ / 2;
    if (size < bytes) size = bytes;
    size = (size + kAlignment - 1) / kAlignment * kAlignment;
    if (size == 0) size = kAlignment;
    void* fresh = std::aligned_alloc(kAlignment, size);
    if (!fresh) throw std::bad_alloc();
    std::free(data_);
    data_ = fresh;
    size_ = size;
    return data_;
  }

  template <typename T>
  T* as(std::size_t count) {
    return static_cast<T*>(reserve(count * sizeof(T)));
  }

  std::size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace wideattn::detail
