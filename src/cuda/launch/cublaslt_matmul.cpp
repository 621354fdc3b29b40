// Row-major matmul on cuBLASLt (column-major).
//
// A row-major [r, c] matrix with row stride ld is, read column-major, the [c, r] matrix with
// leading dimension ld: its transpose. So the row-major product D = A op(B) is computed as the
// column-major product D^T = op(B)^T A^T, with no data movement:
//   cuBLASLt A := our B   ([n, k] column-major ld ldb, or [k, n] with transa = T when b_transpose)
//   cuBLASLt B := our A   ([k, m] column-major, ld lda)
//   cuBLASLt C, D := D^T  ([n, m] column-major, ld ldd)
// The bias c[n] is then a vector over D^T's rows, which is what CUBLASLT_EPILOGUE_BIAS broadcasts.
#include "cuda/launch/cublaslt_matmul.h"

#include <algorithm>
#include <sstream>
#include <string>

#include "core/error.h"
#include "cuda/kernels/matrix_fill.h"
#include "cuda/primitives/check.h"
#include "cuda/primitives/sanitizer_marks.h"

namespace wideattn::cuda {
namespace {

void check_cublas(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  const StatusCode code = status == CUBLAS_STATUS_ALLOC_FAILED    ? StatusCode::out_of_memory
                          : status == CUBLAS_STATUS_NOT_SUPPORTED ? StatusCode::unsupported
                                                                  : StatusCode::internal;
  detail::throw_error(code, std::string("matmul: ") + what + " failed: " +
                                cublasLtGetStatusName(status) + " (" +
                                cublasLtGetStatusString(status) + ")");
}

#define WIDEATTN_CUBLAS_CHECK(call) check_cublas((call), #call)

cudaDataType_t cuda_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return CUDA_R_32F;
    case DType::f16:
      return CUDA_R_16F;
    case DType::bf16:
      return CUDA_R_16BF;
    default:
      break;
  }
  detail::throw_invalid("matmul", "dtype", static_cast<int>(dtype), "f32, f16 or bf16");
}

// Largest power of two (at most 256, cuBLASLt's default assumption) dividing the address of
// every matrix of the batch: the first one's and the batch stride in bytes.
uint32_t alignment_of(const void* pointer, int64_t batch_stride_bytes = 0) {
  const auto address = reinterpret_cast<uintptr_t>(pointer) | static_cast<uintptr_t>(batch_stride_bytes);
  if (address == 0) return 256;
  return static_cast<uint32_t>(std::min<uintptr_t>(address & (~address + 1), 256));
}

// cuBLASLt multiplies equal A and B dtypes (CUBLAS_COMPUTE_32F: strict f32, no TF32).
void require_equal_operand_dtypes(const MatmulArguments& args) {
  if (args.a_dtype == args.b_dtype) return;
  std::ostringstream s;
  s << "matmul: a_dtype = " << to_string(args.a_dtype) << " and b_dtype = "
    << to_string(args.b_dtype) << " differ, expected equal A and B dtypes on CUDA (cuBLASLt)";
  detail::throw_error(StatusCode::unsupported, s.str());
}

// D dtypes cuBLASLt writes for A/B of `ab`: f16 -> f16 or f32, bf16 -> bf16 or f32, f32 -> f32.
bool direct_d_dtype(DType ab, DType d) { return d == ab || d == DType::f32; }

cublasLtMatrixLayout_t make_layout(DType dtype, int64_t rows, int64_t cols, int64_t ld,
                                   int32_t batch, int64_t batch_stride) {
  cublasLtMatrixLayout_t layout = nullptr;
  WIDEATTN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&layout, cuda_type(dtype),
                                                   static_cast<uint64_t>(rows),
                                                   static_cast<uint64_t>(cols), ld));
  if (batch > 1) {
    try {
      WIDEATTN_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
          layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof(batch)));
      WIDEATTN_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
          layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &batch_stride, sizeof(batch_stride)));
    } catch (...) {
      cublasLtMatrixLayoutDestroy(layout);
      throw;
    }
  }
  return layout;
}

void set_epilogue(cublasLtMatmulDesc_t operation, cublasLtEpilogue_t epilogue) {
  WIDEATTN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(operation, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                       &epilogue, sizeof(epilogue)));
}

void set_bias_pointer(cublasLtMatmulDesc_t operation, const void* bias) {
  WIDEATTN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
      operation, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
}

std::string describe(const CublasLtMatmul::Key& key) {
  std::ostringstream s;
  s << "m = " << key.m << ", n = " << key.n << ", k = " << key.k << ", batch = " << key.batch
    << ", " << to_string(key.ab_dtype) << " -> " << to_string(key.d_dtype)
    << (key.b_transpose ? ", B transposed" : "");
  return s.str();
}

}  // namespace

bool CublasLtMatmul::Key::operator==(const Key& o) const {
  return ab_dtype == o.ab_dtype && d_dtype == o.d_dtype && b_transpose == o.b_transpose &&
         c == o.c && batch == o.batch && m == o.m && n == o.n && k == o.k && lda == o.lda &&
         ldb == o.ldb && ldd == o.ldd && a_batch_stride == o.a_batch_stride &&
         b_batch_stride == o.b_batch_stride && d_batch_stride == o.d_batch_stride &&
         a_alignment == o.a_alignment && b_alignment == o.b_alignment &&
         d_alignment == o.d_alignment && bias_alignment == o.bias_alignment;
}

std::size_t CublasLtMatmul::KeyHash::operator()(const Key& key) const {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  const auto mix = [&h](uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  };
  mix(static_cast<uint64_t>(key.ab_dtype) | static_cast<uint64_t>(key.d_dtype) << 8 |
      static_cast<uint64_t>(key.b_transpose) << 16 | static_cast<uint64_t>(key.c) << 24 |
      static_cast<uint64_t>(static_cast<uint32_t>(key.batch)) << 32);
  for (int64_t v : {key.m, key.n, key.k, key.lda, key.ldb, key.ldd, key.a_batch_stride,
                    key.b_batch_stride, key.d_batch_stride}) {
    mix(static_cast<uint64_t>(v));
  }
  mix(uint64_t{key.a_alignment} | uint64_t{key.b_alignment} << 16 |
      uint64_t{key.d_alignment} << 32 | uint64_t{key.bias_alignment} << 48);
  return static_cast<std::size_t>(h);
}

CublasLtMatmul::CublasLtMatmul() {
  WIDEATTN_CUBLAS_CHECK(cublasLtCreate(&handle_));
  const cudaError_t status = cudaMalloc(&workspace_, kWorkspaceBytes);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear it so that later launch checks do not report it
    workspace_ = nullptr;
    cublasLtDestroy(handle_);
    check_cuda(status, "cudaMalloc of the 32 MiB cuBLASLt workspace", __FILE__, __LINE__);
  }
}

CublasLtMatmul::~CublasLtMatmul() {
  for (auto& item : lru_) destroy(item.second);
  // Work queued with the workspace must finish before it goes; cudaFree waits for the device.
  if (workspace_) cudaFree(workspace_);
  if (staging_) cudaFree(staging_);
  if (handle_) cublasLtDestroy(handle_);
}

void CublasLtMatmul::destroy(Entry& e) {
  // Destruction statuses are ignored: nothing useful can be done with them here.
  if (e.d_layout) cublasLtMatrixLayoutDestroy(e.d_layout);
  if (e.a_layout) cublasLtMatrixLayoutDestroy(e.a_layout);
  if (e.b_layout) cublasLtMatrixLayoutDestroy(e.b_layout);
  if (e.operation) cublasLtMatmulDescDestroy(e.operation);
  e = Entry{};
}

CublasLtMatmul::Entry CublasLtMatmul::build(const Key& key, const MatmulArguments& args) {
  Entry e;
  cublasLtMatmulPreference_t preference = nullptr;
  try {
    WIDEATTN_CUBLAS_CHECK(cublasLtMatmulDescCreate(&e.operation, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t transa = key.b_transpose ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t transb = CUBLAS_OP_N;
    WIDEATTN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(e.operation, CUBLASLT_MATMUL_DESC_TRANSA,
                                                         &transa, sizeof(transa)));
    WIDEATTN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(e.operation, CUBLASLT_MATMUL_DESC_TRANSB,
                                                         &transb, sizeof(transb)));
    e.b_layout = key.b_transpose
                     ? make_layout(key.ab_dtype, key.k, key.n, key.ldb, key.batch, key.b_batch_stride)
                     : make_layout(key.ab_dtype, key.n, key.k, key.ldb, key.batch, key.b_batch_stride);
    e.a_layout = make_layout(key.ab_dtype, key.k, key.m, key.lda, key.batch, key.a_batch_stride);
    e.d_layout = make_layout(key.d_dtype, key.n, key.m, key.ldd, key.batch, key.d_batch_stride);

    WIDEATTN_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
    const uint64_t workspace_bytes = kWorkspaceBytes;
    WIDEATTN_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes,
        sizeof(workspace_bytes)));
    // cuBLASLt assumes 256-byte aligned pointers unless told otherwise (offsets break that).
    const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> alignments[] = {
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.b_alignment},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.a_alignment},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.d_alignment},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.d_alignment}};
    for (const auto& [attribute, bytes] : alignments) {
      WIDEATTN_CUBLAS_CHECK(
          cublasLtMatmulPreferenceSetAttribute(preference, attribute, &bytes, sizeof(bytes)));
    }

    // The bias epilogue first; where no algorithm offers it, fall back to preloading the bias.
    const auto find_algo = [&]() {
      cublasLtMatmulHeuristicResult_t result{};
      int found = 0;
      const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
          handle_, e.operation, e.b_layout, e.a_layout, e.d_layout, e.d_layout, preference, 1,
          &result, &found);
      if (status == CUBLAS_STATUS_NOT_SUPPORTED ||
          (status == CUBLAS_STATUS_SUCCESS && (found == 0 || result.state != CUBLAS_STATUS_SUCCESS))) {
        return false;
      }
      check_cublas(status, "cublasLtMatmulAlgoGetHeuristic");
      e.algo = result.algo;
      return true;
    };
    bool found = false;
    if (key.c == MatmulC::bias) {
      set_epilogue(e.operation, CUBLASLT_EPILOGUE_BIAS);
      set_bias_pointer(e.operation, args.c_data);  // the heuristic reads its alignment
      found = find_algo();
      e.bias_epilogue = found;
      if (!found) {
        set_epilogue(e.operation, CUBLASLT_EPILOGUE_DEFAULT);
        set_bias_pointer(e.operation, nullptr);
      }
    }
    if (!found) found = find_algo();
    if (!found) {
      detail::throw_error(StatusCode::unsupported,
                          "matmul: cuBLASLt has no algorithm for " + describe(key) +
                              " (cublasLtMatmulAlgoGetHeuristic found none)");
    }
    cublasLtMatmulPreferenceDestroy(preference);
  } catch (...) {
    if (preference) cublasLtMatmulPreferenceDestroy(preference);
    destroy(e);
    throw;
  }
  return e;
}

CublasLtMatmul::Entry& CublasLtMatmul::lookup(const Key& key, const MatmulArguments& args) {
  const auto found = index_.find(key);
  if (found != index_.end()) {
    lru_.splice(lru_.begin(), lru_, found->second);
    return found->second->second;
  }
  Entry entry = build(key, args);
  if (lru_.size() >= kCapacity) {
    destroy(lru_.back().second);
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
  lru_.emplace_front(key, entry);
  index_.emplace(key, lru_.begin());
  return lru_.front().second;
}

void CublasLtMatmul::run(const MatmulArguments& args, cudaStream_t stream) {
  require_equal_operand_dtypes(args);
  if (args.m == 0 || args.n == 0) return;
  if (direct_d_dtype(args.a_dtype, args.d_dtype)) {
    run_direct(args, stream);
  } else {
    run_staged(args, stream);
  }
}

void* CublasLtMatmul::staging(std::size_t bytes, cudaStream_t stream) {
  if (bytes <= staging_bytes_) return staging_;
  if (staging_) {
    // Work queued on the stream may still use the old buffer.
    WIDEATTN_CUDA_CHECK(cudaStreamSynchronize(stream));
    WIDEATTN_CUDA_CHECK(cudaFree(staging_));
    staging_ = nullptr;
    staging_bytes_ = 0;
  }
  const cudaError_t status = cudaMalloc(&staging_, bytes);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear it so that later launch checks do not report it
    staging_ = nullptr;
    const std::string what = "cudaMalloc of " + std::to_string(bytes) + " bytes (matmul staging)";
    check_cuda(status, what.c_str(), __FILE__, __LINE__);
  }
  staging_bytes_ = bytes;
  return staging_;
}

void CublasLtMatmul::run_staged(const MatmulArguments& args, cudaStream_t stream) {
  const std::size_t d_size = dtype_size(args.d_dtype);
  void* d = static_cast<char*>(args.d) + args.d_offset * d_size;
  const int64_t ldd = args.d_leading_dimension ? args.d_leading_dimension : args.n;
  const int64_t cells = args.m * args.n;
  float* stage = static_cast<float*>(
      staging(static_cast<std::size_t>(cells) * args.batch * sizeof(float), stream));

  // Stage in what C contributes (old D or the bias), then D_f32 = ab_scale A op(B) + stage.
  MatmulArguments inner = args;
  inner.d_dtype = DType::f32;
  inner.d = stage;
  inner.d_offset = 0;
  inner.d_leading_dimension = args.n;
  inner.d_batch_stride = cells;
  inner.c = args.c == MatmulC::none ? MatmulC::none : MatmulC::accumulate;
  inner.c_data = nullptr;
  if (args.c != MatmulC::none) {
    MatrixConvert in;
    in.src = args.c == MatmulC::accumulate ? d : nullptr;
    in.src_dtype = args.d_dtype;
    in.src_ld = ldd;
    in.src_batch_stride = args.d_batch_stride;
    in.dst = stage;
    in.dst_dtype = DType::f32;
    in.dst_ld = args.n;
    in.dst_batch_stride = cells;
    in.m = args.m;
    in.n = args.n;
    in.batch = args.batch;
    in.bias = args.c == MatmulC::bias ? args.c_data : nullptr;
    launch_matrix_convert(in, stream);
  }
  run_direct(inner, stream);

  MatrixConvert out;
  out.src = stage;
  out.src_dtype = DType::f32;
  out.src_ld = args.n;
  out.src_batch_stride = cells;
  out.dst = d;
  out.dst_dtype = args.d_dtype;
  out.dst_ld = ldd;
  out.dst_batch_stride = args.d_batch_stride;
  out.m = args.m;
  out.n = args.n;
  out.batch = args.batch;
  launch_matrix_convert(out, stream);
}

void CublasLtMatmul::run_direct(const MatmulArguments& args, cudaStream_t stream) {
  const std::size_t ab_size = dtype_size(args.a_dtype);
  const std::size_t d_size = dtype_size(args.d_dtype);
  const auto* a = static_cast<const char*>(args.a) + args.a_offset * ab_size;
  const auto* b = static_cast<const char*>(args.b) + args.b_offset * ab_size;
  auto* d = static_cast<char*>(args.d) + args.d_offset * d_size;

  MatrixFill fill;
  fill.d = d;
  fill.dtype = args.d_dtype;
  fill.ld = args.d_leading_dimension ? args.d_leading_dimension : args.n;
  fill.batch_stride = args.d_batch_stride;
  fill.m = args.m;
  fill.n = args.n;
  fill.batch = args.batch;
  fill.bias = args.c == MatmulC::bias ? args.c_data : nullptr;

  if (args.k == 0) {  // A op(B) is zero: D is 0, D itself or the bias
    if (args.c != MatmulC::accumulate) launch_matrix_fill(fill, stream);
    return;
  }

  Key key;
  key.ab_dtype = args.a_dtype;
  key.d_dtype = args.d_dtype;
  key.b_transpose = args.b_transpose;
  key.c = args.c;
  key.batch = args.batch;
  key.m = args.m;
  key.n = args.n;
  key.k = args.k;
  key.lda = args.a_leading_dimension ? args.a_leading_dimension : args.k;
  key.ldb = args.b_leading_dimension ? args.b_leading_dimension
                                     : (args.b_transpose ? args.k : args.n);
  key.ldd = fill.ld;
  // Strides of a batch of one are never used: normalise them so they share one entry.
  key.a_batch_stride = args.batch > 1 ? args.a_batch_stride : 0;
  key.b_batch_stride = args.batch > 1 ? args.b_batch_stride : 0;
  key.d_batch_stride = args.batch > 1 ? args.d_batch_stride : 0;
  key.a_alignment = alignment_of(a, key.a_batch_stride * static_cast<int64_t>(ab_size));
  key.b_alignment = alignment_of(b, key.b_batch_stride * static_cast<int64_t>(ab_size));
  key.d_alignment = alignment_of(d, key.d_batch_stride * static_cast<int64_t>(d_size));
  key.bias_alignment = args.c == MatmulC::bias ? alignment_of(args.c_data) : 0;
  Entry& e = lookup(key, args);

  const float alpha = args.ab_scale;
  float beta = args.c == MatmulC::accumulate ? 1.0f : 0.0f;
  if (args.c == MatmulC::bias) {
    if (e.bias_epilogue) {
      set_bias_pointer(e.operation, args.c_data);
    } else {
      launch_matrix_fill(fill, stream);  // D = bias, then D = alpha A op(B) + 1 * D
      beta = 1.0f;
    }
  }
  WIDEATTN_CUBLAS_CHECK(cublasLtMatmul(handle_, e.operation, &alpha, b, e.b_layout, a, e.a_layout,
                                       &beta, d, e.d_layout, d, e.d_layout, &e.algo, workspace_,
                                       kWorkspaceBytes, stream));
  mark_rows_initialized(d, args.batch, args.d_batch_stride * static_cast<int64_t>(d_size), args.m,
                        fill.ld * static_cast<int64_t>(d_size), static_cast<std::size_t>(args.n) * d_size, stream);
}

}  // namespace wideattn::cuda
