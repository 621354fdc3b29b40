// decode_load_gate: the gate for moving the decode kernel's K/V loads from cp.async to bulk
// copies (docs/design.md, "CUDA decode": what limits it now).
//
// The decode kernel at head_dim 512 runs one 4-warp CTA per SM and issues 0.28 warp
// instructions per scheduler cycle; every extra instruction per tile (a paged cache's address
// arithmetic, an fp8 cache's widening, a second row block's MMAs) costs time directly. Its loads
// take 32 cp.async of 16 bytes per thread per 64 KB tile. A bulk copy (cp.async.bulk, one
// instruction per 1 KB row, completing on an mbarrier) takes 64 per tile for the whole CTA.
//
// This measures, on the card, one CTA per SM streaming K/V tiles as the decode kernel does
// (32 keys x 512 bf16 of K and of V per tile, rows 1 KB apart by the 31B cache's 4 KV heads,
// 3 stages, 128 threads) two ways:
//   cp.async: 16-byte chunks into XOR-swizzled rows (the kernel today);
//   bulk:     one 1 KB row per copy into rows padded to 1040 bytes (conflict-free ldmatrix
//             without a swizzle), completing on one mbarrier per stage;
// with a consumer that reads every tile through ldmatrix as the kernel's MMAs do and then
// spends `work` extra dependent FMAs per thread per tile (standing for widening or paging
// arithmetic). The gate: the bulk variant keeps >= 95% of the copy ceiling at the work the
// cp.async variant needs to stay there, and holds it to more work.
//
// Build: the CMake target decode_load_gate (CUDA backend on, tools or tests on). Run:
//   build/bench/decode_load_gate
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cuda/fused/async_copy.cuh"
#include "cuda/primitives/ldmatrix.cuh"
#include "cuda_check.h"

namespace {


constexpr int kThreads = 128;
constexpr int kKeys = 32;         // keys per tile
constexpr int kRowBytes = 1024;   // 512 bf16
constexpr int kStages = 3;
constexpr int kHeads = 4;         // rows of one head are kHeads x 1 KB apart
constexpr int kPaddedRow = kRowBytes + 16;

__device__ __forceinline__ uint32_t smem(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
using wideattn::cuda::ldmatrix_x4;

// What every variant does with a tile: each warp reads its 8 keys of K over the whole row and
// its quarter of V's columns for all keys (the kernel's ldmatrix traffic), folds them into
// `acc`, then `work` dependent FMAs. `row_address(r, chunk)`: shared address of 16-byte chunk
// `chunk` of row r (K rows 0-31, V rows 32-63).
template <class RowAddress>
__device__ __forceinline__ float consume(RowAddress row_address, int work, float acc) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  uint32_t x = 0;
#pragma unroll 4
  for (int c = 0; c < kRowBytes / 16; c += 4) {  // K: this warp's 8 keys, 4 chunks a step
    uint32_t r[4];
    ldmatrix_x4(r, row_address(warp * 8 + (lane & 7), c + (lane >> 3)));
    x ^= r[0] ^ r[1] ^ r[2] ^ r[3];
  }
#pragma unroll 4
  for (int c = warp * 16; c < warp * 16 + 16; c += 2) {  // V: keys 0-31, this warp's columns
    for (int k = 0; k < kKeys; k += 16) {
      uint32_t r[4];
      ldmatrix_x4(r, row_address(kKeys + k + (lane & 15), c + (lane >> 4)));
      x ^= r[0] ^ r[1] ^ r[2] ^ r[3];
    }
  }
  acc += static_cast<float>(x & 0xff);
  for (int i = 0; i < work; ++i) acc = fmaf(acc, 0.999f, 1e-3f);
  return acc;
}

// cp.async: as the kernel, each thread copies one 16-byte column chunk of every other row (K
// rows, then V rows), stepping its source pointer, into XOR-swizzled rows.
// `issue_work`: dependent FMAs on the path to the copies' addresses (a paged cache's address
// arithmetic sits there), instead of after the tile's reads.
__global__ void __launch_bounds__(kThreads, 1)
    stream_cp_async(const unsigned char* kv, int64_t tiles, int work, int issue_work, float* sink) {
  extern __shared__ __align__(128) unsigned char s[];
  const int tid = threadIdx.x;
  const int chunk = tid % (kRowBytes / 16), row0 = tid / (kRowBytes / 16);
  constexpr int kRowStep = kThreads / (kRowBytes / 16);
  const int64_t total_keys = int64_t{gridDim.x} * tiles * kKeys;
  const int64_t first_key = int64_t{blockIdx.x} * tiles * kKeys;
  auto issue = [&](int64_t tile, int stage) {
    unsigned char* dst = s + stage * 2 * kKeys * kRowBytes;
    float f = static_cast<float>(tile);
    for (int i = 0; i < issue_work; ++i) f = fmaf(f, 0.999f, 1e-3f);
    const int64_t never = f > 1e30f ? 1 : 0;  // 0, known only after the chain
    for (int which = 0; which < 2; ++which) {
      const unsigned char* src =
          kv + (which * total_keys + first_key + tile * kKeys + row0 + never) * kHeads * kRowBytes + chunk * 16;
#pragma unroll 4
      for (int r = row0; r < kKeys; r += kRowStep) {
        const int row = which * kKeys + r;
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(
                         smem(dst + row * kRowBytes + ((chunk ^ (row & 7)) * 16))),
                     "l"(src));
        src += kRowStep * kHeads * kRowBytes;
      }
    }
    asm volatile("cp.async.commit_group;\n" ::);
  };
  for (int st = 0; st < kStages - 1; ++st) issue(st, st);
  float acc = 0.0f;
  for (int64_t t = 0; t < tiles; ++t) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kStages - 2));
    __syncthreads();
    if (t + kStages - 1 < tiles) {
      issue(t + kStages - 1, static_cast<int>((t + kStages - 1) % kStages));
    } else {
      asm volatile("cp.async.commit_group;\n" ::);
    }
    const uint32_t base = smem(s + (t % kStages) * 2 * kKeys * kRowBytes);
    acc = consume([&](int r, int c) { return base + r * kRowBytes + ((c ^ (r & 7)) * 16); }, work, acc);
  }
  asm volatile("cp.async.wait_group 0;\n" ::);
  if (acc == 12345.0f) sink[blockIdx.x] = acc;  // keeps the reads
}

// bulk: warp 0 issues the 64 rows of a tile (two per lane) as 1 KB bulk copies into padded
// rows; lane 0 announces the tile's bytes on the stage's mbarrier first.
__global__ void __launch_bounds__(kThreads, 1)
    stream_bulk(const unsigned char* kv, int64_t tiles, int work, float* sink) {
  extern __shared__ __align__(128) unsigned char s[];
  using wideattn::fused::Barrier;
  Barrier* full = reinterpret_cast<Barrier*>(s + kStages * 2 * kKeys * kPaddedRow);
  const int tid = threadIdx.x;
  if (tid < kStages) full[tid].init(1);
  wideattn::fused::fence_barrier_init();
  __syncthreads();
  const int64_t first_key = int64_t{blockIdx.x} * tiles * kKeys;
  auto issue = [&](int64_t tile, int stage) {
    if (tid >= 32) return;
    if (tid == 0) full[stage].arrive_expect_bytes(2 * kKeys * kRowBytes);
    __syncwarp();
    unsigned char* dst = s + stage * 2 * kKeys * kPaddedRow;
    for (int r = tid; r < 2 * kKeys; r += 32) {
      const int64_t key = first_key + tile * kKeys + (r % kKeys);
      const unsigned char* src = kv + ((r / kKeys) * (int64_t{gridDim.x} * tiles * kKeys) + key) * kHeads * kRowBytes;
      asm volatile(
          "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
              smem(dst + r * kPaddedRow)),
          "l"(src), "n"(kRowBytes), "r"(smem(&full[stage]))
          : "memory");
    }
  };
  for (int st = 0; st < kStages - 1; ++st) issue(st, st);
  float acc = 0.0f;
  for (int64_t t = 0; t < tiles; ++t) {
    const int stage = static_cast<int>(t % kStages);
    full[stage].wait(static_cast<uint32_t>((t / kStages) & 1));
    __syncthreads();  // everyone is done with the stage refilled below (read in tile t - 1)
    if (t + kStages - 1 < tiles) issue(t + kStages - 1, static_cast<int>((t + kStages - 1) % kStages));
    const uint32_t base = smem(s + stage * 2 * kKeys * kPaddedRow);
    acc = consume([&](int r, int c) { return base + r * kPaddedRow + c * 16; }, work, acc);
  }
  if (acc == 12345.0f) sink[blockIdx.x] = acc;
}

}  // namespace

int main() {
  int sms = 0;
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  const int64_t tiles = 512;  // per CTA: 32 MB per CTA, ~4.3 GB in all on 132 SMs
  const std::size_t bytes = 2 * std::size_t(sms) * tiles * kKeys * kHeads * kRowBytes;  // K and V, 4 heads
  unsigned char* kv = nullptr;
  float* sink = nullptr;
  CK(cudaMalloc(&kv, bytes));
  CK(cudaMalloc(&sink, sms * sizeof(float)));
  CK(cudaMemset(kv, 0x3c, bytes));
  const std::size_t read = 2 * std::size_t(sms) * tiles * kKeys * kRowBytes;  // one head's rows
  const std::size_t smem_cp = kStages * 2 * kKeys * kRowBytes;
  const std::size_t smem_bulk = kStages * 2 * kKeys * kPaddedRow + 64;
  CK(cudaFuncSetAttribute(stream_cp_async, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem_cp)));
  CK(cudaFuncSetAttribute(stream_bulk, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem_bulk)));
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  // The copy ceiling of the same card: device-to-device copy of 2 GiB (bytes read + written).
  double copy_gbs = 0;
  {
    const std::size_t n = std::size_t{1} << 30;
    void *x = nullptr, *y = nullptr;
    CK(cudaMalloc(&x, n));
    CK(cudaMalloc(&y, n));
    for (int i = 0; i < 6; ++i) {
      CK(cudaEventRecord(a));
      CK(cudaMemcpyAsync(y, x, n, cudaMemcpyDeviceToDevice));
      CK(cudaEventRecord(b));
      CK(cudaEventSynchronize(b));
      float ms = 0;
      CK(cudaEventElapsedTime(&ms, a, b));
      copy_gbs = std::max(copy_gbs, 2.0 * n / (ms * 1e-3) / 1e9);
    }
    CK(cudaFree(x));
    CK(cudaFree(y));
  }
  std::printf("%s, %d SMs; device-to-device copy %.0f GB/s (read + write)\n", prop.name, sms, copy_gbs);
  std::printf("one CTA of %d threads per SM, %d stages of 2 x %d keys x %d bytes, %.2f GB streamed a run\n",
              kThreads, kStages, kKeys, kRowBytes, read / 1e9);
  std::printf("GB/s of K/V streamed; work: dependent FMAs per thread per tile, after the tile's reads\n"
              "(cp.async, bulk) or before its copies are issued (cp.async, issue path)\n");
  std::printf("%-10s %6s %10s %8s %10s %8s %12s %8s\n", "work", "", "cp.async", "%copy", "bulk", "%copy",
              "issue path", "%copy");
  for (int work : {0, 32, 64, 128, 256, 512, 1024}) {
    double gbs[3] = {0, 0, 0};
    for (int variant = 0; variant < 3; ++variant) {
      float best = 1e30f;
      for (int rep = 0; rep < 5; ++rep) {
        CK(cudaEventRecord(a));
        if (variant == 0) {
          stream_cp_async<<<sms, kThreads, smem_cp>>>(kv, tiles, work, 0, sink);
        } else if (variant == 1) {
          stream_bulk<<<sms, kThreads, smem_bulk>>>(kv, tiles, work, sink);
        } else {
          stream_cp_async<<<sms, kThreads, smem_cp>>>(kv, tiles, 0, work, sink);
        }
        CK(cudaGetLastError());
        CK(cudaEventRecord(b));
        CK(cudaEventSynchronize(b));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, a, b));
        best = std::min(best, ms);
      }
      gbs[variant] = read / (best * 1e-3) / 1e9;
    }
    std::printf("%-10d %6s %10.0f %7.1f%% %10.0f %7.1f%% %12.0f %7.1f%%\n", work, "FMAs", gbs[0],
                100.0 * gbs[0] / copy_gbs, gbs[1], 100.0 * gbs[1] / copy_gbs, gbs[2], 100.0 * gbs[2] / copy_gbs);
  }
  CK(cudaFree(kv));
  CK(cudaFree(sink));
  return 0;
}
