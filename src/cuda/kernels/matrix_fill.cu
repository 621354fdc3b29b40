// Fill and convert over strided batches of row-major matrices (see matrix_fill.h). Threads run
// along a row (coalesced); grid.y strides over the batch's rows.
#include "cuda/kernels/matrix_fill.h"

#include <algorithm>

#include "cuda/primitives/check.h"
#include "cuda/primitives/dtype.cuh"

#define WIDEATTN_STRINGIFY_(x) #x
#define WIDEATTN_STRINGIFY(x) WIDEATTN_STRINGIFY_(x)

namespace wideattn::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;

template <typename T>
__global__ void __launch_bounds__(kThreads) matrix_fill_kernel(const MatrixFill f) {
  const int64_t j = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (j >= f.n) return;
  const T value = f.bias ? static_cast<const T*>(f.bias)[j] : from_float<T>(0.0f);
  const int64_t lines = int64_t{f.batch} * f.m;
  for (int64_t line = blockIdx.y; line < lines; line += gridDim.y) {
    const int64_t b = line / f.m;
    const int64_t i = line - b * f.m;
    static_cast<T*>(f.d)[b * f.batch_stride + i * f.ld + j] = value;
  }
}

constexpr int dtype_pair(DType src, DType dst) {
  return static_cast<int>(src) * 4 + static_cast<int>(dst);
}

template <typename Src, typename Dst>
__global__ void __launch_bounds__(kThreads) matrix_convert_kernel(const MatrixConvert c) {
  const int64_t j = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (j >= c.n) return;
  const float bias = c.bias ? to_float(static_cast<const Src*>(c.bias)[j]) : 0.0f;
  const int64_t lines = int64_t{c.batch} * c.m;
  for (int64_t line = blockIdx.y; line < lines; line += gridDim.y) {
    const int64_t b = line / c.m;
    const int64_t i = line - b * c.m;
    const float v =
        c.src ? to_float(static_cast<const Src*>(c.src)[b * c.src_batch_stride + i * c.src_ld + j])
              : 0.0f;
    static_cast<Dst*>(c.dst)[b * c.dst_batch_stride + i * c.dst_ld + j] = from_float<Dst>(v + bias);
  }
}

}  // namespace

void launch_matrix_convert(const MatrixConvert& c, cudaStream_t stream) {
  if (c.m == 0 || c.n == 0 || c.batch == 0) return;
  const dim3 grid(static_cast<unsigned>((c.n + kThreads - 1) / kThreads),
                  static_cast<unsigned>(std::min(int64_t{c.batch} * c.m, kMaxGridY)));
  switch (dtype_pair(c.src_dtype, c.dst_dtype)) {
    case dtype_pair(DType::f16, DType::f32):
      matrix_convert_kernel<__half, float><<<grid, kThreads, 0, stream>>>(c);
      break;
    case dtype_pair(DType::bf16, DType::f32):
      matrix_convert_kernel<__nv_bfloat16, float><<<grid, kThreads, 0, stream>>>(c);
      break;
    case dtype_pair(DType::f32, DType::f16):
      matrix_convert_kernel<float, __half><<<grid, kThreads, 0, stream>>>(c);
      break;
    case dtype_pair(DType::f32, DType::bf16):
      matrix_convert_kernel<float, __nv_bfloat16><<<grid, kThreads, 0, stream>>>(c);
      break;
    default:
      detail::throw_error(StatusCode::internal,
                          std::string("matmul: no staging conversion from ") +
                              to_string(c.src_dtype) + " to " + to_string(c.dst_dtype));
  }
  WIDEATTN_CUDA_CHECK_LAUNCH("matrix_convert_kernel");
}

void launch_matrix_fill(const MatrixFill& f, cudaStream_t stream) {
  if (f.m == 0 || f.n == 0 || f.batch == 0) return;
  const dim3 grid(static_cast<unsigned>((f.n + kThreads - 1) / kThreads),
                  static_cast<unsigned>(std::min(int64_t{f.batch} * f.m, kMaxGridY)));
  switch (f.dtype) {
    case DType::f32:
      matrix_fill_kernel<float><<<grid, kThreads, 0, stream>>>(f);
      break;
    case DType::f16:
      matrix_fill_kernel<__half><<<grid, kThreads, 0, stream>>>(f);
      break;
    case DType::bf16:
      matrix_fill_kernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(f);
      break;
    default:
      detail::throw_invalid("matmul", "d_dtype", static_cast<int>(f.dtype), "f32, f16 or bf16");
  }
  WIDEATTN_CUDA_CHECK_LAUNCH("matrix_fill_kernel");
}

bool kernel_image_available(std::string* reason) {
  cudaFuncAttributes attributes{};
  const cudaError_t status = cudaFuncGetAttributes(&attributes, matrix_fill_kernel<float>);
  if (status == cudaSuccess) return true;
  cudaGetLastError();  // not sticky: clear it so later launch checks do not report it
  if (reason) {
    *reason = std::string("this build of wideattn has no kernel image for the device (") +
              cudaGetErrorString(status) + "); it was compiled for CUDA architectures " +
#if defined(__CUDA_ARCH_LIST__)
              WIDEATTN_STRINGIFY(__CUDA_ARCH_LIST__) +
#else
              "(unknown)" +
#endif
              " (reconfigure with -DWIDEATTN_CUDA_ARCHS=<the device's, e.g. 80 or 90a>)";
  }
  return false;
}

}  // namespace wideattn::cuda
