#include "cuda/fused/fused_launch.h"

#include <cuda.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <utility>

#include "core/error.h"
#include "core/fused_support.h"
#include "core/kv_layout.h"
#include "core/workspace_layout.h"
#include "cuda/fused/fused_params.h"
#include "cuda/fused/tile_config.h"
#include "cuda/kernels/decode.h"
#include "cuda/kernels/decode_params.h"
#include "cuda/primitives/check.h"
#include "cuda/primitives/tensor_map.h"

namespace wideattn::fused {

// Defined in fused_kernel.cuh, instantiated in fused_d<head_dim>.cu.
template <int kHeadDim>
void launch_fused_kernel(const FusedParams& params, bool bf16, int32_t work_items, int32_t compute_units,
                         cudaStream_t stream);

namespace {

template <std::size_t... I>
void launch_row(int32_t head_dim, const FusedParams& params, bool bf16, int32_t work_items, int32_t compute_units,
                cudaStream_t stream, std::index_sequence<I...>) {
  bool launched = false;
  ((kTileConfigs[I].head_dim == head_dim
        ? (launch_fused_kernel<kTileConfigs[I].head_dim>(params, bf16, work_items, compute_units, stream),
           launched = true)
        : false),
   ...);
  if (!launched) {
    detail::throw_error(StatusCode::internal, "fused prefill: no kernel for head_dim " + std::to_string(head_dim));
  }
}

}  // namespace

void run_fused_prefill(const AttentionProblem& p, const Plan& plan, const DeviceInfo& device, void* workspace,
                       cudaStream_t stream) {
  const TileConfig& config = *tile_config(p.head_dim);
  const bool bf16 = p.dtype == DType::bf16;
  const int32_t group = p.q_heads / p.kv_heads;
  // The parameter block is ~11 KB: built in place, not on the stack of every caller.
  thread_local std::unique_ptr<FusedParams> storage(new FusedParams());
  FusedParams& params = *storage;
  params.q_heads = p.q_heads;
  params.kv_heads = p.kv_heads;
  params.group = group;
  params.packed = packed_heads(config, group);
  params.packed_shift = 0;
  while ((1 << params.packed_shift) < params.packed) ++params.packed_shift;
  if ((1 << params.packed_shift) != params.packed) {
    detail::throw_error(StatusCode::internal, "fused prefill: packed heads " + std::to_string(params.packed) +
                                                  " is not a power of two");
  }
  params.tile_heads = p.q_heads / params.packed;
  const int32_t splits = std::max(1, plan.num_splits);
  params.alternate_keys = detail::fused_prefill_alternate_keys(p, device, splits) ? 1 : 0;
  params.tokens_per_tile = (params.alternate_keys ? 64 : config.block_m) / params.packed;
  params.scale_log2 = p.effective_scale() * 1.4426950408889634f;
  params.softcap = p.softcap;
  params.causal = p.mask.causal ? 1 : 0;
  params.window = p.mask.window;
  params.ring_length = p.mask.ring_length;
  params.ring_offset = p.mask.ring_offset;
  params.tree_start = p.mask.tree_start;
  params.tree_end = p.mask.tree_end;
  params.tree_height = p.mask.tree_height;
  params.out = p.out;
  params.out_token_stride = p.out_token_stride;
  params.out_head_stride = p.out_head_stride;
  params.out_aligned16 = reinterpret_cast<std::uintptr_t>(p.out) % 16 == 0 && p.out_token_stride % 8 == 0 &&
                         p.out_head_stride % 8 == 0;
  params.lse = p.lse;
  params.lse_token_stride = p.lse_token_stride;
  params.lse_head_stride = p.lse_head_stride;
  params.sinks = p.sinks;

  // Sequences with new tokens, most tiles first (the longest causal work starts first).
  int32_t order[kMaxSequences];
  int32_t tiles[kMaxSequences];
  int32_t count = 0;
  for (int32_t b = 0; b < p.batch; ++b) {
    const int32_t suffix = p.query_offsets[b + 1] - p.query_offsets[b];
    if (suffix <= 0) continue;
    tiles[count] = (suffix + params.tokens_per_tile - 1) / params.tokens_per_tile * params.tile_heads;
    order[count++] = b;
  }
  int32_t rank[kMaxSequences];
  std::iota(rank, rank + count, 0);
  std::stable_sort(rank, rank + count, [&](int32_t a, int32_t b) { return tiles[a] > tiles[b]; });
  params.num_sequences = count;
  int32_t total = 0;
  for (int32_t i = 0; i < count; ++i) {
    const int32_t b = order[rank[i]];
    params.batch_index[i] = b;
    params.query_start[i] = p.query_offsets[b];
    params.suffix[i] = p.query_offsets[b + 1] - p.query_offsets[b];
    params.kv_length[i] = p.kv_lengths[b];
    params.tile_start[i] = total;
    total += tiles[rank[i]];
  }
  params.tile_start[count] = total;
  if (int64_t{total} * splits > std::numeric_limits<int32_t>::max()) {
    detail::throw_invalid("attention", "kv_splits", splits,
                          "fewer KV splits: " + std::to_string(total) + " query tiles x splits must stay below 2^31");
  }
  params.splits = splits;
  params.total_tiles = total * splits;
  if (total == 0) return;
  const detail::DecodeWorkspace layout = detail::decode_workspace_layout(p, splits);
  if (splits > 1) {
    char* base = static_cast<char*>(workspace);
    params.partial_out = reinterpret_cast<float*>(base + layout.partial_out);
    params.partial_max = reinterpret_cast<float*>(base + layout.partial_max);
    params.partial_sum = reinterpret_cast<float*>(base + layout.partial_sum);
  }

  const auto element = bf16 ? cuda::TensorMapElement::bf16 : cuda::TensorMapElement::f16;
  // Q [tokens, q_heads, d] as (d, packed heads, tokens, tile heads): a box is one tile's rows.
  const int64_t q_dims[4] = {p.head_dim, params.packed, p.total_tokens(), params.tile_heads};
  const int64_t q_strides[3] = {p.q_head_stride, p.q_token_stride, p.q_head_stride * params.packed};
  const uint32_t q_box[4] = {64, static_cast<uint32_t>(params.packed),
                             static_cast<uint32_t>(params.tokens_per_tile), 1};
  params.q_map = cuda::encode_tensor_map(p.q, element, q_dims, q_strides, q_box, "q");
  // K and V by tiles of block_n keys x 64 columns; paged, a box is at most one page.
  const bool paged = p.kv.paged();
  params.box_rows = cuda::encode_kv_tensor_maps(p, element, 64, config.block_n, params.k_map, params.v_map);
  params.block_table = paged ? p.kv.block_table : nullptr;
  params.block_table_stride = paged ? p.kv.block_table_stride : 0;
  params.page_shift = paged ? detail::log2_exact(p.kv.page_size) : 0;
  params.q_rows = p.q;
  params.q_token_stride = p.q_token_stride;
  params.q_head_stride = p.q_head_stride;
  params.k_pool = detail::k_pool(p.kv);
  params.v_pool = detail::v_pool(p.kv);
  params.pages = detail::kv_pages(p.kv);

  launch_row(p.head_dim, params, bf16, params.total_tiles, device.compute_units, stream,
             std::make_index_sequence<std::size(kTileConfigs)>{});
  WIDEATTN_CUDA_CHECK_LAUNCH("fused_prefill_kernel");
  if (splits > 1) {
    // The split tiles' partial states -> out and LSE (sinks applied there), by the merge of the
    // two-pass decode, scheduled while the fused kernel drains (programmatic dependent launch).
    cuda::decode::DecodeParams merge;
    merge.out = p.out;
    merge.out_token_stride = p.out_token_stride;
    merge.out_head_stride = p.out_head_stride;
    merge.lse = p.lse;
    merge.lse_token_stride = p.lse_token_stride;
    merge.lse_head_stride = p.lse_head_stride;
    merge.sinks = p.sinks;
    merge.q_heads = p.q_heads;
    merge.kv_heads = p.kv_heads;
    merge.head_dim = p.head_dim;
    merge.batch = p.batch;
    merge.splits = splits;
    merge.partial_out = params.partial_out;
    merge.partial_max = params.partial_max;
    merge.partial_sum = params.partial_sum;
    cuda::decode::launch_decode_merge(merge, p.dtype, p.total_tokens() * p.q_heads, /*dependent=*/true, stream);
  }
}

}  // namespace wideattn::fused
