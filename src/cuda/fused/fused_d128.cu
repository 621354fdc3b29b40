// The fused prefill kernels for head_dim 128 (bf16 and f16): one row of tile_config.h.
#include "cuda/fused/fused_kernel.cuh"

namespace wideattn::fused {
template void launch_fused_kernel<128>(const FusedParams&, bool, int, cudaStream_t);
}  // namespace wideattn::fused
