// wideattn::matmul on cuBLASLt: row-major, strided-batched D = ab_scale * A op(B) (+ C).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <list>
#include <unordered_map>

#include "wideattn/components.h"

namespace wideattn::cuda {

// One cuBLASLt handle and one 32 MiB workspace, created on the current device, plus a cache of
// matmul descriptors and heuristic choices keyed by shape, layout, dtypes and pointer alignment
// (least recently used entries are dropped beyond kCapacity). Not thread-safe (like Context).
class CublasLtMatmul {
 public:
  CublasLtMatmul();  // throws detail::Error
  ~CublasLtMatmul();
  CublasLtMatmul(const CublasLtMatmul&) = delete;
  CublasLtMatmul& operator=(const CublasLtMatmul&) = delete;

  // `args` are validated; throws detail::Error (unsupported for a_dtype != b_dtype, internal
  // for a failing call). D dtypes cuBLASLt cannot write for the operand dtype (anything but
  // the operand dtype or f32) go through an f32 staging matrix.
  void run(const MatmulArguments& args, cudaStream_t stream);

  static constexpr std::size_t kWorkspaceBytes = std::size_t{32} << 20;
  static constexpr std::size_t kCapacity = 512;

  // Everything the heuristic's choice depends on.
  struct Key {
    DType ab_dtype, d_dtype;
    bool b_transpose;
    MatmulC c;
    int32_t batch;
    int64_t m, n, k, lda, ldb, ldd;
    int64_t a_batch_stride, b_batch_stride, d_batch_stride;
    uint32_t a_alignment, b_alignment, d_alignment, bias_alignment;
    bool operator==(const Key& o) const;
  };
  struct KeyHash {
    std::size_t operator()(const Key& key) const;
  };

 private:
  struct Entry {
    cublasLtMatmulDesc_t operation = nullptr;
    cublasLtMatrixLayout_t b_layout = nullptr;  // cuBLASLt's A: op(B)^T
    cublasLtMatrixLayout_t a_layout = nullptr;  // cuBLASLt's B: A^T
    cublasLtMatrixLayout_t d_layout = nullptr;  // C and D: D^T
    cublasLtMatmulAlgo_t algo{};
    bool bias_epilogue = false;  // bias applied by CUBLASLT_EPILOGUE_BIAS (else preloaded into D)
  };
  using Lru = std::list<std::pair<Key, Entry>>;

  // `args` supplies the bias pointer, whose alignment the heuristic reads.
  Entry& lookup(const Key& key, const MatmulArguments& args);
  Entry build(const Key& key, const MatmulArguments& args);
  static void destroy(Entry& entry);
  // D in a dtype cuBLASLt writes (a_dtype or f32).
  void run_direct(const MatmulArguments& args, cudaStream_t stream);
  // D in another dtype: computed in f32 staging, converted in and out.
  void run_staged(const MatmulArguments& args, cudaStream_t stream);
  void* staging(std::size_t bytes, cudaStream_t stream);

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  void* staging_ = nullptr;  // f32 D for run_staged, grown on demand
  std::size_t staging_bytes_ = 0;
  Lru lru_;  // most recently used first
  std::unordered_map<Key, Lru::iterator, KeyHash> index_;
};

}  // namespace wideattn::cuda
