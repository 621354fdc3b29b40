// One warp per output row of the P V product: the lanes look for inf or NaN along the row
// (one coalesced read of D); a row without any is done. In a row with some, each lane sums its
// non-finite columns again over the keys of non-zero probability, reading P and V directly: a
// slow path, taken only where inf or NaN is present (a hidden V row's 0 x inf = NaN, or values
// that really are non-finite, which the recomputation reproduces).
#include "cuda/kernels/nonfinite_products.h"

#include <algorithm>
#include <cstdint>

#include "core/error.h"
#include "cuda/primitives/check.h"
#include "cuda/primitives/dtype.cuh"
#include "cuda/primitives/reduce.cuh"

namespace wideattn::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = int64_t{1} << 20;

struct NonfiniteParams {
  const void* a;  // probabilities [batch][m, k], row stride lda
  int64_t lda, a_batch_stride;
  const void* b;  // V [batch][k, n], row stride ldb
  int64_t ldb, b_batch_stride;
  float* d;  // [batch][m, n], row stride ldd
  int64_t ldd, d_batch_stride;
  int64_t m, n, k;
  int32_t batch;
  float ab_scale;
};

template <typename T>
__global__ void __launch_bounds__(kThreads) recompute_nonfinite_kernel(const NonfiniteParams p) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t warps = int64_t{gridDim.x} * (blockDim.x / kWarpSize);
  const int64_t lines = int64_t{p.batch} * p.m;
  for (int64_t line = int64_t{blockIdx.x} * (blockDim.x / kWarpSize) + threadIdx.x / kWarpSize;
       line < lines; line += warps) {  // warp-uniform: every lane reaches the ballot
    const int64_t batch = line / p.m, r = line - batch * p.m;
    float* d = p.d + batch * p.d_batch_stride + r * p.ldd;
    bool nonfinite = false;
    for (int64_t x = lane; x < p.n; x += kWarpSize) nonfinite |= !isfinite(d[x]);
    if (!__any_sync(0xffffffffu, nonfinite)) continue;
    const T* a = static_cast<const T*>(p.a) + batch * p.a_batch_stride + r * p.lda;
    const T* b = static_cast<const T*>(p.b) + batch * p.b_batch_stride;
    for (int64_t x = lane; x < p.n; x += kWarpSize) {
      if (isfinite(d[x])) continue;
      float sum = 0.0f;
      for (int64_t key = 0; key < p.k; ++key) {
        const float probability = to_float(a[key]);
        if (probability != 0.0f) sum = fmaf(probability, to_float(b[key * p.ldb + x]), sum);
      }
      d[x] = p.ab_scale * sum;
    }
  }
}

}  // namespace

void launch_recompute_nonfinite_products(const MatmulArguments& pv, cudaStream_t stream) {
  if (pv.m == 0 || pv.n == 0 || pv.batch == 0) return;
  if (pv.a_dtype != pv.b_dtype || pv.d_dtype != DType::f32 || pv.b_transpose || pv.c != MatmulC::none) {
    detail::throw_error(StatusCode::internal,
                        "recompute_nonfinite_products: expected equal A and B dtypes, f32 D, B not "
                        "transposed, no C");
  }
  const std::size_t ab_size = dtype_size(pv.a_dtype);
  NonfiniteParams p;
  p.a = static_cast<const char*>(pv.a) + pv.a_offset * ab_size;
  p.lda = pv.a_leading_dimension ? pv.a_leading_dimension : pv.k;
  p.a_batch_stride = pv.a_batch_stride;
  p.b = static_cast<const char*>(pv.b) + pv.b_offset * ab_size;
  p.ldb = pv.b_leading_dimension ? pv.b_leading_dimension : pv.n;
  p.b_batch_stride = pv.b_batch_stride;
  p.d = static_cast<float*>(pv.d) + pv.d_offset;
  p.ldd = pv.d_leading_dimension ? pv.d_leading_dimension : pv.n;
  p.d_batch_stride = pv.d_batch_stride;
  p.m = pv.m;
  p.n = pv.n;
  p.k = pv.k;
  p.batch = pv.batch;
  p.ab_scale = pv.ab_scale;
  const int64_t lines = int64_t{p.batch} * p.m;
  const int64_t warps_per_cta = kThreads / kWarpSize;
  const dim3 grid(static_cast<unsigned>(std::min((lines + warps_per_cta - 1) / warps_per_cta, kMaxGrid)));
  switch (pv.a_dtype) {
    case DType::f32:
      recompute_nonfinite_kernel<float><<<grid, kThreads, 0, stream>>>(p);
      break;
    case DType::f16:
      recompute_nonfinite_kernel<__half><<<grid, kThreads, 0, stream>>>(p);
      break;
    case DType::bf16:
      recompute_nonfinite_kernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(p);
      break;
    default:
      detail::throw_invalid("recompute_nonfinite_products", "a_dtype", static_cast<int>(pv.a_dtype),
                            "f32, f16 or bf16");
  }
  WIDEATTN_CUDA_CHECK_LAUNCH("recompute_nonfinite_kernel");
}

}  // namespace wideattn::cuda
