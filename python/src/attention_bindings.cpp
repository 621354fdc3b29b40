// attention() and plan_attention() from Python: DLPack arrays in, checked against each other,
// their strides passed straight into an AttentionProblem.
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "arrays.h"
#include "bindings.h"
#include "contexts.h"
#include "wideattn/attention.h"

namespace wideattn::python {
namespace {

int32_t to_int32(const char* function, const char* name, int64_t value) {
  if (value < std::numeric_limits<int32_t>::min() || value > std::numeric_limits<int32_t>::max()) {
    throw_value_error(std::string(function) + ": " + name + " = " + std::to_string(value) +
                      " does not fit in int32");
  }
  return static_cast<int32_t>(value);
}

Kernel parse_kernel(const char* function, const std::string& name) {
  if (name == "auto" || name == "automatic") return Kernel::automatic;
  if (name == "single_pass") return Kernel::single_pass;
  if (name == "two_pass") return Kernel::two_pass;
  if (name == "prefill_unfused") return Kernel::prefill_unfused;
  throw_value_error(std::string(function) + ": kernel = '" + name +
                    "', expected 'auto', 'single_pass', 'two_pass' or 'prefill_unfused'");
}

// Everything one call holds: the imported arrays (kept alive) and the problem built from them.
struct AttentionCall {
  Array q, k, v, out, lse, tree_start, tree_end, tree_height, sinks;
  std::vector<int32_t> query_offsets, kv_lengths;
  AttentionProblem problem;
  Device device;
};

struct AttentionArgs {
  nb::handle q, k_cache, v_cache, out, lse;
  std::vector<int32_t> query_offsets, kv_lengths;
  bool causal;
  int64_t window, ring_length, ring_offset;
  nb::handle tree_start, tree_end, tree_height, sinks;
  float softcap;
  float scale;  // NaN: 1/sqrt(head_dim)
  bool u16_is_bf16;
};

// Imports and checks every array. `plan_only`: out may be None (plan_attention reads no data).
void build(const char* f, const AttentionArgs& a, bool plan_only, AttentionCall* c) {
  c->q = Array(a.q, f, "q", false, a.u16_is_bf16);
  c->k = Array(a.k_cache, f, "k_cache", false, a.u16_is_bf16);
  c->v = Array(a.v_cache, f, "v_cache", false, a.u16_is_bf16);
  c->out = Array(a.out, f, "out", true, a.u16_is_bf16);
  c->lse = Array(a.lse, f, "lse", true, false);
  c->tree_start = Array(a.tree_start, f, "tree_start", false, false);
  c->tree_end = Array(a.tree_end, f, "tree_end", false, false);
  c->tree_height = Array(a.tree_height, f, "tree_height", false, false);
  c->sinks = Array(a.sinks, f, "sinks", false, false);
  if (!c->q.present()) throw_type_error(std::string(f) + ": q is required");
  if (!c->k.present()) throw_type_error(std::string(f) + ": k_cache is required");
  if (!c->v.present()) throw_type_error(std::string(f) + ": v_cache is required");
  if (!c->out.present() && !plan_only) throw_type_error(std::string(f) + ": out is required");

  const Array& q = c->q;
  q.require_ndim(3, "[total_tokens, q_heads, head_dim]");
  q.require_float();
  c->k.require_ndim(4, "[batch, capacity, kv_heads, head_dim]");
  c->v.require_ndim(4, "[batch, capacity, kv_heads, head_dim]");
  c->k.require_same_dtype(q);
  c->v.require_same_dtype(q);
  c->device = q.device();
  c->k.require_device(c->device, q);
  c->v.require_device(c->device, q);

  const int64_t tokens = q.shape(0), q_heads = q.shape(1), head_dim = q.shape(2);
  const int64_t batch = c->k.shape(0), capacity = c->k.shape(1), kv_heads = c->k.shape(2);
  c->k.require_dim(3, head_dim, "head_dim, q.shape[2]");
  c->v.require_dim(0, batch, "batch, k_cache.shape[0]");
  c->v.require_dim(1, capacity, "capacity, k_cache.shape[1]");
  c->v.require_dim(2, kv_heads, "kv_heads, k_cache.shape[2]");
  c->v.require_dim(3, head_dim, "head_dim, q.shape[2]");
  for (const Array* t : {&c->q, &c->k, &c->v}) {
    t->require_last_contiguous();
    t->require_nonnegative_strides();
  }
  if (c->out.present()) {
    c->out.require_ndim(3, "[total_tokens, q_heads, head_dim]");
    c->out.require_same_dtype(q);
    c->out.require_device(c->device, q);
    c->out.require_dim(0, tokens, "total_tokens, q.shape[0]");
    c->out.require_dim(1, q_heads, "q_heads, q.shape[1]");
    c->out.require_dim(2, head_dim, "head_dim, q.shape[2]");
    c->out.require_last_contiguous();
    c->out.require_nonnegative_strides();
  }
  if (c->lse.present()) {
    c->lse.require_ndim(2, "[total_tokens, q_heads]");
    c->lse.require_element(Element::f32, "float32");
    c->lse.require_device(c->device, q);
    c->lse.require_dim(0, tokens, "total_tokens, q.shape[0]");
    c->lse.require_dim(1, q_heads, "q_heads, q.shape[1]");
    c->lse.require_nonnegative_strides();
  }
  const int tree_parts = c->tree_start.present() + c->tree_end.present() + c->tree_height.present();
  if (tree_parts != 0 && tree_parts != 3) {
    throw_value_error(std::string(f) + ": tree needs all three of tree_start, tree_end and "
                      "tree_height, got " + std::to_string(tree_parts));
  }
  for (Array* t : {&c->tree_start, &c->tree_end, &c->tree_height}) {
    if (!t->present()) continue;
    t->require_contiguous_1d();
    t->require_element(Element::i32, "int32");
    t->require_device(c->device, q);
    t->require_dim(0, tokens, "total_tokens, q.shape[0]");
  }
  if (c->sinks.present()) {
    c->sinks.require_contiguous_1d();
    c->sinks.require_element(Element::f32, "float32");
    c->sinks.require_device(c->device, q);
    c->sinks.require_dim(0, q_heads, "q_heads, q.shape[1]");
  }

  c->query_offsets = a.query_offsets;
  c->kv_lengths = a.kv_lengths;
  if (static_cast<int64_t>(c->kv_lengths.size()) != batch) {
    throw_value_error(std::string(f) + ": kv_lengths has " + std::to_string(c->kv_lengths.size()) +
                      " entries, expected batch = k_cache.shape[0] = " + std::to_string(batch));
  }
  if (static_cast<int64_t>(c->query_offsets.size()) != batch + 1) {
    throw_value_error(std::string(f) + ": query_offsets has " +
                      std::to_string(c->query_offsets.size()) + " entries, expected batch + 1 = " +
                      std::to_string(batch + 1));
  }
  if (c->query_offsets.back() != tokens) {
    throw_value_error(std::string(f) + ": query_offsets[-1] = " +
                      std::to_string(c->query_offsets.back()) +
                      ", expected total_tokens = q.shape[0] = " + std::to_string(tokens));
  }

  AttentionProblem& p = c->problem;
  p.batch = to_int32(f, "batch", batch);
  p.q_heads = to_int32(f, "q_heads", q_heads);
  p.kv_heads = to_int32(f, "kv_heads", kv_heads);
  p.head_dim = to_int32(f, "head_dim", head_dim);
  p.dtype = q.dtype();
  p.query_offsets = c->query_offsets.data();
  p.kv_lengths = c->kv_lengths.data();
  p.q = q.data();
  p.q_token_stride = q.stride(0);
  p.q_head_stride = q.stride(1);
  p.kv.k = c->k.data();
  p.kv.v = c->v.data();
  p.kv.capacity = capacity;
  p.kv.k_sequence_stride = c->k.stride(0);
  p.kv.k_token_stride = c->k.stride(1);
  p.kv.k_head_stride = c->k.stride(2);
  p.kv.v_sequence_stride = c->v.stride(0);
  p.kv.v_token_stride = c->v.stride(1);
  p.kv.v_head_stride = c->v.stride(2);
  if (c->out.present()) {
    p.out = c->out.data();
    p.out_token_stride = c->out.stride(0);
    p.out_head_stride = c->out.stride(1);
  } else {
    // plan_attention only checks that out is set and overlaps no input: give it an address
    // past every input (never dereferenced).
    uintptr_t end = 0;
    for (const Array* t : {&c->q, &c->k, &c->v}) {
      end = std::max(end, reinterpret_cast<uintptr_t>(t->data()) +
                              static_cast<uintptr_t>(extent_elements(*t)) * element_size(t->element()));
    }
    p.out = reinterpret_cast<void*>((end + 4096) & ~uintptr_t{255});
    p.out_head_stride = head_dim;
    p.out_token_stride = q_heads * head_dim;
  }
  if (c->lse.present()) {
    p.lse = static_cast<float*>(c->lse.data());
    p.lse_token_stride = c->lse.stride(0);
    p.lse_head_stride = c->lse.stride(1);
  }
  p.mask.causal = a.causal;
  p.mask.window = to_int32(f, "window", a.window);
  p.mask.ring_length = to_int32(f, "ring_length", a.ring_length);
  p.mask.ring_offset = to_int32(f, "ring_offset", a.ring_offset);
  if (tree_parts == 3) {
    p.mask.tree_start = static_cast<const int32_t*>(c->tree_start.data());
    p.mask.tree_end = static_cast<const int32_t*>(c->tree_end.data());
    p.mask.tree_height = static_cast<const int32_t*>(c->tree_height.data());
  }
  p.scale = a.scale;
  p.softcap = a.softcap;
  if (c->sinks.present()) p.sinks = static_cast<const float*>(c->sinks.data());
}

using PlanTuple = std::tuple<std::string, int32_t, int64_t, uint64_t, std::string>;

PlanTuple to_tuple(const Plan& plan) {
  return PlanTuple(to_string(plan.kernel), plan.num_splits, plan.query_rows_per_chunk,
                   static_cast<uint64_t>(plan.workspace_bytes), plan.reason);
}

AttentionArgs args_from(nb::handle q, nb::handle k_cache, nb::handle v_cache, nb::handle out,
                        nb::handle lse, std::vector<int32_t> query_offsets,
                        std::vector<int32_t> kv_lengths, bool causal, int64_t window,
                        int64_t ring_length, int64_t ring_offset, nb::handle tree_start,
                        nb::handle tree_end, nb::handle tree_height, nb::handle sinks,
                        float softcap, float scale, bool u16_is_bf16) {
  return AttentionArgs{q, k_cache, v_cache, out, lse, std::move(query_offsets),
                       std::move(kv_lengths), causal, window, ring_length, ring_offset,
                       tree_start, tree_end, tree_height, sinks, softcap, scale, u16_is_bf16};
}

}  // namespace

void bind_attention(nb::module_& m) {
  m.def(
      "attention",
      [](nb::handle q, nb::handle k_cache, nb::handle v_cache, nb::handle out, nb::handle lse,
         std::vector<int32_t> query_offsets, std::vector<int32_t> kv_lengths, bool causal,
         int64_t window, int64_t ring_length, int64_t ring_offset, nb::handle tree_start,
         nb::handle tree_end, nb::handle tree_height, nb::handle sinks, float softcap, float scale,
         const std::string& kernel, uintptr_t stream, bool u16_is_bf16) {
        const char* f = "attention";
        AttentionCall call;
        build(f,
              args_from(q, k_cache, v_cache, out, lse, std::move(query_offsets),
                        std::move(kv_lengths), causal, window, ring_length, ring_offset,
                        tree_start, tree_end, tree_height, sinks, softcap, scale, u16_is_bf16),
              false, &call);
        const Kernel forced = parse_kernel(f, kernel);
        Plan plan;
        if (call.problem.total_tokens() == 0) return to_tuple(plan);
        run_on(call.device, reinterpret_cast<void*>(stream), [&](Context& context) {
          return wideattn::attention(context, call.problem, forced, &plan);
        });
        return to_tuple(plan);
      },
      nb::arg("q"), nb::arg("k_cache"), nb::arg("v_cache"), nb::arg("out"), nb::arg("lse").none(),
      nb::arg("query_offsets"), nb::arg("kv_lengths"), nb::arg("causal"), nb::arg("window"),
      nb::arg("ring_length"), nb::arg("ring_offset"), nb::arg("tree_start").none(),
      nb::arg("tree_end").none(), nb::arg("tree_height").none(), nb::arg("sinks").none(),
      nb::arg("softcap"), nb::arg("scale"), nb::arg("kernel"), nb::arg("stream"),
      nb::arg("u16_is_bf16"),
      "Low-level attention: every argument explicit; use wideattn.attention instead. Returns "
      "the plan used as (kernel, num_splits, query_rows_per_chunk, workspace_bytes, reason).");

  m.def(
      "plan",
      [](nb::handle q, nb::handle k_cache, nb::handle v_cache, nb::handle out, nb::handle lse,
         std::vector<int32_t> query_offsets, std::vector<int32_t> kv_lengths, bool causal,
         int64_t window, int64_t ring_length, int64_t ring_offset, nb::handle tree_start,
         nb::handle tree_end, nb::handle tree_height, nb::handle sinks, float softcap, float scale,
         const std::string& kernel, bool u16_is_bf16) {
        const char* f = "plan_attention";
        AttentionCall call;
        build(f,
              args_from(q, k_cache, v_cache, out, lse, std::move(query_offsets),
                        std::move(kv_lengths), causal, window, ring_length, ring_offset,
                        tree_start, tree_end, tree_height, sinks, softcap, scale, u16_is_bf16),
              true, &call);
        const Kernel forced = parse_kernel(f, kernel);
        const DeviceInfo& device = context_for(call.device).device();
        Plan plan;
        const Status status = plan_attention(call.problem, device, forced, &plan);
        if (!status.ok()) raise_status(status);
        return to_tuple(plan);
      },
      nb::arg("q"), nb::arg("k_cache"), nb::arg("v_cache"), nb::arg("out").none(),
      nb::arg("lse").none(), nb::arg("query_offsets"), nb::arg("kv_lengths"), nb::arg("causal"),
      nb::arg("window"), nb::arg("ring_length"), nb::arg("ring_offset"),
      nb::arg("tree_start").none(), nb::arg("tree_end").none(), nb::arg("tree_height").none(),
      nb::arg("sinks").none(), nb::arg("softcap"), nb::arg("scale"), nb::arg("kernel"),
      nb::arg("u16_is_bf16"),
      "Low-level plan_attention; use wideattn.plan instead.");
}

}  // namespace wideattn::python
