// Timers: a steady clock on the CPU, CUDA events on the Context's stream on CUDA (in
// timing_cuda.cpp, the only file of the CLI that calls the CUDA runtime).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "wideattn/context.h"

namespace wideattn::cli {

class Timer {
 public:
  virtual ~Timer() = default;
  virtual void start() = 0;
  virtual void stop() = 0;
  // Seconds between the last start() and stop(); waits for the work in between to finish.
  virtual double seconds() = 0;

  // The host's seconds to issue one call (medians over the calls, as the GPU time: a call the
  // OS preempts does not move them).
  struct HostCost {
    double back_to_back = 0;  // calls issued one after another, no wait for the GPU between
                              // them (an engine's loop): the figure the CLI reports
    double after_idle = 0;    // each call issued right after the host waited for an idle stream
  };

  // Seconds of each of `count` calls of `call`, and the host's cost of issuing one. This base
  // version times each call between start() and stop() (both host figures are its issue time).
  // The CUDA timer holds its stream while the host issues each call between its pair of events,
  // then releases it: the GPU time excludes the host's launch cost (which CUDA graphs hide in an
  // engine), and that cost is reported apart.
  virtual std::vector<double> time_each(int32_t count, const std::function<void()>& call, HostCost* host);
};

// CUDA events on the context's stream for a CUDA context, a steady clock around
// Context::synchronize() otherwise.
std::unique_ptr<Timer> make_timer(Context& context);

// Median of `samples` (0 when empty).
double median(std::vector<double> samples);

// ---- timing_cuda.cpp: the CUDA runtime, compiled only with WIDEATTN_WITH_CUDA ----

// Event timer on `stream` (a cudaStream_t). Throws LibraryError if the runtime fails.
std::unique_ptr<Timer> make_cuda_event_timer(void* stream);

struct GpuSummary {
  int index = 0;
  std::string name;
  int sms = 0;
  int compute_capability = 0;
  double memory_gib = 0;
  double l2_mib = 0;
};
// The GPUs the CUDA runtime sees; `error` says why none when the list is empty.
std::vector<GpuSummary> list_gpus(std::string* error);

}  // namespace wideattn::cli
