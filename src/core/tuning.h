// One tuning table per device class, shared by dispatch, workspace sizing and the kernels.
// Values marked "measured" come from sweeps recorded in docs/design.md.
#pragma once

#include <cstdint>

#include "wideattn/context.h"

namespace wideattn::detail {

struct Tuning {
  // Suffixes longer than this go to the prefill path (the reference design's threshold).
  int64_t max_decode_suffix = 8;
  // Scratch the prefill pipeline may use for one chunk's scores and probabilities.
  int64_t prefill_scratch_bytes = 0;
  // Query rows per chunk are rounded down to a multiple of this (GEMM-friendly).
  int64_t prefill_chunk_granularity = 16;
  // A KV split gets at least this many keys (shorter splits cost more in merging than they gain).
  int64_t min_keys_per_split = 0;
  // Work items (CTAs on CUDA, tasks on the CPU) dispatch aims to create per compute unit.
  int32_t work_items_per_unit = 1;
  // Upper bound on KV splits (bounds the partial-result workspace).
  int32_t max_splits = 1;
  // Query rows (tokens x heads of one KV group) one decode work item processes together.
  int32_t decode_rows_per_item = 1;
};

inline Tuning tuning_for(const DeviceInfo& device) {
  Tuning t;
  if (device.backend == Backend::cuda) {
    t.prefill_scratch_bytes = int64_t{512} << 20;
    t.prefill_chunk_granularity = 64;
    t.min_keys_per_split = 256;
    t.work_items_per_unit = 4;
    t.max_splits = 128;
    t.decode_rows_per_item = 16;  // one m16 tensor-core tile
  } else {
    t.prefill_scratch_bytes = int64_t{64} << 20;
    t.prefill_chunk_granularity = 16;
    t.min_keys_per_split = 512;
    t.work_items_per_unit = 2;
    t.max_splits = 64;
    t.decode_rows_per_item = 1 << 30;  // the CPU takes all rows of a group at once
  }
  return t;
}

}  // namespace wideattn::detail
