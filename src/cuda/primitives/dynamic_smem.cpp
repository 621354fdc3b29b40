#include "cuda/primitives/dynamic_smem.h"

#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <tuple>
#include <utility>

#include "cuda/primitives/check.h"

namespace wideattn::cuda {

void allow_dynamic_smem(const void* kernel, std::size_t bytes, const char* name) {
  // Below the default 48 KB no attribute is needed.
  if (bytes <= 48 * 1024) return;
  int device = 0;
  check_cuda(cudaGetDevice(&device), name, __FILE__, __LINE__);
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, std::size_t> allowed;
  const std::lock_guard<std::mutex> lock(mutex);
  std::size_t& current = allowed[{kernel, device}];
  if (bytes <= current) return;
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(bytes)),
             name, __FILE__, __LINE__);
  current = bytes;
}

int resident_ctas(const void* kernel, int threads, std::size_t bytes, const char* name) {
  int device = 0;
  check_cuda(cudaGetDevice(&device), name, __FILE__, __LINE__);
  static std::mutex mutex;
  static std::map<std::tuple<const void*, int, int, std::size_t>, int> cached;
  const std::lock_guard<std::mutex> lock(mutex);
  const auto key = std::make_tuple(kernel, device, threads, bytes);
  const auto found = cached.find(key);
  if (found != cached.end()) return found->second;
  int per_sm = 0, sms = 0;
  check_cuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, bytes), name,
             __FILE__, __LINE__);
  check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), name, __FILE__,
             __LINE__);
  return cached[key] = per_sm * sms;
}

}  // namespace wideattn::cuda
