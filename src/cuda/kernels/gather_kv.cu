// gather_kv_rows on CUDA: one CTA per cache row (blockIdx.x) and pool (blockIdx.y: K, V). The
// row's page is one block-table load (a broadcast within each warp); the row is copied in
// 16-byte units when every address and stride allows it, else in elements. A page index outside
// the pools gives a row of zeros instead of a fault (the host cannot check a device table).
// An fp8 cache's rows are widened exactly into the queries' dtype on the way
// (gathered_kv_dtype), unscaled: the masked softmax applies the scales
// (gather_applies_kv_scales).
#include "cuda/kernels/gather_kv.h"

#include <cuda_fp8.h>

#include <climits>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "core/kv_layout.h"
#include "cuda/primitives/check.h"
#include "cuda/primitives/dtype.cuh"

namespace wideattn::cuda {
namespace {

constexpr int kThreads = 64;

struct GatherParams {
  detail::KvPool pool[2];  // K, V
  detail::KvPages pages;
  int64_t num_pages = 0;  // pages in each pool (contiguous: batch)
  void* out[2] = {};      // [rows, head_dim] each
  int32_t sequence = 0, head = 0;
  int64_t first_row = 0;
  int32_t element_bytes = 0;
  int32_t row_units = 0;  // copy units per row
};

template <typename Unit>
__global__ void __launch_bounds__(kThreads) gather_kv_kernel(const GatherParams p) {
  const int which = blockIdx.y;
  const int64_t i = blockIdx.x;
  const int64_t row = p.first_row + i;
  const detail::KvPool& pool = p.pool[which];
  const int64_t page = detail::page_of(p.pages, p.sequence, row);
  Unit* dst = static_cast<Unit*>(p.out[which]) + i * p.row_units;
  if (page < 0 || page >= p.num_pages) {
    for (int u = threadIdx.x; u < p.row_units; u += kThreads) dst[u] = Unit{};
    return;
  }
  const int64_t element = detail::row_offset(pool, p.pages, page, row, p.head);
  const auto* src = reinterpret_cast<const Unit*>(static_cast<const char*>(pool.base) +
                                                  element * p.element_bytes);
  for (int u = threadIdx.x; u < p.row_units; u += kThreads) dst[u] = src[u];
}

// fp8: one element a thread, e4m3 -> T exactly (every e4m3 value is an f16 and a bf16 value).
// The scales are not applied here (that would round code x scale to 16 bits): the masked
// softmax multiplies the logits by the K scale and the probabilities by the V scale.
template <typename T>
__global__ void __launch_bounds__(kThreads) gather_kv_fp8_kernel(const GatherParams p) {
  const int which = blockIdx.y;
  const int64_t i = blockIdx.x;
  const int64_t row = p.first_row + i;
  const detail::KvPool& pool = p.pool[which];
  const int64_t page = detail::page_of(p.pages, p.sequence, row);
  T* dst = static_cast<T*>(p.out[which]) + i * p.row_units;
  if (page < 0 || page >= p.num_pages) {
    for (int u = threadIdx.x; u < p.row_units; u += kThreads) dst[u] = from_float<T>(0.0f);
    return;
  }
  const auto* src = static_cast<const __nv_fp8_storage_t*>(pool.base) + detail::row_offset(pool, p.pages, page, row, p.head);
  for (int u = threadIdx.x; u < p.row_units; u += kThreads) {
    dst[u] = from_float<T>(__half2float(__half(__nv_cvt_fp8_to_halfraw(src[u], __NV_E4M3))));
  }
}

bool aligned(const void* pointer, int64_t bytes) {
  return reinterpret_cast<std::uintptr_t>(pointer) % static_cast<std::uintptr_t>(bytes) == 0;
}

}  // namespace

void launch_gather_kv_rows(const detail::GatherKvArguments& a, cudaStream_t stream) {
  const AttentionProblem& problem = *a.problem;
  if (a.rows <= 0) return;
  if (a.rows > INT_MAX) detail::throw_invalid("gather_kv_rows", "rows", a.rows, "<= 2^31 - 1");
  GatherParams p;
  p.pool[0] = detail::k_pool(problem.kv);
  p.pool[1] = detail::v_pool(problem.kv);
  p.pages = detail::kv_pages(problem.kv);
  p.num_pages = problem.kv.paged() ? problem.kv.num_pages : problem.batch;
  p.out[0] = a.k;
  p.out[1] = a.v;
  p.sequence = a.sequence;
  p.head = a.head;
  p.first_row = a.first_row;
  p.element_bytes = static_cast<int32_t>(dtype_size(problem.dtype));
  const int64_t row_bytes = int64_t{problem.head_dim} * p.element_bytes;
  // 16-byte units when every row of both pools and both outputs starts on a 16-byte boundary.
  bool wide = row_bytes % 16 == 0;
  for (int which = 0; which < 2; ++which) {
    const detail::KvPool& pool = p.pool[which];
    wide = wide && aligned(pool.base, 16) && aligned(p.out[which], 16) &&
           (pool.page_stride * p.element_bytes) % 16 == 0 &&
           (pool.token_stride * p.element_bytes) % 16 == 0 &&
           (pool.head_stride * p.element_bytes) % 16 == 0;
  }
  const dim3 grid(static_cast<unsigned>(a.rows), 2);
  if (problem.kv.fp8) {
    p.row_units = problem.head_dim;
    if (problem.dtype == DType::bf16) {
      gather_kv_fp8_kernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(p);
    } else if (problem.dtype == DType::f16) {
      gather_kv_fp8_kernel<__half><<<grid, kThreads, 0, stream>>>(p);
    } else {
      detail::throw_invalid("gather_kv_rows", "dtype", to_string(problem.dtype), "f16 or bf16 with an fp8 cache");
    }
    WIDEATTN_CUDA_CHECK_LAUNCH("gather_kv_fp8_kernel");
    return;
  }
  if (wide) {
    p.row_units = static_cast<int32_t>(row_bytes / 16);
    gather_kv_kernel<uint4><<<grid, kThreads, 0, stream>>>(p);
  } else if (p.element_bytes == 4) {
    p.row_units = problem.head_dim;
    gather_kv_kernel<uint32_t><<<grid, kThreads, 0, stream>>>(p);
  } else {
    p.row_units = problem.head_dim;
    gather_kv_kernel<uint16_t><<<grid, kThreads, 0, stream>>>(p);
  }
  WIDEATTN_CUDA_CHECK_LAUNCH("gather_kv_kernel");
}

}  // namespace wideattn::cuda
