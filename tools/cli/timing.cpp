#include "timing.h"

#include <algorithm>
#include <chrono>

#include "check.h"

namespace wideattn::cli {
namespace {

class SteadyClockTimer final : public Timer {
 public:
  explicit SteadyClockTimer(Context& context) : context_(context) {}
  void start() override {
    check(context_.synchronize(), "synchronize");
    begin_ = std::chrono::steady_clock::now();
  }
  void stop() override {
    check(context_.synchronize(), "synchronize");
    end_ = std::chrono::steady_clock::now();
  }
  double seconds() override { return std::chrono::duration<double>(end_ - begin_).count(); }

 private:
  Context& context_;
  std::chrono::steady_clock::time_point begin_, end_;
};

}  // namespace

std::vector<double> Timer::time_each(int32_t count, const std::function<void()>& call, HostCost* host_cost) {
  std::vector<double> seconds, host;
  for (int32_t i = 0; i < count; ++i) {
    start();
    const auto issued = std::chrono::steady_clock::now();
    call();
    host.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - issued).count());
    stop();
    seconds.push_back(this->seconds());
  }
  if (host_cost) host_cost->back_to_back = host_cost->after_idle = count > 0 ? median(host) : 0.0;
  return seconds;
}

std::unique_ptr<Timer> make_timer(Context& context) {
  if (context.backend() == Backend::cuda) return make_cuda_event_timer(context.stream());
  return std::make_unique<SteadyClockTimer>(context);
}

double median(std::vector<double> samples) {
  if (samples.empty()) return 0.0;
  std::sort(samples.begin(), samples.end());
  const std::size_t n = samples.size();
  return n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
}

}  // namespace wideattn::cli
