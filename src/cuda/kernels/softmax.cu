// Row-wise softmax, f32 math, for rows of any length (up to 256K columns and beyond).
//
// A row is processed by a "row group" of threads: one warp for short rows (several rows per
// CTA), the whole CTA for long ones. Two passes over the row, nothing of it held on chip:
//   1. each thread keeps an online (max, sum of exp) state over its elements; the group merges;
//      the block's sink (if any) joins as one more logit;
//   2. each element becomes exp(x - max) / sum, converted to the output dtype.
// A row of only -inf (and no sink) writes zeros and LSE -inf. Loads are 16-byte float4 and
// stores 4-element packed once the row pointer is aligned; a scalar head and tail cover the rest.
// With a SoftmaxMask (the prefill pipeline) each element is masked and soft-capped as it is
// read, in both passes, so the scores are read twice instead of read, rewritten and read twice.
// Where the mask gives each query one interval of keys (no tree, no ring), a row reads only the
// 4-element groups that overlap its interval: the hidden columns of a causal chunk's diagonal
// block or outside a window are written as zeros without being read. Each thread still owns the
// same groups (v = lane mod group), and a group of hidden keys adds exactly nothing to the
// running (max, sum), so the results are bit for bit those of reading every column.
#include "cuda/kernels/softmax.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "core/mask.h"
#include "cuda/primitives/check.h"
#include "cuda/primitives/dtype.cuh"
#include "cuda/primitives/reduce.cuh"

namespace wideattn::cuda {
namespace {

constexpr int kThreads = 256;              // threads per CTA
constexpr int64_t kWarpRowMaxCols = 1024;  // rows up to this long get one warp each
constexpr int64_t kMaxGrid = int64_t{1} << 20;

struct SoftmaxParams {
  const float* input;  // [rows, cols], row stride input_row_stride
  int64_t input_row_stride;
  void* output;  // [rows, cols] of Out, row stride output_row_stride; may equal input (f32)
  int64_t output_row_stride;
  int64_t rows, cols;
  int64_t rows_per_block;  // > 0
  const float* sinks;      // [rows / rows_per_block] or null
  float* lse;              // lse[blk * lse_block_stride + r * lse_row_stride] or null
  int64_t lse_block_stride, lse_row_stride;
  bool warp_per_row;
  bool masked;          // apply `mask` while reading (SoftmaxMask)
  bool mask_intervals;  // no tree, no ring: each query sees one interval of keys
  SoftmaxMask mask;
};

// Which columns of a row its query sees: [lo, hi) when the mask is an interval per query (the
// predicate reduces to two compares), else every column is tested with key_visible.
struct RowVisibility {
  int64_t query, lo, hi;
};

__device__ __forceinline__ RowVisibility row_visibility(const SoftmaxParams& p, int64_t query) {
  RowVisibility v{query, 0, p.cols};
  if (p.masked && p.mask_intervals) {
    const detail::KeyRange keys = detail::visible_key_range(p.mask.mask, query, query + 1);
    v.lo = keys.first - p.mask.first_key;
    v.hi = keys.last - p.mask.first_key;
  }
  return v;
}

// The logit of input element x in column c (x_scale: the mask's logit_scale, or 1).
__device__ __forceinline__ float masked_logit(const SoftmaxParams& p, const RowVisibility& v,
                                              int64_t c, float x, float x_scale) {
  if (!p.masked) return x;
  const bool visible = p.mask_intervals
                           ? c >= v.lo && c < v.hi
                           : detail::key_visible(p.mask.mask, v.query, p.mask.first_key + c);
  if (!visible) return -INFINITY;
  x *= x_scale;
  return p.mask.softcap > 0.0f ? p.mask.softcap * tanhf(x / p.mask.softcap) : x;
}

// The split of one row into a scalar head [0, head), `vectors` groups of 4 elements starting at
// `head` (input 16-byte aligned, output aligned to 4 elements), and a scalar tail.
struct RowSplit {
  int64_t head;
  int64_t vectors;
};

template <typename Out>
__device__ __forceinline__ RowSplit split_row(const float* x, const Out* y, int64_t cols) {
  const int64_t head = static_cast<int64_t>((16 - (reinterpret_cast<uintptr_t>(x) & 15)) & 15) / 4;
  if (head >= cols || !is_aligned(y + head, 4 * sizeof(Out))) return RowSplit{cols, 0};
  return RowSplit{head, (cols - head) / 4};
}

// The columns a row reads: [lo, hi) of its visible interval (interval masks), else all, and the
// 4-element groups of `split` that overlap them, [v_lo, v_hi).
struct ReadRange {
  int64_t lo, hi, v_lo, v_hi;
  __device__ __forceinline__ bool reads(int64_t c) const { return c >= lo && c < hi; }
  __device__ __forceinline__ bool reads_group(int64_t v) const { return v >= v_lo && v < v_hi; }
};

__device__ __forceinline__ ReadRange read_range(const SoftmaxParams& p, const RowVisibility& v,
                                                const RowSplit& split) {
  ReadRange r{0, p.cols, 0, split.vectors};
  if (p.masked && p.mask_intervals) {
    r.lo = min(max(v.lo, int64_t{0}), p.cols);
    r.hi = min(max(v.hi, r.lo), p.cols);
    r.v_lo = r.lo <= split.head ? 0 : min(split.vectors, (r.lo - split.head) / 4);
    r.v_hi = r.hi <= split.head ? 0 : min(split.vectors, (r.hi - split.head + 3) / 4);
    if (r.v_hi < r.v_lo) r.v_hi = r.v_lo;
  }
  return r;
}

// The first group index >= from that thread `lane` of `group` threads owns (index = lane mod group).
__device__ __forceinline__ int64_t first_owned(int64_t from, int lane, int group) {
  const int64_t offset = (lane - from) % group;
  return from + (offset < 0 ? offset + group : offset);
}

// One row, processed by `group` threads of which this one is `lane`. Block mode (warp_per_row
// false) must be called by every thread of the CTA.
template <typename Out>
__device__ __forceinline__ void softmax_row(const SoftmaxParams& p, int64_t row, int lane,
                                            int group, MaxSum* scratch) {
  const int64_t cols = p.cols;
  const float* x = p.input + row * p.input_row_stride;
  Out* y = static_cast<Out*>(p.output) + row * p.output_row_stride;
  const RowSplit split = cols > 0 ? split_row(x, y, cols) : RowSplit{0, 0};
  const int64_t tail = split.head + 4 * split.vectors;
  const int64_t block = row / p.rows_per_block;
  const RowVisibility visibility =
      row_visibility(p, p.mask.first_query + (row - block * p.rows_per_block));
  // The fp8 cache's scales (SoftmaxMask): 16-bit probabilities only, as fp8 needs 16-bit
  // queries; compiled out of the f32 kernel, where they cost a register spill.
  constexpr bool kScaled = !std::is_same_v<Out, float>;
  const float x_scale = kScaled && p.masked && p.mask.logit_scale ? *p.mask.logit_scale : 1.0f;
  auto logit = [&](int64_t c, float v) { return masked_logit(p, visibility, c, v, x_scale); };
  const ReadRange read = read_range(p, visibility, split);

  // Pass 1: online max and sum over the columns read (the others add nothing).
  MaxSum state = MaxSum::empty();
  for (int64_t i = lane; i < split.head; i += group) {
    if (read.reads(i)) state.add(logit(i, x[i]));
  }
  const float4* xv = reinterpret_cast<const float4*>(x + split.head);
  for (int64_t v = first_owned(read.v_lo, lane, group); v < read.v_hi; v += group) {
    const float4 f = xv[v];
    const int64_t c = split.head + 4 * v;
    state.add4(logit(c, f.x), logit(c + 1, f.y), logit(c + 2, f.z), logit(c + 3, f.w));
  }
  for (int64_t i = tail + lane; i < cols; i += group) {
    if (read.reads(i)) state.add(logit(i, x[i]));
  }
  state = p.warp_per_row ? warp_merge(state) : block_merge(state, scratch);

  if (p.sinks) state.merge(MaxSum{p.sinks[block], 1.0f});
  const bool empty = state.max == -INFINITY;
  if (lane == 0 && p.lse) {
    const int64_t r = row - block * p.rows_per_block;
    p.lse[block * p.lse_block_stride + r * p.lse_row_stride] =
        empty ? -INFINITY : state.max + logf(state.sum);
  }

  // Pass 2: normalise. An empty row has no max to subtract: write zeros. Columns not read are
  // hidden: their probability is exactly 0 (what exp(-inf - max) * inv_sum gives).
  const float max = empty ? 0.0f : state.max;
  const float y_scale =
      kScaled && p.masked && p.mask.probability_scale ? *p.mask.probability_scale : 1.0f;
  const float inv_sum = empty ? 0.0f : y_scale / state.sum;
  auto probability = [&](int64_t c) {
    return read.reads(c) ? exp_f32(logit(c, x[c]) - max) * inv_sum : 0.0f;
  };
  for (int64_t i = lane; i < split.head; i += group) y[i] = from_float<Out>(probability(i));
  for (int64_t v = lane; v < split.vectors; v += group) {
    const int64_t c = split.head + 4 * v;
    float e[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (read.reads_group(v)) {
      const float4 f = xv[v];
      e[0] = exp_f32(logit(c, f.x) - max) * inv_sum;
      e[1] = exp_f32(logit(c + 1, f.y) - max) * inv_sum;
      e[2] = exp_f32(logit(c + 2, f.z) - max) * inv_sum;
      e[3] = exp_f32(logit(c + 3, f.w) - max) * inv_sum;
    }
    store_packed<4>(y + split.head + 4 * v, e);
  }
  for (int64_t i = tail + lane; i < cols; i += group) y[i] = from_float<Out>(probability(i));
}

template <typename Out>
__global__ void __launch_bounds__(kThreads) softmax_kernel(const SoftmaxParams p) {
  __shared__ MaxSum scratch[kWarpSize + 1];
  if (p.warp_per_row) {
    const int64_t rows_per_cta = blockDim.x / kWarpSize;
    const int lane = threadIdx.x % kWarpSize;
    for (int64_t row = blockIdx.x * rows_per_cta + threadIdx.x / kWarpSize; row < p.rows;
         row += int64_t{gridDim.x} * rows_per_cta) {
      softmax_row<Out>(p, row, lane, kWarpSize, scratch);
    }
  } else {
    for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
      softmax_row<Out>(p, row, threadIdx.x, blockDim.x, scratch);
    }
  }
}

}  // namespace

void launch_softmax(const SoftmaxArguments& args, cudaStream_t stream, const SoftmaxMask* mask) {
  if (args.rows == 0) return;
  SoftmaxParams p;
  p.input = args.input;
  p.input_row_stride = args.input_row_stride;
  p.output = args.output;
  p.output_row_stride = args.output_row_stride;
  p.rows = args.rows;
  p.cols = args.cols;
  p.rows_per_block = args.rows_per_block > 0 ? args.rows_per_block : args.rows;
  p.sinks = args.sinks;
  p.lse = args.lse;
  p.lse_block_stride = args.lse_block_stride;
  p.lse_row_stride = args.lse_row_stride;
  p.warp_per_row = args.cols <= kWarpRowMaxCols;
  p.masked = mask != nullptr;
  p.mask_intervals = false;
  if (mask) {
    if (args.output_dtype == DType::f32 && (mask->logit_scale || mask->probability_scale)) {
      detail::throw_invalid("masked_softmax", "output_dtype", "f32",
                            "f16 or bf16 probabilities with logit_scale/probability_scale");
    }
    p.mask = *mask;
    p.mask_intervals = !mask->mask.spec.tree_start && mask->mask.spec.ring_length == 0;
  }

  const int64_t rows_per_cta = p.warp_per_row ? kThreads / kWarpSize : 1;
  const dim3 grid(static_cast<unsigned>(std::min((p.rows + rows_per_cta - 1) / rows_per_cta, kMaxGrid)));
  switch (args.output_dtype) {
    case DType::f32:
      softmax_kernel<float><<<grid, kThreads, 0, stream>>>(p);
      break;
    case DType::f16:
      softmax_kernel<__half><<<grid, kThreads, 0, stream>>>(p);
      break;
    case DType::bf16:
      softmax_kernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(p);
      break;
    default:
      detail::throw_invalid("softmax", "output_dtype", static_cast<int>(args.output_dtype),
                            "f32, f16 or bf16");
  }
  WIDEATTN_CUDA_CHECK_LAUNCH("softmax_kernel");
}

}  // namespace wideattn::cuda
