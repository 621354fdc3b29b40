// The one parameter block of the CUDA decode kernels (split pass, SIMT pass and merge), built
// by run_decode (decode_launch.cu). Host-visible, no device code.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/kv_layout.h"
#include "core/tuning.h"
#include "wideattn/problem.h"
#include "wideattn/types.h"

namespace wideattn::cuda::decode {

struct DecodeParams {
  // Tensors (element strides; the last dimension is contiguous).
  const void* q = nullptr;  // [total_tokens, q_heads, head_dim]
  int64_t q_token_stride = 0, q_head_stride = 0;
  // The cache (core/kv_layout.h): contiguous, page_stride is the sequence stride and the page
  // of sequence b is b; paged, pages come from the block table [batch, max_pages].
  wideattn::detail::KvPool k, v;
  wideattn::detail::KvPages pages;
  int64_t num_pages = 0;  // pages in each pool (contiguous: batch); other indices read zeros
  // fp8 (e4m3) cache: K/V hold bytes (strides count them); a stored x stands for x * scale, the
  // scales on the device, one per pool or one per KV head; null: 1 (KvCache::k_scale, v_scale).
  bool kv_fp8 = false;
  const float* k_scale = nullptr;
  const float* v_scale = nullptr;
  bool scales_per_head = false;
  void* out = nullptr;  // [total_tokens, q_heads, head_dim]
  int64_t out_token_stride = 0, out_head_stride = 0;
  float* lse = nullptr;  // [total_tokens, q_heads], may be null
  int64_t lse_token_stride = 0, lse_head_stride = 0;
  const float* sinks = nullptr;  // [q_heads], may be null

  // Sequence metadata, query_offsets [batch + 1] and kv_lengths [batch]: device arrays (the
  // caller's, for a plan from bounds; else a copy uploaded into the workspace), or, when both
  // are null, inline_metadata (offsets then lengths) in this parameter block.
  static constexpr int kInlineMetadata = 255;  // int32 entries: batch <= 127
  const int32_t* query_offsets = nullptr;
  const int32_t* kv_lengths = nullptr;
  int32_t inline_metadata[kInlineMetadata] = {};
  // A plan from bounds: the metadata is the caller's and unchecked, so each CTA checks its
  // sequence against the bounds (skipping it, and ORing kMetadata* bits into `errors` when set),
  // and the merge leaves the rows past query_offsets[batch] alone.
  bool check_metadata = false;
  int64_t max_total_tokens = 0;
  int32_t max_suffix = 0;
  int64_t max_kv_length = 0;
  int32_t* errors = nullptr;

  MaskSpec mask;             // tree arrays indexed by the global query row (offset per sequence)
  bool simple_mask = false;  // no tree, ring or window: only causality and lengths hide keys

  float scale = 1.0f;    // problem.effective_scale()
  float softcap = 0.0f;  // 0: none
  int32_t batch = 0, q_heads = 0, kv_heads = 0, gqa = 1, head_dim = 0;

  // Grid: blockIdx.x = row_item + row_items * (split + splits * (kv_head + kv_heads * seq)).
  int32_t row_items = 1;  // CTAs per (sequence, KV head, split) along the query rows
  int32_t groups = 1;     // row blocks per CTA (tensor-core kernel)
  int32_t key_sets = 1;   // warp groups per row block, each taking its share of every tile's keys
  int32_t stages = 2;     // K/V pipeline depth (tensor-core kernel)
  int32_t splits = 1;     // KV splits; 1: write the final output directly

  // two_pass only (splits > 1): per (query row, split), query row = token * q_heads + head.
  float* partial_out = nullptr;  // [rows, splits, head_dim], unnormalised
  float* partial_max = nullptr;  // [rows, splits], max logit (-inf: the split saw no key)
  float* partial_sum = nullptr;  // [rows, splits], sum of exp(logit - max)
  // The in-grid merge (decode_grid_merge.cuh): a word per (sequence, KV head), zero between
  // calls; null: the merge kernel follows the split pass.
  unsigned long long* merge_barriers = nullptr;

#ifdef WIDEATTN_DECODE_TRACE
  unsigned long long* trace = nullptr;  // decode_trace.h
#endif
};

// The wgmma decode kernel (decode_wgmma.cuh: head_dim 512, fp8 caches, sm_90a): the decode
// parameters plus TMA maps of the two pools, e4m3 bytes as (head_dim, rows, kv_heads,
// sequences) when contiguous or (head_dim, page rows, kv_heads, pages) when paged, boxes of 128
// columns x box_rows rows (64, or a page of 16 or 32 rows).
struct DecodeWgmmaParams {
  DecodeParams decode;
  CUtensorMap k_map, v_map;
  int32_t box_rows = 64;
  bool l2_only = false;  // core/debug_options.h: decode_wgmma_l2_only (a tuning aid)
};

// Launchers, one translation unit per head_dim (decode_d<D>.cu). Each throws detail::Error on a
// failed launch. `smem` is the dynamic shared memory of the tensor-core kernel; `programmatic`
// launches it as a programmatic dependent of the work before it on the stream (sm_90).
// The tensor-core kernel reads an fp8 cache when p.kv_fp8 (queries and outputs in `dtype`).
// With p.merge_barriers it merges its splits in the grid where every CTA can be resident
// (decode_grid_merge.cuh) and returns true; false: launched without, the merge kernel must run.
template <int HeadDim>
bool launch_decode_mma(const DecodeParams& p, DType dtype, dim3 grid, std::size_t smem,
                       bool programmatic, cudaStream_t stream);
template <int HeadDim>
void launch_decode_simt(const DecodeParams& p, DType dtype, dim3 grid, cudaStream_t stream);
// `dependent`: launch as a programmatic dependent of the split pass (sm_90).
void launch_decode_merge(const DecodeParams& p, DType dtype, int64_t rows, bool dependent,
                         cudaStream_t stream);

// The wgmma decode kernel for `rows` query rows per (sequence, KV head) (<= kWgmmaMaxRows),
// f16 or bf16 queries over an fp8 cache; grid: batch x kv_heads x splits.
inline constexpr int kWgmmaMaxRows = static_cast<int>(wideattn::detail::kCudaWgmmaDecodeMaxRows);
void launch_decode_wgmma(const DecodeWgmmaParams& p, DType dtype, int64_t rows, dim3 grid, bool programmatic,
                         cudaStream_t stream);

extern template bool launch_decode_mma<64>(const DecodeParams&, DType, dim3, std::size_t, bool,
                                           cudaStream_t);
extern template bool launch_decode_mma<128>(const DecodeParams&, DType, dim3, std::size_t, bool,
                                            cudaStream_t);
extern template bool launch_decode_mma<256>(const DecodeParams&, DType, dim3, std::size_t, bool,
                                            cudaStream_t);
extern template bool launch_decode_mma<512>(const DecodeParams&, DType, dim3, std::size_t, bool,
                                            cudaStream_t);
extern template void launch_decode_simt<64>(const DecodeParams&, DType, dim3, cudaStream_t);
extern template void launch_decode_simt<128>(const DecodeParams&, DType, dim3, cudaStream_t);
extern template void launch_decode_simt<256>(const DecodeParams&, DType, dim3, cudaStream_t);
extern template void launch_decode_simt<512>(const DecodeParams&, DType, dim3, cudaStream_t);

}  // namespace wideattn::cuda::decode
