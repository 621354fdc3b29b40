// matmul on OpenBLAS sgemm. f16/bf16 operands are converted to f32 scratch first (a shared B
// only once), non-f32 D goes through f32 scratch. When B is shared across the batch (GQA), the
// batch is folded into the rows of one large GEMM, which OpenBLAS runs far more efficiently
// than `batch` small ones.
//
// Threading: the GEMMs are cut into row (or column) panels and run by the OpenMP team, each
// panel on single-threaded sgemm. Letting OpenBLAS use its own pthreads instead makes them
// fight the OpenMP workers, which spin for a while after every parallel region (the other
// components run right before and after each matmul): a quarter of the prefill time was spent
// spinning on 2 cores.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "cpu/convert_rows.h"
#include "cpu/cpu_components.h"

namespace wideattn::detail::cpu {
namespace {

// Below this many elements a conversion is not worth waking the thread team.
constexpr int64_t kParallelConvertElements = int64_t{1} << 16;

const char* element(const void* base, DType dtype, int64_t offset) {
  return static_cast<const char*>(base) + offset * static_cast<int64_t>(dtype_size(dtype));
}
char* element(void* base, DType dtype, int64_t offset) {
  return static_cast<char*>(base) + offset * static_cast<int64_t>(dtype_size(dtype));
}

// Converts `batches` x `rows` x `cols` (strided) into a dense f32 [batches * rows, cols].
void gather_f32(const void* src, DType dtype, int64_t offset, int64_t batch_stride,
                int64_t row_stride, int32_t batches, int64_t rows, int64_t cols, float* dst) {
  const int64_t total_rows = int64_t{batches} * rows;
#pragma omp parallel for schedule(dynamic, 16) if (total_rows * cols >= kParallelConvertElements)
  for (int64_t r = 0; r < total_rows; ++r) {
    const int64_t b = r / rows, i = r % rows;
    convert_to_f32(element(src, dtype, offset + b * batch_stride + i * row_stride), dtype,
                   dst + r * cols, cols);
  }
}

// One sgemm call: D[m, n] = alpha A op(B) + beta D, all f32.
struct Gemm {
  const float* a;
  const float* b;
  float* d;
  int64_t lda, ldb, ldd, m, n, k;
};

// Below this many flops a GEMM runs on the calling thread alone.
constexpr double kParallelGemmFlops = 4e6;
constexpr int64_t kPanelAlign = 16;

// Cuts `g` into `pieces` panels along M (or N when M is too short).
void split_gemm(const Gemm& g, bool b_transpose, int pieces, std::vector<Gemm>& out) {
  auto cuts = [&](int64_t extent) {
    int64_t per = (extent + pieces - 1) / pieces;
    return (per + kPanelAlign - 1) / kPanelAlign * kPanelAlign;
  };
  if (pieces > 1 && g.m >= pieces * kPanelAlign) {
    const int64_t per = cuts(g.m);
    for (int64_t r = 0; r < g.m; r += per) {
      Gemm p = g;
      p.a = g.a + r * g.lda;
      p.d = g.d + r * g.ldd;
      p.m = std::min(per, g.m - r);
      out.push_back(p);
    }
  } else if (pieces > 1 && g.n >= pieces * kPanelAlign) {
    const int64_t per = cuts(g.n);
    for (int64_t c = 0; c < g.n; c += per) {
      Gemm p = g;
      p.b = b_transpose ? g.b + c * g.ldb : g.b + c;
      p.d = g.d + c;
      p.n = std::min(per, g.n - c);
      out.push_back(p);
    }
  } else {
    out.push_back(g);
  }
}

void run_gemms(const std::vector<Gemm>& gemms, bool b_transpose, float alpha, float beta) {
  const int threads = omp_get_max_threads();
  double flops = 0;
  for (const Gemm& g : gemms) flops += 2.0 * g.m * g.n * g.k;
  std::vector<Gemm> panels;
  if (threads > 1 && flops >= kParallelGemmFlops) {
    // One panel per thread: measured faster than 4 smaller ones (taken dynamically) on quiet
    // cores, which repack B per panel; 4 helped only slightly when another process shared a core.
    const int count = static_cast<int>(gemms.size());
    const int pieces = threads / std::gcd(count, threads);
    for (const Gemm& g : gemms) split_gemm(g, b_transpose, pieces, panels);
  } else {
    panels = gemms;
  }
  // The pthreads OpenBLAS would start its own threads inside each panel: make it serial for
  // the call. (An OpenMP OpenBLAS runs serially inside a parallel region by itself, and its
  // set_num_threads would shrink our team, so it is left alone.)
  const bool pthreads_blas = openblas_get_parallel() == 1;
  const int saved = pthreads_blas ? openblas_get_num_threads() : 1;
  if (saved != 1) openblas_set_num_threads(1);
  const auto n_panels = static_cast<int64_t>(panels.size());
#pragma omp parallel for schedule(dynamic, 1) if (n_panels > 1)
  for (int64_t i = 0; i < n_panels; ++i) {
    const Gemm& g = panels[i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, b_transpose ? CblasTrans : CblasNoTrans,
                static_cast<int>(g.m), static_cast<int>(g.n), static_cast<int>(g.k), alpha, g.a,
                static_cast<int>(g.lda), g.b, static_cast<int>(g.ldb), beta, g.d,
                static_cast<int>(g.ldd));
  }
  if (saved != 1) openblas_set_num_threads(saved);
}

}  // namespace

void matmul(const MatmulArguments& x, MatmulScratch& scratch) {
  const int64_t m = x.m, n = x.n, k = x.k;
  const int32_t batch = x.batch;
  if (m == 0 || n == 0) return;
  const int64_t lda = x.a_leading_dimension ? x.a_leading_dimension : k;
  const int64_t ldb = x.b_leading_dimension ? x.b_leading_dimension : (x.b_transpose ? k : n);
  const int64_t ldd = x.d_leading_dimension ? x.d_leading_dimension : n;
  const int64_t b_rows = x.b_transpose ? n : k, b_cols = x.b_transpose ? k : n;

  // One GEMM of batch * m rows when B is shared and A, D can be viewed as stacked rows.
  const bool fold = batch > 1 && x.b_batch_stride == 0;
  const bool a_stacked = x.a_batch_stride == m * lda;
  const bool d_stacked = x.d_batch_stride == m * ldd;
  // sgemm takes int leading dimensions of at least the row length. Operands whose rows overlap
  // (the prefill pipeline passes Q, K and V token strides, which may be shorter than head_dim)
  // or whose leading dimension passes INT_MAX (a stride of a single-row operand may be anything)
  // go through the dense f32 scratch instead of straight to sgemm.
  auto sgemm_ld = [](int64_t ld, int64_t cols) {
    return ld >= std::max<int64_t>(cols, 1) && ld <= std::numeric_limits<int>::max();
  };

  // A as f32: in place when possible, else dense [batch * m, k].
  const float* a32 = nullptr;
  int64_t lda32 = lda, a32_batch = x.a_batch_stride;
  if (k > 0) {
    if (x.a_dtype == DType::f32 && (!fold || a_stacked) && sgemm_ld(lda, k)) {
      a32 = reinterpret_cast<const float*>(element(x.a, x.a_dtype, x.a_offset));
    } else {
      float* buf = scratch.a.as<float>(static_cast<std::size_t>(batch) * m * k);
      gather_f32(x.a, x.a_dtype, x.a_offset, x.a_batch_stride, lda, batch, m, k, buf);
      a32 = buf;
      lda32 = k;
      a32_batch = m * k;
    }
  }

  // B as f32: a shared B is converted once.
  const float* b32 = nullptr;
  int64_t ldb32 = ldb, b32_batch = x.b_batch_stride;
  if (k > 0) {
    if (x.b_dtype == DType::f32 && sgemm_ld(ldb, b_cols)) {
      b32 = reinterpret_cast<const float*>(element(x.b, x.b_dtype, x.b_offset));
    } else {
      const int32_t copies = x.b_batch_stride == 0 ? 1 : batch;
      float* buf = scratch.b.as<float>(static_cast<std::size_t>(copies) * b_rows * b_cols);
      gather_f32(x.b, x.b_dtype, x.b_offset, x.b_batch_stride, ldb, copies, b_rows, b_cols, buf);
      b32 = buf;
      ldb32 = b_cols;
      b32_batch = x.b_batch_stride == 0 ? 0 : b_rows * b_cols;
    }
  }

  // D as f32: in place when f32 (and stackable if folding), else dense scratch.
  const bool d_direct = x.d_dtype == DType::f32 && (!fold || d_stacked) && sgemm_ld(ldd, n);
  float* d32;
  int64_t ldd32 = ldd, d32_batch = x.d_batch_stride;
  if (d_direct) {
    d32 = reinterpret_cast<float*>(element(x.d, x.d_dtype, x.d_offset));
  } else {
    d32 = scratch.d.as<float>(static_cast<std::size_t>(batch) * m * n);
    ldd32 = n;
    d32_batch = m * n;
    if (x.c == MatmulC::accumulate) {
      gather_f32(x.d, x.d_dtype, x.d_offset, x.d_batch_stride, ldd, batch, m, n, d32);
    }
  }
  if (x.c == MatmulC::bias) {
    // D starts as the bias row; the GEMM then accumulates onto it.
    const int64_t total_rows = int64_t{batch} * m;
#pragma omp parallel for schedule(dynamic, 16) if (total_rows * n >= kParallelConvertElements)
    for (int64_t r = 0; r < total_rows; ++r) {
      const int64_t b = r / m, i = r % m;
      convert_to_f32(x.c_data, x.d_dtype, d32 + b * d32_batch + i * ldd32, n);
    }
  }

  const float beta = x.c == MatmulC::none ? 0.0f : 1.0f;
  if (k == 0) {
    if (x.c == MatmulC::none) {
      for (int32_t b = 0; b < batch; ++b)
        for (int64_t i = 0; i < m; ++i) std::fill_n(d32 + b * d32_batch + i * ldd32, n, 0.0f);
    }
  } else {
    std::vector<Gemm> gemms;
    if (fold) {
      gemms.push_back(Gemm{a32, b32, d32, lda32, ldb32, ldd32, int64_t{batch} * m, n, k});
    } else {
      for (int32_t b = 0; b < batch; ++b) {
        gemms.push_back(Gemm{a32 + b * a32_batch, b32 + b * b32_batch, d32 + b * d32_batch,
                             lda32, ldb32, ldd32, m, n, k});
      }
    }
    run_gemms(gemms, x.b_transpose, x.ab_scale, beta);
  }

  if (!d_direct) {
    const int64_t total_rows = int64_t{batch} * m;
#pragma omp parallel for schedule(dynamic, 16) if (total_rows * n >= kParallelConvertElements)
    for (int64_t r = 0; r < total_rows; ++r) {
      const int64_t b = r / m, i = r % m;
      convert_from_f32(d32 + r * n, element(x.d, x.d_dtype, x.d_offset + b * x.d_batch_stride + i * ldd),
                       x.d_dtype, n);
    }
  }
}

}  // namespace wideattn::detail::cpu
