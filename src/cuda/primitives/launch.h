// Kernel launches with an optional programmatic dependency (sm_90 programmatic dependent
// launch): the kernel may be scheduled while the grid before it on the stream drains, and must
// execute griddepcontrol.wait before it touches memory that grid writes or reads.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "cuda/primitives/check.h"

namespace wideattn::cuda {

// The launch configuration of kernel<<<grid, block, smem, stream>>> and its attributes (which
// `config` points into: not copyable).
struct LaunchConfig {
  cudaLaunchConfig_t config = {};
  cudaLaunchAttribute attributes[2] = {};
  LaunchConfig(dim3 grid, dim3 block, std::size_t smem, cudaStream_t stream) {
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = smem;
    config.stream = stream;
    config.attrs = attributes;
  }
  LaunchConfig(const LaunchConfig&) = delete;
  LaunchConfig& operator=(const LaunchConfig&) = delete;
  void add_programmatic() {
    attributes[config.numAttrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attributes[config.numAttrs++].val.programmaticStreamSerializationAllowed = 1;
  }
  void add_cooperative() {
    attributes[config.numAttrs].id = cudaLaunchAttributeCooperative;
    attributes[config.numAttrs++].val.cooperative = 1;
  }
};

// Launches kernel<<<grid, block, smem, stream>>>(args...); `programmatic` asks for the overlap
// above, and falls back to an ordinary launch where the driver refuses the attribute. Throws
// detail::Error naming `name` on failure.
template <typename... Params, typename... Args>
void launch_kernel(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block,
                   std::size_t smem, cudaStream_t stream, bool programmatic, const Args&... args) {
  LaunchConfig launch(grid, block, smem, stream);
  if (programmatic) launch.add_programmatic();
  cudaError_t status = cudaLaunchKernelEx(&launch.config, kernel, args...);
  if (status != cudaSuccess && programmatic) {
    (void)cudaGetLastError();
    launch.config.numAttrs = 0;
    status = cudaLaunchKernelEx(&launch.config, kernel, args...);
  }
  check_cuda(status, name, __FILE__, __LINE__);
}

// As launch_kernel, for a kernel whose CTAs wait for one another: a cooperative launch, for
// which the driver guarantees that every CTA is resident at once or refuses it (a grid too large
// for the GPU or its share of it, the attribute unsupported). Returns false, with nothing
// launched and no error left pending, when the launch fails: the caller launches a kernel that
// needs no residency instead, which reports any error that is not the cooperative launch's.
template <typename... Params, typename... Args>
bool try_launch_resident(void (*kernel)(Params...), dim3 grid, dim3 block,
                         std::size_t smem, cudaStream_t stream, bool programmatic, const Args&... args) {
  LaunchConfig launch(grid, block, smem, stream);
  launch.add_cooperative();
  if (programmatic) launch.add_programmatic();
  cudaError_t status = cudaLaunchKernelEx(&launch.config, kernel, args...);
  if (status != cudaSuccess && programmatic) {  // the two attributes together refused
    (void)cudaGetLastError();
    launch.config.numAttrs = 1;
    status = cudaLaunchKernelEx(&launch.config, kernel, args...);
  }
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return true;
}

}  // namespace wideattn::cuda
