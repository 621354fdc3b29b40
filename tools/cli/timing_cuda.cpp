// The CLI's only direct use of the CUDA runtime: event timers and the device list. Built
// against cudart when the library has its CUDA backend (WIDEATTN_WITH_CUDA); stubs otherwise.
#include "timing.h"

#include "check.h"

#ifdef WIDEATTN_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace wideattn::cli {

#ifdef WIDEATTN_WITH_CUDA
namespace {

void check_cuda(cudaError_t error, const char* what) {
  if (error != cudaSuccess) {
    throw LibraryError(StatusCode::internal,
                       std::string(what) + ": " + cudaGetErrorName(error) + " (" +
                           cudaGetErrorString(error) + ")");
  }
}

class CudaEventTimer final : public Timer {
 public:
  explicit CudaEventTimer(void* stream) : stream_(static_cast<cudaStream_t>(stream)) {
    check_cuda(cudaEventCreate(&begin_), "cudaEventCreate");
    const cudaError_t second = cudaEventCreate(&end_);
    if (second != cudaSuccess) {
      cudaEventDestroy(begin_);
      check_cuda(second, "cudaEventCreate");
    }
  }
  ~CudaEventTimer() override {
    cudaEventDestroy(begin_);
    cudaEventDestroy(end_);
  }
  void start() override { check_cuda(cudaEventRecord(begin_, stream_), "cudaEventRecord"); }
  void stop() override { check_cuda(cudaEventRecord(end_, stream_), "cudaEventRecord"); }
  double seconds() override {
    check_cuda(cudaEventSynchronize(end_), "cudaEventSynchronize");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, begin_, end_), "cudaEventElapsedTime");
    return ms * 1e-3;
  }

 private:
  cudaStream_t stream_;
  cudaEvent_t begin_ = nullptr, end_ = nullptr;
};

}  // namespace

std::unique_ptr<Timer> make_cuda_event_timer(void* stream) {
  return std::make_unique<CudaEventTimer>(stream);
}

std::vector<GpuSummary> list_gpus(std::string* error) {
  std::vector<GpuSummary> gpus;
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    if (error) *error = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(status);
    return gpus;
  }
  if (count == 0 && error) *error = "the CUDA runtime sees no GPU";
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    GpuSummary g;
    g.index = i;
    g.name = prop.name;
    g.sms = prop.multiProcessorCount;
    g.compute_capability = prop.major * 10 + prop.minor;
    g.memory_gib = static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0);
    g.l2_mib = static_cast<double>(prop.l2CacheSize) / (1024.0 * 1024.0);
    gpus.push_back(g);
  }
  return gpus;
}

#else  // !WIDEATTN_WITH_CUDA

std::unique_ptr<Timer> make_cuda_event_timer(void*) {
  throw LibraryError(StatusCode::backend_unavailable, "CUDA timing: this build has no CUDA backend");
}

std::vector<GpuSummary> list_gpus(std::string* error) {
  if (error) *error = "this build has no CUDA backend";
  return {};
}

#endif

}  // namespace wideattn::cli
