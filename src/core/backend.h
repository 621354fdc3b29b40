// The interface every backend implements. The public functions validate their arguments
// (src/core/validate.h) before they reach a backend, so backends may assume valid input.
// Backends report failures by throwing detail::Error.
#pragma once

#include <cstddef>

#include "core/error.h"
#include "wideattn/attention.h"
#include "wideattn/components.h"
#include "wideattn/context.h"
#include "wideattn/write_kv.h"

namespace wideattn::detail {

// The prefill pipeline's mask-and-normalise step over one chunk of one KV group: the scores
// (`softmax.input`, [heads, rows, cols] with heads = softmax.rows / softmax.rows_per_block)
// are masked and soft-capped as scatter_scores would (query first_query + row, key first_key +
// column), then normalised as softmax.
struct MaskedSoftmaxArguments {
  SoftmaxArguments softmax;
  SequenceMask mask;
  int64_t first_query = 0, first_key = 0;
  float softcap = 0.0f;
  // An fp8 cache gathered unscaled (gather_applies_kv_scales false): one float each in the
  // backend's memory, null = 1. Each score is multiplied by *logit_scale before the soft-cap
  // and the mask (the K scale), each probability by *probability_scale after normalising (the
  // V scale, which the P V product then carries); the LSE does not see the latter.
  const float* logit_scale = nullptr;
  const float* probability_scale = nullptr;
};

// The prefill pipeline's read of a paged or fp8 cache: rows [first_row, first_row + rows) of
// sequence `sequence`, KV head `head` of K and V, read through the block table (when paged)
// into dense [rows, head_dim] buffers of gathered_kv_dtype (the problem's dtype; f32 rows
// dequantised from an fp8 cache).
struct GatherKvArguments {
  const AttentionProblem* problem = nullptr;
  int32_t sequence = 0, head = 0;
  int64_t first_row = 0, rows = 0;
  void* k = nullptr;
  void* v = nullptr;
};

class BackendImpl {
 public:
  virtual ~BackendImpl() = default;

  virtual const DeviceInfo& device() const = 0;
  virtual void* stream() const { return nullptr; }
  virtual void set_stream(void*) {}

  // Device memory.
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void release(void* pointer) = 0;
  virtual void copy(void* destination, const void* source, std::size_t bytes, CopyKind kind) = 0;
  virtual void synchronize() = 0;
  // Asynchronous fill of device memory with one byte value (on the stream).
  virtual void fill_bytes(void* pointer, std::size_t bytes, unsigned char value) = 0;

  // Scratch owned by the backend, at least `bytes` long, valid until the next call. Grows on
  // demand; work already queued on the stream that uses the old buffer stays valid.
  virtual void* workspace(std::size_t bytes) = 0;

  // Components.
  virtual void matmul(const MatmulArguments& args) = 0;
  virtual void softmax(const SoftmaxArguments& args) = 0;
  // Default: scatter_scores in place over the scores, then softmax. A backend may fuse them
  // (one pass over the scores instead of three).
  virtual void masked_softmax(const MaskedSoftmaxArguments& args) {
    if (args.logit_scale || args.probability_scale) {  // gather_applies_kv_scales says where
      throw_error(StatusCode::unsupported,
                  "masked_softmax: logit_scale/probability_scale need a backend that fuses the mask "
                  "into its softmax");
    }
    const SoftmaxArguments& sm = args.softmax;
    if (sm.cols > 0 && sm.rows > 0) {
      ScatterScoresArguments mask;
      mask.scores = sm.input;
      mask.scores_row_stride = sm.input_row_stride;
      mask.scores_head_stride = sm.rows_per_block * sm.input_row_stride;
      mask.dst = const_cast<float*>(sm.input);  // the pipeline's own scratch
      mask.dst_row_stride = mask.scores_row_stride;
      mask.dst_head_stride = mask.scores_head_stride;
      mask.heads = static_cast<int32_t>(sm.rows / sm.rows_per_block);
      mask.rows = sm.rows_per_block;
      mask.cols = sm.cols;
      mask.first_query = args.first_query;
      mask.first_key = args.first_key;
      mask.mask = args.mask;
      mask.softcap = args.softcap;
      scatter_scores(mask);
    }
    softmax(sm);
  }
  virtual void scatter_scores(const ScatterScoresArguments& args) = 0;
  virtual void scatter_values(const ScatterValuesArguments& args) = 0;
  // The prefill pipeline's P V product leaves out keys of probability exactly 0: after the
  // GEMM `pv` (A = probabilities, B = V not transposed, D = f32 values, no C), every element of
  // D that is not finite is recomputed from the keys whose probability is not 0. A key the mask
  // hides has probability 0, and in a GEMM 0 x inf = 0 x NaN = NaN: inf or NaN in a hidden V row
  // would reach the rows it is hidden from. Finite elements are left as they are (bit for bit),
  // so a result without inf or NaN costs one read of D.
  virtual void recompute_nonfinite_products(const MatmulArguments& pv) = 0;

  // Default: unsupported (a backend without it cannot run the prefill pipeline on pages).
  virtual void gather_kv_rows(const GatherKvArguments& args);

  // The serving operations (components.h, write_kv.h).
  virtual void merge_states(const MergeStatesArguments& args) = 0;
  // Context parallelism (core/context_parallel.cpp): recv [world][bytes] <- every rank's send
  // over the NCCL communicator `comm`, on the stream; and a communicator on this device.
  virtual void all_gather(void* /*comm*/, const void* /*send*/, void* /*recv*/, std::size_t /*bytes*/) {
    throw_error(StatusCode::unsupported, "context parallelism: group.world_size > 1 needs the CUDA "
                                         "backend (NCCL)");
  }
  virtual void* nccl_comm_init(int32_t /*world_size*/, const char* /*unique_id*/, int32_t /*rank*/) {
    throw_error(StatusCode::unsupported, "nccl_comm_init: needs the CUDA backend");
  }
  virtual void write_kv(const WriteKvArguments& args) = 0;

  // single_pass (plan.num_splits == 1) and two_pass (split-KV plus merge).
  virtual void decode(const AttentionProblem& problem, const Plan& plan) = 0;
  // The fused prefill kernel (plan_attention chooses it only where the backend has one).
  virtual void prefill_fused(const AttentionProblem& problem, const Plan& plan);
};

}  // namespace wideattn::detail
