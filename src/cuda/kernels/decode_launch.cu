// run_decode: passes the sequence metadata (inline, or uploaded for large batches), picks the
// kernel (wgmma for fp8 caches at head_dim 512 on Hopper, core/decode_support.h; mma.sync tensor
// cores for 16-bit tensors whose rows are 16-byte aligned; SIMT otherwise), launches the split
// pass over head_dim and, for two_pass, the merge.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>
#include <vector>

#include "core/debug_options.h"
#include "core/decode_support.h"
#include "core/error.h"
#include "core/kv_layout.h"
#include "core/tuning.h"
#include "core/workspace_layout.h"
#include "cuda/kernels/decode.h"
#include "cuda/kernels/decode_config.h"
#include "cuda/kernels/decode_merge.cuh"
#include "cuda/kernels/decode_params.h"
#include "cuda/kernels/decode_trace.h"
#include "cuda/primitives/check.h"
#include "cuda/primitives/tensor_map.h"

namespace wideattn::cuda {
namespace {

using decode::DecodeParams;

#ifdef WIDEATTN_DECODE_TRACE
unsigned long long* g_trace = nullptr;  // decode::set_trace_buffer
#endif

// Whether every row the tensor-core kernel copies with 16-byte vectors is 16-byte aligned, for
// `tokens` query rows.
bool rows_aligned_16(const AttentionProblem& p, int64_t tokens) {
  const int64_t per16 = static_cast<int64_t>(16 / dtype_size(p.dtype));
  const int64_t kv_per16 = static_cast<int64_t>(16 / dtype_size(detail::kv_dtype(p.kv, p.dtype)));
  auto ok_pointer = [](const void* x) { return reinterpret_cast<std::uintptr_t>(x) % 16 == 0; };
  auto ok_stride = [&](int64_t stride, int64_t count, int64_t per = 0) {
    return count <= 1 || stride % (per ? per : per16) == 0;
  };
  // Pools: (sequence, slot) dims when contiguous, (page, slot in page) when paged.
  const int64_t outer = p.kv.paged() ? p.kv.num_pages : p.batch;
  const int64_t slots = p.kv.paged() ? p.kv.page_size : p.kv.capacity;
  auto ok_pool = [&](const detail::KvPool& pool) {
    return ok_pointer(pool.base) && ok_stride(pool.page_stride, outer, kv_per16) &&
           ok_stride(pool.token_stride, slots, kv_per16) && ok_stride(pool.head_stride, p.kv_heads, kv_per16);
  };
  return ok_pointer(p.q) && ok_pointer(p.out) && ok_stride(p.q_token_stride, tokens) &&
         ok_stride(p.q_head_stride, p.q_heads) && ok_stride(p.out_token_stride, tokens) &&
         ok_stride(p.out_head_stride, p.q_heads) && ok_pool(detail::k_pool(p.kv)) &&
         ok_pool(detail::v_pool(p.kv));
}

// Launches the split pass; true when it merged its splits in the grid (decode_grid_merge.cuh).
bool launch_split_pass(const DecodeParams& params, DType dtype, bool tensor_cores, dim3 grid,
                       std::size_t smem, bool programmatic, cudaStream_t stream) {
  switch (params.head_dim) {
#define WIDEATTN_DECODE_CASE(D)                                                           \
  case D:                                                                                 \
    if (tensor_cores) {                                                                   \
      return decode::launch_decode_mma<D>(params, dtype, grid, smem, programmatic, stream); \
    }                                                                                     \
    decode::launch_decode_simt<D>(params, dtype, grid, stream);                           \
    return false;
    WIDEATTN_DECODE_CASE(64)
    WIDEATTN_DECODE_CASE(128)
    WIDEATTN_DECODE_CASE(256)
    WIDEATTN_DECODE_CASE(512)
#undef WIDEATTN_DECODE_CASE
    default:
      detail::throw_invalid("run_decode", "head_dim", params.head_dim, "one of 64, 128, 256, 512");
  }
}

}  // namespace

void run_decode(const AttentionProblem& problem, const Plan& plan, const DeviceInfo& device,
                void* workspace, MergeBarriers barriers, cudaStream_t stream) {
  const char* f = "run_decode";
  const AttentionProblem& p = problem;
  const int32_t splits = plan.num_splits;
  if (splits < 1) detail::throw_invalid(f, "plan.num_splits", splits, ">= 1");
  // A plan from bounds: the metadata is device memory the host must not read; the grid, the
  // workspace and the merge cover the bounds and the kernels read the call's own lengths.
  const bool bounded = plan.device_metadata;
  const int64_t tokens = bounded ? plan.bounds.max_total_tokens : p.total_tokens();
  const detail::DecodeWorkspace ws = detail::decode_workspace_layout(tokens, p, splits);
  if (plan.workspace_bytes < ws.bytes) {
    detail::throw_invalid(f, "plan.workspace_bytes", plan.workspace_bytes,
                          ">= " + std::to_string(ws.bytes) + " (decode_workspace_layout for " +
                              std::to_string(splits) + " splits)");
  }
  if (!workspace) detail::throw_invalid(f, "workspace", "null", "plan.workspace_bytes of scratch");
  if (tokens == 0) return;

  int64_t max_suffix = bounded ? plan.bounds.max_suffix : 0;
  for (int32_t b = 0; b < p.batch && !bounded; ++b) {
    max_suffix = std::max<int64_t>(max_suffix, p.query_offsets[b + 1] - p.query_offsets[b]);
  }
  const int32_t gqa = p.q_heads / p.kv_heads;
  const int64_t row_blocks = (max_suffix * gqa + decode::kRowsPerBlock - 1) / decode::kRowsPerBlock;
  // Tensor cores need 16-byte rows and sm_80; the pipeline is as deep as the tuning table's
  // occupancy allows (decode_config.h) and the device's per-block shared memory (an A100's 163 KB
  // takes 2 stages at head_dim 512).
  bool tensor_cores =
      p.dtype != DType::f32 && device.compute_capability >= 80 && rows_aligned_16(p, tokens);
  if (p.kv.fp8 && !tensor_cores) {  // dispatch refuses these first; this names the cause
    detail::throw_error(StatusCode::unsupported,
                        "run_decode: kv.fp8 = true needs f16 or bf16 queries with 16-byte aligned rows "
                        "on an sm_80+ GPU (the SIMT decode kernel reads 16/32-bit caches only)");
  }
  const detail::Tuning tuning = detail::tuning_for(device);
  int32_t groups =
      tensor_cores ? detail::decode_row_blocks_per_item(tuning, p.dtype, row_blocks) : 1;
  int32_t stages = decode::kMinStages;
  std::size_t smem = 0;
  if (tensor_cores) {
    const decode::MmaShape shape = decode::mma_shape(p.head_dim, p.kv.fp8 ? 1 : 2);
    const std::size_t limit = device.shared_memory_per_block > 0
                                  ? static_cast<std::size_t>(device.shared_memory_per_block)
                                  : decode::kSharedPerBlockMax;
    const bool paged = p.kv.paged();
    for (; groups >= 1; --groups) {
      for (stages = shape.stages(groups, paged); stages >= decode::kMinStages; --stages) {
        if (shape.bytes(groups, stages, paged) <= limit) break;
      }
      if (stages >= decode::kMinStages) break;
    }
    if (groups < 1) {  // not even one row block with two stages: the SIMT kernel
      tensor_cores = false;
      groups = 1;
      stages = decode::kMinStages;
    } else {
      smem = shape.bytes(groups, stages, paged);
    }
  }

  DecodeParams d;
  d.q = p.q;
  d.q_token_stride = p.q_token_stride;
  d.q_head_stride = p.q_head_stride;
  d.k = detail::k_pool(p.kv);
  d.v = detail::v_pool(p.kv);
  d.pages = detail::kv_pages(p.kv);
  d.num_pages = p.kv.paged() ? p.kv.num_pages : p.batch;
  d.kv_fp8 = p.kv.fp8;
  d.k_scale = p.kv.k_scale;
  d.v_scale = p.kv.v_scale;
  d.scales_per_head = p.kv.scales_per_head;
  d.out = p.out;
  d.out_token_stride = p.out_token_stride;
  d.out_head_stride = p.out_head_stride;
  d.lse = p.lse;
  d.lse_token_stride = p.lse_token_stride;
  d.lse_head_stride = p.lse_head_stride;
  d.sinks = p.sinks;
  d.mask = p.mask;
  d.simple_mask = !p.mask.tree_start && p.mask.ring_length == 0 && p.mask.window == 0;
  d.scale = p.effective_scale();
  d.softcap = p.softcap;
  d.batch = p.batch;
  d.q_heads = p.q_heads;
  d.kv_heads = p.kv_heads;
  d.gqa = gqa;
  d.head_dim = p.head_dim;
  d.groups = groups;
  d.key_sets = tensor_cores ? decode::key_sets_for(p.head_dim, groups) : 1;
  if (d.key_sets > 1 && detail::decode_key_sets_override()) d.key_sets = detail::decode_key_sets_override();
  d.stages = stages;
  d.row_items = static_cast<int32_t>((row_blocks + groups - 1) / groups);
  d.splits = splits;
#ifdef WIDEATTN_DECODE_TRACE
  d.trace = g_trace;
#endif

  // Sequence metadata: the caller's device arrays for a plan from bounds; else inline in the
  // parameters when it fits, or one copy into the workspace from a staging vector (pageable
  // memory: the driver has consumed it when cudaMemcpyAsync returns, so the caller may reuse its
  // arrays at once).
  const std::size_t entries = bounded ? 0 : 2 * static_cast<std::size_t>(p.batch) + 1;
  int32_t* staged = d.inline_metadata;
  std::vector<int32_t> upload;
  if (bounded) {
    d.query_offsets = p.query_offsets;
    d.kv_lengths = p.kv_lengths;
    d.check_metadata = true;
    d.max_total_tokens = plan.bounds.max_total_tokens;
    d.max_suffix = plan.bounds.max_suffix;
    d.max_kv_length = plan.bounds.max_kv_length;
    d.errors = plan.bounds.errors;
  } else if (entries > static_cast<std::size_t>(DecodeParams::kInlineMetadata)) {
    if (stream_is_capturing(stream)) {
      detail::throw_error(StatusCode::unsupported,
                          "attention: batch = " + std::to_string(p.batch) +
                              " under CUDA graph capture, expected a batch of at most " +
                              std::to_string((DecodeParams::kInlineMetadata - 1) / 2) +
                              " (larger batches upload their metadata from host memory, which a "
                              "graph cannot record)");
    }
    upload.resize(entries);
    staged = upload.data();
  }
  if (!bounded) {
    std::copy(p.query_offsets, p.query_offsets + p.batch + 1, staged);
    std::copy(p.kv_lengths, p.kv_lengths + p.batch, staged + p.batch + 1);
  }
  char* base = static_cast<char*>(workspace);
  if (!upload.empty()) {
    int32_t* metadata = reinterpret_cast<int32_t*>(base + ws.metadata);
    WIDEATTN_CUDA_CHECK(cudaMemcpyAsync(metadata, upload.data(), entries * sizeof(int32_t),
                                        cudaMemcpyHostToDevice, stream));
    d.query_offsets = metadata;
    d.kv_lengths = metadata + p.batch + 1;
  }
  if (splits > 1) {
    d.partial_out = reinterpret_cast<float*>(base + ws.partial_out);
    d.partial_max = reinterpret_cast<float*>(base + ws.partial_max);
    d.partial_sum = reinterpret_cast<float*>(base + ws.partial_sum);
  }

  // Head_dim 512 over an fp8 cache on Hopper: the wgmma kernel (decode_wgmma.cuh), one CTA per
  // (sequence, KV head, split), K and V by TMA.
  const bool wgmma = !detail::decode_wgmma_unsupported(p, device, max_suffix);
  if (wgmma) d.row_items = 1;
  const int64_t ctas = int64_t{p.batch} * p.kv_heads * splits * d.row_items;
  if (ctas > INT_MAX) {
    detail::throw_invalid(f, "batch x kv_heads x splits x row blocks", ctas, "<= 2^31 - 1");
  }
  bool merged = false;
  if (wgmma && ctas > 0) {
    decode::DecodeWgmmaParams w;
    w.decode = d;
    w.box_rows = encode_kv_tensor_maps(p, TensorMapElement::u8, 128, 64, w.k_map, w.v_map);
    w.l2_only = detail::decode_wgmma_l2_only();
    decode::launch_decode_wgmma(w, p.dtype, max_suffix * gqa, dim3(static_cast<unsigned>(ctas)),
                                device.compute_capability >= 90, stream);
  } else if (ctas > 0) {
    // The tensor-core split pass merges its own splits where its grid can be resident at once
    // (decode_grid_merge.cuh: one launch instead of two, 3-6 us less host time a call, the same
    // GPU time) and each CTA merges at most one (query row, column slice) item of its group:
    // more would run one after another where the merge kernel spreads them over the GPU.
    const int grid_merge = detail::decode_grid_merge_override();
    const int threads = d.groups * d.key_sets * decode::kThreadsPerGroup;
    const int64_t items = max_suffix * gqa * decode::merge_shape(splits, p.head_dim, threads).slices;
    if (splits > 1 && tensor_cores && grid_merge != 0 && barriers.words &&
        int64_t{p.batch} * p.kv_heads <= barriers.count && items <= int64_t{splits} * d.row_items) {
      d.merge_barriers = barriers.words;
    }
    // sm_90: the tensor-core split pass overlaps its launch with the end of the kernel before
    // it, and the merge with the split pass (programmatic dependent launches).
    merged = launch_split_pass(d, p.dtype, tensor_cores, dim3(static_cast<unsigned>(ctas)), smem,
                               device.compute_capability >= 90, stream);
  }
  if (splits > 1 && !merged) {
    decode::launch_decode_merge(d, p.dtype, tokens * p.q_heads,
                                device.compute_capability >= 90 && ctas > 0, stream);
  }
}

#ifdef WIDEATTN_DECODE_TRACE
void decode::set_trace_buffer(unsigned long long* device_buffer) { g_trace = device_buffer; }
#endif

}  // namespace wideattn::cuda
