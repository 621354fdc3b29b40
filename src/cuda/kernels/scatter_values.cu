// scatter_values: out[r * out_token_stride + h * out_head_stride + e] = src[h, r, e] as Out.
//
// One "line" is one (head, row) pair of head_dim elements. threadIdx.y picks a line, threadIdx.x
// walks along it in chunks of kVector elements: 16-byte stores (8 x 16-bit or 4 x f32) when every
// pointer and stride allows it, one element per chunk otherwise.
#include "cuda/kernels/scatter_values.h"

#include <algorithm>
#include <cstdint>

#include "cuda/primitives/check.h"
#include "cuda/primitives/dtype.cuh"

namespace wideattn::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = int64_t{1} << 20;

struct ScatterValuesParams {
  const float* src;  // [heads, rows, head_dim]
  int64_t src_head_stride, src_row_stride;
  void* out;  // Out, already at (first row, first head)
  int64_t out_token_stride, out_head_stride;
  int32_t heads;
  int64_t rows;
  int32_t head_dim;
  bool packed;  // 16-byte chunks allowed
};

template <typename Out>
__global__ void __launch_bounds__(kThreads) scatter_values_kernel(const ScatterValuesParams p) {
  constexpr int kVector = 16 / sizeof(Out);
  const int64_t lines = int64_t{p.heads} * p.rows;
  const int chunks = p.packed ? p.head_dim / kVector : p.head_dim;
  for (int64_t line = int64_t{blockIdx.x} * blockDim.y + threadIdx.y; line < lines;
       line += int64_t{gridDim.x} * blockDim.y) {
    const int64_t h = line / p.rows;
    const int64_t r = line - h * p.rows;
    const float* src = p.src + h * p.src_head_stride + r * p.src_row_stride;
    Out* out = static_cast<Out*>(p.out) + r * p.out_token_stride + h * p.out_head_stride;
    if (p.packed) {
      for (int i = threadIdx.x; i < chunks; i += blockDim.x) {
        float v[kVector];
#pragma unroll
        for (int j = 0; j < kVector; j += 4) {
          float q[4];
          load_packed<4>(src + i * kVector + j, q);
#pragma unroll
          for (int t = 0; t < 4; ++t) v[j + t] = q[t];
        }
        store_packed<kVector>(out + i * kVector, v);
      }
    } else {
      for (int i = threadIdx.x; i < chunks; i += blockDim.x) out[i] = from_float<Out>(src[i]);
    }
  }
}

template <typename Out>
void launch_typed(ScatterValuesParams p, cudaStream_t stream) {
  constexpr int kVector = 16 / sizeof(Out);
  // A stride of a dimension of size 1 is never used, whatever its value.
  const bool one_head = p.heads == 1, one_row = p.rows == 1;
  p.packed = p.head_dim % kVector == 0 && is_aligned(p.src, 16) && is_aligned(p.out, 16) &&
             (one_head || (p.src_head_stride % 4 == 0 && p.out_head_stride % kVector == 0)) &&
             (one_row || (p.src_row_stride % 4 == 0 && p.out_token_stride % kVector == 0));
  const int chunks = p.packed ? p.head_dim / kVector : p.head_dim;
  // x covers a line's chunks (rounded up to whole warps), y fills the CTA with lines.
  const int x = std::min(kThreads, (chunks + 31) / 32 * 32);
  const dim3 block(x, kThreads / x);
  const int64_t lines = int64_t{p.heads} * p.rows;
  const dim3 grid(static_cast<unsigned>(std::min((lines + block.y - 1) / block.y, kMaxGrid)));
  scatter_values_kernel<Out><<<grid, block, 0, stream>>>(p);
  WIDEATTN_CUDA_CHECK_LAUNCH("scatter_values_kernel");
}

}  // namespace

void launch_scatter_values(const ScatterValuesArguments& args, cudaStream_t stream) {
  if (args.heads == 0 || args.rows == 0) return;
  ScatterValuesParams p;
  p.src = args.src;
  p.src_head_stride = args.src_head_stride;
  p.src_row_stride = args.src_row_stride;
  p.out = args.out;
  p.out_token_stride = args.out_token_stride;
  p.out_head_stride = args.out_head_stride;
  p.heads = args.heads;
  p.rows = args.rows;
  p.head_dim = args.head_dim;
  p.packed = false;
  switch (args.dtype) {
    case DType::f32:
      launch_typed<float>(p, stream);
      break;
    case DType::f16:
      launch_typed<__half>(p, stream);
      break;
    case DType::bf16:
      launch_typed<__nv_bfloat16>(p, stream);
      break;
    default:
      detail::throw_invalid("scatter_values", "dtype", static_cast<int>(args.dtype),
                            "f32, f16 or bf16");
  }
}

}  // namespace wideattn::cuda
