#include "core/prefill_pipeline.h"

#include <algorithm>
#include <cstdint>

#include "core/debug_options.h"
#include "core/dispatch.h"
#include "core/mask.h"
#include "core/workspace_layout.h"

namespace wideattn::detail {

namespace {

// A matmul operand's view of one KV head's rows: row i at base + offset + i * row_stride.
struct KvOperand {
  const void* base;
  int64_t offset;
  int64_t row_stride;
  DType dtype;
};

}  // namespace

void run_prefill_pipeline(BackendImpl& backend, const AttentionProblem& p, const Plan& plan) {
  const ProblemExtents e = problem_extents(p);
  const DType pdtype = probability_dtype(backend.device().backend, p.dtype);
  const int64_t key_capacity = prefill_row_stride(e.max_kv_length);
  const PrefillWorkspace ws =
      prefill_workspace_layout(p, plan.query_rows_per_chunk, key_capacity, dtype_size(pdtype),
                               backend.device().backend);
  auto* base = static_cast<char*>(backend.workspace(ws.bytes));
  auto* scores = reinterpret_cast<float*>(base + ws.scores);
  void* probabilities = base + ws.probabilities;
  auto* values = reinterpret_cast<float*>(base + ws.values);

  const int32_t gqa = p.q_heads / p.kv_heads;
  const int64_t d = p.head_dim;
  const std::size_t es = dtype_size(p.dtype);
  const float scale = p.effective_scale();
  // Debugging aid (debug_options.h): each intermediate is NaN until the step that writes it.
  const bool poison = poison_workspace();
  auto refill = [&](void* pointer, std::size_t bytes) {
    if (poison) backend.fill_bytes(pointer, bytes, kPoisonByte);
  };

  for (int32_t b = 0; b < p.batch; ++b) {
    const SequenceMask mask = sequence_mask(p, b);
    const int64_t suffix = mask.suffix_length;
    if (suffix == 0) continue;
    const int64_t first_row = p.query_offsets[b];
    for (int32_t g = 0; g < p.kv_heads; ++g) {
      const int32_t first_head = g * gqa;
      // Where the matmuls read K and V rows: in place (contiguous), or, for a paged or fp8 cache,
      // the keys any of the sequence's queries sees gathered (and dequantised) once per KV head
      // into dense rows, so the GEMMs keep one leading dimension and 16/32-bit operands (the
      // gather is one more read and write of those rows; the GEMMs read them once per chunk).
      KvOperand k_rows{p.kv.k, g * p.kv.k_head_stride + b * p.kv.k_sequence_stride, p.kv.k_token_stride, p.dtype};
      KvOperand v_rows{p.kv.v, g * p.kv.v_head_stride + b * p.kv.v_sequence_stride, p.kv.v_token_stride, p.dtype};
      // An fp8 cache whose gather leaves the codes unscaled: the softmax applies the scales.
      const bool softmax_scales = p.kv.fp8 && !gather_applies_kv_scales(backend.device().backend);
      const int32_t scale_index = p.kv.scales_per_head ? g : 0;
      const float* k_scale = softmax_scales && p.kv.k_scale ? p.kv.k_scale + scale_index : nullptr;
      const float* v_scale = softmax_scales && p.kv.v_scale ? p.kv.v_scale + scale_index : nullptr;
      if (prefill_gathers_kv(p)) {
        const KeyRange all = visible_key_range(mask, 0, suffix);
        GatherKvArguments gather;
        gather.problem = &p;
        gather.sequence = b;
        gather.head = g;
        gather.first_row = all.first;
        gather.rows = all.last - all.first;
        gather.k = base + ws.k_rows;
        gather.v = base + ws.v_rows;
        if (gather.rows > 0) backend.gather_kv_rows(gather);
        // Row i of the sequence is gathered row i - all.first.
        const DType gathered = gathered_kv_dtype(p, backend.device().backend);
        k_rows = KvOperand{gather.k, -all.first * d, d, gathered};
        v_rows = KvOperand{gather.v, -all.first * d, d, gathered};
      }
      for (int64_t t0 = 0; t0 < suffix; t0 += ws.chunk_rows) {
        const int64_t rows = std::min(ws.chunk_rows, suffix - t0);
        const KeyRange keys = visible_key_range(mask, t0, t0 + rows);
        const int64_t cols = keys.last - keys.first;
        // Rows that see no key at all (e.g. a window past every key) still need zeros and LSE.
        const int64_t ld = prefill_row_stride(cols);
        if (cols > 0) {
          MatmulArguments qk;
          qk.a_dtype = p.dtype;
          qk.b_dtype = k_rows.dtype;
          qk.d_dtype = DType::f32;
          qk.a = p.q;
          qk.a_offset = (first_row + t0) * p.q_token_stride + first_head * p.q_head_stride;
          qk.a_leading_dimension = p.q_token_stride;
          qk.a_batch_stride = p.q_head_stride;
          qk.b = k_rows.base;
          qk.b_offset = k_rows.offset + keys.first * k_rows.row_stride;
          qk.b_leading_dimension = k_rows.row_stride;
          qk.b_transpose = true;
          qk.b_batch_stride = 0;
          qk.d = scores;
          qk.d_leading_dimension = ld;
          qk.d_batch_stride = rows * ld;
          qk.m = rows;
          qk.n = cols;
          qk.k = d;
          qk.batch = gqa;
          qk.ab_scale = scale;
          // A row stride of 1 is allowed for a single token; the GEMM wants >= k.
          if (rows == 1) qk.a_leading_dimension = std::max<int64_t>(qk.a_leading_dimension, d);
          refill(scores, static_cast<std::size_t>(gqa) * rows * ld * sizeof(float));
          backend.matmul(qk);
        }

        MaskedSoftmaxArguments masked;
        masked.mask = mask;
        masked.first_query = t0;
        masked.first_key = keys.first;
        masked.softcap = p.softcap;
        masked.logit_scale = k_scale;
        masked.probability_scale = v_scale;
        SoftmaxArguments& sm = masked.softmax;
        sm.input = scores;
        sm.input_row_stride = ld;
        sm.output = probabilities;
        sm.output_dtype = pdtype;
        sm.output_row_stride = ld;
        sm.rows = int64_t{gqa} * rows;
        sm.cols = cols;
        sm.rows_per_block = rows;
        sm.sinks = p.sinks ? p.sinks + first_head : nullptr;
        if (p.lse) {
          sm.lse = p.lse + (first_row + t0) * p.lse_token_stride + first_head * p.lse_head_stride;
          sm.lse_block_stride = p.lse_head_stride;
          sm.lse_row_stride = p.lse_token_stride;
        }
        if (ws.separate_probabilities) {  // else softmax runs in place over the scores
          refill(probabilities, static_cast<std::size_t>(gqa) * rows * ld * dtype_size(pdtype));
        }
        backend.masked_softmax(masked);

        if (cols > 0) {
          MatmulArguments pv;
          pv.a_dtype = pdtype;
          pv.b_dtype = v_rows.dtype;
          pv.d_dtype = DType::f32;
          pv.a = probabilities;
          pv.a_leading_dimension = ld;
          pv.a_batch_stride = rows * ld;
          pv.b = v_rows.base;
          pv.b_offset = v_rows.offset + keys.first * v_rows.row_stride;
          pv.b_leading_dimension = v_rows.row_stride;
          pv.b_transpose = false;
          pv.b_batch_stride = 0;
          pv.d = values;
          pv.d_leading_dimension = d;
          pv.d_batch_stride = rows * d;
          pv.m = rows;
          pv.n = d;
          pv.k = cols;
          pv.batch = gqa;
          pv.ab_scale = 1.0f;
          refill(values, static_cast<std::size_t>(gqa) * rows * d * sizeof(float));
          backend.matmul(pv);
          // Hidden keys have probability 0; inf/NaN in their V rows must not reach these rows.
          backend.recompute_nonfinite_products(pv);
        }

        ScatterValuesArguments sv;
        sv.src = values;
        sv.src_head_stride = rows * d;
        sv.src_row_stride = d;
        sv.out = static_cast<char*>(p.out) +
                 ((first_row + t0) * p.out_token_stride + first_head * p.out_head_stride) * es;
        sv.dtype = p.dtype;
        sv.out_token_stride = p.out_token_stride;
        sv.out_head_stride = p.out_head_stride;
        sv.heads = gqa;
        sv.rows = rows;
        sv.head_dim = p.head_dim;
        if (cols == 0) {
          // Nothing visible: the output rows are zeros. values holds zeros for that purpose.
          backend.fill_bytes(values, static_cast<std::size_t>(gqa) * rows * d * sizeof(float), 0);
        }
        backend.scatter_values(sv);
      }
    }
  }
}

}  // namespace wideattn::detail
