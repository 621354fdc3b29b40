// Debugging aids read from the environment once per process. Off by default; they cost time.
#pragma once

namespace wideattn::detail {

// WIDEATTN_POISON_WORKSPACE=1: every call fills its scratch with kPoisonByte (NaN in f32, f16
// and bf16) before its work, and the prefill pipeline refills each intermediate (scores,
// probabilities, values) before the step that writes it, so that a read of a cell the step
// before did not write shows up as NaN in the outputs instead of a stale value.
bool poison_workspace();
inline constexpr unsigned char kPoisonByte = 0xFF;

// WIDEATTN_SANITIZER_NVTX=1: the CUDA backend marks what cuBLASLt wrote as initialised for
// compute-sanitizer's initcheck (run with --nvtx yes), which does not see those stores at some
// shapes (cuda/primitives/sanitizer_marks.h).
bool mark_library_outputs();

// WIDEATTN_TUNE_DECODE_ROW_BLOCKS=N (1 or 2): the CUDA decode's row blocks per work item,
// instead of the tuning table's (a tuning experiment: two CTAs of one row block each, or one
// CTA of two, for 17-32 query rows per KV group). 0 when unset.
int decode_row_blocks_override();

// WIDEATTN_TUNE_DECODE_KEY_SETS=N (1 or 2): warp groups per row block of the CUDA decode at
// head_dim 512 when a CTA holds one row block (decode_config.h, key_sets_for), instead of 2
// (a tuning experiment). 0 when unset.
int decode_key_sets_override();

// WIDEATTN_TUNE_DECODE_WGMMA_L2=1: the wgmma decode kernel loads its CTA's first tile for every
// tile, so the bytes come from L2, not DRAM (a tuning aid that measures the kernel without the
// DRAM's share; results are wrong).
bool decode_wgmma_l2_only();

// The fused prefill's alternate_keys mode (fused_support.h): -1 lets the call's size decide, 0
// turns it off, 1 on wherever the kernel can run it. From WIDEATTN_TUNE_FUSED_ALTERNATE (0 or
// 1; unset: -1) at the first call; tests set it for a scope (an A/B aid, not an API).
int fused_alternate_override();
void set_fused_alternate_override(int value);

// The CUDA decode's in-grid merge (cuda/kernels/decode_grid_merge.cuh): -1 where it can run
// (the default), 0 never (the merge kernel), 1 where it can. From
// WIDEATTN_TUNE_DECODE_GRID_MERGE (0 or 1; unset: -1) at the first call; tests set it for a
// scope (an A/B aid, not an API).
int decode_grid_merge_override();
void set_decode_grid_merge_override(int value);

}  // namespace wideattn::detail
