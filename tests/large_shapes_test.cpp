// Sizes past 32-bit indexing (docs/reliability.md).
// - Planning and validation of problems whose tensors exceed 2^31 elements (256K tokens x 32
//   heads x 512, KV caches past 4 GiB, 2^31 - 1 tokens), without allocating: the device
//   pointers are fake, far-apart addresses, which plan_attention never dereferences (it reads
//   only the host arrays query_offsets and kv_lengths). The plans must be sane: the kernel
//   expected, splits and chunk rows in range, and workspace_bytes equal to the layout
//   recomputed here in 128-bit arithmetic (no overflow, no wrap-around).
// - Extents that overflow int64 are rejected with a message, not wrapped.
// - The CPU kernels really run a problem whose K/V, out and LSE element offsets pass 2^31, on
//   sparse memory (mmap with MAP_NORESERVE: only the pages touched are backed), against the
//   f64 oracle.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "attention_case.h"
#include "reference/reference.h"
#include "test_support.h"

namespace wideattn::test {
namespace {

using Wide = __int128;

// A device address no one owns, 2^44 bytes (16 TiB) after the previous one: the overlap
// checks see disjoint ranges, and any dereference would crash the test.
void* fake_address(int slot) { return reinterpret_cast<void*>(static_cast<uintptr_t>(slot) << 44); }

struct BigProblem {
  BigProblem(std::vector<int32_t> suffixes, std::vector<int32_t> kv, int64_t capacity, int32_t q_heads,
             int32_t kv_heads, int32_t head_dim, DType dtype = DType::bf16) {
    offsets.push_back(0);
    for (int32_t s : suffixes) offsets.push_back(offsets.back() + s);
    kv_lengths = std::move(kv);
    p.batch = static_cast<int32_t>(suffixes.size());
    p.q_heads = q_heads;
    p.kv_heads = kv_heads;
    p.head_dim = head_dim;
    p.dtype = dtype;
    p.kv.capacity = capacity;
    set_dense_strides(p);
    p.query_offsets = offsets.data();
    p.kv_lengths = kv_lengths.data();
    p.q = fake_address(1);
    p.kv.k = fake_address(2);
    p.kv.v = fake_address(3);
    p.out = fake_address(4);
    p.lse = static_cast<float*>(fake_address(5));
    p.mask.causal = true;
  }
  Wide q_elements() const { return Wide{p.total_tokens()} * p.q_heads * p.head_dim; }
  Wide cache_elements() const { return Wide{p.batch} * p.kv.capacity * p.kv_heads * p.head_dim; }
  std::vector<int32_t> offsets, kv_lengths;
  AttentionProblem p;
};

Wide align256(Wide bytes) { return (bytes + 255) / 256 * 256; }

// workspace_layout.h, recomputed in 128-bit arithmetic from the plan's own choices.
Wide expected_workspace(const AttentionProblem& p, const Plan& plan, Backend backend) {
  const Wide d = p.head_dim, gqa = p.q_heads / p.kv_heads;
  if (plan.kernel == Kernel::prefill_unfused) {
    int64_t longest = 0;
    for (int32_t b = 0; b < p.batch; ++b) longest = std::max<int64_t>(longest, p.kv_lengths[b]);
    const Wide key_capacity = (std::max<int64_t>(longest, 1) + 7) / 8 * 8;
    const Wide cells = gqa * plan.query_rows_per_chunk * key_capacity;
    const Wide psize = backend == Backend::cuda ? static_cast<Wide>(dtype_size(p.dtype)) : 4;
    return align256(cells * 4) + (psize == 4 ? 0 : align256(cells * psize)) +
           align256(gqa * plan.query_rows_per_chunk * d * 4);
  }
  // Decode, and the fused prefill (which splits keys in the decode layout when tiles are few).
  const Wide rows = Wide{p.total_tokens()} * p.q_heads, splits = plan.num_splits;
  if (plan.kernel == Kernel::prefill_fused && splits == 1) return 0;
  Wide bytes = 0;
  if (splits > 1) bytes = align256(rows * splits * d * 4) + 2 * align256(rows * splits * 4);
  return bytes + align256((2 * Wide{p.batch} + 1) * 4);
}

std::string wide(Wide x) {
  std::string s;
  const bool negative = x < 0;
  if (negative) x = -x;
  do {
    s.insert(s.begin(), static_cast<char>('0' + static_cast<int>(x % 10)));
    x /= 10;
  } while (x > 0);
  return negative ? "-" + s : s;
}

// Plans `p` on `device` and checks the plan's numbers; returns it.
Plan plan_sanely(const AttentionProblem& p, const DeviceInfo& device, Kernel forced = Kernel::automatic) {
  Plan plan;
  const Status status = plan_attention(p, device, forced, &plan);
  EXPECT_TRUE(status.ok()) << status.message();
  if (!status.ok()) return plan;
  int64_t longest_suffix = 0;
  for (int32_t b = 0; b < p.batch; ++b) {
    longest_suffix = std::max<int64_t>(longest_suffix, int64_t{p.query_offsets[b + 1]} - p.query_offsets[b]);
  }
  if (forced != Kernel::automatic) EXPECT_EQ(plan.kernel, forced);
  if (plan.kernel == Kernel::two_pass) {
    EXPECT_GE(plan.num_splits, 2);
    EXPECT_LE(plan.num_splits, 128);
  } else {
    EXPECT_EQ(plan.num_splits, 1) << to_string(plan.kernel);
  }
  if (plan.kernel == Kernel::prefill_unfused) {
    EXPECT_GE(plan.query_rows_per_chunk, 1);
    EXPECT_LE(plan.query_rows_per_chunk, std::max<int64_t>(1, longest_suffix));
  }
  const Wide expected = expected_workspace(p, plan, device.backend);
  EXPECT_GE(expected, 0);
  EXPECT_LT(expected, Wide{1} << 62) << "a workspace this large cannot be meant";
  EXPECT_EQ(wide(static_cast<Wide>(plan.workspace_bytes)), wide(expected))
      << to_string(plan.kernel) << ", " << plan.num_splits << " splits, " << plan.query_rows_per_chunk
      << " rows per chunk: " << plan.reason;
  EXPECT_FALSE(plan.reason.empty());
  return plan;
}

const DeviceInfo kDevices[] = {cpu_device(), h100_device()};

TEST(LargeShapes, PrefillOf256KTokensWithQPast2To32Elements) {
  // 256K tokens x 32 query heads x 512: q and out hold 2^32 elements (8 GiB in bf16).
  BigProblem big({1 << 18}, {1 << 18}, 1 << 18, 32, 8, 512);
  ASSERT_GT(big.q_elements(), Wide{1} << 31);
  for (const DeviceInfo& device : kDevices) {
    SCOPED_TRACE(device.name);
    const Plan plan = plan_sanely(big.p, device);
#if defined(WIDEATTN_WITH_CUDA)
    // The fused pair kernel serves 512 on Hopper; tiles fill the SMs, so no key splits.
    const Kernel prefill = device.backend == Backend::cuda ? Kernel::prefill_fused : Kernel::prefill_unfused;
#else
    const Kernel prefill = Kernel::prefill_unfused;
#endif
    EXPECT_EQ(plan.kernel, prefill) << plan.reason;
    EXPECT_EQ(plan.num_splits, 1) << plan.reason;
    // The chunk bounds the scratch: at most the tuning's scratch (64 MiB CPU, 512 MiB CUDA)
    // for the scores and probabilities, plus the values of one chunk.
    const std::size_t scratch = device.backend == Backend::cuda ? std::size_t{512} << 20 : std::size_t{64} << 20;
    EXPECT_LE(plan.workspace_bytes, scratch + (std::size_t{64} << 20)) << plan.reason;
    for (Kernel forced : {Kernel::single_pass, Kernel::two_pass, Kernel::prefill_unfused}) {
      plan_sanely(big.p, device, forced);  // two_pass: partials of 2^23 rows x splits x 512
    }
  }
  // Head dims with a fused kernel on Hopper, and a head-major Q.
  BigProblem fused({300000}, {300000}, 300000, 32, 8, 256);
  fused.p.q_head_stride = int64_t{300000} * 256;
  fused.p.q_token_stride = 256;
  ASSERT_GT(fused.q_elements(), Wide{1} << 31);
  const Plan plan = plan_sanely(fused.p, h100_device());
#if defined(WIDEATTN_WITH_CUDA)
  EXPECT_EQ(plan.kernel, Kernel::prefill_fused) << plan.reason;
#else
  EXPECT_EQ(plan.kernel, Kernel::prefill_unfused) << plan.reason;
#endif
}

TEST(LargeShapes, DecodeWithKvCachePast4GiB) {
  // One sequence, 2M cache slots x 8 KV heads x 512 in bf16: 2^33 elements, 16 GiB per tensor.
  BigProblem one({1}, {(1 << 21) - 5}, 1 << 21, 32, 8, 512);
  ASSERT_GT(one.cache_elements() * 2, Wide{4} << 30);
  // 64 sequences of 128K slots: the sequence stride alone is 2^29 elements, the cache 2^35.
  std::vector<int32_t> suffixes(64, 1), lengths(64);
  for (int32_t b = 0; b < 64; ++b) lengths[b] = (1 << 17) - b * 1000;
  BigProblem batch(suffixes, lengths, 1 << 17, 32, 8, 512);
  ASSERT_GT(batch.cache_elements(), Wide{1} << 34);
  // Head-major cache: k_head_stride 2^30, k_sequence_stride 2^33 elements.
  BigProblem head_major({4, 1, 8, 2}, {1 << 20, 5, 1 << 21, 77}, 1 << 21, 16, 4, 512, DType::f16);
  for (KvCache* kv : {&head_major.p.kv}) {
    kv->k_token_stride = kv->v_token_stride = 512;
    kv->k_head_stride = kv->v_head_stride = int64_t{1 << 21} * 512;
    kv->k_sequence_stride = kv->v_sequence_stride = 4 * kv->k_head_stride;
  }
  for (const DeviceInfo& device : kDevices) {
    SCOPED_TRACE(device.name);
    for (BigProblem* big : {&one, &batch, &head_major}) {
      const Plan plan = plan_sanely(big->p, device);
      EXPECT_TRUE(plan.kernel == Kernel::single_pass || plan.kernel == Kernel::two_pass) << plan.reason;
      plan_sanely(big->p, device, Kernel::two_pass);
      plan_sanely(big->p, device, Kernel::prefill_unfused);  // key capacity 2M per chunk row
    }
  }
  // A long KV cache is what splits are for: one sequence on the H100 gets several.
  Plan plan;
  ASSERT_TRUE(plan_attention(one.p, h100_device(), Kernel::automatic, &plan).ok());
  EXPECT_GT(plan.num_splits, 1) << plan.reason;
}

// Page pools past 2^31 slots: 2^23 + 2^20 pages of 256 tokens (2.4e9 slots, 1.5e11 elements a
// pool), the sequences' pages at the far end of the pools, token- and head-major. The CPU
// backend reads the block table while validating (it is host memory there): the table is real.
TEST(LargeShapes, PagePoolsPast2To31Slots) {
  constexpr int64_t kPages = (int64_t{1} << 23) + (int64_t{1} << 20);
  constexpr int32_t kPageSize = 256, kMaxPages = 64;
  for (const bool head_major : {false, true}) {
    SCOPED_TRACE(head_major ? "head-major pages" : "token-major pages");
    BigProblem paged({1, 4, 1}, {kMaxPages * kPageSize, 5000, 300}, 1, 8, 1, 64);
    std::vector<int32_t> table(3 * kMaxPages);
    for (std::size_t i = 0; i < table.size(); ++i) table[i] = static_cast<int32_t>(kPages - 1 - 3 * i);
    set_paged_kv(paged.p, fake_address(2), fake_address(3), kPages, kPageSize, table.data(), kMaxPages, head_major);
    ASSERT_GT(Wide{kPages} * kPageSize, Wide{1} << 31);
    for (const DeviceInfo& device : kDevices) {
      SCOPED_TRACE(device.name);
      const Plan plan = plan_sanely(paged.p, device);
      EXPECT_TRUE(plan.kernel == Kernel::single_pass || plan.kernel == Kernel::two_pass) << plan.reason;
      plan_sanely(paged.p, device, Kernel::two_pass);
    }
    // A page index past the pool is caught where the host holds the table.
    table[5] = static_cast<int32_t>(kPages);
    Plan plan;
    EXPECT_TRUE(has_error(plan_attention(paged.p, cpu_device(), Kernel::automatic, &plan), StatusCode::invalid_argument,
                          {"kv.block_table[0][5]"}));
  }
}

TEST(LargeShapes, Int32LimitsOfTokensAndLengths) {
  // 2^31 - 1 tokens in one sequence, and a cache of as many slots: the most query_offsets and
  // kv_lengths (int32) can describe.
  const int32_t most = std::numeric_limits<int32_t>::max();
  BigProblem big({most}, {most}, most, 2, 1, 64);
  ASSERT_GT(big.q_elements(), Wide{1} << 37);
  for (const DeviceInfo& device : kDevices) {
    SCOPED_TRACE(device.name);
    for (Kernel forced : {Kernel::automatic, Kernel::single_pass, Kernel::two_pass, Kernel::prefill_unfused}) {
      plan_sanely(big.p, device, forced);
    }
  }
  // Many sequences whose offsets end at 2^31 - 1.
  std::vector<int32_t> suffixes(1000, most / 1000), lengths(1000, most / 1000 + 7);
  suffixes.back() += most % 1000;
  lengths.back() += most % 1000;
  BigProblem many(suffixes, lengths, most / 1000 + most % 1000 + 7, 8, 2, 128);
  EXPECT_EQ(many.p.total_tokens(), most);
  for (const DeviceInfo& device : kDevices) plan_sanely(many.p, device);
}

TEST(LargeShapes, StridesOfSingleElementDimsMayBeHuge) {
  // A dimension of one element never multiplies its stride: any value >= 0 is valid, and the
  // checks (and, on CUDA, the fused kernel's TMA stride test) must not overflow on it.
  BigProblem big({1}, {1}, 1, 1, 1, 128);
  big.p.q_token_stride = std::numeric_limits<int64_t>::max();
  big.p.out_token_stride = std::numeric_limits<int64_t>::max() / 3;
  big.p.kv.k_token_stride = std::numeric_limits<int64_t>::max();
  big.p.kv.v_sequence_stride = int64_t{1} << 62;
  big.p.lse_token_stride = std::numeric_limits<int64_t>::max();
  for (const DeviceInfo& device : kDevices) {
    SCOPED_TRACE(device.name);
    plan_sanely(big.p, device);
    plan_sanely(big.p, device, Kernel::prefill_unfused);
    Plan plan;
    const Status fused = plan_attention(big.p, device, Kernel::prefill_fused, &plan);
    EXPECT_EQ(fused.code(), StatusCode::unsupported) << fused.message();
  }
}

// The same kind of problem, run: one token, one cache slot, one sequence, so the token and
// sequence strides (2^40 and more) are never multiplied; the prefill pipeline passes the Q and
// K token strides to its matmuls as leading dimensions (which sgemm takes as int).
TEST(LargeShapes, HugeStridesOfSingleElementDimsRunOnTheCpu) {
  std::unique_ptr<Context> context;
  ASSERT_TRUE(Context::create(Backend::cpu, 0, nullptr, &context).ok());
  std::mt19937_64 rng = test_rng();
  SCOPED_TRACE(seed_note());
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (Kernel kernel : {Kernel::single_pass, Kernel::two_pass, Kernel::prefill_unfused}) {
      SCOPED_TRACE(std::string(to_string(dtype)) + ", " + to_string(kernel));
      const int32_t heads = 2, d = 64;
      std::vector<int32_t> offsets{0, 1}, lengths{1};
      AttentionProblem p;
      p.batch = 1;
      p.q_heads = p.kv_heads = heads;  // no GQA: the matmul takes f32 Q rows as they are
      p.head_dim = d;
      p.dtype = dtype;
      p.kv.capacity = 1;
      set_dense_strides(p);
      p.q_token_stride = int64_t{1} << 40;
      p.out_token_stride = int64_t{1} << 41;
      p.kv.k_token_stride = p.kv.v_token_stride = (int64_t{1} << 40) + 8;
      p.kv.k_sequence_stride = p.kv.v_sequence_stride = int64_t{1} << 50;
      p.lse_token_stride = int64_t{1} << 40;
      p.query_offsets = offsets.data();
      p.kv_lengths = lengths.data();
      const HostTensor q = random_tensor(rng, dtype, heads * d), k = random_tensor(rng, dtype, heads * d),
                       v = random_tensor(rng, dtype, heads * d);
      HostTensor out(dtype, heads * d);
      std::vector<float> lse(heads, 0.0f);
      p.q = q.data();
      p.kv.k = k.data();
      p.kv.v = v.data();
      p.out = out.data();
      p.lse = lse.data();
      check_host_attention(*context, p, kernel, out, lse);
    }
  }
}

TEST(LargeShapes, ExtentsPastInt64AreRejected) {
  const int64_t huge = int64_t{1} << 62;
  struct Case {
    const char* name;
    void (*mutate)(AttentionProblem&);
    const char* fragment;
  };
  const Case cases[] = {
      {"k sequence stride", [](AttentionProblem& p) { p.kv.k_sequence_stride = huge; }, "kv.k index arithmetic overflows int64"},
      {"v bytes", [](AttentionProblem& p) { p.kv.v_sequence_stride = huge / 2; }, "kv.v bytes index arithmetic overflows int64"},
      {"q token stride", [](AttentionProblem& p) { p.q_token_stride = huge; }, "q index arithmetic overflows int64"},
      {"out head stride", [](AttentionProblem& p) { p.out_head_stride = std::numeric_limits<int64_t>::max(); }, "out index arithmetic overflows int64"},
      {"lse token stride", [](AttentionProblem& p) { p.lse_token_stride = huge; }, "lse"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    BigProblem big({4, 9, 1}, {100, 9, 3}, 128, 8, 2, 128);
    c.mutate(big.p);
    for (const DeviceInfo& device : kDevices) {
      Plan plan;
      plan.reason = "untouched";
      EXPECT_TRUE(has_error(plan_attention(big.p, device, Kernel::automatic, &plan), StatusCode::invalid_argument,
                            {"plan_attention", c.fragment}));
      EXPECT_EQ(plan.reason, "untouched");
    }
  }
}

// ---- the CPU kernels on offsets past 2^31 elements, in sparse memory --------------------------------

// An anonymous private mapping with MAP_NORESERVE: address space only, pages backed when touched.
class SparseMemory {
 public:
  explicit SparseMemory(std::size_t bytes) : bytes_(bytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    data_ = p == MAP_FAILED ? nullptr : p;
  }
  ~SparseMemory() {
    if (data_) munmap(data_, bytes_);
  }
  SparseMemory(const SparseMemory&) = delete;
  SparseMemory& operator=(const SparseMemory&) = delete;
  void* data() const { return data_; }

 private:
  std::size_t bytes_;
  void* data_ = nullptr;
};

class LargeOffsetsTest : public ::testing::TestWithParam<Kernel> {};

TEST_P(LargeOffsetsTest, CpuKernelsIndexPast2To31Elements) {
  if (sizeof(void*) < 8) GTEST_SKIP() << "needs a 64-bit address space";
  const Kernel kernel = GetParam();
  std::unique_ptr<Context> context;
  ASSERT_TRUE(Context::create(Backend::cpu, 0, nullptr, &context).ok());
  std::mt19937_64 rng = test_rng();
  SCOPED_TRACE(seed_note());

  // Two sequences: the second starts 2^31 + 4096 elements into K and V; out and LSE are
  // head-major with head strides past 2^31 elements. bf16: K and V span 4 GiB each, out 13 GiB,
  // LSE 25 GiB of address space; a few hundred KiB are touched.
  const DType dtype = DType::bf16;
  const int32_t q_heads = 4, kv_heads = 2, d = 64;
  const bool decode = kernel != Kernel::prefill_unfused;
  const std::vector<int32_t> suffixes = decode ? std::vector<int32_t>{3, 8} : std::vector<int32_t>{12, 20};
  std::vector<int32_t> offsets{0, suffixes[0], suffixes[0] + suffixes[1]}, kv_lengths{suffixes[0] + 17, suffixes[1] + 30};
  const int64_t capacity = 64, tokens = offsets[2];
  const int64_t sequence_stride = (int64_t{1} << 31) + 4096;
  const int64_t out_head_stride = (int64_t{1} << 31) + 1024, lse_head_stride = (int64_t{1} << 31) + 3;

  AttentionProblem p;
  p.batch = 2;
  p.q_heads = q_heads;
  p.kv_heads = kv_heads;
  p.head_dim = d;
  p.dtype = dtype;
  p.kv.capacity = capacity;
  set_dense_strides(p);
  p.kv.k_sequence_stride = p.kv.v_sequence_stride = sequence_stride;
  p.out_token_stride = d;
  p.out_head_stride = out_head_stride;
  p.lse_token_stride = 1;
  p.lse_head_stride = lse_head_stride;
  p.query_offsets = offsets.data();
  p.kv_lengths = kv_lengths.data();
  p.mask.causal = true;
  p.mask.window = 40;
  std::vector<float> sinks(q_heads);
  for (float& s : sinks) s = std::uniform_real_distribution<float>(-1.0f, 2.0f)(rng);
  p.sinks = sinks.data();

  const std::size_t es = dtype_size(dtype);
  const std::size_t cache_bytes = static_cast<std::size_t>(sequence_stride + capacity * kv_heads * d) * es;
  const std::size_t out_bytes = static_cast<std::size_t>((q_heads - 1) * out_head_stride + tokens * d) * es;
  const std::size_t lse_bytes = static_cast<std::size_t>((q_heads - 1) * lse_head_stride + tokens) * sizeof(float);
  SparseMemory k(cache_bytes), v(cache_bytes), out(out_bytes), lse(lse_bytes);
  if (!k.data() || !v.data() || !out.data() || !lse.data()) {
    GTEST_SKIP() << "mmap(MAP_NORESERVE) of " << (cache_bytes * 2 + out_bytes + lse_bytes) / (1 << 30)
                 << " GiB of address space failed (ulimit -v?)";
  }
  HostTensor q = random_tensor(rng, dtype, tokens * q_heads * d);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  for (int32_t b = 0; b < 2; ++b) {
    for (int64_t slot = 0; slot < kv_lengths[b]; ++slot) {
      for (int64_t g = 0; g < kv_heads; ++g) {
        const int64_t at = b * sequence_stride + slot * p.kv.k_token_stride + g * p.kv.k_head_stride;
        for (int64_t x = 0; x < d; ++x) {
          store_from_float(k.data(), dtype, static_cast<std::size_t>(at + x), static_cast<float>(uniform(rng)));
          store_from_float(v.data(), dtype, static_cast<std::size_t>(at + x), static_cast<float>(uniform(rng)));
        }
      }
    }
  }
  p.q = q.data();
  p.kv.k = k.data();
  p.kv.v = v.data();
  p.out = out.data();
  p.lse = static_cast<float*>(lse.data());

  Plan plan;
  const Status status = attention(*context, p, kernel, &plan);
  ASSERT_TRUE(status.ok()) << status.message();
  EXPECT_EQ(plan.kernel, kernel);

  std::vector<double> ref_out, ref_lse;
  reference::attention(p, &ref_out, &ref_lse);
  std::vector<double> got_out, got_lse;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < q_heads; ++h) {
      for (int64_t x = 0; x < d; ++x) {
        got_out.push_back(load_as_float(out.data(), dtype, static_cast<std::size_t>(t * d + h * out_head_stride + x)));
      }
      got_lse.push_back(static_cast<const float*>(lse.data())[t + h * lse_head_stride]);
    }
  }
  EXPECT_TRUE(close_rel_l2(got_out, ref_out, relative_tolerance(dtype),
                           shape_index_name({"token", "head", "dim"}, {tokens, q_heads, d})));
  EXPECT_TRUE(close_abs(got_lse, ref_lse, lse_tolerance(dtype), shape_index_name({"token", "head"}, {tokens, q_heads})));
}

INSTANTIATE_TEST_SUITE_P(Kernels, LargeOffsetsTest,
                         ::testing::Values(Kernel::single_pass, Kernel::two_pass, Kernel::prefill_unfused),
                         [](const ::testing::TestParamInfo<Kernel>& info) {
                           return std::string("cpu_") + to_string(info.param);
                         });

}  // namespace
}  // namespace wideattn::test
