// The CLI's CUDA event timers and device list (captured_calls_cuda.cpp has its graphs). Built
// against cudart when the library has its CUDA backend (WIDEATTN_WITH_CUDA); stubs otherwise.
#include "timing.h"

#include "check.h"

#ifdef WIDEATTN_WITH_CUDA
#include <cuda_runtime.h>

#include <atomic>
#include <chrono>
#include <limits>
#include <memory>
#include <thread>

#include "cuda_check.h"
#endif

namespace wideattn::cli {

#ifdef WIDEATTN_WITH_CUDA
namespace {

// Holds a stream until the host opens it (or a second has passed, when something in the timed
// call waits for the stream itself).
struct Gate {
  std::atomic<bool> open{false};
  std::atomic<bool> timed_out{false};
  static void CUDART_CB wait(void* self) {
    Gate& gate = *static_cast<Gate*>(self);
    const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (!gate.open.load(std::memory_order_acquire)) {
      if (std::chrono::steady_clock::now() > limit) {
        gate.timed_out.store(true);
        return;
      }
      std::this_thread::yield();
    }
  }
};

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

  std::vector<double> time_each(int32_t count, const std::function<void()>& call, HostCost* host_cost) override {
    std::vector<cudaEvent_t> events;
    std::vector<std::unique_ptr<Gate>> gates;
    auto release_all = [&] {
      for (auto& gate : gates) gate->open.store(true, std::memory_order_release);
      cudaStreamSynchronize(stream_);
      for (cudaEvent_t e : events) cudaEventDestroy(e);
    };
    std::vector<double> host;
    try {
      for (int32_t i = 0; i < 2 * count; ++i) {
        cudaEvent_t e = nullptr;
        check_cuda(cudaEventCreate(&e), "cudaEventCreate");
        events.push_back(e);
      }
      // Call i: the stream waits at gate i until the host has issued all of call i, so the
      // events bracket GPU work only. The stream is idle before each call: the host's issue
      // time is its own work, never a wait for room in a launch queue full of earlier calls.
      for (int32_t i = 0; i < count; ++i) {
        check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
        gates.push_back(std::make_unique<Gate>());
        check_cuda(cudaLaunchHostFunc(stream_, &Gate::wait, gates.back().get()),
                   "cudaLaunchHostFunc");
        check_cuda(cudaEventRecord(events[2 * i], stream_), "cudaEventRecord");
        const auto issued = std::chrono::steady_clock::now();
        call();
        host.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - issued).count());
        check_cuda(cudaEventRecord(events[2 * i + 1], stream_), "cudaEventRecord");
        gates.back()->open.store(true, std::memory_order_release);
      }
      if (count > 0) check_cuda(cudaEventSynchronize(events.back()), "cudaEventSynchronize");
    } catch (...) {
      release_all();
      throw;
    }
    std::vector<double> seconds;
    bool timed_out = false;
    for (int32_t i = 0; i < count; ++i) {
      timed_out = timed_out || gates[i]->timed_out.load();
      float ms = 0;
      const cudaError_t status = cudaEventElapsedTime(&ms, events[2 * i], events[2 * i + 1]);
      if (status != cudaSuccess) release_all();
      check_cuda(status, "cudaEventElapsedTime");
      seconds.push_back(ms * 1e-3);
    }
    release_all();
    if (timed_out) {
      // A call waited for the held stream (an implicit synchronisation): time it call by call.
      return Timer::time_each(count, call, host_cost);
    }
    if (host_cost) {
      host_cost->after_idle = count > 0 ? median(host) : 0.0;
      host_cost->back_to_back = count > 0 ? issue_back_to_back(count, call) : 0.0;
    }
    return seconds;
  }

  // The calls issued one after another while one gate holds the stream (the host never waits
  // for the GPU between them, as in an engine's loop): the median issue time. Issued right
  // after a wait for the GPU, a call can cost the host more than its own work (a thread that
  // slept through a long kernel wakes up cold); this is the cost of the work itself.
  double issue_back_to_back(int32_t count, const std::function<void()>& call) {
    Gate gate;
    std::vector<double> host;
    check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    try {
      check_cuda(cudaLaunchHostFunc(stream_, &Gate::wait, &gate), "cudaLaunchHostFunc");
      for (int32_t i = 0; i < count; ++i) {
        const auto issued = std::chrono::steady_clock::now();
        call();
        host.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - issued).count());
      }
    } catch (...) {
      gate.open.store(true, std::memory_order_release);
      cudaStreamSynchronize(stream_);
      throw;
    }
    gate.open.store(true, std::memory_order_release);
    check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    // A call that waited for the held stream timed the gate's second, not its own work.
    return gate.timed_out.load() ? std::numeric_limits<double>::quiet_NaN() : median(host);
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
