// Optional timeline of the tensor-core decode kernels, compiled in only with the CMake option
// WIDEATTN_DECODE_TRACE (a tuning aid: bench/decode_check prints it). Thread 0 of each CTA
// writes %globaltimer stamps (ns):
//   split pass, CTA b: trace[4b + 0..3] = start (dependency met), first K/V tile ready,
//                      last tile done, end; trace[kTraceSmBase + b] = its SM
//   merge, CTA b:      trace[kTraceMergeBase + 4b + 0..2] = start, dependency met, end
#pragma once

#include <cstdint>

namespace wideattn::cuda::decode {

inline constexpr int64_t kTraceMergeBase = int64_t{1} << 20;
inline constexpr int64_t kTraceSmBase = int64_t{1} << 21;
inline constexpr int64_t kTraceEntries = int64_t{3} << 20;

#ifdef WIDEATTN_DECODE_TRACE
// The buffer run_decode passes to the kernels from now on (kTraceEntries uint64; null: none).
void set_trace_buffer(unsigned long long* device_buffer);
#endif

#if defined(WIDEATTN_DECODE_TRACE) && defined(__CUDACC__)
__device__ __forceinline__ unsigned long long trace_now() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ unsigned trace_sm() {
  unsigned s;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(s));
  return s;
}
#define WIDEATTN_TRACE(p, index)                                       \
  do {                                                                 \
    if ((p).trace && threadIdx.x == 0) (p).trace[index] = trace_now(); \
  } while (0)
#else
#define WIDEATTN_TRACE(p, index) \
  do {                           \
  } while (0)
#endif

}  // namespace wideattn::cuda::decode
