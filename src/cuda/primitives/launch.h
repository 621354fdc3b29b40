// Kernel launches with an optional programmatic dependency (sm_90 programmatic dependent
// launch): the kernel may be scheduled while the grid before it on the stream drains, and must
// execute griddepcontrol.wait before it touches memory that grid writes or reads.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "cuda/primitives/check.h"

namespace wideattn::cuda {

// Launches kernel<<<grid, block, smem, stream>>>(args...); `programmatic` asks for the overlap
// above, and falls back to an ordinary launch where the driver refuses the attribute. Throws
// detail::Error naming `name` on failure.
template <typename... Params, typename... Args>
void launch_kernel(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block,
                   std::size_t smem, cudaStream_t stream, bool programmatic, const Args&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attribute;
  config.numAttrs = programmatic ? 1 : 0;
  cudaError_t status = cudaLaunchKernelEx(&config, kernel, args...);
  if (status != cudaSuccess && programmatic) {
    (void)cudaGetLastError();
    config.numAttrs = 0;
    status = cudaLaunchKernelEx(&config, kernel, args...);
  }
  check_cuda(status, name, __FILE__, __LINE__);
}

// As launch_kernel, for a kernel whose CTAs wait for one another: a cooperative launch, for
// which the driver guarantees that every CTA is resident at once or refuses it (a grid too large
// for the idle GPU). Returns false, with nothing launched and no error left pending, when the
// driver refuses it; throws on any other failure.
template <typename... Params, typename... Args>
bool try_launch_resident(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block,
                         std::size_t smem, cudaStream_t stream, bool programmatic, const Args&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attribute[2];
  int count = 0;
  attribute[count].id = cudaLaunchAttributeCooperative;
  attribute[count++].val.cooperative = 1;
  if (programmatic) {
    attribute[count].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute[count++].val.programmaticStreamSerializationAllowed = 1;
  }
  config.attrs = attribute;
  config.numAttrs = count;
  cudaError_t status = cudaLaunchKernelEx(&config, kernel, args...);
  if (status != cudaSuccess && programmatic) {  // the two attributes together refused
    (void)cudaGetLastError();
    config.numAttrs = count - 1;
    status = cudaLaunchKernelEx(&config, kernel, args...);
  }
  if (status == cudaErrorCooperativeLaunchTooLarge || status == cudaErrorNotSupported ||
      status == cudaErrorInvalidConfiguration) {
    (void)cudaGetLastError();
    return false;
  }
  check_cuda(status, name, __FILE__, __LINE__);
  return true;
}

}  // namespace wideattn::cuda
