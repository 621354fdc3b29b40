// decode_floor: what a batch-1 decode call could take at best on this card, timed as
// `wideattn bench` times a call (a pair of events around one call, the stream idle before it,
// the host's issue hidden behind a gate), for the bytes of the suite's batch-1 problems.
//
// A decode call at batch 1 reads its K/V once; the suite scores it against the copy ceiling (a
// 1 GiB device-to-device copy, bytes read + written). Part of a short call's time is not
// streaming at all: the events, the launch, the first bytes' latency, the last CTA's tail. This
// measures those for kernels that do nothing but stream, so the decode kernels' fixed cost per
// call (docs/design.md, "A batch-1 call's fixed cost") can be read against what is reachable:
//   empty          one CTA that does nothing (events + one launch)
//   empty x SMs    one 128-thread CTA per SM with the decode kernel's 200 KB of shared memory
//   read           a grid-stride read of the bytes (8 CTAs of 512 threads per SM, 16-byte loads)
//   read, ranges   one CTA per SM, each reading its own contiguous range (a split pass's shape)
//   read + dep     `read`, then a one-CTA kernel launched as its programmatic dependent (a
//                  split pass and its merge: the second launch's cost)
//   memcpy         cudaMemcpyAsync moving the same bytes (half read, half written)
// and fits time = intercept + bytes / slope over the sizes for each (least squares).
//
// Build: the CMake target decode_floor (CUDA backend, tools or tests on). Run:
//   build/bench/decode_floor [MB ...]     (default: 8K-128K tokens of E4B's 2 KV heads, bf16)
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "cuda_check.h"

namespace {

constexpr int kEmptySmem = 200 * 1024;

__global__ void empty_kernel() {}

__global__ void empty_with_smem() {
  extern __shared__ unsigned char smem[];
  if (threadIdx.x == 1024) smem[0] = 0;  // never true: keeps the allocation
}

__device__ __forceinline__ void launch_dependents() {
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
}
__device__ __forceinline__ void wait_for_primary() {
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
}

__global__ void __launch_bounds__(512) read_grid_stride(const uint4* data, int64_t count, uint4* sink) {
  launch_dependents();
  uint32_t acc = 0;
  const int64_t step = int64_t{gridDim.x} * blockDim.x;
  int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  for (; i + 3 * step < count; i += 4 * step) {  // four loads in flight a thread
    const uint4 a = __ldcs(data + i), b = __ldcs(data + i + step);
    const uint4 c = __ldcs(data + i + 2 * step), d = __ldcs(data + i + 3 * step);
    acc ^= a.x ^ b.y ^ c.z ^ d.w;
  }
  for (; i < count; i += step) acc ^= __ldcs(data + i).x;
  if (acc == 0x9e3779b9u) sink[0] = make_uint4(acc, 0, 0, 0);
}

// One CTA a range, as a split pass assigns keys: the call ends when the slowest range does.
__global__ void __launch_bounds__(512) read_ranges(const uint4* data, int64_t count, uint4* sink) {
  const int64_t per = (count + gridDim.x - 1) / gridDim.x;
  const int64_t begin = blockIdx.x * per, end = begin + per < count ? begin + per : count;
  uint32_t acc = 0;
  int64_t i = begin + threadIdx.x;
  for (; i + 3 * 512 < end; i += 4 * 512) {
    const uint4 a = __ldcs(data + i), b = __ldcs(data + i + 512);
    const uint4 c = __ldcs(data + i + 1024), d = __ldcs(data + i + 1536);
    acc ^= a.x ^ b.y ^ c.z ^ d.w;
  }
  for (; i < end; i += 512) acc ^= __ldcs(data + i).x;
  if (acc == 0x9e3779b9u) sink[0] = make_uint4(acc, 0, 0, 0);
}

__global__ void dependent_kernel(uint4* sink) {
  wait_for_primary();
  if (threadIdx.x == 1024) sink[1] = make_uint4(1, 0, 0, 0);
}

// A one-CTA kernel launched as a programmatic dependent of the kernel before it on `stream`.
void launch_dependent(cudaStream_t stream, uint4* sink) {
  cudaLaunchConfig_t config{};
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  config.gridDim = dim3(1), config.blockDim = dim3(32), config.stream = stream;
  config.attrs = attribute, config.numAttrs = 1;
  CK(cudaLaunchKernelEx(&config, dependent_kernel, sink));
}

// Holds the stream until the host has issued the whole call, so the events bracket GPU work.
struct Gate {
  std::atomic<bool> open{false};
  static void CUDART_CB wait(void* self) {
    auto& gate = *static_cast<Gate*>(self);
    const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (!gate.open.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < limit)
      std::this_thread::yield();
  }
};

// Median microseconds of `call(i)`, each timed alone as the CLI does.
double time_us(cudaStream_t stream, int repeat, const std::function<void(int)>& call) {
  for (int i = 0; i < 3; ++i) call(i);
  std::vector<float> us;
  cudaEvent_t begin, end;
  CK(cudaEventCreate(&begin));
  CK(cudaEventCreate(&end));
  for (int i = 0; i < repeat; ++i) {
    CK(cudaStreamSynchronize(stream));
    Gate gate;
    CK(cudaLaunchHostFunc(stream, &Gate::wait, &gate));
    CK(cudaEventRecord(begin, stream));
    call(3 + i);
    CK(cudaEventRecord(end, stream));
    gate.open.store(true, std::memory_order_release);
    CK(cudaEventSynchronize(end));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, begin, end));
    us.push_back(ms * 1e3f);
  }
  CK(cudaEventDestroy(begin));
  CK(cudaEventDestroy(end));
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

struct Fit {
  double intercept_us, slope_gbs;
};
Fit fit(const std::vector<double>& mb, const std::vector<double>& us) {
  const double n = static_cast<double>(mb.size());
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (std::size_t i = 0; i < mb.size(); ++i) {
    sx += mb[i], sy += us[i], sxx += mb[i] * mb[i], sxy += mb[i] * us[i];
  }
  const double slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);  // us per MB
  return {(sy - slope * sx) / n, 1e3 / slope};
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<double> sizes_mb;
  for (int i = 1; i < argc; ++i) sizes_mb.push_back(std::atof(argv[i]));
  if (sizes_mb.empty()) {
    for (int tokens_k : {8, 16, 32, 64, 128})  // E4B: 2 KV heads x 512 x bf16, K and V
      sizes_mb.push_back(tokens_k * 1024.0 * 2 * 512 * 2 * 2 / 1e6);
  }
  int device = 0, sms = 0, l2 = 0;
  CK(cudaGetDevice(&device));
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  CK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device));
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, device));
  cudaStream_t stream;
  CK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  CK(cudaFuncSetAttribute(empty_with_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, kEmptySmem));

  // Calls rotate over a pool of at least 2x L2 and 4x the largest call, so no call finds its
  // bytes in L2 (as the suite rotates over copies of the KV cache).
  const double largest = *std::max_element(sizes_mb.begin(), sizes_mb.end()) * 1e6;
  const std::size_t pool = std::max<std::size_t>(std::size_t(4 * largest), std::size_t{2} * l2 + (64 << 20));
  unsigned char* data = nullptr;
  uint4* sink = nullptr;
  CK(cudaMalloc(&data, pool + (1 << 20)));
  CK(cudaMalloc(&sink, 64));
  CK(cudaMemset(data, 1, pool));

  // The suite's ceiling: a 1 GiB device-to-device copy, best of 20.
  const std::size_t copy_bytes = std::size_t{1} << 30;
  unsigned char* copy_to = nullptr;
  CK(cudaMalloc(&copy_to, copy_bytes));
  double copy_best = 1e30;
  for (int i = 0; i < 20; ++i) {
    const double us = time_us(stream, 1, [&](int) {
      CK(cudaMemcpyAsync(copy_to, data, copy_bytes, cudaMemcpyDeviceToDevice, stream));
    });
    copy_best = std::min(copy_best, us);
  }
  CK(cudaFree(copy_to));
  const double ceiling_gbs = 2.0 * copy_bytes / (copy_best * 1e-6) / 1e9;
  std::printf("%s, %d SMs, L2 %d MB; copy ceiling %.0f GB/s (1 GiB, read + write, best of 20)\n",
              prop.name, sms, l2 >> 20, ceiling_gbs);
  std::printf("each figure: median us of 30 calls, each timed alone between two events\n\n");

  const int repeat = 30;
  const double empty = time_us(stream, repeat, [&](int) { empty_kernel<<<1, 32, 0, stream>>>(); });
  const double empty_sms = time_us(stream, repeat, [&](int) {
    empty_with_smem<<<sms, 128, kEmptySmem, stream>>>();
  });
  const double empty_dep = time_us(stream, repeat, [&](int) {
    empty_kernel<<<1, 32, 0, stream>>>();
    launch_dependent(stream, sink);
  });
  std::printf("empty kernel %.2f us; empty, one 128-thread CTA per SM with %d KB of shared memory "
              "%.2f us; empty + a programmatic dependent %.2f us\n\n",
              empty, kEmptySmem >> 10, empty_sms, empty_dep);

  const char* names[] = {"read", "read, ranges", "read + dep", "memcpy"};
  constexpr int kVariants = 4;
  std::vector<double> times[kVariants];
  std::printf("%10s", "MB");
  for (const char* n : names) std::printf("  %14s %6s", n, "%copy");
  std::printf("\n");
  for (double mb : sizes_mb) {
    const std::size_t bytes = static_cast<std::size_t>(mb * 1e6) / 16 * 16;
    const int64_t count = static_cast<int64_t>(bytes / 16);
    const std::size_t slots = std::max<std::size_t>(1, pool / bytes);
    auto at = [&](int i) { return reinterpret_cast<const uint4*>(data + (i % slots) * bytes); };
    double t[kVariants];
    t[0] = time_us(stream, repeat, [&](int i) { read_grid_stride<<<sms * 8, 512, 0, stream>>>(at(i), count, sink); });
    t[1] = time_us(stream, repeat, [&](int i) { read_ranges<<<sms, 512, 0, stream>>>(at(i), count, sink); });
    t[2] = time_us(stream, repeat, [&](int i) {
      read_grid_stride<<<sms * 8, 512, 0, stream>>>(at(i), count, sink);
      launch_dependent(stream, sink);
    });
    // memcpy: half the bytes read and written, so it moves as many bytes as the call reads.
    t[3] = time_us(stream, repeat, [&](int i) {
      const std::size_t half = bytes / 2;
      CK(cudaMemcpyAsync(const_cast<uint4*>(at(i + 1)), at(i), half, cudaMemcpyDeviceToDevice, stream));
    });
    CK(cudaGetLastError());
    std::printf("%10.1f", bytes / 1e6);
    for (int v = 0; v < kVariants; ++v) {
      times[v].push_back(t[v]);
      const double gbs = bytes / (t[v] * 1e-6) / 1e9;
      std::printf("  %11.2f us %5.1f%%", t[v], 100.0 * gbs / ceiling_gbs);
    }
    std::printf("\n");
  }
  if (sizes_mb.size() >= 2) {
    std::printf("\nleast squares, time = intercept + bytes / slope:\n");
    for (int v = 0; v < kVariants; ++v) {
      const Fit f = fit(sizes_mb, times[v]);
      std::printf("  %-14s intercept %6.2f us, slope %6.0f GB/s\n", names[v], f.intercept_us, f.slope_gbs);
    }
  }
  CK(cudaFree(data));
  CK(cudaFree(sink));
  CK(cudaStreamDestroy(stream));
  return 0;
}
