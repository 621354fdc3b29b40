// plan_attention: the kernel choice (prefill above a suffix of 8, single/two_pass otherwise),
// the workspace and reason it reports, forced kernels, and that attention() runs what it plans.
// plan_attention is pure, so most of this runs against described devices, with no GPU needed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "test_support.h"

namespace wideattn::test {
namespace {

// A problem whose tensors are host vectors: planning never reads them.
struct PlanProblem {
  PlanProblem(std::vector<int32_t> suffixes, std::vector<int32_t> kv, int32_t q_heads = 8, int32_t kv_heads = 2,
              int32_t head_dim = 128) {
    offsets.push_back(0);
    for (int32_t s : suffixes) offsets.push_back(offsets.back() + s);
    kv_lengths = kv;
    int64_t capacity = 1;
    for (int32_t k : kv) capacity = std::max<int64_t>(capacity, k);
    p.batch = static_cast<int32_t>(suffixes.size());
    p.q_heads = q_heads;
    p.kv_heads = kv_heads;
    p.head_dim = head_dim;
    p.dtype = DType::bf16;
    p.kv.capacity = capacity;
    set_dense_strides(p);
    p.query_offsets = offsets.data();
    p.kv_lengths = kv_lengths.data();
    const std::size_t tokens = static_cast<std::size_t>(offsets.back());
    q.resize(tokens * q_heads * head_dim);
    out.resize(q.size());
    cache.resize(2 * static_cast<std::size_t>(p.batch) * capacity * kv_heads * head_dim);
    p.q = q.data();
    p.kv.k = cache.data();
    p.kv.v = cache.data() + cache.size() / 2;
    p.out = out.data();
  }
  // Makes the cache paged: pools of pages of `page_size` tokens in `cache`, identity table.
  void use_pages(int32_t page_size) {
    const int32_t max_pages = static_cast<int32_t>((p.kv.capacity + page_size - 1) / page_size);
    table.resize(static_cast<std::size_t>(p.batch) * max_pages);
    for (std::size_t i = 0; i < table.size(); ++i) table[i] = static_cast<int32_t>(i);
    cache.resize(2 * table.size() * page_size * p.kv_heads * p.head_dim);
    set_paged_kv(p, cache.data(), cache.data() + cache.size() / 2, static_cast<int64_t>(table.size()), page_size,
                 table.data(), max_pages);
  }
  std::vector<int32_t> offsets, kv_lengths, table;
  std::vector<uint16_t> q, out, cache;
  AttentionProblem p;
};

Plan plan_or_fail(const AttentionProblem& p, const DeviceInfo& device, Kernel forced = Kernel::automatic) {
  Plan plan;
  const Status status = plan_attention(p, device, forced, &plan);
  EXPECT_TRUE(status.ok()) << status.message();
  return plan;
}

const DeviceInfo kDevices[] = {cpu_device(), h100_device()};

TEST(Dispatch, SuffixAboveEightGoesToPrefill) {
  for (const DeviceInfo& device : kDevices) {
    SCOPED_TRACE(device.name);
    PlanProblem problem({9, 1}, {200, 40});
    const Plan plan = plan_or_fail(problem.p, device, Kernel::prefill_unfused);
    EXPECT_EQ(plan.kernel, Kernel::prefill_unfused);
    EXPECT_GT(plan.workspace_bytes, 0u);
    EXPECT_GE(plan.query_rows_per_chunk, 1);
    EXPECT_LE(plan.query_rows_per_chunk, 9);
    const Plan automatic = plan_or_fail(problem.p, device);
    EXPECT_TRUE(automatic.kernel == Kernel::prefill_unfused || automatic.kernel == Kernel::prefill_fused)
        << automatic.reason;
    EXPECT_NE(automatic.reason.find("9 > 8"), std::string::npos) << automatic.reason;
  }
}

// Hopper, 16-bit, head_dim 64/128/256: the fused kernel; anything it does not serve falls back
// to the unfused pipeline and the plan says why.
TEST(Dispatch, FusedPrefillOnHopperWithReasonsForFallbacks) {
  PlanProblem problem({100, 30}, {100, 300});
  Plan plan = plan_or_fail(problem.p, h100_device());
#if defined(WIDEATTN_WITH_CUDA)
  EXPECT_EQ(plan.kernel, Kernel::prefill_fused) << plan.reason;
  EXPECT_NE(plan.reason.find("fused Hopper kernel"), std::string::npos) << plan.reason;
  EXPECT_EQ(plan.workspace_bytes, 0u);
  EXPECT_EQ(plan_or_fail(problem.p, h100_device(), Kernel::prefill_fused).kernel, Kernel::prefill_fused);
#else
  EXPECT_EQ(plan.kernel, Kernel::prefill_unfused) << plan.reason;
  EXPECT_NE(plan.reason.find("built without the CUDA backend"), std::string::npos) << plan.reason;
#endif
  struct Fallback {
    const char* fragment;
    std::function<void(PlanProblem&, DeviceInfo&)> change;
  };
  const Fallback fallbacks[] = {
      {"needs a CUDA device", [](PlanProblem&, DeviceInfo& d) { d = cpu_device(); }},
      {"sm_80", [](PlanProblem&, DeviceInfo& d) { d.compute_capability = 80; }},
      {"f16 or bf16", [](PlanProblem& p, DeviceInfo&) { p.p.dtype = DType::f32; }},
      {"multiples of 8", [](PlanProblem& p, DeviceInfo&) { p.p.q_token_stride += 4; }},
      {"pages of at least 16", [](PlanProblem& p, DeviceInfo&) { p.use_pages(8); }},
  };
  for (const Fallback& f : fallbacks) {
    SCOPED_TRACE(f.fragment);
    PlanProblem changed({100, 3}, {150, 300}, 8, 2, 128);
    // Room for f32 elements and the wider strides (planning reads none of it).
    for (auto* buffer : {&changed.q, &changed.out, &changed.cache}) buffer->resize(buffer->size() * 2 + 64);
    changed.p.q = changed.q.data();
    changed.p.out = changed.out.data();
    changed.p.kv.k = changed.cache.data();
    changed.p.kv.v = changed.cache.data() + changed.cache.size() / 2;
    DeviceInfo device = h100_device();
    f.change(changed, device);
    plan = plan_or_fail(changed.p, device);
    EXPECT_EQ(plan.kernel, Kernel::prefill_unfused) << plan.reason;
#if defined(WIDEATTN_WITH_CUDA)
    EXPECT_NE(plan.reason.find(f.fragment), std::string::npos) << plan.reason;
    EXPECT_TRUE(has_error(plan_attention(changed.p, device, Kernel::prefill_fused, &plan),
                          StatusCode::unsupported, {"prefill_fused", f.fragment}));
#endif
  }
}

// Paged caches with pages of 16 tokens or more are fused (each page a TMA box of its own).
// Ring caches and speculative trees of more than 8 new tokens run on the fused kernel (its
// ring/tree variant), alone and together, with a window and paged.
TEST(Dispatch, RingCachesAndTreesAreFused) {
#if defined(WIDEATTN_WITH_CUDA)
  static const std::vector<int32_t> tree(512, 0);  // planning reads none of it
  for (int variant = 0; variant < 4; ++variant) {
    SCOPED_TRACE(variant);
    PlanProblem problem({100, 30}, {150, 300}, 8, 2, 256);
    if (variant != 1) {
      problem.p.mask.ring_length = 20;
      problem.p.mask.ring_offset = 3;
    }
    if (variant != 0) problem.p.mask.tree_start = problem.p.mask.tree_end = problem.p.mask.tree_height = tree.data();
    if (variant == 3) {
      problem.p.mask.window = 64;
      problem.use_pages(16);
    }
    const Plan plan = plan_or_fail(problem.p, h100_device());
    EXPECT_EQ(plan.kernel, Kernel::prefill_fused) << plan.reason;
  }
#else
  GTEST_SKIP() << "built without the CUDA backend";
#endif
}

TEST(Dispatch, PagedPrefillIsFusedWithPagesOf16OrMore) {
#if defined(WIDEATTN_WITH_CUDA)
  for (const int32_t page_size : {16, 64, 256}) {
    SCOPED_TRACE(page_size);
    PlanProblem paged({100, 3}, {150, 300}, 8, 2, 128);
    paged.use_pages(page_size);
    const Plan plan = plan_or_fail(paged.p, h100_device());
    EXPECT_EQ(plan.kernel, Kernel::prefill_fused) << plan.reason;
  }
#else
  GTEST_SKIP() << "built without the CUDA backend";
#endif
}

TEST(Dispatch, FusedPrefillSplitsKeysOnlyWhenTilesLeaveSmsIdle) {
#if defined(WIDEATTN_WITH_CUDA)
  // 512 new tokens on an 8K prefix, d256, 16/8 heads: 64 tiles of 64 tokens x 2 heads for 132 SMs.
  PlanProblem chunk({512}, {8192}, 16, 8, 256);
  const Plan split = plan_or_fail(chunk.p, h100_device());
  EXPECT_EQ(split.kernel, Kernel::prefill_fused) << split.reason;
  EXPECT_EQ(split.num_splits, 2) << split.reason;
  EXPECT_GT(split.workspace_bytes, 0u);
  EXPECT_NE(split.reason.find("2 KV splits"), std::string::npos) << split.reason;
  // A whole 4K prefill has 512 tiles: no split, no workspace.
  PlanProblem prefill({4096}, {4096}, 16, 8, 256);
  const Plan whole = plan_or_fail(prefill.p, h100_device());
  EXPECT_EQ(whole.num_splits, 1) << whole.reason;
  EXPECT_EQ(whole.workspace_bytes, 0u);
  // Few tiles but short keys: each part would get under two key tiles.
  PlanProblem short_keys({64}, {100}, 16, 8, 256);
  EXPECT_EQ(plan_or_fail(short_keys.p, h100_device()).num_splits, 1);
  // kv_splits fixes the count whatever the device (batch-invariant serving).
  chunk.p.kv_splits = 1;
  EXPECT_EQ(plan_or_fail(chunk.p, h100_device()).num_splits, 1);
  prefill.p.kv_splits = 3;
  const Plan fixed = plan_or_fail(prefill.p, h100_device());
  EXPECT_EQ(fixed.num_splits, 3);
  EXPECT_GT(fixed.workspace_bytes, 0u);
#else
  GTEST_SKIP() << "built without the CUDA backend (the fused kernel's plan)";
#endif
}

// head_dim 512 with fewer 128-row tiles than the 66 pairs and uneven walks (Gemma 4 E4B, 8/2
// heads, 1K tokens causal: 64 tiles, walks of 1-16 key tiles) runs 64-row tiles whose key tiles
// the two warpgroups take in turn; 31B (32/4: 256 tiles), long even walks, a ring cache and
// kv_splits keep the 128-row tiles.
TEST(Dispatch, FusedPrefillAlternatesKeysWhenPairsOutnumberTiles) {
#if defined(WIDEATTN_WITH_CUDA)
  const std::string kAlternate = "warpgroups taking key tiles in turn";
  PlanProblem e4b({1024}, {1024}, 8, 2, 512);
  const Plan few = plan_or_fail(e4b.p, h100_device());
  EXPECT_EQ(few.kernel, Kernel::prefill_fused) << few.reason;
  EXPECT_EQ(few.num_splits, 1) << few.reason;
  EXPECT_NE(few.reason.find(kAlternate), std::string::npos) << few.reason;
  PlanProblem big({1024}, {1024}, 32, 4, 512);
  const Plan many = plan_or_fail(big.p, h100_device());
  EXPECT_EQ(many.reason.find(kAlternate), std::string::npos) << many.reason;
  PlanProblem d256({1024}, {1024}, 8, 2, 256);
  EXPECT_EQ(plan_or_fail(d256.p, h100_device()).reason.find(kAlternate), std::string::npos);
  // 26B, 512 new tokens on an 8K prefix: 64 tiles, but their walks are long and alike (whole
  // tiles measured 1.19x alternate_keys on the H200).
  PlanProblem chunk({512}, {8192}, 16, 2, 512);
  const Plan even = plan_or_fail(chunk.p, h100_device());
  EXPECT_EQ(even.num_splits, 1) << even.reason;
  EXPECT_EQ(even.reason.find(kAlternate), std::string::npos) << even.reason;
  PlanProblem e2b({1024}, {1024}, 8, 1, 512);
  EXPECT_NE(plan_or_fail(e2b.p, h100_device()).reason.find(kAlternate), std::string::npos);
  e4b.p.kv_splits = 1;  // batch-invariant: no mode that depends on the batch
  EXPECT_EQ(plan_or_fail(e4b.p, h100_device()).reason.find(kAlternate), std::string::npos);
  e4b.p.kv_splits = 0;
  e4b.p.mask.ring_length = 512;
  EXPECT_EQ(plan_or_fail(e4b.p, h100_device()).reason.find(kAlternate), std::string::npos);
#else
  GTEST_SKIP() << "built without the CUDA backend (the fused kernel's plan)";
#endif
}

// A paged cache changes where rows are read, not the work: decode plans the same kernel and
// splits as for the contiguous cache, prefill the unfused pipeline (with room for the gather).
TEST(Dispatch, PagedCachesPlanLikeContiguousOnes) {
  for (const DeviceInfo& device : kDevices) {
    SCOPED_TRACE(device.name);
    for (int32_t page : {1, 16, 256}) {
      PlanProblem contiguous({1, 4}, {4096, 777}), paged({1, 4}, {4096, 777});
      paged.use_pages(page);
      const Plan a = plan_or_fail(contiguous.p, device), b = plan_or_fail(paged.p, device);
      EXPECT_EQ(b.kernel, a.kernel);
      EXPECT_EQ(b.num_splits, a.num_splits);
      EXPECT_EQ(b.workspace_bytes, a.workspace_bytes);
      // Prefill: the fused kernels read pages of 16 tokens or more as they read a contiguous
      // cache; the unfused pipeline gathers the rows into its workspace.
      PlanProblem prefill({300, 40}, {300, 777});
      prefill.use_pages(page);
      const Plan planned = plan_or_fail(prefill.p, device);
      PlanProblem same({300, 40}, {300, 777});
      const Plan contiguous_prefill = plan_or_fail(same.p, device);
      if (page >= 16) EXPECT_EQ(planned.kernel, contiguous_prefill.kernel) << planned.reason;
      if (planned.kernel == Kernel::prefill_unfused) {
        EXPECT_GT(planned.workspace_bytes, plan_or_fail(same.p, device, Kernel::prefill_unfused).workspace_bytes)
            << "the gathered K/V rows need workspace";
      } else {
        EXPECT_EQ(planned.kernel, Kernel::prefill_fused) << planned.reason;
        EXPECT_EQ(planned.workspace_bytes, contiguous_prefill.workspace_bytes);
      }
    }
  }
}

TEST(Dispatch, SuffixUpToEightGoesToDecode) {
  for (const DeviceInfo& device : kDevices) {
    SCOPED_TRACE(device.name);
    for (int32_t suffix : {1, 8}) {
      PlanProblem problem({suffix, 1}, {300, 20});
      const Plan plan = plan_or_fail(problem.p, device);
      EXPECT_TRUE(plan.kernel == Kernel::single_pass || plan.kernel == Kernel::two_pass) << to_string(plan.kernel);
      EXPECT_EQ(plan.num_splits > 1, plan.kernel == Kernel::two_pass) << plan.num_splits;
      EXPECT_GT(plan.workspace_bytes, 0u);
      EXPECT_NE(plan.reason.find(std::to_string(suffix) + " <= 8"), std::string::npos) << plan.reason;
    }
  }
}

TEST(Dispatch, OneLongSequenceSplitsKv) {
  for (const DeviceInfo& device : kDevices) {
    SCOPED_TRACE(device.name);
    PlanProblem problem({1}, {8192}, 8, 1);
    const Plan plan = plan_or_fail(problem.p, device);
    EXPECT_EQ(plan.kernel, Kernel::two_pass) << plan.reason;
    EXPECT_GE(plan.num_splits, 2);
    EXPECT_NE(plan.reason.find("8192"), std::string::npos) << plan.reason;
    // The partial results of every split fit in the workspace.
    EXPECT_GE(plan.workspace_bytes, static_cast<std::size_t>(8) * plan.num_splits * 128 * sizeof(float));
  }
}

// The CUDA split count is the cheapest under choose_splits' cost model, written out here from
// the key count itself (the planner works from the tile count and keeps its last answer): the
// same answers asked in any order, across tile boundaries and back.
TEST(Dispatch, DecodeSplitsAreTheCostModelsCheapestInAnyOrder) {
  const DeviceInfo device = h100_device();
  struct Shape {
    int32_t batch, suffix, q_heads, kv_heads, head_dim;
  };
  const Shape shapes[] = {{1, 1, 8, 2, 512}, {1, 1, 32, 4, 512}, {8, 4, 16, 2, 512}, {4, 1, 32, 8, 128}};
  const int32_t lengths[] = {64, 1000, 1024, 1025, 4095, 4096, 4097, 32767, 32768, 32769, 131072};
  auto model = [&](const Shape& shape, int64_t kv) {
    // Tuning of tuning_for(cuda): 16 rows an item, 2 row blocks, 256 keys a split at least,
    // 128 splits at most, 64 + 96 keys of overhead; items resident per SM by head_dim.
    const int64_t rows = int64_t{shape.suffix} * (shape.q_heads / shape.kv_heads);
    const int64_t blocks = (rows + 15) / 16;
    const int64_t items = int64_t{shape.batch} * shape.kv_heads * ((blocks + 1) / 2);
    const int64_t units = device.compute_units;
    const int64_t per_sm = shape.head_dim <= 64 ? 4 : shape.head_dim <= 128 ? 3 : shape.head_dim <= 256 ? 2 : 1;
    const int64_t most = std::clamp<int64_t>(kv / 256, 1, 128);
    int64_t best = 1, best_cost = -1;
    for (int64_t s = 1; s <= most; ++s) {
      const int64_t ctas = items * s;
      const int64_t keys = ((kv + s - 1) / s + 31) / 32 * 32;
      const int64_t cost = (ctas + units - 1) / units * keys + (ctas + units * per_sm - 1) / (units * per_sm) * 64 +
                           (s > 1 ? 96 : 0);
      if (best_cost < 0 || cost < best_cost) best = s, best_cost = cost;
    }
    return static_cast<int32_t>(best);
  };
  std::vector<std::pair<const Shape*, int32_t>> questions;
  for (const Shape& shape : shapes) {
    for (int32_t kv : lengths) questions.push_back({&shape, kv});
  }
  for (int order = 0; order < 2; ++order) {
    for (const auto& [shape, kv] : questions) {
      // Buffers for a 1-token cache, then the real lengths over far-apart addresses that
      // planning never reads (a real cache of batch 8 x 128K tokens would be gigabytes).
      PlanProblem problem(std::vector<int32_t>(shape->batch, shape->suffix), std::vector<int32_t>(shape->batch, 1),
                          shape->q_heads, shape->kv_heads, shape->head_dim);
      problem.kv_lengths.assign(shape->batch, kv);
      problem.p.kv_lengths = problem.kv_lengths.data();
      problem.p.kv.capacity = kv;
      set_dense_strides(problem.p);
      auto far = [](std::uintptr_t i) { return reinterpret_cast<void*>(i << 40); };
      problem.p.q = far(1);
      problem.p.out = far(2);
      problem.p.kv.k = far(3);
      problem.p.kv.v = far(4);
      const Plan plan = plan_or_fail(problem.p, device);
      EXPECT_EQ(plan.num_splits, model(*shape, kv))
          << "batch " << shape->batch << " x " << shape->suffix << ", heads " << shape->q_heads << "/"
          << shape->kv_heads << ", d " << shape->head_dim << ", kv " << kv << ": " << plan.reason;
    }
    std::reverse(questions.begin(), questions.end());
  }
}

TEST(Dispatch, ManyShortSequencesStayInOnePass) {
  for (const DeviceInfo& device : kDevices) {
    SCOPED_TRACE(device.name);
    PlanProblem problem(std::vector<int32_t>(64, 1), std::vector<int32_t>(64, 300));
    const Plan plan = plan_or_fail(problem.p, device);
    EXPECT_EQ(plan.kernel, Kernel::single_pass) << plan.reason;
    EXPECT_EQ(plan.num_splits, 1);
  }
}

// A batch of decode steps and prefill chunks: each run of consecutive sequences of one kind gets
// its own kernel (empty sequences join the run they sit in); `kernel` names the prefill part's.
TEST(Dispatch, MixedBatchesSplitIntoRunsOfOneKind) {
  for (const DeviceInfo& device : kDevices) {
    SCOPED_TRACE(device.name);
    PlanProblem problem({1, 1, 9, 1}, {5000, 60, 70, 80});
    const Plan plan = plan_or_fail(problem.p, device);
    ASSERT_EQ(plan.parts.size(), 3u) << plan.reason;
    EXPECT_TRUE(plan.kernel == Kernel::prefill_unfused || plan.kernel == Kernel::prefill_fused);
    EXPECT_EQ(plan.reason.rfind("mixed batch, 3 runs", 0), 0u) << plan.reason;
    const int32_t first[] = {0, 2, 3}, count[] = {2, 1, 1};
    std::size_t most = 0;
    for (std::size_t i = 0; i < 3; ++i) {
      const PlanPart& part = plan.parts[i];
      EXPECT_EQ(part.first_sequence, first[i]);
      EXPECT_EQ(part.sequences, count[i]);
      const bool decode = part.kernel == Kernel::single_pass || part.kernel == Kernel::two_pass;
      EXPECT_EQ(decode, i != 1) << to_string(part.kernel);
      most = std::max(most, part.workspace_bytes);
    }
    EXPECT_EQ(plan.parts[1].kernel, plan.kernel);
    EXPECT_EQ(plan.workspace_bytes, most);
    // Each part is planned as the same sequences would be on their own.
    PlanProblem alone({1, 1}, {5000, 60});
    const Plan decode = plan_or_fail(alone.p, device);
    EXPECT_EQ(plan.parts[0].kernel, decode.kernel);
    EXPECT_EQ(plan.parts[0].num_splits, decode.num_splits);
    EXPECT_EQ(plan.parts[0].workspace_bytes, decode.workspace_bytes);
    // A forced kernel serves the whole batch.
    EXPECT_TRUE(plan_or_fail(problem.p, device, Kernel::prefill_unfused).parts.empty());
  }
}

TEST(Dispatch, EmptySequencesJoinTheirNeighboursRun) {
  PlanProblem problem({0, 9, 0, 1, 0}, {10, 70, 3, 80, 0});
  const Plan plan = plan_or_fail(problem.p, cpu_device());
  ASSERT_EQ(plan.parts.size(), 2u) << plan.reason;
  EXPECT_EQ(plan.parts[0].first_sequence, 0);
  EXPECT_EQ(plan.parts[0].sequences, 3);
  EXPECT_EQ(plan.parts[0].kernel, Kernel::prefill_unfused);
  EXPECT_EQ(plan.parts[1].first_sequence, 3);
  EXPECT_EQ(plan.parts[1].sequences, 2);
  EXPECT_NE(plan.parts[1].kernel, Kernel::prefill_unfused);
  // Only one kind of work (the empty sequences do none): one kernel.
  PlanProblem decode_only({0, 1, 0}, {10, 70, 3});
  EXPECT_TRUE(plan_or_fail(decode_only.p, cpu_device()).parts.empty());
}

// Decode and prefill sequences interleaved past the run limit: a launch per run would cost more
// than the decode kernels save, so the prefill kernel takes the whole batch, as before.
TEST(Dispatch, InterleavedBatchesStayOnOneKernel) {
  std::vector<int32_t> suffixes, lengths;
  for (int i = 0; i < 9; ++i) {
    suffixes.push_back(i % 2 ? 1 : 12);
    lengths.push_back(100);
  }
  PlanProblem problem(suffixes, lengths);
  const Plan plan = plan_or_fail(problem.p, cpu_device());
  EXPECT_TRUE(plan.parts.empty()) << plan.reason;
  EXPECT_EQ(plan.kernel, Kernel::prefill_unfused);
  EXPECT_NE(plan.reason.find("12 > 8"), std::string::npos) << plan.reason;
}

TEST(Dispatch, ForcedKernelsArePlanned) {
  for (const DeviceInfo& device : kDevices) {
    SCOPED_TRACE(device.name);
    PlanProblem problem({3, 12}, {100, 40});
    for (Kernel forced : {Kernel::single_pass, Kernel::two_pass, Kernel::prefill_unfused}) {
      const Plan plan = plan_or_fail(problem.p, device, forced);
      EXPECT_EQ(plan.kernel, forced);
      EXPECT_NE(plan.reason.find("forced"), std::string::npos) << plan.reason;
      EXPECT_GT(plan.workspace_bytes, 0u);
      if (forced == Kernel::single_pass) {
        EXPECT_EQ(plan.num_splits, 1);
      } else if (forced == Kernel::two_pass) {
        EXPECT_GE(plan.num_splits, 2);
      } else {
        EXPECT_GE(plan.query_rows_per_chunk, 1);
      }
    }
  }
}

TEST(Dispatch, PlanIsPure) {
  PlanProblem problem({2, 5}, {3000, 70});
  for (const DeviceInfo& device : kDevices) {
    const Plan a = plan_or_fail(problem.p, device);
    const Plan b = plan_or_fail(problem.p, device);
    EXPECT_EQ(a.kernel, b.kernel);
    EXPECT_EQ(a.num_splits, b.num_splits);
    EXPECT_EQ(a.workspace_bytes, b.workspace_bytes);
    EXPECT_EQ(a.reason, b.reason);
  }
}

TEST(Dispatch, HeadDimsDependOnTheBackend) {
  PlanProblem problem({1}, {10}, 4, 2, 72);
  Plan plan;
  WA_EXPECT_OK(plan_attention(problem.p, cpu_device(), Kernel::automatic, &plan));
  EXPECT_TRUE(has_error(plan_attention(problem.p, h100_device(), Kernel::automatic, &plan),
                        StatusCode::invalid_argument, {"plan_attention: ", "head_dim = 72"}));
}

// attention() runs exactly what plan_attention plans for the context's device.
using DispatchOnBackend = BackendTest;

TEST_P(DispatchOnBackend, AttentionRunsThePlannedKernel) {
  const std::vector<std::vector<int32_t>> suffixes = {{1, 2}, {8, 1}, {9, 1}};
  for (const auto& s : suffixes) {
    const int32_t tokens = s[0] + s[1];
    std::vector<int32_t> offsets{0, s[0], tokens}, kv{s[0] + 40, s[1] + 2000};
    AttentionProblem p;
    p.batch = 2;
    p.q_heads = 4;
    p.kv_heads = 1;
    p.head_dim = 64;
    p.dtype = DType::f32;
    p.kv.capacity = 2010;
    set_dense_strides(p);
    p.query_offsets = offsets.data();
    p.kv_lengths = kv.data();
    const std::vector<float> zeros(static_cast<std::size_t>(2 * p.kv.capacity * 64), 0.0f);
    const auto q = to_device(context(), zeros.data(), tokens * 4 * 64 * sizeof(float));
    const auto cache = to_device(context(), zeros.data(), zeros.size() * sizeof(float));
    GuardedOutput out(context(), DType::f32, tokens * 4 * 64);
    out.upload();
    p.q = q->get();
    p.kv.k = cache->get();
    p.kv.v = cache->get();
    p.out = out.data();
    Plan planned, used;
    WA_ASSERT_OK(plan_attention(p, context().device(), Kernel::automatic, &planned));
    WA_ASSERT_OK(attention(context(), p, Kernel::automatic, &used));
    EXPECT_EQ(used.kernel, planned.kernel);
    EXPECT_EQ(used.num_splits, planned.num_splits);
    EXPECT_EQ(used.query_rows_per_chunk, planned.query_rows_per_chunk);
    EXPECT_EQ(used.workspace_bytes, planned.workspace_bytes);
    EXPECT_EQ(used.reason, planned.reason);
    EXPECT_FALSE(used.reason.empty());
    const bool prefill = used.kernel == Kernel::prefill_unfused || used.kernel == Kernel::prefill_fused;
    EXPECT_EQ(prefill, s[0] > 8) << used.reason;
    out.download();
    EXPECT_TRUE(out.untouched_except([&] {
      std::vector<int64_t> all(static_cast<std::size_t>(tokens) * 4 * 64);
      for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
      return all;
    }()));
  }
}

TEST_P(DispatchOnBackend, DeviceIsDescribed) {
  const DeviceInfo& device = context().device();
  EXPECT_EQ(device.backend, backend());
  EXPECT_FALSE(device.name.empty());
  EXPECT_GE(device.compute_units, 1);
}

WA_INSTANTIATE_BACKENDS(DispatchOnBackend);

}  // namespace
}  // namespace wideattn::test

namespace wideattn::test {
namespace {

// kv_splits fixes the decode split count whatever the device and the batch.
TEST(KvSplits, FixedCountIsPlannedOnEveryDevice) {
  std::vector<int32_t> offsets = {0, 1, 2}, lengths = {40000, 10};
  AttentionProblem p;
  p.batch = 2;
  p.q_heads = 8;
  p.kv_heads = 2;
  p.head_dim = 128;
  p.query_offsets = offsets.data();
  p.kv_lengths = lengths.data();
  p.kv.capacity = 40000;
  set_dense_strides(p);
  // Planning never dereferences tensors: distinct fake addresses.
  p.q = reinterpret_cast<void*>(uintptr_t{1} << 40);
  p.kv.k = reinterpret_cast<void*>(uintptr_t{2} << 40);
  p.kv.v = reinterpret_cast<void*>(uintptr_t{3} << 40);
  p.out = reinterpret_cast<void*>(uintptr_t{4} << 40);
  for (const DeviceInfo& device : {cpu_device(), h100_device()}) {
    for (int32_t splits : {1, 3, kMaxKvSplits}) {
      p.kv_splits = splits;
      Plan plan;
      WA_ASSERT_OK(plan_attention(p, device, Kernel::automatic, &plan));
      EXPECT_EQ(plan.num_splits, splits) << plan.reason;
      EXPECT_EQ(plan.kernel, splits == 1 ? Kernel::single_pass : Kernel::two_pass);
    }
  }
  Plan plan;
  p.kv_splits = kMaxKvSplits + 1;
  EXPECT_TRUE(has_error(plan_attention(p, cpu_device(), Kernel::automatic, &plan), StatusCode::invalid_argument, {"kv_splits"}));
  p.kv_splits = -1;
  EXPECT_TRUE(has_error(plan_attention(p, cpu_device(), Kernel::automatic, &plan), StatusCode::invalid_argument, {"kv_splits"}));
  p.kv_splits = 3;
  EXPECT_TRUE(has_error(plan_attention(p, cpu_device(), Kernel::single_pass, &plan), StatusCode::invalid_argument, {"kv_splits", "single_pass"}));
  p.kv_splits = 1;
  EXPECT_TRUE(has_error(plan_attention(p, cpu_device(), Kernel::two_pass, &plan), StatusCode::invalid_argument, {"kv_splits", "two_pass"}));
}

}  // namespace
}  // namespace wideattn::test
