// Paged KV caches on every kernel and backend: each case runs twice on the same data, once from
// a contiguous cache and once from pages in shuffled order (spare pages and unused slots NaN),
// both checked against the f64 oracle; where the kernel is the same code over the same rows
// (the decode kernels; the CPU's prefill pipeline) the two outputs must be bitwise equal.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "attention_case.h"
#include "test_support.h"

namespace wideattn::test {
namespace {

class PagedKvTest : public ::testing::TestWithParam<std::tuple<Backend, Kernel>> {
 protected:
  void SetUp() override { session_.start(backend()); }
  void TearDown() override { session_.stop(); }
  Backend backend() const { return std::get<0>(GetParam()); }
  Kernel kernel() const { return std::get<1>(GetParam()); }
  Context& context() { return *session_.context; }

  // `c` contiguous, then paged with `page_size` from the same random stream (same data).
  void check_paged(AttentionCase c, int32_t page_size) {
    SCOPED_TRACE("page_size " + std::to_string(page_size));
    std::mt19937_64 same_data = session_.rng;
    AttentionOutcome contiguous, paged;
    c.page_size = 0;
    check_attention(context(), session_.rng, c, kernel(), &contiguous);
    c.page_size = page_size;
    check_attention(context(), same_data, c, kernel(), &paged);
    if (::testing::Test::HasFatalFailure()) return;
    // The fused kernels read pages of 16 tokens or more whose strides TMA takes (multiples of 8
    // elements); other paged prefills run the unfused pipeline (fused_support.cpp).
    const bool fused_declines_pages = page_size < 16 || c.page_gap % 8 != 0;
    EXPECT_EQ(paged.plan.kernel, contiguous.plan.kernel == Kernel::prefill_fused && fused_declines_pages
                                     ? Kernel::prefill_unfused
                                     : contiguous.plan.kernel)
        << paged.plan.reason;
    if (paged.plan.kernel == contiguous.plan.kernel) EXPECT_EQ(paged.plan.num_splits, contiguous.plan.num_splits);
    const bool decode = paged.plan.kernel == Kernel::single_pass || paged.plan.kernel == Kernel::two_pass;
    // On CUDA a page gap that leaves 16-bit rows unaligned sends the paged call to the SIMT
    // decode kernel while the contiguous one runs on tensor cores: compared with the oracle only.
    const bool same_decode_kernel = backend() == Backend::cpu || c.page_gap == 0 || c.dtype == DType::f32;
    // The fused kernel reads the same rows through boxes of pages: the same arithmetic.
    const bool same_code = paged.plan.kernel == contiguous.plan.kernel &&
                           ((decode && same_decode_kernel) || paged.plan.kernel == Kernel::prefill_fused ||
                            backend() == Backend::cpu);
    if (same_code) {
      EXPECT_TRUE(bitwise_equal(paged.out, contiguous.out)) << "out differs from the contiguous cache's";
      EXPECT_TRUE(bitwise_equal(paged.lse, contiguous.lse)) << "lse differs from the contiguous cache's";
    }
  }

  static ::testing::AssertionResult bitwise_equal(const std::vector<double>& a, const std::vector<double>& b) {
    if (a.size() != b.size()) return ::testing::AssertionFailure() << a.size() << " vs " << b.size() << " values";
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (std::memcmp(&a[i], &b[i], sizeof(double)) != 0) {
        return ::testing::AssertionFailure() << "first difference at " << i << ": " << a[i] << " vs " << b[i];
      }
    }
    return ::testing::AssertionSuccess();
  }

 private:
  BackendSession session_;
};

// Every page size the engines use, across the masks; awkward lengths that end mid-page, a
// sequence with no new tokens, and one shorter than a page.
TEST_P(PagedKvTest, PageSizesAcrossMasks) {
  const int32_t page_sizes[] = {1, 16, 32, 64, 128, 256};
  int sample = 0;
  for (int32_t page : page_sizes) {
    AttentionCase c;
    c.head_dim = sample % 2 ? 128 : 64;
    c.dtype = sample % 3 == 0 ? DType::f32 : sample % 3 == 1 ? DType::bf16 : DType::f16;
    c.q_heads = 8;
    c.kv_heads = 2;
    c.sequences = {{1, 300}, {4, 97}, {12, 54}, {0, 17}, {2, 2}};
    switch (sample % 6) {
      case 0: break;  // causal with a prefix
      case 1: c.causal = false; break;
      case 2: c.window = 37; break;
      case 3: c.ring_length = 20; c.ring_offset = 1; c.sequences = {{1, 300}, {3, 97}, {2, 54}}; break;
      case 4: c.tree = true; c.sequences = {{5, 300}, {8, 97}, {1, 54}}; break;
      case 5: c.sinks = true; c.softcap = 30.0f; c.scale = 0.3f; break;
    }
    c.nan_past_kv_length = true;
    check_paged(c, page);
    ++sample;
  }
}

// The engines' views: head-major pages ([pages, kv_heads, page_size, head_dim]), pages with a
// gap after each (any page stride), and K and V pages interleaved in one tensor
// ([pages, 2, page_size, kv_heads, head_dim], FlashInfer's and Triton's cache).
TEST_P(PagedKvTest, LayoutsAndPageStrides) {
  struct Layout {
    bool head_major;
    int64_t gap;
    bool one_tensor;
  };
  const Layout layouts[] = {{true, 0, false}, {false, 64, false}, {false, 0, true}, {true, 8, true}};
  int sample = 0;
  for (const Layout& layout : layouts) {
    AttentionCase c;
    c.head_dim = sample % 2 ? 256 : 64;
    c.dtype = sample % 2 ? DType::bf16 : DType::f16;
    c.q_heads = 4;
    c.kv_heads = 2;
    c.sequences = {{3, 130}, {1, 33}, {10, 70}};
    c.kv_head_major = layout.head_major;
    c.page_gap = layout.gap;
    c.kv_one_tensor = layout.one_tensor;
    check_paged(c, sample % 2 ? 16 : 32);
    ++sample;
  }
}

// Page strides that leave 16-bit rows off 16-byte boundaries (CUDA's SIMT kernel), and f32.
TEST_P(PagedKvTest, UnalignedPagesAndF32) {
  for (DType dtype : {DType::bf16, DType::f32}) {
    AttentionCase c;
    c.head_dim = 128;
    c.dtype = dtype;
    c.sequences = {{2, 90}, {1, 17}};
    c.page_gap = 3;
    check_paged(c, 16);
  }
}

// Prefix sharing: the first pages of every sequence are sequence 0's pages.
TEST_P(PagedKvTest, SharedPrefixPages) {
  for (int32_t page : {1, 16, 64}) {
    AttentionCase c;
    c.head_dim = 128;
    c.dtype = DType::bf16;
    c.q_heads = 8;
    c.kv_heads = 4;
    c.sequences = {{1, 200}, {4, 150}, {9, 180}, {1, 140}};
    c.shared_prefix = 130;
    check_paged(c, page);
  }
}

// GQA groups of 8 with speculative tokens (two row blocks per CTA on CUDA) and enough keys that
// the split-KV pass cuts pages between splits.
TEST_P(PagedKvTest, WideGroupsAndLongSequences) {
  AttentionCase c;
  c.head_dim = 512;
  c.dtype = DType::bf16;
  c.q_heads = 16;
  c.kv_heads = 2;
  c.sequences = {{4, 1500}, {1, 777}, {3, 1025}};
  c.nan_past_kv_length = true;
  // CUDA: the page sizes of the decode target; the CPU (slow f64 oracle at this size): two.
  const std::vector<int32_t> pages = backend() == Backend::cuda ? std::vector<int32_t>{1, 16, 64, 256}
                                                                : std::vector<int32_t>{1, 64};
  for (int32_t page : pages) check_paged(c, page);
}

// CUDA cannot check a device block table on the host: an index outside the pools must read
// zeros (the same result as a cache whose rows there are zero), never other memory or a fault.
TEST(PagedKvDevice, PageIndicesOutsideThePoolsReadZeros) {
  BackendSession session;
  if (!session.start(Backend::cuda)) return;
  Context& context = *session.context;
  const int32_t d = 64, page = 16, kv = 40;
  std::vector<int32_t> offsets{0, 1}, lengths{kv};
  // Contiguous cache [1, 48, 1, d] with rows 32..47 zero; pools of 3 pages holding rows 0..47.
  HostTensor q = random_tensor(session.rng, DType::bf16, 2 * d);
  HostTensor k = random_tensor(session.rng, DType::bf16, 48 * d), v = random_tensor(session.rng, DType::bf16, 48 * d);
  for (int64_t i = 32 * d; i < 48 * d; ++i) {
    k.set(i, 0.0);
    v.set(i, 0.0);
  }
  const std::vector<int32_t> table{0, 1, 1000};  // page 2 is not a page of the pools
  auto q_dev = to_device(context, q.data(), q.bytes());
  auto k_dev = to_device(context, k.data(), k.bytes()), v_dev = to_device(context, v.data(), v.bytes());
  auto table_dev = to_device(context, table.data(), table.size() * sizeof(int32_t));
  for (Kernel kernel : {Kernel::single_pass, Kernel::two_pass, Kernel::prefill_unfused, Kernel::prefill_fused}) {
    SCOPED_TRACE(to_string(kernel));
    if (kernel == Kernel::prefill_fused && context.device().compute_capability != 90) continue;  // Hopper only
    AttentionProblem p;
    p.batch = 1;
    p.q_heads = 2;
    p.kv_heads = 1;
    p.head_dim = d;
    p.dtype = DType::bf16;
    p.query_offsets = offsets.data();
    p.kv_lengths = lengths.data();
    p.kv.capacity = 48;
    set_dense_strides(p);
    p.q = q_dev->get();
    p.kv.k = k_dev->get();
    p.kv.v = v_dev->get();
    GuardedOutput contiguous(context, DType::bf16, 2 * d), paged(context, DType::bf16, 2 * d);
    contiguous.upload();
    paged.upload();
    p.out = contiguous.data();
    WA_ASSERT_OK(attention(context, p, kernel));
    set_paged_kv(p, k_dev->get(), v_dev->get(), 3, page, static_cast<const int32_t*>(table_dev->get()), 3);
    p.out = paged.data();
    WA_ASSERT_OK(attention(context, p, kernel));
    WA_ASSERT_OK(context.synchronize());
    contiguous.download();
    paged.download();
    std::vector<int64_t> all(2 * d);
    for (int64_t i = 0; i < 2 * d; ++i) all[i] = i;
    if (kernel == Kernel::prefill_unfused) {  // cuBLASLt may pick another algorithm for the gathered rows
      EXPECT_TRUE(close_rel_l2(paged.gather(all), contiguous.gather(all), relative_tolerance(DType::bf16),
                               flat_index_name()));
    } else {
      EXPECT_EQ(paged.gather(all), contiguous.gather(all));
    }
    EXPECT_TRUE(paged.untouched_except(all));
  }
}

std::string paged_param_name(const ::testing::TestParamInfo<std::tuple<Backend, Kernel>>& info) {
  return std::string(to_string(std::get<0>(info.param))) + "_" + to_string(std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(BackendsAndKernels, PagedKvTest,
                         ::testing::Combine(::testing::Values(Backend::cpu, Backend::cuda),
                                            ::testing::Values(Kernel::automatic, Kernel::single_pass,
                                                              Kernel::two_pass, Kernel::prefill_unfused)),
                         paged_param_name);

}  // namespace
}  // namespace wideattn::test
