// Small problems that reach every CUDA attention kernel once, for compute-sanitizer
// (scripts/gpu_check.sh runs memcheck, racecheck, initcheck and synccheck over this suite and the
// CUDA component tests): the sanitizer makes kernels 10-100x slower, so each case is a few
// hundred keys at most. Every case is still checked against the f64 oracle. Skips without a GPU
// (prefill_fused without Hopper).
//   decode, tensor cores (f16/bf16) and SIMT (f32); two_pass and its merge; plans from bounds
//     (device metadata); an fp8 cache; a mixed batch (decode and prefill in one call)
//   prefill_unfused: cuBLASLt GEMMs, the masked softmax (interval masks and tree/ring masks),
//                    the non-finite repair of P V, scatter_values; rows that see no key
//   paged caches:    decode (both passes) and the prefill pipeline's gather, 1- and 16-token pages
//   decode at d=512: Q K^T split by head_dim, two key sets a row block, whole-tile copies (also
//                    across two pages), fp8 quarters widened by their own warps
//   fp8 prefill:     the gather's exact widening, the softmax's K and V scales
//   prefill_fused:   head_dim 64, 128, 256 and 512 (a CTA pair), over paged caches too, and
//                    its ring/tree variant
#include <gtest/gtest.h>

#include <vector>

#include "attention_case.h"
#include "core/debug_options.h"
#include "test_support.h"

namespace wideattn::test {
namespace {

class SanitizerSmallProblems : public ::testing::Test {
 protected:
  void SetUp() override { session_.start(Backend::cuda); }
  void TearDown() override { session_.stop(); }
  void check(const AttentionCase& c, Kernel kernel) {
    AttentionOutcome outcome;
    check_attention(*session_.context, session_.rng, c, kernel, &outcome);
    EXPECT_EQ(outcome.plan.kernel, kernel) << outcome.plan.reason;
  }
  bool hopper() const { return session_.context->device().compute_capability == 90; }

  BackendSession session_;
};

AttentionCase small(DType dtype, int32_t head_dim, std::vector<SequenceShape> sequences) {
  AttentionCase c;
  c.dtype = dtype;
  c.head_dim = head_dim;
  c.q_heads = 4;
  c.kv_heads = 2;
  c.sequences = std::move(sequences);
  c.nan_past_kv_length = true;  // stale slots: never read
  return c;
}

TEST_F(SanitizerSmallProblems, DecodeKernels) {
  for (DType dtype : {DType::bf16, DType::f16, DType::f32}) {  // tensor cores; SIMT for f32
    AttentionCase c = small(dtype, dtype == DType::f32 ? 128 : 64, {{1, 150}, {4, 37}, {8, 8}});
    c.sinks = dtype == DType::bf16;
    check(c, Kernel::single_pass);
    c.window = 50;
    check(c, Kernel::two_pass);  // split passes and the merge
  }
  AttentionCase tree = small(DType::bf16, 256, {{5, 70}, {3, 3}});
  tree.tree = true;
  check(tree, Kernel::two_pass);
}

// Device metadata checked against a plan's bounds, padded slots, and the merge's row limit.
TEST_F(SanitizerSmallProblems, PlannedDecode) {
  AttentionCase c = small(DType::bf16, 128, {{1, 150}, {0, 0}, {4, 37}, {0, 9}});
  for (Kernel kernel : {Kernel::single_pass, Kernel::two_pass}) {
    AttentionOutcome outcome;
    check_attention(*session_.context, session_.rng, c, kernel, &outcome, run_from_bounds);
    EXPECT_EQ(outcome.plan.kernel, kernel) << outcome.plan.reason;
  }
}

// An fp8 (e4m3) cache: the staged tiles widened in shared memory, contiguous and paged, per-pool
// and per-head scales, single pass and split.
TEST_F(SanitizerSmallProblems, Fp8Decode) {
  AttentionCase c = small(DType::bf16, 128, {{1, 150}, {4, 37}, {2, 2}});
  c.fp8_kv = true;
  check(c, Kernel::single_pass);
  c.page_size = 16;
  c.kv_scales_per_head = true;
  c.sinks = true;
  check(c, Kernel::two_pass);
}

// head_dim 512 decode has kernels of its own: each warp scores a quarter of the head_dim and the
// partial scores meet in shared memory; with one row block a CTA, two key sets (8 warps) take
// half of every tile each and merge at the end; whole tiles are copied without per-row tests,
// paged ones from at most two pages. 150 keys: four whole 32-key tiles and a partial one. An fp8
// cache runs the wgmma kernel.
TEST_F(SanitizerSmallProblems, WideDecode) {
  AttentionCase c = small(DType::bf16, 512, {{1, 150}, {4, 70}, {1, 33}});
  c.sinks = true;
  check(c, Kernel::single_pass);
  check(c, Kernel::two_pass);
  c.page_size = 16;
  check(c, Kernel::two_pass);
  c.fp8_kv = true;
  check(c, Kernel::single_pass);
  // The wgmma kernel (fp8 at 512) at 16 and 32 rows a KV head too (gqa 4 and 8 x 4 new tokens),
  // split, pages of 16.
  c.q_heads = 8;
  check(c, Kernel::two_pass);
  c.q_heads = 16;
  check(c, Kernel::two_pass);
}

// Paged caches: the decode kernels' block-table reads and the prefill pipeline's gather.
TEST_F(SanitizerSmallProblems, PagedCaches) {
  AttentionCase c = small(DType::bf16, 128, {{1, 150}, {4, 37}, {0, 5}});
  c.page_size = 16;
  check(c, Kernel::single_pass);
  check(c, Kernel::two_pass);
  AttentionCase prefill = small(DType::f16, 64, {{20, 45}, {9, 9}});
  prefill.page_size = 1;
  check(prefill, Kernel::prefill_unfused);
}

// Prefill over an fp8 cache: codes widened exactly by the gather, scales in the softmax.
TEST_F(SanitizerSmallProblems, Fp8Prefill) {
  AttentionCase c = small(DType::bf16, 128, {{20, 60}, {12, 12}});
  c.fp8_kv = true;
  c.kv_scales_per_head = true;
  c.sinks = true;
  check(c, Kernel::prefill_unfused);
}

// A decode run and a prefill run in one call.
TEST_F(SanitizerSmallProblems, MixedBatch) {
  AttentionCase c = small(DType::bf16, 128, {{1, 90}, {2, 40}, {30, 70}});
  AttentionOutcome outcome;
  check_attention(*session_.context, session_.rng, c, Kernel::automatic, &outcome);
  EXPECT_EQ(outcome.plan.parts.size(), 2u) << outcome.plan.reason;
}

TEST_F(SanitizerSmallProblems, UnfusedPrefillPipeline) {
  AttentionCase causal = small(DType::bf16, 512, {{20, 97}, {9, 9}});  // interval mask, 16-bit P
  causal.sinks = true;
  check(causal, Kernel::prefill_unfused);
  AttentionCase window = small(DType::f32, 64, {{33, 120}});  // f32: softmax in place
  window.window = 17;
  window.softcap = 10.0f;
  check(window, Kernel::prefill_unfused);
  AttentionCase tree = small(DType::f16, 128, {{12, 40}});  // per-key mask (no interval)
  tree.tree = true;
  check(tree, Kernel::prefill_unfused);
  AttentionCase ring = small(DType::bf16, 64, {{10, 40}});
  ring.ring_length = 12;
  ring.ring_offset = 5;
  check(ring, Kernel::prefill_unfused);
  // Rows that see no key: no suffix key is in any subtree, the window hides the prefix.
  AttentionCase nothing = small(DType::f32, 64, {{10, 30}});
  nothing.tree_start = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  nothing.tree_end = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  nothing.tree_height = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  nothing.window = 1;  // and the prefix outside the window of every row
  check(nothing, Kernel::prefill_unfused);
}

TEST_F(SanitizerSmallProblems, FusedPrefill) {
  if (!hopper()) GTEST_SKIP() << "prefill_fused needs a Hopper GPU";
  AttentionCase d64 = small(DType::bf16, 64, {{70, 70}, {9, 40}});
  check(d64, Kernel::prefill_fused);
  AttentionCase d128 = small(DType::f16, 128, {{130, 200}});
  d128.window = 64;
  d128.sinks = true;
  check(d128, Kernel::prefill_fused);
  AttentionCase d256 = small(DType::bf16, 256, {{65, 65}});
  d256.causal = false;
  d256.q_heads = 6;
  check(d256, Kernel::prefill_fused);
  AttentionCase d512 = small(DType::bf16, 512, {{70, 100}});
  check(d512, Kernel::prefill_fused);
  // Paged: one TMA box per page, entries past a sequence's rows never read.
  AttentionCase paged = small(DType::bf16, 128, {{40, 100}, {7, 20}});
  paged.page_size = 16;
  check(paged, Kernel::prefill_fused);
  d512.page_size = 32;
  check(d512, Kernel::prefill_fused);
  // More query tiles than SM pairs: a CTA runs several items, so its epilogue writes follow
  // the previous item's reads of the same staging rows (the Q buffer's, at 512).
  AttentionCase items = small(DType::bf16, 512, std::vector<SequenceShape>(40, SequenceShape{9, 30}));
  check(items, Kernel::prefill_fused);
  // head_dim 512's two kernels forced on the same problems: whole 128-row tiles, and
  // alternate_keys (64-row tiles, the warpgroups taking key tiles in turn, their shares added
  // through the Q buffer), one item a pair and several.
  AttentionCase alternate = small(DType::f16, 512, {{70, 100}, {1, 300}});
  alternate.sinks = true;
  for (const int mode : {0, 1}) {
    detail::set_fused_alternate_override(mode);
    check(alternate, Kernel::prefill_fused);
    check(items, Kernel::prefill_fused);
  }
  detail::set_fused_alternate_override(-1);
  // The ring/tree variant: a wrapped ring in a window (the walk's hole), a tree read through
  // the read-only cache, and a tree at 512 with a ring.
  AttentionCase ring = small(DType::bf16, 128, {{40, 400}});
  ring.ring_length = 360;
  ring.ring_offset = 100;
  ring.window = 150;
  check(ring, Kernel::prefill_fused);
  AttentionCase tree = small(DType::f16, 256, {{20, 90}});
  tree.tree = true;
  check(tree, Kernel::prefill_fused);
  tree = small(DType::bf16, 512, {{12, 150}});
  tree.tree = true;
  tree.ring_length = 100;
  tree.ring_offset = 37;
  check(tree, Kernel::prefill_fused);
}

}  // namespace
}  // namespace wideattn::test
