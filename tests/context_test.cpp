// Context creation, device memory and copies, and the dense-stride helper: the plumbing every
// other test relies on, including its error messages.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "test_support.h"

namespace wideattn::test {
namespace {

TEST(Context, UnknownBackendIsRejected) {
  std::unique_ptr<Context> context;
  EXPECT_TRUE(has_error(Context::create(static_cast<Backend>(7), 0, nullptr, &context),
                        StatusCode::invalid_argument, {"Context::create", "backend = 7"}));
  EXPECT_EQ(context, nullptr);
  EXPECT_TRUE(has_error(Context::create(Backend::cpu, 0, nullptr, nullptr), StatusCode::invalid_argument,
                        {"Context::create", "out = null"}));
}

TEST(Context, CudaUnavailableSaysWhy) {
  std::string why;
  if (backend_available(Backend::cuda, &why)) GTEST_SKIP() << "CUDA is available here";
  EXPECT_FALSE(why.empty());
  std::unique_ptr<Context> context;
  const Status status = Context::create(Backend::cuda, 0, nullptr, &context);
  EXPECT_EQ(status.code(), StatusCode::backend_unavailable) << status.message();
  EXPECT_EQ(context, nullptr);
}

TEST(Context, SetDenseStridesFillsEveryStride) {
  AttentionProblem p;
  p.batch = 3;
  p.q_heads = 8;
  p.kv_heads = 2;
  p.head_dim = 64;
  p.kv.capacity = 100;
  set_dense_strides(p);
  EXPECT_EQ(p.q_head_stride, 64);
  EXPECT_EQ(p.q_token_stride, 8 * 64);
  EXPECT_EQ(p.out_head_stride, 64);
  EXPECT_EQ(p.out_token_stride, 8 * 64);
  EXPECT_EQ(p.lse_head_stride, 1);
  EXPECT_EQ(p.lse_token_stride, 8);
  EXPECT_EQ(p.kv.k_head_stride, 64);
  EXPECT_EQ(p.kv.v_token_stride, 2 * 64);
  EXPECT_EQ(p.kv.k_sequence_stride, 100 * 2 * 64);
  EXPECT_EQ(p.kv.v_sequence_stride, 100 * 2 * 64);
  EXPECT_TRUE(std::isnan(p.scale));
  EXPECT_FLOAT_EQ(p.effective_scale(), 0.125f);
}

using ContextTest = BackendTest;

TEST_P(ContextTest, CopiesRoundTrip) {
  std::vector<float> host(1000), back(1000, 0.0f);
  for (std::size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i) * 0.5f;
  DeviceMemory a(context(), host.size() * sizeof(float)), b(context(), host.size() * sizeof(float));
  WA_ASSERT_OK(context().copy(a.get(), host.data(), a.bytes(), CopyKind::host_to_device));
  WA_ASSERT_OK(context().copy(b.get(), a.get(), a.bytes(), CopyKind::device_to_device));
  WA_ASSERT_OK(context().copy(back.data(), b.get(), b.bytes(), CopyKind::device_to_host));
  WA_ASSERT_OK(context().synchronize());
  EXPECT_EQ(host, back);
  WA_EXPECT_OK(context().copy(nullptr, nullptr, 0, CopyKind::host_to_device));  // nothing to do
}

TEST_P(ContextTest, BadCopiesAndAllocationsAreRejected) {
  float x = 0.0f;
  EXPECT_TRUE(has_error(context().copy(nullptr, &x, 4, CopyKind::host_to_device), StatusCode::invalid_argument,
                        {"Context::copy", "destination = null"}));
  EXPECT_TRUE(has_error(context().copy(&x, nullptr, 4, CopyKind::device_to_host), StatusCode::invalid_argument,
                        {"Context::copy", "source = null"}));
  EXPECT_TRUE(has_error(context().allocate(16, nullptr), StatusCode::invalid_argument,
                        {"Context::allocate", "pointer = null"}));
}

WA_INSTANTIATE_BACKENDS(ContextTest);

}  // namespace
}  // namespace wideattn::test
