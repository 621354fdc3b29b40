// scatter_scores: dst[h, r, c] = visible(r, c) ? softcap(scores[h, r, c]) : -inf.
//
// The mask does not depend on the head, so a thread owns one (row, column) cell, evaluates the
// predicate once (detail::key_visible, the same code the CPU and the reference use) and applies
// it to every head. Threads run along the columns (coalesced); grid.y strides over rows.
#include "cuda/kernels/scatter_scores.h"

#include <algorithm>
#include <cstdint>

#include "core/mask.h"
#include "cuda/primitives/check.h"

namespace wideattn::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;

struct ScatterScoresParams {
  const float* scores;  // [heads, rows, cols]
  int64_t scores_head_stride, scores_row_stride;
  float* dst;  // [heads, rows, cols]; may equal scores (same strides)
  int64_t dst_head_stride, dst_row_stride;
  int32_t heads;
  int64_t rows, cols;
  int64_t first_query, first_key;
  SequenceMask mask;  // tree pointers are device pointers
  float softcap;      // > 0: softcap * tanh(s / softcap)
};

__global__ void __launch_bounds__(kThreads) scatter_scores_kernel(const ScatterScoresParams p) {
  const int64_t c = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (c >= p.cols) return;
  for (int64_t r = blockIdx.y; r < p.rows; r += gridDim.y) {
    const bool visible = detail::key_visible(p.mask, p.first_query + r, p.first_key + c);
    const float* src = p.scores + r * p.scores_row_stride + c;
    float* dst = p.dst + r * p.dst_row_stride + c;
    for (int32_t h = 0; h < p.heads; ++h) {
      float s = -INFINITY;
      if (visible) {
        s = src[h * p.scores_head_stride];
        if (p.softcap > 0.0f) s = p.softcap * tanhf(s / p.softcap);
      }
      dst[h * p.dst_head_stride] = s;
    }
  }
}

}  // namespace

void launch_scatter_scores(const ScatterScoresArguments& args, cudaStream_t stream) {
  if (args.heads == 0 || args.rows == 0 || args.cols == 0) return;
  ScatterScoresParams p;
  p.scores = args.scores;
  p.scores_head_stride = args.scores_head_stride;
  p.scores_row_stride = args.scores_row_stride;
  p.dst = args.dst;
  p.dst_head_stride = args.dst_head_stride;
  p.dst_row_stride = args.dst_row_stride;
  p.heads = args.heads;
  p.rows = args.rows;
  p.cols = args.cols;
  p.first_query = args.first_query;
  p.first_key = args.first_key;
  p.mask = args.mask;
  p.softcap = args.softcap;
  const dim3 grid(static_cast<unsigned>((args.cols + kThreads - 1) / kThreads),
                  static_cast<unsigned>(std::min(args.rows, kMaxGridY)));
  scatter_scores_kernel<<<grid, kThreads, 0, stream>>>(p);
  WIDEATTN_CUDA_CHECK_LAUNCH("scatter_scores_kernel");
}

}  // namespace wideattn::cuda
