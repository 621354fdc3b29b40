// The two numbers every kernel is compared with, measured in the same run as the kernels:
// the matrix rate (a large matmul through wideattn::matmul: OpenBLAS sgemm on the CPU, a bf16
// cuBLASLt matmul on CUDA) and the memory bandwidth (a streaming read over a buffer much larger
// than the last-level cache on the CPU; a device-to-device copy, bytes read + written, on CUDA).
// A ceiling is the best pass of several (as STREAM reports): what the machine can do, so that
// a kernel's share of it is not flattered by a ceiling measured in a noisy moment.
#pragma once

#include <cstdint>
#include <string>

#include "wideattn/context.h"

namespace wideattn::cli {

struct MatmulCeiling {
  int64_t n = 0;          // n x n x n
  DType dtype = DType::f32;
  double seconds = 0;     // best pass
  double flops_per_second = 0;
};

struct BandwidthCeiling {
  std::string method;     // "read" or "device-to-device copy (read + write)"
  double bytes = 0;       // bytes counted per pass
  int32_t threads = 0;    // CPU only
  double seconds = 0;     // best pass
  double bytes_per_second = 0;
};

// n = 0 picks 2048 (CPU, f32) or 8192 (CUDA, bf16).
MatmulCeiling measure_matmul_ceiling(Context& context, int64_t n, int32_t repeat);
BandwidthCeiling measure_bandwidth_ceiling(Context& context, int32_t repeat);

}  // namespace wideattn::cli
