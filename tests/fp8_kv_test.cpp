// The fp8 (e4m3) KV cache: the host conversions, attention over an fp8 cache against the f64
// oracle (which reads the stored values times the scales), quantising writes, and the CUDA
// backend's refusal until its kernels exist.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <sstream>
#include <vector>

#include "attention_case.h"
#include "cpu/convert_rows.h"
#include "test_support.h"
#include "wideattn/convert.h"

namespace wideattn::test {
namespace {

TEST(Fp8E4m3, EveryCodeRoundTrips) {
  for (int code = 0; code < 256; ++code) {
    const float value = fp8_e4m3_to_float(static_cast<uint8_t>(code));
    if ((code & 0x7f) == 0x7f) {
      EXPECT_TRUE(std::isnan(value)) << "code " << code;
      continue;
    }
    EXPECT_TRUE(std::isfinite(value)) << "code " << code;
    EXPECT_EQ(float_to_fp8_e4m3(value), code) << "code " << code << " = " << value;
  }
}

// The CPU kernels' row conversion (vectorised where AVX-512 is built) agrees with the reference
// decoder on every code, at every position of a vector and in the tail.
TEST(Fp8E4m3, RowConversionMatchesEveryCode) {
  std::vector<uint8_t> codes(256 * 3 + 5);
  for (std::size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint8_t>(i * 7 + i / 256);
  std::vector<float> row(codes.size());
  detail::cpu::convert_to_f32(codes.data(), DType::fp8_e4m3, row.data(), static_cast<int64_t>(codes.size()));
  for (std::size_t i = 0; i < codes.size(); ++i) {
    const float want = fp8_e4m3_to_float(codes[i]);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(row[i])) << "code " << int{codes[i]} << " at " << i;
    } else {
      EXPECT_EQ(row[i], want) << "code " << int{codes[i]} << " at " << i;
      EXPECT_EQ(std::signbit(row[i]), std::signbit(want)) << "code " << int{codes[i]} << " at " << i;
    }
  }
}

TEST(Fp8E4m3, RoundsToNearestEvenAndSaturates) {
  struct Case {
    float in;
    uint8_t out;
  };
  const Case cases[] = {
      {1.0f, 0x38},          {448.0f, 0x7e},       {-448.0f, 0xfe},  {500.0f, 0x7e},
      {1e30f, 0x7e},         {0.0f, 0x00},         {-0.0f, 0x80},    {0x1p-9f, 0x01},
      {0x1p-10f, 0x00},      {0x3p-10f, 0x02},     {0x1.2p0f, 0x39}, {1.0625f, 0x38},
      {1.1875f, 0x3a},       {0x1.ep-7f, 0x08},    {240.0f, 0x77},   {464.0f, 0x7e},
      {0.015625f, 0x08},     {-3.0f, 0xc4},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(float_to_fp8_e4m3(c.in), c.out) << c.in;
  }
  EXPECT_EQ(float_to_fp8_e4m3(std::numeric_limits<float>::infinity()) & 0x7f, 0x7f);
  EXPECT_EQ(float_to_fp8_e4m3(std::numeric_limits<float>::quiet_NaN()) & 0x7f, 0x7f);
  EXPECT_EQ(fp8_e4m3_to_float(0x7e), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0x01), 0x1p-9f);
  EXPECT_EQ(fp8_e4m3_to_float(0x08), 0x1p-6f);
  EXPECT_EQ(dtype_size(DType::fp8_e4m3), 1u);
}

// The widening to bf16 that the CPU decode uses: the decoder's value (bf16 holds every e4m3
// value) on every code, in the table lookup's 32-code steps, the 16-code steps and the tail.
TEST(Fp8E4m3, Bf16WideningMatchesEveryCode) {
  for (const std::size_t length : {std::size_t{256 * 3 + 5}, std::size_t{16 + 7}, std::size_t{9}}) {
    std::vector<uint8_t> codes(length);
    for (std::size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint8_t>(i * 7 + i / 256);
    std::vector<uint16_t> row(codes.size());
    detail::cpu::convert_fp8_to_bf16(codes.data(), row.data(), static_cast<int64_t>(codes.size()));
    for (std::size_t i = 0; i < codes.size(); ++i) {
      const float want = fp8_e4m3_to_float(codes[i]);
      const float got = bf16_to_float(row[i]);
      if (std::isnan(want)) {  // a NaN's sign carries nothing
        EXPECT_TRUE(std::isnan(got)) << "code " << int{codes[i]} << " at " << i;
      } else {
        EXPECT_EQ(got, want) << "code " << int{codes[i]} << " at " << i;
        EXPECT_EQ(std::signbit(got), std::signbit(want)) << "code " << int{codes[i]} << " at " << i;
      }
    }
  }
}

using Fp8KvTest = BackendTest;

AttentionCase fp8_case(int32_t head_dim) {
  AttentionCase c;
  c.head_dim = head_dim;
  c.dtype = DType::bf16;
  c.q_heads = 8;
  c.kv_heads = 2;
  c.fp8_kv = true;
  return c;
}

// Both backends run every variant; CUDA's prefill gathers the rows into the queries' dtype.
TEST_P(Fp8KvTest, AttentionMatchesTheOracle) {
  const bool cuda = backend() == Backend::cuda;
  struct Variant {
    Kernel kernel;
    std::vector<SequenceShape> sequences;
    int32_t page_size;
    bool per_head, sinks;
    int32_t window;
  };
  const Variant variants[] = {
      {Kernel::single_pass, {{1, 300}, {4, 77}}, 0, false, false, 0},
      {Kernel::two_pass, {{1, 700}, {2, 3}}, 16, true, true, 0},
      {Kernel::prefill_unfused, {{40, 90}, {13, 13}}, 0, true, false, 0},
      {Kernel::prefill_unfused, {{33, 200}, {7, 60}}, 32, false, true, 48},
      {Kernel::automatic, {{1, 64}, {20, 120}, {1, 5}}, 0, false, false, 0},
      // Speculative steps, a window, per-head scales and 64-token pages (CUDA's decode kernels).
      {Kernel::automatic, {{4, 1000}, {8, 96}, {3, 33}}, 64, true, false, 0},
      {Kernel::two_pass, {{2, 4000}, {1, 517}}, 0, false, true, 300},
  };
  for (const int32_t head_dim : {64, 256, 512}) {
    for (const Variant& v : variants) {
      AttentionCase c = fp8_case(head_dim);
      c.sequences = v.sequences;
      c.page_size = v.page_size;
      c.kv_scales_per_head = v.per_head;
      c.sinks = v.sinks;
      c.window = v.window;
      c.nan_past_kv_length = true;
      SCOPED_TRACE(c.describe() + ", " + to_string(v.kernel));
      check_attention(context(), rng(), c, v.kernel);
    }
  }
  // f32 queries over an fp8 cache: dequantised exactly, so f32's tolerance holds (CPU only).
  if (cuda) return;
  AttentionCase f32 = fp8_case(128);
  f32.dtype = DType::f32;
  f32.sequences = {{1, 100}, {30, 100}};
  check_attention(context(), rng(), f32, Kernel::automatic);
}

// The shapes of the wgmma decode kernel (head_dim 512 over an fp8 cache, chosen by dispatch on
// Hopper): 8, 16 and 32 query rows per KV head, lengths around its 64-key tiles, splits, pages
// of 16 to 256 rows in shuffled order, head-major pools, every mask, sinks, soft-cap; NaN in
// every unused slot and spare page. On the CPU the same cases check the reference kernels.
TEST_P(Fp8KvTest, WideHeadDecodeShapesMatchTheOracle) {
  struct Variant {
    int32_t q_heads, kv_heads;
    DType dtype;
    Kernel kernel;
    std::vector<SequenceShape> sequences;
    int32_t page_size;
    bool per_head, sinks, head_major;
    int32_t window;
    float softcap;
    int32_t ring_length, ring_offset;
    bool tree;
  };
  const Variant variants[] = {
      // 31B (32/4): 8 rows; lengths of 1, 63, 64 + 1 keys and a long one
      {32, 4, DType::bf16, Kernel::automatic, {{1, 3000}, {1, 63}, {1, 65}, {1, 1}}, 0, false, false, false, 0, 0.0f, 0, 0, false},
      {32, 4, DType::bf16, Kernel::two_pass, {{1, 2500}, {1, 129}}, 16, true, true, false, 0, 0.0f, 0, 0, false},
      // 26B (16/2), 2 tokens: 16 rows; f16 queries, soft-cap, pages of 32
      {16, 2, DType::f16, Kernel::automatic, {{2, 777}, {2, 130}, {1, 64}}, 32, true, false, false, 0, 30.0f, 0, 0, false},
      // 4 tokens x 8: 32 rows; a window, pages of 64, split
      {32, 4, DType::bf16, Kernel::two_pass, {{4, 2000}, {3, 70}, {4, 4}}, 64, false, true, false, 300, 0.0f, 0, 0, false},
      // E4B (8/2): 4 rows; head-major pools, pages of 256
      {8, 2, DType::bf16, Kernel::automatic, {{1, 5000}, {2, 129}}, 256, false, false, true, 0, 0.0f, 0, 0, false},
      // a ring cache and a speculative tree (32 rows)
      {32, 4, DType::bf16, Kernel::automatic, {{1, 300}, {2, 200}}, 0, false, true, false, 0, 0.0f, 256, 70, false},
      {32, 4, DType::f16, Kernel::two_pass, {{4, 900}, {3, 40}}, 16, false, false, false, 0, 0.0f, 0, 0, true},
  };
  for (const Variant& v : variants) {
    AttentionCase c = fp8_case(512);
    c.q_heads = v.q_heads;
    c.kv_heads = v.kv_heads;
    c.dtype = v.dtype;
    c.sequences = v.sequences;
    c.page_size = v.page_size;
    c.kv_scales_per_head = v.per_head;
    c.sinks = v.sinks;
    c.kv_head_major = v.head_major;
    c.window = v.window;
    c.softcap = v.softcap;
    c.ring_length = v.ring_length;
    c.ring_offset = v.ring_offset;
    c.tree = v.tree;
    c.nan_past_kv_length = true;
    c.extra_capacity = 70;  // NaN slots past a tile's end
    SCOPED_TRACE(c.describe() + ", " + to_string(v.kernel));
    AttentionOutcome outcome;
    check_attention(context(), rng(), c, v.kernel, &outcome);
    const DeviceInfo& device = context().device();
    const bool hopper = device.backend == Backend::cuda && device.compute_capability == 90;
    if (hopper) EXPECT_NE(outcome.plan.reason.find("wgmma kernel"), std::string::npos) << outcome.plan.reason;
    // The serving way too (metadata on the device, a plan from bounds: suffixes up to 8, so
    // 32 rows at gqa 4).
    if (v.q_heads / v.kv_heads <= 4 && v.kernel == Kernel::automatic) {
      SCOPED_TRACE("plan from bounds");
      check_attention(context(), rng(), c, v.kernel, &outcome, run_from_bounds);
      if (hopper) EXPECT_NE(outcome.plan.reason.find("wgmma kernel"), std::string::npos) << outcome.plan.reason;
    }
  }
}

// A 31B-shaped decode problem (32/4 heads, head_dim 512, bf16 queries) over a dense fp8 cache
// of `capacity` rows a sequence; the caller sets the tensors, metadata and scales.
AttentionProblem wide_fp8_problem(int32_t batch, int64_t capacity) {
  AttentionProblem p;
  p.batch = batch;
  p.q_heads = 32;
  p.kv_heads = 4;
  p.head_dim = 512;
  p.dtype = DType::bf16;
  p.kv.capacity = capacity;
  set_dense_strides(p);
  p.kv.fp8 = true;
  return p;
}

// The NaN policy over an fp8 cache at head_dim 512 (the wgmma kernel on Hopper): NaN codes in
// K and V rows that a sliding window hides, in tiles the kernel streams next to visible rows,
// reach no output. The result equals the clean cache's within the dtype's tolerance, single
// pass and split; inf-free garbage would pass unnoticed, so the rows hold NaN codes.
TEST_P(Fp8KvTest, NanCodesInRowsAWindowHidesReachNoOutput) {
  constexpr int32_t kQHeads = 32, kKvHeads = 4, kDim = 512, kCapacity = 300;
  const int32_t offsets[3] = {0, 1, 3}, lengths[2] = {300, 200};
  const int64_t row_bytes = int64_t{kKvHeads} * kDim;  // one cache row, every KV head
  std::mt19937_64& r = rng();
  const HostTensor q = random_tensor(r, DType::bf16, int64_t{3} * kQHeads * kDim);
  auto random_codes = [&] {
    std::vector<uint8_t> codes(2 * kCapacity * row_bytes);
    for (uint8_t& c : codes) {
      do c = static_cast<uint8_t>(r() & 0xbf);  // |x| < 2
      while ((c & 0x7f) == 0x7f);
    }
    return codes;
  };
  const std::vector<uint8_t> k = random_codes(), v = random_codes();
  std::vector<uint8_t> k_nan = k, v_nan = v;
  // Window 100: sequence 0's query (position 299) sees keys 200-299, sequence 1's (198, 199)
  // keys 99-199. Hidden rows in the same 64-key tiles as visible ones, and whole hidden tiles.
  for (const int64_t row : {int64_t{5}, int64_t{150}, int64_t{199}, kCapacity + int64_t{0},
                            kCapacity + int64_t{60}, kCapacity + int64_t{98}}) {
    std::fill_n(k_nan.begin() + row * row_bytes, row_bytes, uint8_t{0x7f});
    std::fill_n(v_nan.begin() + row * row_bytes, row_bytes, uint8_t{0xff});
  }
  const float scales[2] = {0.5f, 2.0f};
  auto run = [&](const std::vector<uint8_t>& keys, const std::vector<uint8_t>& values, Kernel kernel) {
    const auto q_device = to_device(context(), q.data(), q.bytes());
    const auto k_device = to_device(context(), keys.data(), keys.size());
    const auto v_device = to_device(context(), values.data(), values.size());
    const auto scales_device = to_device(context(), scales, sizeof(scales));
    GuardedOutput out(context(), DType::bf16, q.size());
    out.upload();
    AttentionProblem p = wide_fp8_problem(2, kCapacity);
    p.query_offsets = offsets;
    p.kv_lengths = lengths;
    p.q = q_device->get();
    p.out = out.data();
    p.kv.k = k_device->get();
    p.kv.v = v_device->get();
    p.kv.k_scale = static_cast<const float*>(scales_device->get());
    p.kv.v_scale = p.kv.k_scale + 1;
    p.mask.window = 100;
    Plan plan;
    WA_EXPECT_OK(attention(context(), p, kernel, &plan));
    WA_EXPECT_OK(context().synchronize());
    out.download();
    std::vector<double> values_out(q.size());
    for (int64_t i = 0; i < q.size(); ++i) values_out[i] = out.value(i);
    return std::make_pair(values_out, plan.reason);
  };
  for (const Kernel kernel : {Kernel::single_pass, Kernel::two_pass}) {
    const auto clean = run(k, v, kernel);
    const auto poisoned = run(k_nan, v_nan, kernel);
    SCOPED_TRACE(std::string(to_string(kernel)) + ": " + poisoned.second);
    double error = 0.0, norm = 0.0;
    for (std::size_t i = 0; i < clean.first.size(); ++i) {
      ASSERT_TRUE(std::isfinite(poisoned.first[i])) << "element " << i;
      error += (poisoned.first[i] - clean.first[i]) * (poisoned.first[i] - clean.first[i]);
      norm += clean.first[i] * clean.first[i];
    }
    EXPECT_LE(std::sqrt(error / norm), relative_tolerance(DType::bf16));
  }
}

// The CUDA decode kernels read an fp8 cache's queries and write its outputs as 16-byte vectors
// (the wgmma kernel at head_dim 512 too): query rows 8 bytes off that alignment are refused
// with a status naming why, before anything is written. The CPU reads any layout.
TEST_P(Fp8KvTest, UnalignedQueryRowsAreRefusedOnCudaBeforeAnyWrite) {
  constexpr int32_t kQHeads = 32, kKvHeads = 4, kDim = 512, kCapacity = 100, kHeadStride = kDim + 4;
  const int32_t offsets[2] = {0, 1}, lengths[1] = {kCapacity};
  std::mt19937_64& r = rng();
  const HostTensor q = random_tensor(r, DType::bf16, int64_t{kQHeads} * kHeadStride);
  std::vector<uint8_t> codes(2 * int64_t{kCapacity} * kKvHeads * kDim);
  for (uint8_t& c : codes) c = static_cast<uint8_t>(r() & 0xbf);  // |x| < 2, no NaN codes
  const float scale = 0.5f;
  const auto q_device = to_device(context(), q.data(), q.bytes());
  const auto kv_device = to_device(context(), codes.data(), codes.size());
  const auto scale_device = to_device(context(), &scale, sizeof(scale));
  GuardedOutput out(context(), DType::bf16, int64_t{kQHeads} * kDim);
  out.upload();
  AttentionProblem p = wide_fp8_problem(1, kCapacity);
  p.q_head_stride = kHeadStride;  // odd heads' rows start 8 bytes past a 16-byte boundary
  p.q_token_stride = int64_t{kQHeads} * kHeadStride;
  p.query_offsets = offsets;
  p.kv_lengths = lengths;
  p.q = q_device->get();
  p.out = out.data();
  p.kv.k = kv_device->get();
  p.kv.v = static_cast<const uint8_t*>(kv_device->get()) + codes.size() / 2;
  p.kv.k_scale = p.kv.v_scale = static_cast<const float*>(scale_device->get());
  for (const Kernel kernel : {Kernel::automatic, Kernel::single_pass, Kernel::two_pass}) {
    SCOPED_TRACE(to_string(kernel));
    const Status status = attention(context(), p, kernel);
    WA_EXPECT_OK(context().synchronize());
    out.download();
    if (backend() == Backend::cuda) {
      EXPECT_TRUE(has_error(status, StatusCode::unsupported, {"kv.fp8 = true", "16-byte aligned rows"}));
      EXPECT_TRUE(out.unchanged());
    } else {
      WA_EXPECT_OK(status);
      for (int64_t i = 0; i < out.size(); ++i) ASSERT_TRUE(std::isfinite(out.value(i))) << "element " << i;
    }
  }
}

WA_INSTANTIATE_BACKENDS(Fp8KvTest);


// A small host-memory problem and write over an fp8 cache (planning and validation read no
// tensor data).
struct Fp8Setup {
  explicit Fp8Setup(int32_t suffix = 1) {
    offsets[1] = suffix;
    q.resize(static_cast<std::size_t>(suffix) * 4 * 64);
    out.resize(q.size());
    p.batch = 1;
    p.q_heads = 4;
    p.kv_heads = 2;
    p.head_dim = 64;
    p.dtype = DType::bf16;
    p.kv.capacity = 16;
    set_dense_strides(p);
    p.query_offsets = offsets;
    p.kv_lengths = lengths;
    p.q = q.data();
    p.out = out.data();
    p.kv.k = cache.data();
    p.kv.v = cache.data() + cache.size() / 2;
    p.kv.fp8 = true;
    p.kv.k_scale = &scale;
    p.kv.v_scale = &scale;
  }
  int32_t offsets[2] = {0, 1}, lengths[1] = {10};  // a suffix of at most 10
  float scale = 0.5f;
  std::vector<uint16_t> q = std::vector<uint16_t>(4 * 64), out = std::vector<uint16_t>(4 * 64);
  std::vector<uint8_t> cache = std::vector<uint8_t>(2 * 16 * 2 * 64);
  AttentionProblem p;
};

// CUDA plans fp8 decode steps on its tensor-core kernels and prefill on the unfused pipeline (the
// fused kernels say why not), and refuses f32 queries naming why; the CPU runs every kernel.
TEST(Fp8Kv, CudaPlansDecodeAndUnfusedPrefillRefusesF32QueriesAndScalesNeedIt) {
  Fp8Setup s;
  Plan plan;
  WA_EXPECT_OK(plan_attention(s.p, h100_device(), Kernel::automatic, &plan));
  EXPECT_TRUE(plan.kernel == Kernel::single_pass || plan.kernel == Kernel::two_pass) << plan.reason;
  Fp8Setup prefill(10);
  WA_EXPECT_OK(plan_attention(prefill.p, h100_device(), Kernel::automatic, &plan));
  EXPECT_EQ(plan.kernel, Kernel::prefill_unfused) << plan.reason;
#if defined(WIDEATTN_WITH_CUDA)  // else the fused kernels' reason is that they were not built
  EXPECT_NE(plan.reason.find("fp8 KV cache: not served by the fused kernels yet"), std::string::npos) << plan.reason;
  EXPECT_TRUE(has_error(plan_attention(prefill.p, h100_device(), Kernel::prefill_fused, &plan), StatusCode::unsupported,
                        {"prefill_fused", "fp8 KV cache"}));
#else
  EXPECT_NE(plan.reason.find("built without the CUDA backend"), std::string::npos) << plan.reason;
#endif
  WA_EXPECT_OK(plan_attention(prefill.p, cpu_device(), Kernel::automatic, &plan));
  Fp8Setup f32;
  f32.p.dtype = DType::f32;
  f32.q.resize(f32.q.size() * 2);
  f32.out.resize(f32.out.size() * 2);
  f32.p.q = f32.q.data();
  f32.p.out = f32.out.data();
  EXPECT_TRUE(has_error(plan_attention(f32.p, h100_device(), Kernel::automatic, &plan), StatusCode::unsupported,
                        {"kv.fp8 = true with dtype = f32 on cuda", "f16 or bf16"}));
  WA_EXPECT_OK(plan_attention(s.p, cpu_device(), Kernel::automatic, &plan));
  // The fp8 cache's extent is one byte per element: a 16-bit cache of the same strides would
  // overlap out placed right after the pools' bytes; an fp8 one does not.
  s.p.kv.fp8 = false;
  EXPECT_TRUE(has_error(plan_attention(s.p, cpu_device(), Kernel::automatic, &plan), StatusCode::invalid_argument,
                        {"kv.k_scale/kv.v_scale/kv.scales_per_head", "kv.fp8 = false"}));
}

// Dispatch names the wgmma decode kernel for head_dim 512 over an fp8 cache on sm_90, and only
// there (planning is pure: this runs without a GPU).
TEST(Fp8Kv, DispatchNamesTheWgmmaDecodeKernel) {
  Fp8Setup s;
  std::vector<uint16_t> q(5 * 32 * 512), out(5 * 32 * 512);
  std::vector<uint8_t> cache(2 * 64 * 4 * 512 * 2);  // room for a 16-bit cache of the same shape
  s.p.q_heads = 32;
  s.p.kv_heads = 4;
  s.p.head_dim = 512;
  s.p.kv.capacity = 64;
  set_dense_strides(s.p);
  s.p.q = q.data();
  s.p.out = out.data();
  s.p.kv.k = cache.data();
  s.p.kv.v = cache.data() + cache.size() / 2;
  Plan plan;
  WA_EXPECT_OK(plan_attention(s.p, h100_device(), Kernel::automatic, &plan));
#if defined(WIDEATTN_WITH_CUDA)
  EXPECT_NE(plan.reason.find("wgmma kernel"), std::string::npos) << plan.reason;
#endif
  // Where it does not serve, the mma kernel runs: more than 32 query rows per KV head (5 tokens
  // x gqa 8), pages of 8 rows, another GPU, another head_dim.
  auto mma_kernel = [&](const char* what, const DeviceInfo& device) {
    WA_EXPECT_OK(plan_attention(s.p, device, Kernel::automatic, &plan));
    EXPECT_EQ(plan.reason.find("wgmma"), std::string::npos) << what << ": " << plan.reason;
  };
  s.offsets[1] = 5;
  mma_kernel("40 rows", h100_device());
  s.offsets[1] = 1;
  DeviceInfo a100 = h100_device();
  a100.compute_capability = 80;
  mma_kernel("sm_80", a100);
  s.p.head_dim = 256;
  set_dense_strides(s.p);
  mma_kernel("head_dim 256", h100_device());
  s.p.head_dim = 512;
  set_dense_strides(s.p);
  s.p.kv.fp8 = false;  // a 16-bit cache stays on the mma kernel
  s.p.kv.k_scale = s.p.kv.v_scale = nullptr;
  mma_kernel("16-bit cache", h100_device());
  s.p.kv.fp8 = true;
  s.p.kv.k_scale = s.p.kv.v_scale = &s.scale;
  const int32_t block_table[8] = {3, 1, 2, 0, 4, 5, 6, 7};
  set_paged_kv(s.p, s.p.kv.k, s.p.kv.v, 8, 8, block_table, 8, /*head_major=*/false);
  mma_kernel("pages of 8", h100_device());
  set_paged_kv(s.p, s.p.kv.k, s.p.kv.v, 4, 16, block_table, 4, /*head_major=*/false);
  WA_EXPECT_OK(plan_attention(s.p, h100_device(), Kernel::automatic, &plan));
#if defined(WIDEATTN_WITH_CUDA)
  EXPECT_NE(plan.reason.find("wgmma kernel"), std::string::npos) << "pages of 16: " << plan.reason;
#endif
}

using Fp8WriteKvTest = BackendTest;

// write_kv into an fp8 cache stores round(x / scale) per head; every other byte is unchanged.
TEST_P(Fp8WriteKvTest, QuantisesIntoTheCache) {
  constexpr int32_t kHeads = 2, kDim = 64, kTokens = 5, kCapacity = 8;
  HostTensor k_new = random_tensor(rng(), DType::bf16, kTokens * kHeads * kDim, -300.0, 300.0);
  // Codes at the edges (token 0, head 0, x scale 0.5 -> x2): NaN of both signs, infinities,
  // the saturation band around 448, signed zero, subnormal codes and their rounding ties.
  const double specials[] = {std::nan(""), -std::nan(""), INFINITY, -INFINITY, 224.0, 232.0, 236.0, 240.0, -250.0,
                             -0.0, 0x1p-11, 0x3p-12, 0x5p-12, 0x1p-12, 0x1p-13, 0x7p-11, 0xfp-12, 0x1.1p-7};
  for (std::size_t i = 0; i < sizeof(specials) / sizeof(specials[0]); ++i) k_new.set(static_cast<int64_t>(i), specials[i]);
  const HostTensor v_new = random_tensor(rng(), DType::bf16, kTokens * kHeads * kDim, -3.0, 3.0);
  const std::vector<int32_t> slots = {3, -1, 0, 7, 5};
  // Scales whose reciprocal is not exact (3) or overflows (a subnormal): x / scale is divided,
  // not multiplied by the reciprocal (the fuzz target found v / 1.66e-39 stored as NaN, not -448).
  const std::vector<float> k_scales = {0.5f, 3.0f}, v_scales = {0x1p-130f, 1.0f};
  std::vector<uint8_t> initial(static_cast<std::size_t>(2) * kCapacity * kHeads * kDim, 0x11);
  auto k_device = to_device(context(), k_new.data(), k_new.bytes());
  auto v_device = to_device(context(), v_new.data(), v_new.bytes());
  auto slots_device = to_device(context(), slots.data(), slots.size() * sizeof(int32_t));
  auto cache_device = to_device(context(), initial.data(), initial.size());
  auto k_scale_device = to_device(context(), k_scales.data(), k_scales.size() * sizeof(float));
  auto v_scale_device = to_device(context(), v_scales.data(), v_scales.size() * sizeof(float));
  WriteKvArguments a;
  a.dtype = DType::bf16;
  a.tokens = kTokens;
  a.kv_heads = kHeads;
  a.head_dim = kDim;
  a.k_new = k_device->get();
  a.k_new_token_stride = kHeads * kDim;
  a.k_new_head_stride = kDim;
  a.v_new = v_device->get();
  a.v_new_token_stride = kHeads * kDim;
  a.v_new_head_stride = kDim;
  a.slot_mapping = static_cast<const int32_t*>(slots_device->get());
  a.kv.k = cache_device->get();
  a.kv.v = static_cast<const uint8_t*>(cache_device->get()) + initial.size() / 2;
  a.kv.capacity = kCapacity;
  a.kv.k_sequence_stride = a.kv.v_sequence_stride = kCapacity * kHeads * kDim;
  a.kv.k_token_stride = a.kv.v_token_stride = kHeads * kDim;
  a.kv.k_head_stride = a.kv.v_head_stride = kDim;
  a.kv.fp8 = true;
  a.kv.scales_per_head = true;
  a.kv.k_scale = static_cast<const float*>(k_scale_device->get());
  a.kv.v_scale = static_cast<const float*>(v_scale_device->get());
  WA_ASSERT_OK(write_kv(context(), a));
  std::vector<uint8_t> cache(initial.size());
  WA_ASSERT_OK(context().copy(cache.data(), cache_device->get(), cache.size(), CopyKind::device_to_host));
  std::vector<uint8_t> expected = initial;
  for (int32_t t = 0; t < kTokens; ++t) {
    if (slots[t] < 0) continue;
    for (int32_t g = 0; g < kHeads; ++g) {
      for (int32_t x = 0; x < kDim; ++x) {
        const int64_t at = (int64_t{slots[t]} * kHeads + g) * kDim + x, from = (int64_t{t} * kHeads + g) * kDim + x;
        expected[at] = float_to_fp8_e4m3(static_cast<float>(k_new.get(from)) / k_scales[g]);
        expected[initial.size() / 2 + at] = float_to_fp8_e4m3(static_cast<float>(v_new.get(from)) / v_scales[g]);
      }
    }
  }
  int64_t wrong = 0;
  std::ostringstream first;
  for (std::size_t i = 0; i < cache.size(); ++i) {
    if (cache[i] == expected[i]) continue;
    if (wrong++ < 5) {
      first << "\n  byte " << i << ": 0x" << std::hex << int{cache[i]} << ", expected 0x" << int{expected[i]} << std::dec;
    }
  }
  EXPECT_EQ(wrong, 0) << "of " << cache.size() << " cache bytes" << first.str();
}

WA_INSTANTIATE_BACKENDS(Fp8WriteKvTest);

}  // namespace
}  // namespace wideattn::test
