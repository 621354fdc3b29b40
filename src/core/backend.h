// The interface every backend implements. The public functions validate their arguments
// (src/core/validate.h) before they reach a backend, so backends may assume valid input.
// Backends report failures by throwing detail::Error.
#pragma once

#include <cstddef>

#include "wideattn/attention.h"
#include "wideattn/components.h"
#include "wideattn/context.h"

namespace wideattn::detail {

class BackendImpl {
 public:
  virtual ~BackendImpl() = default;

  virtual const DeviceInfo& device() const = 0;
  virtual void* stream() const { return nullptr; }
  virtual void set_stream(void*) {}

  // Device memory.
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void release(void* pointer) = 0;
  virtual void copy(void* destination, const void* source, std::size_t bytes, CopyKind kind) = 0;
  virtual void synchronize() = 0;
  // Asynchronous fill of device memory with one byte value (on the stream).
  virtual void fill_bytes(void* pointer, std::size_t bytes, unsigned char value) = 0;

  // Scratch owned by the backend, at least `bytes` long, valid until the next call. Grows on
  // demand; work already queued on the stream that uses the old buffer stays valid.
  virtual void* workspace(std::size_t bytes) = 0;

  // Components.
  virtual void matmul(const MatmulArguments& args) = 0;
  virtual void softmax(const SoftmaxArguments& args) = 0;
  virtual void scatter_scores(const ScatterScoresArguments& args) = 0;
  virtual void scatter_values(const ScatterValuesArguments& args) = 0;

  // single_pass (plan.num_splits == 1) and two_pass (split-KV plus merge).
  virtual void decode(const AttentionProblem& problem, const Plan& plan) = 0;
};

}  // namespace wideattn::detail
