// A CUDA test fixture whose Context runs on its own non-blocking stream: the legacy default
// stream cannot be captured into a CUDA graph. CUDA builds only.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <random>

#include "test_support.h"

namespace wideattn::test {

class CapturableStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!session_.start(Backend::cuda)) return;
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), cudaSuccess);
    session_.context->set_stream(stream_);
  }
  void TearDown() override {
    session_.stop();
    if (stream_) cudaStreamDestroy(stream_);
  }
  Context& context() { return *session_.context; }
  std::mt19937_64& rng() { return session_.rng; }
  cudaStream_t stream() const { return stream_; }

 private:
  BackendSession session_;
  cudaStream_t stream_ = nullptr;
};

}  // namespace wideattn::test
