// Several host threads sharing one GPU, each with its own Context on its own (non-blocking)
// stream, calling attention at once (docs/reliability.md, "Threads"). ConcurrencyTest's CUDA
// variants give each thread a Context on the legacy default stream; this one makes the work
// of the threads truly concurrent on the device. Every result is checked against the oracle.
// Built with the CUDA backend only; skips without a GPU.
#include <gtest/gtest.h>

#if defined(WIDEATTN_WITH_CUDA)
#include <cuda_runtime.h>

#include <atomic>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "attention_case.h"
#include "test_support.h"

namespace wideattn::test {
namespace {

TEST(CudaStreamsConcurrency, ThreadsWithOwnContextsAndStreamsShareOneDevice) {
  std::string why;
  if (!backend_available(Backend::cuda, &why)) GTEST_SKIP() << "CUDA backend unavailable: " << why;
  constexpr int kThreads = 6, kRounds = 4;
  const Kernel kernels[] = {Kernel::single_pass, Kernel::two_pass, Kernel::prefill_unfused, Kernel::automatic};
  std::mt19937_64 seeds = test_rng();
  std::vector<uint64_t> thread_seeds;
  for (int i = 0; i < kThreads; ++i) thread_seeds.push_back(seeds());
  std::atomic<int> runs{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      cudaStream_t stream = nullptr;
      ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
      {
        std::unique_ptr<Context> context;
        const Status status = Context::create(Backend::cuda, 0, stream, &context);
        ASSERT_TRUE(status.ok()) << status.message();
        std::mt19937_64 rng(thread_seeds[i]);
        for (int round = 0; round < kRounds; ++round) {
          AttentionCase c;
          c.dtype = (i + round) % 3 == 0 ? DType::f32 : (i + round) % 3 == 1 ? DType::f16 : DType::bf16;
          c.head_dim = (i % 2) ? 128 : 512;
          c.q_heads = 8;
          c.kv_heads = 2;
          c.window = round % 2 ? 33 : 0;
          c.sinks = i % 2 == 0;
          c.sequences = {{1 + (i + round) % 8, 300 + 97 * round}, {12 + i, 200}};
          const Kernel kernel = kernels[(i + round) % 4];
          if (kernel == Kernel::single_pass || kernel == Kernel::two_pass) {
            for (SequenceShape& s : c.sequences) s.suffix = std::min(s.suffix, 8);
          }
          check_attention(*context, rng, c, kernel);
          runs.fetch_add(1);
        }
      }  // the Context (which synchronises its device) goes before its stream
      cudaStreamDestroy(stream);
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(runs.load(), kThreads * kRounds);
}

}  // namespace
}  // namespace wideattn::test
#endif
