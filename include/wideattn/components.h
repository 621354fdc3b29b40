// The reference design's building blocks, each public and tested on its own:
// matmul, softmax, scatter_scores and scatter_values. The unfused prefill pipeline is made of
// these calls (src/core/prefill_pipeline.cpp). merge_states combines partial attention results
// (cascade attention, context parallelism): the split-KV merge, public.
#pragma once

#include <cstdint>

#include "wideattn/problem.h"
#include "wideattn/status.h"
#include "wideattn/types.h"

namespace wideattn {

class Context;

// What C contributes to D.
enum class MatmulC : int32_t {
  none = 0,        // D = ab_scale * A op(B)
  accumulate = 1,  // D = ab_scale * A op(B) + D
  bias = 2,        // D = ab_scale * A op(B) + c[n], c of d_dtype broadcast over rows
};

// D[batch][m, n] = ab_scale * A[batch][m, k] op(B[batch]) (+ C). Every matrix is row-major.
// A leading dimension of 0 selects the dense default (A: k; B: k if transposed else n; D: n).
// Offsets and strides are in elements. A batch stride of 0 shares that operand across the batch
// (how GQA shares one K head among the query heads of its group).
struct MatmulArguments {
  DType a_dtype = DType::f32;  // CUDA needs a_dtype == b_dtype; the CPU converts each to f32
  DType b_dtype = DType::f32;
  DType d_dtype = DType::f32;  // D and c

  const void* a = nullptr;  // [m, k], row stride a_leading_dimension
  int64_t a_offset = 0;
  int64_t a_leading_dimension = 0;
  int64_t a_batch_stride = 0;

  const void* b = nullptr;  // [k, n], or [n, k] when b_transpose
  int64_t b_offset = 0;
  int64_t b_leading_dimension = 0;
  bool b_transpose = false;
  int64_t b_batch_stride = 0;

  MatmulC c = MatmulC::none;
  const void* c_data = nullptr;  // bias only: [n]

  void* d = nullptr;  // [m, n], row stride d_leading_dimension
  int64_t d_offset = 0;
  int64_t d_leading_dimension = 0;
  int64_t d_batch_stride = 0;

  int64_t m = 0, n = 0, k = 0;
  int32_t batch = 1;
  float ab_scale = 1.0f;
};

// Row-wise softmax, f32 math. Rows are grouped in blocks of rows_per_block (one block per head
// in the attention pipeline); each block may have one sink logit and writes one LSE per row.
// A row whose entries are all -inf (and has no sink) becomes zeros, with LSE -inf.
struct SoftmaxArguments {
  const float* input = nullptr;  // [rows, cols], row stride input_row_stride; -inf = masked
  int64_t input_row_stride = 0;
  void* output = nullptr;  // [rows, cols] of output_dtype; may be `input` itself when f32 and
  DType output_dtype = DType::f32;  // the strides are equal
  int64_t output_row_stride = 0;
  int64_t rows = 0, cols = 0;
  int64_t rows_per_block = 0;     // 0: one block of all rows
  const float* sinks = nullptr;   // optional [rows / rows_per_block]
  float* lse = nullptr;           // optional: row r of block blk at lse[blk * lse_block_stride + r * lse_row_stride]
  int64_t lse_block_stride = 0, lse_row_stride = 0;
};

// The mask of one sequence as the kernels see it (MaskSpec plus the sequence's lengths).
struct SequenceMask {
  MaskSpec spec;                // tree pointers already offset to this sequence's first row
  int64_t prefix_length = 0;
  int64_t suffix_length = 0;
};

// Copies per-head scores of one sequence into the softmax buffer, applying soft-capping and
// writing -inf where the mask hides a key. Head hd, query row r (suffix index first_query + r)
// and key column c (cache row first_key + c). `dst` may equal `scores` with the same strides.
struct ScatterScoresArguments {
  const float* scores = nullptr;  // [heads, rows, cols]
  int64_t scores_head_stride = 0, scores_row_stride = 0;
  float* dst = nullptr;  // [heads, rows, cols]
  int64_t dst_head_stride = 0, dst_row_stride = 0;
  int32_t heads = 0;
  int64_t rows = 0, cols = 0;
  int64_t first_query = 0, first_key = 0;
  SequenceMask mask;
  float softcap = 0.0f;  // > 0: s = softcap * tanh(s / softcap) before masking
};

// Writes a group-major f32 result [heads, rows, head_dim] into token-major output rows:
// head hd, row r goes to out + r * out_token_stride + hd * out_head_stride, converted to dtype.
struct ScatterValuesArguments {
  const float* src = nullptr;  // [heads, rows, head_dim]
  int64_t src_head_stride = 0, src_row_stride = 0;
  void* out = nullptr;  // already offset to (first row, first head)
  DType dtype = DType::f32;
  int64_t out_token_stride = 0, out_head_stride = 0;
  int32_t heads = 0;
  int64_t rows = 0;
  int32_t head_dim = 0;
};

// One partial attention result: out [tokens, heads, head_dim] of `dtype` with its lse
// [tokens, heads] (f32, natural log of the softmax normaliser over the keys it saw).
struct AttentionState {
  const void* out = nullptr;
  DType dtype = DType::f32;
  int64_t out_token_stride = 0, out_head_stride = 0;
  const float* lse = nullptr;
  int64_t lse_token_stride = 0, lse_head_stride = 0;
};

// Most states one merge_states call combines (the CUDA kernel takes them as launch parameters).
inline constexpr int32_t kMaxMergeStates = 32;

// Per (token, head), over the states s = 0 .. num_states - 1 (f32 math):
//   lse = log(sum_s exp(lse_s)),  out = sum_s exp(lse_s - lse) * out_s.
// A state with lse_s = -inf saw no key and contributes nothing, whatever its out_s holds
// (NaN included); a row whose states are all -inf becomes zeros with lse -inf. Every lse_s is
// finite or -inf (a partial result's). The outputs must not overlap any state.
struct MergeStatesArguments {
  const AttentionState* states = nullptr;  // host array of num_states; tensors on the device
  int32_t num_states = 0;                  // 1 to kMaxMergeStates
  int64_t tokens = 0;
  int32_t heads = 0;
  int32_t head_dim = 0;
  void* out = nullptr;  // [tokens, heads, head_dim] of out_dtype
  DType out_dtype = DType::f32;
  int64_t out_token_stride = 0, out_head_stride = 0;
  float* lse = nullptr;  // optional [tokens, heads]
  int64_t lse_token_stride = 0, lse_head_stride = 0;
};

Status matmul(Context& context, const MatmulArguments& args);
Status softmax(Context& context, const SoftmaxArguments& args);
Status scatter_scores(Context& context, const ScatterScoresArguments& args);
Status scatter_values(Context& context, const ScatterValuesArguments& args);
Status merge_states(Context& context, const MergeStatesArguments& args);

}  // namespace wideattn
