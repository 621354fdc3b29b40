// write_kv (include/wideattn/write_kv.h) and merge_states (components.h) from Python: the two
// calls a serving engine makes around attention. Arrays arrive through DLPack; strides pass
// straight into the arguments; every argument is checked here once (errors name it) and the
// library checks the rest (slots, overlaps) before anything is written.
#include <nanobind/stl/string.h>

#include <array>
#include <limits>
#include <string>
#include <vector>

#include "arrays.h"
#include "bindings.h"
#include "contexts.h"
#include "kv_cache.h"
#include "wideattn/components.h"
#include "wideattn/write_kv.h"

namespace wideattn::python {
namespace {

// For a dimension of one entry any stride is as good as another, and frameworks report
// arbitrary ones there (even negative): give the library 0, which it accepts for such dims.
int64_t stride_of(const Array& a, int64_t i) { return a.shape(i) > 1 ? a.stride(i) : 0; }

int32_t to_int32(const char* f, const std::string& name, int64_t value) {
  if (value > std::numeric_limits<int32_t>::max()) {
    throw_value_error(std::string(f) + ": " + name + " = " + std::to_string(value) +
                      " does not fit in int32");
  }
  return static_cast<int32_t>(value);
}

void require_strided(const Array& a) {
  a.require_last_contiguous();
  a.require_nonnegative_strides();
}

// ---- write_kv ------------------------------------------------------------------------------------

void write_kv_binding(nb::handle k_new_obj, nb::handle v_new_obj, nb::handle k_cache_obj,
                      nb::handle v_cache_obj, nb::handle slot_mapping_obj,
                      nb::handle block_table_obj, const std::string& kv_layout, uintptr_t stream,
                      bool u16_is_bf16, nb::handle k_scale, nb::handle v_scale,
                      nb::handle kv_cache_dtype) {
  const char* f = "write_kv";
  const bool declared_fp8 = kv_cache_dtype_is_fp8(f, kv_cache_dtype);
  Array k_new(k_new_obj, f, "k_new", false, u16_is_bf16);
  Array v_new(v_new_obj, f, "v_new", false, u16_is_bf16);
  Array k_cache(k_cache_obj, f, "k_cache", true, u16_is_bf16, declared_fp8);
  Array v_cache(v_cache_obj, f, "v_cache", true, u16_is_bf16, declared_fp8);
  Array slot_mapping(slot_mapping_obj, f, "slot_mapping", false, false);
  Array block_table(block_table_obj, f, "block_table", false, false);
  for (const Array* t : {&k_new, &v_new, &k_cache, &v_cache, &slot_mapping}) {
    if (!t->present()) throw_type_error(std::string(f) + ": " + t->name() + " is required");
  }
  if (kv_layout != "NHD" && kv_layout != "HND") {
    throw_value_error(std::string(f) + ": kv_layout = '" + kv_layout + "', expected 'NHD' or 'HND'");
  }
  // As in attention: block_table given means paged pools (its entries are not read here).
  const bool paged = block_table.present();
  const bool head_major = kv_layout == "HND";
  if (head_major && !paged) {
    // Without this, a head-major pool would be read as a contiguous cache, and with
    // page_size == kv_heads every token would land in the wrong cells without an error.
    throw_value_error(std::string(f) + ": kv_layout = 'HND' describes paged pools "
                      "[num_pages, kv_heads, page_size, head_dim]: pass block_table too (it marks "
                      "the caches as paged; write_kv does not read it); a contiguous cache is "
                      "[batch, capacity, kv_heads, head_dim] with kv_layout 'NHD'");
  }
  const char* cache_layout = !paged ? "[batch, capacity, kv_heads, head_dim]"
                             : head_major ? "[num_pages, kv_heads, page_size, head_dim] (kv_layout 'HND')"
                                          : "[num_pages, page_size, kv_heads, head_dim] (kv_layout 'NHD')";
  const int slot_dim = head_major ? 2 : 1, head_dim_index = head_major ? 1 : 2;

  k_new.require_ndim(3, "[tokens, kv_heads, head_dim]");
  k_new.require_float(k_new.is_fp8() ? "float32, float16 or bfloat16 (the rows to write: an fp8 cache "
                                       "quantises them with k_scale and v_scale)"
                                     : "float32, float16 or bfloat16");
  const Device device = k_new.device();
  v_new.require_ndim(3, "[tokens, kv_heads, head_dim]");
  v_new.require_same_dtype(k_new);
  k_cache.require_ndim(4, cache_layout);
  v_cache.require_ndim(4, cache_layout);
  // The cache is written in its own dtype, which must be the new rows' (no conversion), or an
  // fp8 cache quantises them: round(x / scale) to e4m3.
  const bool fp8 = check_cache_dtypes(f, k_cache, v_cache, k_new, declared_fp8);
  for (const Array* t : {&v_new, &k_cache, &v_cache}) t->require_device(device, k_new);

  const int64_t tokens = k_new.shape(0), kv_heads = k_new.shape(1), head_dim = k_new.shape(2);
  v_new.require_dim(0, tokens, "tokens, k_new.shape[0]");
  v_new.require_dim(1, kv_heads, "kv_heads, k_new.shape[1]");
  v_new.require_dim(2, head_dim, "head_dim, k_new.shape[2]");
  const int64_t outer = k_cache.shape(0), slots = k_cache.shape(slot_dim);
  k_cache.require_dim(head_dim_index, kv_heads, "kv_heads, k_new.shape[1]");
  k_cache.require_dim(3, head_dim, "head_dim, k_new.shape[2]");
  v_cache.require_dim(0, outer, paged ? "num_pages, k_cache.shape[0]" : "batch, k_cache.shape[0]");
  v_cache.require_dim(slot_dim, slots, paged ? "page_size, k_cache's" : "capacity, k_cache.shape[1]");
  v_cache.require_dim(head_dim_index, kv_heads, "kv_heads, k_new.shape[1]");
  v_cache.require_dim(3, head_dim, "head_dim, k_new.shape[2]");
  for (const Array* t : {&k_new, &v_new, &k_cache, &v_cache}) require_strided(*t);

  WriteKvArguments args;
  KvScales scales;  // args.kv points into it
  scales.read(f, k_scale, v_scale, k_cache, kv_heads, fp8, &args.kv);

  // The library reads the mapping as tokens consecutive int32 on the caches' device.
  slot_mapping.require_element(Element::i32, "int32");
  slot_mapping.require_contiguous_1d();
  slot_mapping.require_device(device, k_new);
  slot_mapping.require_dim(0, tokens, "tokens, k_new.shape[0]");
  if (paged) {
    block_table.require_ndim(2, "[batch, max_pages]");
    block_table.require_element(Element::i32, "int32");
    block_table.require_device(device, k_new);
  }

  args.dtype = k_new.dtype();
  args.tokens = tokens;
  args.kv_heads = to_int32(f, "kv_heads", kv_heads);
  args.head_dim = to_int32(f, "head_dim", head_dim);
  args.k_new = k_new.data();
  args.k_new_token_stride = stride_of(k_new, 0);
  args.k_new_head_stride = stride_of(k_new, 1);
  args.v_new = v_new.data();
  args.v_new_token_stride = stride_of(v_new, 0);
  args.v_new_head_stride = stride_of(v_new, 1);
  args.slot_mapping = static_cast<const int32_t*>(slot_mapping.data());
  KvCache& kv = args.kv;
  kv.k = k_cache.data();
  kv.v = v_cache.data();
  kv.k_token_stride = stride_of(k_cache, slot_dim);
  kv.k_head_stride = stride_of(k_cache, head_dim_index);
  kv.v_token_stride = stride_of(v_cache, slot_dim);
  kv.v_head_stride = stride_of(v_cache, head_dim_index);
  if (paged) {
    // KvCache::paged() is block_table != null; an empty table may export a null pointer, and
    // write_kv never dereferences it, so any non-null address marks the pools as paged.
    static const int32_t unread_table = 0;
    kv.block_table = block_table.data() ? static_cast<const int32_t*>(block_table.data()) : &unread_table;
    kv.block_table_stride = stride_of(block_table, 0);
    kv.max_pages = to_int32(f, "block_table.shape[1]", block_table.shape(1));
    kv.page_size = to_int32(f, "page_size", slots);
    kv.num_pages = outer;
    kv.k_page_stride = stride_of(k_cache, 0);
    kv.v_page_stride = stride_of(v_cache, 0);
  } else {
    kv.capacity = slots;
    kv.k_sequence_stride = stride_of(k_cache, 0);
    kv.v_sequence_stride = stride_of(v_cache, 0);
    args.sequences = to_int32(f, "batch, k_cache.shape[0]", outer);
  }
  run_on(device, reinterpret_cast<void*>(stream),
         [&](Context& context) { return wideattn::write_kv(context, args); });
}

// ---- merge_states --------------------------------------------------------------------------------

// The states of one side (outs or lses): a list/tuple of per-state arrays, or one array with the
// states stacked along dimension 0. `names` keeps each Array's name alive for its messages.
struct StateArrays {
  std::vector<Array> arrays;        // one per state, or the stacked array alone
  std::vector<std::string> names;  // "outs[s]" for list items
  bool stacked = false;
  int64_t count = 0;

  const Array& at(int64_t s) const { return arrays[stacked ? 0 : static_cast<size_t>(s)]; }
  // Address of state s's first element.
  const void* data(int64_t s) const {
    const Array& a = at(s);
    if (!stacked || s == 0) return a.data();
    return static_cast<const char*>(a.data()) +
           s * a.stride(0) * static_cast<int64_t>(element_size(a.element()));
  }
  // Dimension i of one state (stacked arrays have the state dimension in front).
  int64_t shape(int64_t s, int64_t i) const { return at(s).shape(stacked ? i + 1 : i); }
  int64_t stride(int64_t s, int64_t i) const { return stride_of(at(s), stacked ? i + 1 : i); }
};

void read_states(const char* f, nb::handle object, const char* name, int64_t state_ndim,
                 const char* state_layout, const char* stacked_layout, bool u16_is_bf16,
                 StateArrays* states) {
  PyObject* o = object.ptr();
  if (PyList_Check(o) || PyTuple_Check(o)) {
    states->count = PySequence_Fast_GET_SIZE(o);
    if (states->count < 1 || states->count > kMaxMergeStates) {
      throw_value_error(std::string(f) + ": " + name + " has " + std::to_string(states->count) +
                        " states, expected 1 to " + std::to_string(kMaxMergeStates) +
                        (states->count > kMaxMergeStates
                             ? " (merge groups of them, then the merged results: the merge is exact)"
                             : ""));
    }
    // Reserved first: each Array keeps a pointer to its name.
    states->names.reserve(static_cast<size_t>(states->count));
    states->arrays.reserve(static_cast<size_t>(states->count));
    for (Py_ssize_t s = 0; s < states->count; ++s) {
      states->names.push_back(std::string(name) + "[" + std::to_string(s) + "]");
      states->arrays.emplace_back(PySequence_Fast_GET_ITEM(o, s), f, states->names.back().c_str(),
                                  false, u16_is_bf16);
      const Array& a = states->arrays.back();
      if (!a.present()) throw_type_error(std::string(f) + ": " + a.name() + " is None, expected an array");
      a.require_ndim(state_ndim, state_layout);
    }
    return;
  }
  states->stacked = true;
  states->arrays.emplace_back(object, f, name, false, u16_is_bf16);
  const Array& a = states->arrays.back();
  if (!a.present()) throw_type_error(std::string(f) + ": " + name + " is required");
  a.require_ndim(state_ndim + 1, stacked_layout);
  states->count = a.shape(0);
  if (states->count < 1 || states->count > kMaxMergeStates) {
    throw_value_error(std::string(f) + ": " + name + ".shape[0] = " + std::to_string(states->count) +
                      " states, expected 1 to " + std::to_string(kMaxMergeStates) +
                      (states->count > kMaxMergeStates
                           ? " (merge groups of them, then the merged results: the merge is exact)"
                           : ""));
  }
}

void merge_states_binding(nb::handle outs_obj, nb::handle lses_obj, nb::handle out_obj,
                          nb::handle lse_obj, uintptr_t stream, bool u16_is_bf16) {
  const char* f = "merge_states";
  StateArrays outs, lses;
  read_states(f, outs_obj, "outs", 3, "[tokens, heads, head_dim]",
              "[num_states, tokens, heads, head_dim] (or a list of [tokens, heads, head_dim])",
              u16_is_bf16, &outs);
  read_states(f, lses_obj, "lses", 2, "[tokens, heads]",
              "[num_states, tokens, heads] (or a list of [tokens, heads])", false, &lses);
  if (lses.count != outs.count) {
    throw_value_error(std::string(f) + ": lses has " + std::to_string(lses.count) +
                      " states but outs has " + std::to_string(outs.count) +
                      "; give one lse per partial output");
  }
  Array out(out_obj, f, "out", true, u16_is_bf16), lse(lse_obj, f, "lse", true, false);
  if (!out.present()) throw_type_error(std::string(f) + ": out is required");

  const Array& first = outs.at(0);
  const Device device = first.device();
  const int64_t tokens = outs.shape(0, 0), heads = outs.shape(0, 1), head_dim = outs.shape(0, 2);
  // What each dimension is checked against, for the messages: "tokens, outs[0].shape[0]".
  auto from_first = [&](const char* what, int i) {
    return std::string(what) + ", " +
           (outs.stacked ? "outs.shape[" + std::to_string(i + 1) : "outs[0].shape[" + std::to_string(i)) + "]";
  };
  for (const StateArrays* side : {&outs, &lses}) {
    const int64_t arrays = static_cast<int64_t>(side->arrays.size());
    for (int64_t i = 0; i < arrays; ++i) {
      const Array& a = side->arrays[static_cast<size_t>(i)];
      const int64_t first_dim = side->stacked ? 1 : 0;
      if (side == &outs) a.require_float(); else a.require_element(Element::f32, "float32");
      a.require_device(device, first);
      a.require_dim(first_dim, tokens, from_first("tokens", 0));
      a.require_dim(first_dim + 1, heads, from_first("heads", 1));
      if (side == &outs) {
        a.require_dim(first_dim + 2, head_dim, from_first("head_dim", 2));
        a.require_last_contiguous();
      }
      a.require_nonnegative_strides();
    }
  }
  out.require_ndim(3, "[tokens, heads, head_dim]");
  out.require_float();
  out.require_device(device, first);
  out.require_dim(0, tokens, from_first("tokens", 0));
  out.require_dim(1, heads, from_first("heads", 1));
  out.require_dim(2, head_dim, from_first("head_dim", 2));
  require_strided(out);
  if (lse.present()) {
    lse.require_ndim(2, "[tokens, heads]");
    lse.require_element(Element::f32, "float32");
    lse.require_device(device, first);
    lse.require_dim(0, tokens, from_first("tokens", 0));
    lse.require_dim(1, heads, from_first("heads", 1));
    lse.require_nonnegative_strides();
  }

  std::array<AttentionState, kMaxMergeStates> states{};
  for (int64_t s = 0; s < outs.count; ++s) {
    AttentionState& st = states[static_cast<size_t>(s)];
    st.out = outs.data(s);
    st.dtype = outs.at(s).dtype();
    st.out_token_stride = outs.stride(s, 0);
    st.out_head_stride = outs.stride(s, 1);
    st.lse = static_cast<const float*>(lses.data(s));
    st.lse_token_stride = lses.stride(s, 0);
    st.lse_head_stride = lses.stride(s, 1);
  }
  MergeStatesArguments args;
  args.states = states.data();
  args.num_states = static_cast<int32_t>(outs.count);
  args.tokens = tokens;
  args.heads = to_int32(f, "heads", heads);
  args.head_dim = to_int32(f, "head_dim", head_dim);
  args.out = out.data();
  args.out_dtype = out.dtype();
  args.out_token_stride = stride_of(out, 0);
  args.out_head_stride = stride_of(out, 1);
  if (lse.present()) {
    args.lse = static_cast<float*>(lse.data());
    args.lse_token_stride = stride_of(lse, 0);
    args.lse_head_stride = stride_of(lse, 1);
  }
  run_on(device, reinterpret_cast<void*>(stream),
         [&](Context& context) { return wideattn::merge_states(context, args); });
}

}  // namespace

void bind_serving(nb::module_& m) {
  m.def("write_kv", &write_kv_binding, nb::arg("k_new").none(), nb::arg("v_new").none(),
        nb::arg("k_cache").none(), nb::arg("v_cache").none(), nb::arg("slot_mapping").none(),
        nb::arg("block_table").none(), nb::arg("kv_layout"), nb::arg("stream"),
        nb::arg("u16_is_bf16"), nb::arg("k_scale").none() = nb::none(),
        nb::arg("v_scale").none() = nb::none(), nb::arg("kv_cache_dtype").none() = nb::none(),
        "Low-level write_kv; use wideattn.write_kv instead. block_table None: contiguous caches; "
        "k_scale, v_scale, kv_cache_dtype for fp8 caches (as in attention).");
  m.def("merge_states", &merge_states_binding, nb::arg("outs"), nb::arg("lses"),
        nb::arg("out").none(), nb::arg("lse").none(), nb::arg("stream"), nb::arg("u16_is_bf16"),
        "Low-level merge_states; use wideattn.merge_states instead. outs/lses: lists of arrays "
        "or arrays stacked along dimension 0.");
}

}  // namespace wideattn::python
