#include "core/mixed_batch.h"

#include "core/kv_layout.h"
#include "wideattn/types.h"

namespace wideattn::detail {

std::vector<SequenceRun> sequence_runs(const AttentionProblem& p, int64_t max_decode_suffix) {
  const auto suffix = [&](int32_t b) { return int64_t{p.query_offsets[b + 1]} - p.query_offsets[b]; };
  // An empty sequence does no work on either kernel: it joins the run it sits in (the first
  // non-empty sequence's, at the start) and never starts one of its own.
  bool decode = true;
  for (int32_t b = 0; b < p.batch; ++b) {
    if (suffix(b) > 0) {
      decode = suffix(b) <= max_decode_suffix;
      break;
    }
  }
  std::vector<SequenceRun> runs;
  for (int32_t b = 0; b < p.batch; ++b) {
    if (suffix(b) > 0) decode = suffix(b) <= max_decode_suffix;
    if (!runs.empty() && runs.back().decode == decode) {
      ++runs.back().sequences;
    } else {
      runs.push_back({b, 1, decode});
    }
  }
  return runs;
}

AttentionProblem sequence_range(const AttentionProblem& p, int32_t first, int32_t count,
                                std::vector<int32_t>& offsets) {
  AttentionProblem r = p;
  const int64_t row = p.query_offsets[first];
  offsets.resize(static_cast<std::size_t>(count) + 1);
  for (int32_t b = 0; b <= count; ++b) {
    offsets[b] = static_cast<int32_t>(p.query_offsets[first + b] - row);
  }
  // Null stays null (an absent optional tensor, or none needed by an empty problem).
  const auto advance = [](const void* base, int64_t elements, DType dtype) -> const char* {
    if (!base) return nullptr;
    return static_cast<const char*>(base) + elements * static_cast<int64_t>(dtype_size(dtype));
  };
  r.batch = count;
  r.query_offsets = offsets.data();
  r.kv_lengths = p.kv_lengths + first;
  r.q = advance(p.q, row * p.q_token_stride, p.dtype);
  r.out = const_cast<char*>(advance(p.out, row * p.out_token_stride, p.dtype));
  if (p.lse) r.lse = p.lse + row * p.lse_token_stride;
  if (p.mask.tree_start) {  // one entry per query row
    r.mask.tree_start = p.mask.tree_start + row;
    r.mask.tree_end = p.mask.tree_end + row;
    r.mask.tree_height = p.mask.tree_height + row;
  }
  if (p.kv.paged()) {
    r.kv.block_table = p.kv.block_table + first * p.kv.block_table_stride;
  } else {
    const DType cache = kv_dtype(p.kv, p.dtype);  // e4m3 bytes for an fp8 cache
    r.kv.k = advance(p.kv.k, first * p.kv.k_sequence_stride, cache);
    r.kv.v = advance(p.kv.v, first * p.kv.v_sequence_stride, cache);
  }
  return r;
}

}  // namespace wideattn::detail
