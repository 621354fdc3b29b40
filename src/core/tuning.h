// One tuning table per device class, shared by dispatch, workspace sizing and the kernels.
// Values marked "measured" come from sweeps recorded in docs/design.md.
#pragma once

#include <cstdint>

#include "core/debug_options.h"
#include "wideattn/context.h"

namespace wideattn::detail {

struct Tuning {
  // Suffixes longer than this go to the prefill path (the reference design's threshold).
  int64_t max_decode_suffix = 8;
  // Scratch the prefill pipeline may use for one chunk's scores and probabilities.
  int64_t prefill_scratch_bytes = 0;
  // Query rows per chunk are rounded down to a multiple of this (GEMM-friendly).
  int64_t prefill_chunk_granularity = 16;
  // At most this many query rows per chunk (0: no cap). Causal chunks compute their whole
  // diagonal block, so shorter chunks waste fewer masked pairs.
  int64_t prefill_max_chunk_rows = 0;
  // A KV split gets at least this many keys (shorter splits cost more in merging than they gain).
  int64_t min_keys_per_split = 0;
  // Work items (CTAs on CUDA, tasks on the CPU) dispatch aims to create per compute unit.
  int32_t work_items_per_unit = 1;
  // Upper bound on KV splits (bounds the partial-result workspace).
  int32_t max_splits = 1;
  // Query rows (tokens x heads of one KV group) one decode work item processes together.
  int32_t decode_rows_per_item = 1;
  // Row blocks of decode_rows_per_item rows that one decode work item may stack on one K/V
  // stream (the CUDA kernel runs one warp group per block, sharing every K/V tile).
  int32_t decode_max_row_blocks_per_item = 1;
  // Split-KV cost model (choose_splits), in keys of streaming time: what a work item costs
  // besides its keys (Q load, pipeline fill, epilogue), and what the merge pass adds.
  int64_t decode_item_overhead_keys = 0;
  int64_t decode_merge_overhead_keys = 0;
};

// Keys per K/V tile of the CUDA decode kernel (decode_config.h): splits are whole tiles.
inline constexpr int64_t kCudaDecodeKeysPerTile = 32;

// Query rows per (sequence, KV head) the wgmma decode kernel serves (decode_wgmma.cuh: wgmma's
// N of 8, 16 or 32).
inline constexpr int64_t kCudaWgmmaDecodeMaxRows = 32;

// CUDA decode work items resident per SM at each head_dim: shared memory bounds them
// (src/cuda/kernels/decode_config.h static_asserts its footprint against this table).
constexpr int32_t cuda_decode_items_per_sm(int32_t head_dim) {
  return head_dim <= 64 ? 4 : head_dim <= 128 ? 3 : head_dim <= 256 ? 2 : 1;
}

// Row blocks one decode work item stacks (the CUDA f32 kernel takes one block at a time).
inline int32_t decode_row_blocks_per_item(const Tuning& t, DType dtype, int64_t row_blocks) {
  if (dtype == DType::f32 || row_blocks < 1) return 1;
  return static_cast<int32_t>(row_blocks < t.decode_max_row_blocks_per_item
                                  ? row_blocks
                                  : t.decode_max_row_blocks_per_item);
}

inline Tuning tuning_for(const DeviceInfo& device) {
  Tuning t;
  if (device.backend == Backend::cuda) {
    t.prefill_scratch_bytes = int64_t{512} << 20;
    t.prefill_chunk_granularity = 64;
    // Causal chunks compute their whole diagonal block: 512 rows waste ~12% of a 4K prefill's
    // pairs (a whole-suffix chunk wastes 50%) while each GEMM still has 512 x keys x gqa work.
    t.prefill_max_chunk_rows = 512;
    t.min_keys_per_split = 256;
    t.work_items_per_unit = 4;
    t.max_splits = 128;
    t.decode_rows_per_item = 16;  // one m16 tensor-core tile
    t.decode_max_row_blocks_per_item = 2;
    if (decode_row_blocks_override()) t.decode_max_row_blocks_per_item = decode_row_blocks_override();
    t.decode_item_overhead_keys = 64;   // to be measured (bench/decode_check sweeps splits)
    t.decode_merge_overhead_keys = 96;  // to be measured
  } else {
    t.prefill_scratch_bytes = int64_t{64} << 20;
    t.prefill_chunk_granularity = 16;
    t.prefill_max_chunk_rows = 256;  // measured: src/cpu (E4B prefill 1024 / 4096 tokens)
    t.min_keys_per_split = 512;
    t.work_items_per_unit = 2;
    t.max_splits = 64;
    t.decode_rows_per_item = 1 << 30;  // the CPU takes all rows of a group at once
    t.decode_max_row_blocks_per_item = 1;
  }
  return t;
}

}  // namespace wideattn::detail
