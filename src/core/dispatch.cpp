// plan_attention: the one pure function that picks the kernel. attention(), workspace sizing
// and the CLI's report all call it, so they cannot disagree.
#include <algorithm>
#include <string>
#include <type_traits>

#include "core/bounded_plan.h"
#include "core/decode_support.h"
#include "core/dispatch.h"
#include "core/error.h"
#include "core/fused_support.h"
#include "core/mixed_batch.h"
#include "core/tuning.h"
#include "core/validate.h"
#include "core/workspace_layout.h"

namespace wideattn {
namespace detail {
namespace {

// The plan's one line of text, built with << but without iostreams: planning runs on every call
// (an ostringstream cost more than the rest of planning a decode step).
class Reason {
 public:
  Reason& operator<<(const char* text) {
    text_ += text;
    return *this;
  }
  Reason& operator<<(const std::string& text) {
    text_ += text;
    return *this;
  }
  template <class Integer, std::enable_if_t<std::is_integral_v<Integer>, int> = 0>
  Reason& operator<<(Integer value) {
    text_ += std::to_string(value);
    return *this;
  }
  const std::string& str() const { return text_; }

 private:
  std::string text_;
};

}  // namespace

ProblemExtents problem_extents(const AttentionProblem& p) {
  ProblemExtents e;
  for (int32_t b = 0; b < p.batch; ++b) {
    e.max_suffix = std::max<int64_t>(e.max_suffix, p.query_offsets[b + 1] - p.query_offsets[b]);
    e.max_kv_length = std::max<int64_t>(e.max_kv_length, p.kv_lengths[b]);
  }
  e.total_tokens = p.total_tokens();
  return e;
}

DType probability_dtype(Backend backend, DType model_dtype) {
  return backend == Backend::cuda ? model_dtype : DType::f32;
}

int32_t choose_splits(const AttentionProblem& p, const DeviceInfo& device) {
  const Tuning t = tuning_for(device);
  const ProblemExtents e = problem_extents(p);
  const int64_t gqa = p.q_heads / p.kv_heads;
  const int64_t rows = std::max<int64_t>(1, e.max_suffix * gqa);
  const int64_t row_blocks = (rows + t.decode_rows_per_item - 1) / t.decode_rows_per_item;
  const int64_t per_item = decode_row_blocks_per_item(t, p.dtype, row_blocks);
  const int64_t items = int64_t{p.batch} * p.kv_heads * ((row_blocks + per_item - 1) / per_item);
  const int64_t units = std::max(1, device.compute_units);
  const int64_t most = std::clamp<int64_t>(e.max_kv_length / t.min_keys_per_split, 1, t.max_splits);
  if (device.backend != Backend::cuda) {
    const int64_t target = units * t.work_items_per_unit;
    return static_cast<int32_t>(std::min<int64_t>((target + items - 1) / items, most));
  }
  // CUDA: the kernel streams K/V at the SM's bandwidth, so a split's time is its keys times the
  // work items queued on the busiest SM, plus a fixed cost per wave of resident items and the
  // merge pass. Pick the cheapest split count (the fewest among equals). A split's keys,
  // rounded up to whole tiles, are tile x ceil(tiles / s): the choice depends on the longest
  // KV only through its tile count, so a decode loop asks the same question 32 steps running
  // and the last answer is kept (the loop is most of plan_attention's host time).
  struct Question {
    int64_t items, tiles, most, units, resident, item_overhead, merge_overhead;
    bool operator==(const Question& o) const {
      return items == o.items && tiles == o.tiles && most == o.most && units == o.units &&
             resident == o.resident && item_overhead == o.item_overhead &&
             merge_overhead == o.merge_overhead;
    }
  };
  const int64_t tile = kCudaDecodeKeysPerTile;
  const Question q{items,
                   (e.max_kv_length + tile - 1) / tile,
                   most,
                   units,
                   units * cuda_decode_items_per_sm(p.head_dim),
                   t.decode_item_overhead_keys,
                   t.decode_merge_overhead_keys};
  thread_local Question last_question{};
  thread_local int32_t last_answer = 0;
  if (last_answer > 0 && q == last_question) return last_answer;
  int64_t best = 1, best_cost = -1;
  for (int64_t s = 1; s <= q.most; ++s) {
    const int64_t ctas = q.items * s;
    const int64_t keys = (q.tiles + s - 1) / s * tile;
    const int64_t cost = (ctas + q.units - 1) / q.units * keys +
                         (ctas + q.resident - 1) / q.resident * q.item_overhead +
                         (s > 1 ? q.merge_overhead : 0);
    if (best_cost < 0 || cost < best_cost) {
      best = s;
      best_cost = cost;
    }
  }
  last_question = q;
  last_answer = static_cast<int32_t>(best);
  return last_answer;
}

// One kernel for the whole of `p` (validated).
Plan plan_one(const AttentionProblem& p, const DeviceInfo& device, Kernel forced) {
  const Tuning t = tuning_for(device);
  const ProblemExtents e = problem_extents(p);
  if (p.kv.fp8 && device.backend == Backend::cuda && p.dtype == DType::f32) {
    // The CUDA decode kernels widen e4m3 tiles for tensor cores; the unfused prefill gathers the
    // rows into the queries' dtype for cuBLASLt: both need 16-bit queries.
    throw_error(StatusCode::unsupported,
                "plan_attention: kv.fp8 = true with dtype = f32 on cuda, expected f16 or bf16 "
                "queries (an fp8 cache runs on the tensor-core decode kernel and the unfused prefill)");
  }
  Plan result;
  Reason why;
  if (forced == Kernel::automatic) {
    if (e.max_suffix > t.max_decode_suffix) {
      const std::string fused_missing = fused_prefill_unsupported(p, device);
      why << "longest suffix " << e.max_suffix << " > " << t.max_decode_suffix << ": ";
      if (fused_missing.empty()) {
        result.kernel = Kernel::prefill_fused;
        why << fused_prefill_summary(p);
      } else {
        result.kernel = Kernel::prefill_unfused;
        why << "prefill (matmul, mask, softmax, matmul per KV head; fused kernel: "
            << fused_missing << ")";
      }
    } else if (p.kv_splits > 0) {
      result.num_splits = p.kv_splits;
      result.kernel = result.num_splits > 1 ? Kernel::two_pass : Kernel::single_pass;
      why << "longest suffix " << e.max_suffix << " <= " << t.max_decode_suffix << ", "
          << result.num_splits << " KV split(s): fixed by kv_splits (batch-invariant)";
    } else {
      result.num_splits = choose_splits(p, device);
      result.kernel = result.num_splits > 1 ? Kernel::two_pass : Kernel::single_pass;
      why << "longest suffix " << e.max_suffix << " <= " << t.max_decode_suffix << ", "
          << result.num_splits << " KV split(s) to fill " << device.compute_units << " "
          << (device.backend == Backend::cuda ? "SMs" : "threads") << " (longest KV "
          << e.max_kv_length << ")";
    }
  } else if (forced == Kernel::single_pass) {
    if (p.kv_splits > 1) {
      throw_invalid("plan_attention", "kv_splits", p.kv_splits, "0 or 1 with forced = single_pass");
    }
    result.kernel = forced;
    why << "forced single_pass";
  } else if (forced == Kernel::two_pass) {
    if (p.kv_splits == 1) {
      throw_invalid("plan_attention", "kv_splits", p.kv_splits, "0 or >= 2 with forced = two_pass");
    }
    result.kernel = forced;
    result.num_splits = p.kv_splits > 0 ? p.kv_splits : std::max(2, choose_splits(p, device));
    why << "forced two_pass, " << result.num_splits << " KV splits"
        << (p.kv_splits > 0 ? " (kv_splits)" : "");
  } else if (forced == Kernel::prefill_unfused) {
    result.kernel = forced;
    why << "forced prefill_unfused";
  } else if (forced == Kernel::prefill_fused) {
    const std::string fused_missing = fused_prefill_unsupported(p, device);
    if (!fused_missing.empty()) {
      throw_error(StatusCode::unsupported,
                  "plan_attention: forced = prefill_fused cannot run this problem: " + fused_missing);
    }
    result.kernel = forced;
    why << "forced prefill_fused: " << fused_prefill_summary(p);
  } else {
    throw_invalid("plan_attention", "forced", static_cast<int>(forced),
                  "automatic, single_pass, two_pass, prefill_unfused or prefill_fused");
  }
  if (result.kernel == Kernel::prefill_unfused) {
    const int64_t gqa = p.q_heads / p.kv_heads;
    const int64_t key_capacity = prefill_row_stride(e.max_kv_length);
    const std::size_t psize = dtype_size(probability_dtype(device.backend, p.dtype));
    const int64_t per_row = gqa * key_capacity *
                            static_cast<int64_t>(sizeof(float) + (psize == 4 ? 0 : psize));
    int64_t chunk = std::max<int64_t>(1, t.prefill_scratch_bytes / per_row);
    if (t.prefill_max_chunk_rows > 0) chunk = std::min(chunk, t.prefill_max_chunk_rows);
    if (chunk >= t.prefill_chunk_granularity) chunk -= chunk % t.prefill_chunk_granularity;
    chunk = std::min<int64_t>(chunk, std::max<int64_t>(1, e.max_suffix));
    result.query_rows_per_chunk = chunk;
    result.workspace_bytes = prefill_workspace_layout(p, chunk, key_capacity, psize, device.backend).bytes;
    why << "; " << chunk << " query rows per chunk";
  } else if (result.kernel == Kernel::prefill_fused) {
    // kv_splits fixes the count (batch-invariant serving); else as many as fill the SMs.
    result.num_splits = p.kv_splits > 0 ? p.kv_splits : fused_prefill_splits(p, device);
    // Split tiles leave partial states for the decode merge kernel, in its layout.
    result.workspace_bytes = result.num_splits > 1 ? decode_workspace_layout(p, result.num_splits).bytes : 0;
    if (result.num_splits > 1) {
      why << "; " << result.num_splits << " KV splits per tile to fill " << device.compute_units << " SMs";
    } else if (fused_prefill_alternate_keys(p, device, result.num_splits)) {
      why << "; 64-row tiles, the warpgroups taking key tiles in turn (few tiles for " << device.compute_units
          << " SMs)";
    }
  } else {
    result.workspace_bytes = decode_workspace_layout(p, result.num_splits).bytes;
    if (device.backend == Backend::cuda && !decode_wgmma_unsupported(p, device, e.max_suffix)) {
      why << "; wgmma kernel (fp8 cache at head_dim 512)";
    }
  }
  result.reason = why.str();
  return result;
}

// Automatic dispatch of a batch that mixes decode steps with prefill chunks: one plan per run
// of consecutive sequences of one kind. Empty when the batch is not mixed, or so interleaved
// that the launches would cost more than the decode kernels save.
Plan plan_mixed(const AttentionProblem& p, const DeviceInfo& device) {
  const std::vector<SequenceRun> runs = sequence_runs(p, tuning_for(device).max_decode_suffix);
  Plan result;
  if (runs.size() < 2 || runs.size() > static_cast<std::size_t>(kMaxMixedRuns)) return result;
  Reason why;
  why << "mixed batch, " << runs.size() << " runs";
  std::vector<int32_t> offsets;
  bool have_prefill = false;
  for (const SequenceRun& run : runs) {
    const Plan part = plan_one(sequence_range(p, run.first_sequence, run.sequences, offsets), device,
                               Kernel::automatic);
    result.parts.push_back({run.first_sequence, run.sequences, part.kernel, part.num_splits,
                            part.query_rows_per_chunk, part.workspace_bytes});
    result.workspace_bytes = std::max(result.workspace_bytes, part.workspace_bytes);
    if (!run.decode && !have_prefill) {
      have_prefill = true;
      result.kernel = part.kernel;
      result.num_splits = part.num_splits;
      result.query_rows_per_chunk = part.query_rows_per_chunk;
    }
    why << "; sequences " << run.first_sequence << "-" << run.first_sequence + run.sequences - 1
        << ": " << to_string(part.kernel) << " (" << part.reason << ")";
  }
  result.reason = why.str();
  return result;
}

}  // namespace detail

Status plan_attention(const AttentionProblem& p, const DeviceInfo& device, Kernel forced,
                      Plan* plan) {
  return detail::guarded([&] {
    using namespace detail;
    if (!plan) throw_invalid("plan_attention", "plan", "null", "a Plan to fill");
    validate_problem("plan_attention", p, device.backend);
    Plan result;
    if (forced == Kernel::automatic) result = plan_mixed(p, device);
    if (result.parts.empty()) result = plan_one(p, device, forced);
    *plan = std::move(result);
  });
}

Status plan_attention(const AttentionProblem& p, const ProblemBounds& bounds, const DeviceInfo& device,
                      Kernel forced, Plan* plan) {
  return detail::guarded([&] {
    if (!plan) detail::throw_invalid("plan_attention", "plan", "null", "a Plan to fill");
    *plan = detail::plan_from_bounds(p, bounds, device, forced);
  });
}

}  // namespace wideattn
