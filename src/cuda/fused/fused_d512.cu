// The fused prefill kernels for head_dim 512 (bf16 and f16): one row of tile_config.h.
#include "cuda/fused/fused_kernel.cuh"

namespace wideattn::fused {
static_assert(tile_config(512) != nullptr, "a row of kTileConfigs");
template void launch_fused_kernel<512>(const FusedParams&, bool, int32_t, int32_t, cudaStream_t);
}  // namespace wideattn::fused
