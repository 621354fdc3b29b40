// The fused prefill kernels for head_dim 256 (bf16 and f16): one row of tile_config.h.
#include "cuda/fused/fused_kernel.cuh"

namespace wideattn::fused {
template void launch_fused_kernel<256>(const FusedParams&, bool, int, cudaStream_t);
}  // namespace wideattn::fused
