#include "ceilings.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "check.h"
#include "device_buffer.h"
#include "timing.h"
#include "workload.h"
#include "wideattn/components.h"

namespace wideattn::cli {
namespace {

// Sums a buffer with 16-byte loads and four independent accumulators: the loop is limited by
// memory, not by a dependency chain. The result is returned so the loads cannot be removed.
typedef uint64_t Vec2 __attribute__((vector_size(16)));

uint64_t stream_read(const Vec2* data, std::size_t count) {
  Vec2 a = {0, 0}, b = {0, 0}, c = {0, 0}, d = {0, 0};
  std::size_t i = 0;
  for (; i + 4 <= count; i += 4) {
    a += data[i];
    b += data[i + 1];
    c += data[i + 2];
    d += data[i + 3];
  }
  for (; i < count; ++i) a += data[i];
  const Vec2 s = a + b + c + d;
  return s[0] + s[1];
}

BandwidthCeiling cpu_read_bandwidth(const DeviceInfo& device, int32_t repeat) {
  BandwidthCeiling c;
  c.method = "read";
  c.threads = static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
  // Much larger than the last-level cache, but a small share of memory.
  std::size_t bytes = std::max<std::size_t>(std::size_t{512} << 20, 16 * static_cast<std::size_t>(device.l2_bytes));
  if (device.memory_bytes > 0) bytes = std::min<std::size_t>(bytes, device.memory_bytes / 8);
  const std::size_t vectors = bytes / sizeof(Vec2);
  std::vector<Vec2> buffer(vectors);
  std::memset(buffer.data(), 1, vectors * sizeof(Vec2));  // fault the pages in
  c.bytes = static_cast<double>(vectors * sizeof(Vec2));

  std::vector<double> samples;
  std::vector<uint64_t> sums(c.threads);
  for (int32_t r = 0; r < repeat + 1; ++r) {
    const auto begin = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    for (int32_t t = 0; t < c.threads; ++t) {
      const std::size_t first = vectors * t / c.threads;
      const std::size_t last = vectors * (t + 1) / c.threads;
      workers.emplace_back([&, t, first, last] { sums[t] = stream_read(buffer.data() + first, last - first); });
    }
    for (std::thread& w : workers) w.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    if (r > 0) samples.push_back(seconds);  // the first pass is a warm-up
  }
  volatile uint64_t sink = 0;
  for (uint64_t s : sums) sink = sink + s;
  c.seconds = *std::min_element(samples.begin(), samples.end());
  c.bytes_per_second = c.bytes / c.seconds;
  return c;
}

BandwidthCeiling device_copy_bandwidth(Context& context, int32_t repeat) {
  BandwidthCeiling c;
  c.method = "device-to-device copy (read + write)";
  std::size_t bytes = std::size_t{1} << 30;  // 1 GiB each way: far beyond L2
  if (context.device().memory_bytes > 0) {
    bytes = std::min<std::size_t>(bytes, context.device().memory_bytes / 8);
  }
  DeviceBuffer source(context, bytes), destination(context, bytes);
  std::unique_ptr<Timer> timer = make_timer(context);
  std::vector<double> samples;
  for (int32_t r = 0; r < repeat + 2; ++r) {
    timer->start();
    check(context.copy(destination.get(), source.get(), bytes, CopyKind::device_to_device), "copy");
    timer->stop();
    const double seconds = timer->seconds();
    if (r >= 2) samples.push_back(seconds);
  }
  c.bytes = 2.0 * static_cast<double>(bytes);
  c.seconds = *std::min_element(samples.begin(), samples.end());
  c.bytes_per_second = c.bytes / c.seconds;
  return c;
}

}  // namespace

MatmulCeiling measure_matmul_ceiling(Context& context, int64_t n, int32_t repeat) {
  MatmulCeiling c;
  const bool cuda = context.backend() == Backend::cuda;
  c.n = n > 0 ? n : (cuda ? 8192 : 2048);
  c.dtype = cuda ? DType::bf16 : DType::f32;
  const std::size_t elements = static_cast<std::size_t>(c.n) * c.n;
  const std::size_t bytes = elements * dtype_size(c.dtype);
  DeviceBuffer a(context, bytes), b(context, bytes), d(context, bytes);
  {
    std::vector<unsigned char> host(bytes);
    fill_random(host.data(), c.dtype, elements, 1.0, 11);
    a.upload(host.data(), bytes);
    fill_random(host.data(), c.dtype, elements, 1.0, 12);
    b.upload(host.data(), bytes);
  }
  MatmulArguments args;
  args.a_dtype = args.b_dtype = args.d_dtype = c.dtype;
  args.a = a.get();
  args.b = b.get();
  args.d = d.get();
  args.m = args.n = args.k = c.n;
  std::unique_ptr<Timer> timer = make_timer(context);
  std::vector<double> samples;
  const int32_t warmup = cuda ? 3 : 1;
  for (int32_t r = 0; r < repeat + warmup; ++r) {
    timer->start();
    check(matmul(context, args), "matmul ceiling");
    timer->stop();
    const double seconds = timer->seconds();
    if (r >= warmup) samples.push_back(seconds);
  }
  c.seconds = *std::min_element(samples.begin(), samples.end());
  c.flops_per_second = 2.0 * static_cast<double>(c.n) * c.n * c.n / c.seconds;
  return c;
}

BandwidthCeiling measure_bandwidth_ceiling(Context& context, int32_t repeat) {
  if (context.backend() == Backend::cuda) return device_copy_bandwidth(context, repeat);
  return cpu_read_bandwidth(context.device(), repeat);
}

}  // namespace wideattn::cli
