// The fused prefill kernels for head_dim 64 (bf16 and f16): one row of tile_config.h.
#include "cuda/fused/fused_kernel.cuh"

namespace wideattn::fused {
static_assert(tile_config(64) != nullptr, "a row of kTileConfigs");
template void launch_fused_kernel<64>(const FusedParams&, bool, int32_t, int32_t, cudaStream_t);
}  // namespace wideattn::fused
