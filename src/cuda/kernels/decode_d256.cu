// Instantiations of the decode kernels at head_dim 256 (tensor cores: f16, bf16; SIMT: all).
#include "cuda/kernels/decode_simt.cuh"
#include "cuda/kernels/decode_split_kv.cuh"

namespace wideattn::cuda::decode {
template bool launch_decode_mma<256>(const DecodeParams&, DType, dim3, std::size_t, bool,
                                     cudaStream_t);
template void launch_decode_simt<256>(const DecodeParams&, DType, dim3, cudaStream_t);
}  // namespace wideattn::cuda::decode
