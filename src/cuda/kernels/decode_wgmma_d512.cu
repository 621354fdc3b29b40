// The wgmma decode kernel at head_dim 512 (fp8 caches, sm_90a): f16 and bf16 queries, 8, 16 or
// 32 query rows per (sequence, KV head).
#include "core/error.h"
#include "cuda/kernels/decode_wgmma.cuh"

namespace wideattn::cuda::decode {

void launch_decode_wgmma(const DecodeWgmmaParams& p, DType dtype, int64_t rows, dim3 grid, bool programmatic,
                         cudaStream_t stream) {
  if (dtype != DType::f16 && dtype != DType::bf16) {
    wideattn::detail::throw_invalid("run_decode", "dtype", to_string(dtype), "f16 or bf16 for the wgmma decode kernel");
  }
  if (rows < 1 || rows > kWgmmaMaxRows) {
    wideattn::detail::throw_invalid("run_decode", "query rows per KV head", rows,
                                    "1 .. " + std::to_string(kWgmmaMaxRows) + " for the wgmma decode kernel");
  }
  const bool bf16 = dtype == DType::bf16;
  auto launch = [&](auto rows_constant) {
    constexpr int kN = decltype(rows_constant)::value;
    if (bf16) {
      wgmma::launch_typed<__nv_bfloat16, kN>(p, grid, programmatic, stream);
    } else {
      wgmma::launch_typed<__half, kN>(p, grid, programmatic, stream);
    }
  };
  if (rows <= 8) {
    launch(std::integral_constant<int, 8>{});
  } else if (rows <= 16) {
    launch(std::integral_constant<int, 16>{});
  } else {
    launch(std::integral_constant<int, 32>{});
  }
}

}  // namespace wideattn::cuda::decode
