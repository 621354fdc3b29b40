// attention() and plan_attention() from Python, and PlannedDecode (plan_attention from bounds +
// attention_planned). One call takes the arrays (DLPack producers or capsules) and the Python
// scalars as wideattn.attention received them, converts and checks each exactly once here (every
// error names the argument), and passes the arrays' strides straight into an AttentionProblem.
// The Python side only routes and allocates outputs (issue 11: the per-call host cost).
#include <nanobind/stl/string.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "arrays.h"
#include "bindings.h"
#include "contexts.h"
#include "kv_cache.h"
#include "wideattn/attention.h"

namespace wideattn::python {
namespace {

std::string py_type_name(nb::handle h) {
  return nb::cast<std::string>(nb::str(h.type().attr("__qualname__")));
}

std::string py_repr(nb::handle h) { return nb::cast<std::string>(nb::repr(h)); }

int32_t to_int32(const char* function, const char* name, int64_t value) {
  if (value < std::numeric_limits<int32_t>::min() || value > std::numeric_limits<int32_t>::max()) {
    throw_value_error(std::string(function) + ": " + name + " = " + std::to_string(value) +
                      " does not fit in int32");
  }
  return static_cast<int32_t>(value);
}

// A Python int (or an object with __index__, e.g. a NumPy integer) in int32 range.
int32_t int32_arg(const char* f, nb::handle h, const char* name) {
  PyObject* o = h.ptr();
  long long v = 0;
  int overflow = 0;
  if (PyLong_Check(o)) {
    v = PyLong_AsLongLongAndOverflow(o, &overflow);
  } else {
    PyObject* index = PyNumber_Index(o);
    if (index == nullptr) {
      PyErr_Clear();
      throw_type_error(std::string(f) + ": " + name + " must be an int, got " + py_type_name(h));
    }
    v = PyLong_AsLongLongAndOverflow(index, &overflow);
    Py_DECREF(index);
  }
  if (overflow != 0 || v < std::numeric_limits<int32_t>::min() ||
      v > std::numeric_limits<int32_t>::max()) {
    throw_value_error(std::string(f) + ": " + name + " = " + py_repr(h) + " does not fit in int32");
  }
  return static_cast<int32_t>(v);
}

// query_offsets / kv_lengths: a list or tuple of ints is read here directly; anything else
// (a range, a host array of PyTorch, NumPy or JAX) goes through wideattn._frameworks.host_int32
// first, which refuses device arrays.
void int32_list(const char* f, nb::handle h, const char* name, std::vector<int32_t>* values) {
  PyObject* o = h.ptr();
  if (o == Py_None) {
    throw_type_error(std::string(f) + ": " + name + " is required: a host sequence of int32");
  }
  nb::object converted;
  if (!PyList_Check(o) && !PyTuple_Check(o)) {
    converted = nb::module_::import_("wideattn._frameworks").attr("host_int32")(h, name);
    o = converted.ptr();
    if (!PyList_Check(o) && !PyTuple_Check(o)) {
      throw_type_error(std::string(f) + ": " + name + " must be a sequence of int32");
    }
  }
  values->clear();
  // The size is read on every step: an element's __index__ could change a list under us.
  for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(o); ++i) {
    nb::object item = nb::borrow(PySequence_Fast_GET_ITEM(o, i));
    long long v = 0;
    int overflow = 0;
    if (PyLong_Check(item.ptr())) {
      v = PyLong_AsLongLongAndOverflow(item.ptr(), &overflow);
    } else {
      PyObject* index = PyNumber_Index(item.ptr());
      if (index == nullptr) {
        PyErr_Clear();
        throw_type_error(std::string(f) + ": " + name + "[" + std::to_string(i) + "] = " +
                         py_repr(item) + " is not an integer");
      }
      v = PyLong_AsLongLongAndOverflow(index, &overflow);
      Py_DECREF(index);
    }
    if (overflow != 0 || v < std::numeric_limits<int32_t>::min() ||
        v > std::numeric_limits<int32_t>::max()) {
      throw_value_error(std::string(f) + ": " + name + "[" + std::to_string(i) + "] = " +
                        py_repr(item) + " does not fit in int32");
    }
    values->push_back(static_cast<int32_t>(v));
  }
}

bool bool_arg(nb::handle h) {
  const int truth = PyObject_IsTrue(h.ptr());
  if (truth < 0) throw nb::python_error();
  return truth != 0;
}

double float_arg(const char* f, nb::handle h, const char* name) {
  PyObject* o = h.ptr();
  if (PyFloat_CheckExact(o)) return PyFloat_AS_DOUBLE(o);
  const double v = PyFloat_AsDouble(o);
  if (v == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw_type_error(std::string(f) + ": " + name + " must be a float, got " + py_type_name(h));
  }
  return v;
}

// None: 1/sqrt(head_dim) (kDefaultScale); else a finite value > 0.
float scale_arg(const char* f, nb::handle h) {
  if (h.is_none()) return kDefaultScale;
  const double value = float_arg(f, h, "scale");
  const float scale = static_cast<float>(value);
  if (!(std::isfinite(scale) && scale > 0)) {
    throw_value_error(std::string(f) + ": scale = " + py_repr(nb::float_(value)) +
                      ", expected a finite value > 0 (None: 1/sqrt(head_dim))");
  }
  return scale;
}

Kernel kernel_arg(const char* f, nb::handle h) {
  if (!PyUnicode_Check(h.ptr())) {
    throw_type_error(std::string(f) + ": kernel must be a str, got " + py_type_name(h));
  }
  Py_ssize_t size = 0;
  const char* s = PyUnicode_AsUTF8AndSize(h.ptr(), &size);
  if (s == nullptr) throw nb::python_error();
  const std::string name(s, static_cast<size_t>(size));
  if (name == "auto" || name == "automatic") return Kernel::automatic;
  // Every kernel the library names (to_string), so a new one needs no change here.
  std::string expected = "'auto'";
  for (int32_t value = 1; value < 64; ++value) {
    const Kernel kernel = static_cast<Kernel>(value);
    const std::string known = to_string(kernel);
    if (known == "unknown kernel") continue;
    if (name == known) return kernel;
    expected += ", '" + known + "'";
  }
  throw_value_error(std::string(f) + ": kernel = " + py_repr(h) + ", expected one of " + expected);
}

// The Python-level arguments of one call, as handed over (handles are borrowed from the call).
struct AttentionArgs {
  nb::handle q, k_cache, v_cache, out, lse, query_offsets, kv_lengths, causal, window,
      ring_length, ring_offset, tree, sinks, softcap, scale, kernel;
  bool u16_is_bf16;
  nb::handle block_table;  // None: contiguous caches
  nb::handle kv_layout;    // paged pools: "NHD" [pages, page_size, kv_heads, head_dim] or "HND"
  nb::handle k_scale, v_scale, kv_cache_dtype;  // fp8 caches (kv_cache.h); None: absent / "auto"
  nb::handle kv_splits;  // None or 0: the plan chooses; else fixed (AttentionProblem::kv_splits)
};

// Where query_offsets and kv_lengths come from.
enum class Metadata {
  host,    // host ints (lists, host arrays), read here: attention and plan
  device,  // int32 arrays on the arrays' device, never read here (PlannedDecode: rewritten in
           // place between runs); q holds at least max_total_tokens rows, not query_offsets[-1]
};

// Everything one call holds: the imported arrays (kept alive) and the problem built from them.
struct AttentionCall {
  Array q, k, v, out, lse, tree_start, tree_end, tree_height, sinks, block_table;
  KvScales scales;                                 // problem.kv points into it
  std::vector<int32_t> query_offsets, kv_lengths;  // Metadata::host
  Array query_offsets_array, kv_lengths_array;     // Metadata::device
  AttentionProblem problem;
  Kernel kernel = Kernel::automatic;
  Device device;
};

// Metadata::device: query_offsets [batch + 1] or kv_lengths [batch], int32 contiguous on `q`'s
// device. A list is refused with the reason (it would be a copy the caller cannot rewrite).
Array device_int32(const char* f, nb::handle h, const char* name, const char* shape, int64_t entries,
                   const std::string& what, const AttentionCall& c) {
  if (h.is_none() || PyList_Check(h.ptr()) || PyTuple_Check(h.ptr())) {
    throw_type_error(std::string(f) + ": " + name + " must be an int32 array " + shape +
                     " on the arrays' device, got " + (h.is_none() ? "None" : py_type_name(h)) +
                     ": the runs read it there, and the caller rewrites it in place between runs");
  }
  Array a(h, f, name, false, false);
  a.require_contiguous_1d();
  a.require_element(Element::i32, "int32");
  a.require_device(c.device, c.q);
  a.require_dim(0, entries, what);
  return a;
}

// Converts and checks every argument. `plan_only`: out may be None (plan_attention reads no data).
void build(const char* f, const AttentionArgs& a, bool plan_only, AttentionCall* c,
           Metadata metadata = Metadata::host) {
  c->kernel = kernel_arg(f, a.kernel);
  nb::handle tree_start, tree_end, tree_height;
  if (!a.tree.is_none()) {
    PyObject* t = a.tree.ptr();
    const bool sequence = PyTuple_Check(t) || PyList_Check(t);
    if (!sequence || PySequence_Fast_GET_SIZE(t) != 3) {
      throw_type_error(std::string(f) +
                       ": tree must be a tuple (tree_start, tree_end, tree_height) of int32 arrays");
    }
    PyObject** parts = PySequence_Fast_ITEMS(t);
    tree_start = parts[0];
    tree_end = parts[1];
    tree_height = parts[2];
  }
  const bool declared_fp8 = kv_cache_dtype_is_fp8(f, a.kv_cache_dtype);
  c->q = Array(a.q, f, "q", false, a.u16_is_bf16);
  c->k = Array(a.k_cache, f, "k_cache", false, a.u16_is_bf16, declared_fp8);
  c->v = Array(a.v_cache, f, "v_cache", false, a.u16_is_bf16, declared_fp8);
  c->out = Array(a.out, f, "out", true, a.u16_is_bf16);
  c->lse = Array(a.lse, f, "lse", true, false);
  c->tree_start = Array(tree_start, f, "tree_start", false, false);
  c->tree_end = Array(tree_end, f, "tree_end", false, false);
  c->tree_height = Array(tree_height, f, "tree_height", false, false);
  c->sinks = Array(a.sinks, f, "sinks", false, false);
  c->block_table = Array(a.block_table, f, "block_table", false, false);
  const bool paged = c->block_table.present();
  bool head_major = false;  // paged pools only
  if (paged && !a.kv_layout.is_none()) {
    const std::string layout = nb::cast<std::string>(nb::str(a.kv_layout));
    if (layout != "NHD" && layout != "HND") {
      throw_value_error(std::string(f) + ": kv_layout = '" + layout + "', expected 'NHD' or 'HND'");
    }
    head_major = layout == "HND";
  }
  // Cache dims: contiguous [batch, capacity, kv_heads, head_dim]; paged pools
  // [num_pages, page_size, kv_heads, head_dim] (NHD) or [num_pages, kv_heads, page_size, head_dim] (HND).
  const char* cache_layout = !paged ? "[batch, capacity, kv_heads, head_dim]"
                             : head_major ? "[num_pages, kv_heads, page_size, head_dim] (kv_layout 'HND')"
                                          : "[num_pages, page_size, kv_heads, head_dim] (kv_layout 'NHD')";
  const int slot_dim = paged && head_major ? 2 : 1, head_dim_index = paged && head_major ? 1 : 2;
  if (!c->q.present()) throw_type_error(std::string(f) + ": q is required");
  if (!c->k.present()) throw_type_error(std::string(f) + ": k_cache is required");
  if (!c->v.present()) throw_type_error(std::string(f) + ": v_cache is required");
  if (!c->out.present() && !plan_only) throw_type_error(std::string(f) + ": out is required");
  const Array& q = c->q;
  q.require_ndim(3, "[total_tokens, q_heads, head_dim]");
  q.require_float(q.is_fp8() ? "float32, float16 or bfloat16 (fp8 is a storage type of the KV cache "
                               "only: q and out keep the model's dtype)"
                             : "float32, float16 or bfloat16");
  c->k.require_ndim(4, cache_layout);
  c->v.require_ndim(4, cache_layout);
  // The caches have q's dtype, or both hold fp8 e4m3 (read as stored value x scale).
  const bool fp8 = check_cache_dtypes(f, c->k, c->v, q, declared_fp8);
  c->device = q.device();
  c->k.require_device(c->device, q);
  c->v.require_device(c->device, q);

  const int64_t tokens = q.shape(0), q_heads = q.shape(1), head_dim = q.shape(2);
  const int64_t outer = c->k.shape(0), slots = c->k.shape(slot_dim), kv_heads = c->k.shape(head_dim_index);
  c->k.require_dim(3, head_dim, "head_dim, q.shape[2]");
  c->v.require_dim(0, outer, paged ? "num_pages, k_cache.shape[0]" : "batch, k_cache.shape[0]");
  c->v.require_dim(slot_dim, slots, paged ? "page_size, k_cache's" : "capacity, k_cache.shape[1]");
  c->v.require_dim(head_dim_index, kv_heads, "kv_heads, k_cache's");
  c->v.require_dim(3, head_dim, "head_dim, q.shape[2]");
  c->scales.read(f, a.k_scale, a.v_scale, c->k, kv_heads, fp8, &c->problem.kv);
  // Paged: block_table [batch, max_pages] int32 on the arrays' device gives the batch.
  int64_t batch = outer;
  if (paged) {
    c->block_table.require_ndim(2, "[batch, max_pages]");
    c->block_table.require_element(Element::i32, "int32");
    c->block_table.require_device(c->device, q);
    c->block_table.require_last_contiguous();
    c->block_table.require_nonnegative_strides();
    batch = c->block_table.shape(0);
  }
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

  if (metadata == Metadata::device) {
    // Read by the kernels only (the plan's bounds, checked against q's rows, cover every call).
    const std::string source = paged ? "block_table.shape[0] = " : "k_cache.shape[0] = ";
    c->query_offsets_array = device_int32(f, a.query_offsets, "query_offsets", "[batch + 1]", batch + 1,
                                          "batch + 1, " + source + std::to_string(batch) + " + 1", *c);
    c->kv_lengths_array = device_int32(f, a.kv_lengths, "kv_lengths", "[batch]", batch,
                                       "batch, " + source + std::to_string(batch), *c);
  } else {
    int32_list(f, a.query_offsets, "query_offsets", &c->query_offsets);
    int32_list(f, a.kv_lengths, "kv_lengths", &c->kv_lengths);
    if (static_cast<int64_t>(c->kv_lengths.size()) != batch) {
      throw_value_error(std::string(f) + ": kv_lengths has " + std::to_string(c->kv_lengths.size()) +
                        " entries, expected batch = " +
                        (paged ? "block_table.shape[0] = " : "k_cache.shape[0] = ") + std::to_string(batch));
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
  }

  AttentionProblem& p = c->problem;
  p.batch = to_int32(f, "batch", batch);
  p.q_heads = to_int32(f, "q_heads", q_heads);
  p.kv_heads = to_int32(f, "kv_heads", kv_heads);
  p.head_dim = to_int32(f, "head_dim", head_dim);
  p.dtype = q.dtype();
  if (metadata == Metadata::device) {
    p.query_offsets = static_cast<const int32_t*>(c->query_offsets_array.data());
    p.kv_lengths = static_cast<const int32_t*>(c->kv_lengths_array.data());
  } else {
    p.query_offsets = c->query_offsets.data();
    p.kv_lengths = c->kv_lengths.data();
  }
  p.q = q.data();
  p.q_token_stride = q.stride(0);
  p.q_head_stride = q.stride(1);
  p.kv.k = c->k.data();
  p.kv.v = c->v.data();
  p.kv.k_token_stride = c->k.stride(slot_dim);
  p.kv.k_head_stride = c->k.stride(head_dim_index);
  p.kv.v_token_stride = c->v.stride(slot_dim);
  p.kv.v_head_stride = c->v.stride(head_dim_index);
  if (paged) {
    p.kv.block_table = static_cast<const int32_t*>(c->block_table.data());
    p.kv.block_table_stride = c->block_table.stride(0);
    p.kv.max_pages = to_int32(f, "block_table.shape[1]", c->block_table.shape(1));
    p.kv.page_size = to_int32(f, "page_size", slots);
    p.kv.num_pages = outer;
    p.kv.k_page_stride = c->k.stride(0);
    p.kv.v_page_stride = c->v.stride(0);
  } else {
    p.kv.capacity = slots;
    p.kv.k_sequence_stride = c->k.stride(0);
    p.kv.v_sequence_stride = c->v.stride(0);
  }
  if (c->out.present()) {
    p.out = c->out.data();
    p.out_token_stride = c->out.stride(0);
    p.out_head_stride = c->out.stride(1);
  } else {
    // plan_attention only checks that out is set and overlaps no input: give it an address
    // past every input (never dereferenced).
    uintptr_t end = 0;
    for (const Array* t : {&c->q, &c->k, &c->v, &c->block_table}) {
      if (!t->present()) continue;
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
  p.mask.causal = bool_arg(a.causal);
  p.mask.window = int32_arg(f, a.window, "window");
  p.mask.ring_length = int32_arg(f, a.ring_length, "ring_length");
  p.mask.ring_offset = int32_arg(f, a.ring_offset, "ring_offset");
  if (tree_parts == 3) {
    p.mask.tree_start = static_cast<const int32_t*>(c->tree_start.data());
    p.mask.tree_end = static_cast<const int32_t*>(c->tree_end.data());
    p.mask.tree_height = static_cast<const int32_t*>(c->tree_height.data());
  }
  p.scale = scale_arg(f, a.scale);
  p.softcap = static_cast<float>(float_arg(f, a.softcap, "softcap"));
  if (a.kv_splits.is_valid() && !a.kv_splits.is_none()) p.kv_splits = int32_arg(f, a.kv_splits, "kv_splits");
  if (c->sinks.present()) p.sinks = static_cast<const float*>(c->sinks.data());
}

nb::object plan_tuple(const Plan& plan) {
  // A mixed batch's parts: (first_sequence, sequences, kernel, num_splits) each.
  nb::list parts;
  for (const PlanPart& part : plan.parts) {
    parts.append(nb::make_tuple(part.first_sequence, part.sequences, to_string(part.kernel), part.num_splits));
  }
  return nb::make_tuple(to_string(plan.kernel), plan.num_splits, plan.query_rows_per_chunk,
                        static_cast<uint64_t>(plan.workspace_bytes), plan.reason, nb::tuple(parts));
}

// A decode plan made once from bounds over fixed arrays (plan_attention with ProblemBounds),
// run with attention_planned: the arrays stay imported (their DLPack views keep them alive),
// query_offsets and kv_lengths are device arrays read by the kernels only, so run() does no
// host work that depends on them (on CUDA: no metadata read, no allocation, no synchronisation
// once the workspace is sized; the call can be captured into a CUDA graph).
//
// Each instance owns its Context, hence its workspace: a captured graph keeps the workspace's
// address, and the process-wide Context that attention() uses may reallocate its workspace when
// a larger call (a prefill chunk) comes along, which would leave the graph writing into freed
// memory. This one never grows past the plan's bounds after the first run.
class PlannedDecode {
 public:
  PlannedDecode(const AttentionArgs& args, nb::handle max_total_tokens, nb::handle max_suffix,
                nb::handle max_kv_length, nb::handle errors) {
    const char* f = "PlannedDecode";
    build(f, args, false, &call_, Metadata::device);
    const int64_t rows = call_.q.shape(0);
    ProblemBounds bounds;
    bounds.max_suffix = int32_arg(f, max_suffix, "max_suffix");
    bounds.max_total_tokens = max_total_tokens.is_none() ? rows : int32_arg(f, max_total_tokens, "max_total_tokens");
    bounds.max_kv_length = max_kv_length.is_none() ? call_.problem.kv.sequence_capacity()
                                                   : int32_arg(f, max_kv_length, "max_kv_length");
    if (bounds.max_total_tokens > rows) {
      throw_value_error(std::string(f) + ": max_total_tokens = " + std::to_string(bounds.max_total_tokens) +
                        ", expected at most q.shape[0] = " + std::to_string(rows) +
                        " (q, out and lse hold a row for every token of any call)");
    }
    errors_ = Array(errors, f, "errors", true, false);
    if (errors_.present()) {
      errors_.require_contiguous_1d();
      errors_.require_element(Element::i32, "int32");
      errors_.require_device(call_.device, call_.q);
      errors_.require_dim(0, 1, "one int32 word of kMetadata* bits");
      bounds.errors = static_cast<int32_t*>(errors_.data());
    }
    Status status;
    {
      nb::gil_scoped_release release;
      status = Context::create(call_.device.backend, call_.device.index, nullptr, &context_);
    }
    if (!status.ok()) raise_status(status);
    status = plan_attention(call_.problem, bounds, context_->device(), call_.kernel, &plan_);
    if (!status.ok()) raise_status(status);
  }

  // attention_planned on `stream` (a cudaStream_t; ignored on the CPU), without the GIL.
  void run(uintptr_t stream) {
    Status status;
    {
      nb::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);  // calls on one Context are not thread-safe
      if (call_.device.backend == Backend::cuda) context_->set_stream(reinterpret_cast<void*>(stream));
      status = attention_planned(*context_, call_.problem, plan_);
    }
    if (!status.ok()) raise_status(status);
  }

  const Plan& plan() const { return plan_; }

 private:
  AttentionCall call_;
  Array errors_;
  Plan plan_;
  std::unique_ptr<Context> context_;
  std::mutex mutex_;
};

}  // namespace

void bind_attention(nb::module_& m) {
  m.def(
      "attention",
      [](nb::handle q, nb::handle k_cache, nb::handle v_cache, nb::handle out, nb::handle lse,
         nb::handle query_offsets, nb::handle kv_lengths, nb::handle causal, nb::handle window,
         nb::handle ring_length, nb::handle ring_offset, nb::handle tree, nb::handle sinks,
         nb::handle softcap, nb::handle scale, nb::handle kernel, uintptr_t stream,
         bool u16_is_bf16, bool return_plan, nb::handle block_table,
         nb::handle kv_layout, nb::handle k_scale, nb::handle v_scale,
         nb::handle kv_cache_dtype, nb::handle kv_splits) -> nb::object {
        const char* f = "attention";
        AttentionCall call;
        build(f,
              AttentionArgs{q, k_cache, v_cache, out, lse, query_offsets, kv_lengths, causal,
                            window, ring_length, ring_offset, tree, sinks, softcap, scale, kernel,
                            u16_is_bf16, block_table, kv_layout, k_scale, v_scale, kv_cache_dtype,
                            kv_splits},
              false, &call);
        Plan plan;
        if (call.problem.total_tokens() != 0) {
          run_on(call.device, reinterpret_cast<void*>(stream), [&](Context& context) {
            return wideattn::attention(context, call.problem, call.kernel, &plan);
          });
        }
        return return_plan ? plan_tuple(plan) : nb::none();
      },
      nb::arg("q").none(), nb::arg("k_cache").none(), nb::arg("v_cache").none(),
      nb::arg("out").none(), nb::arg("lse").none(), nb::arg("query_offsets").none(), nb::arg("kv_lengths").none(),
      nb::arg("causal").none(), nb::arg("window").none(), nb::arg("ring_length").none(),
      nb::arg("ring_offset").none(), nb::arg("tree").none(), nb::arg("sinks").none(),
      nb::arg("softcap").none(), nb::arg("scale").none(), nb::arg("kernel").none(),
      nb::arg("stream"), nb::arg("u16_is_bf16"), nb::arg("return_plan"),
      nb::arg("block_table").none() = nb::none(), nb::arg("kv_layout").none() = nb::none(),
      nb::arg("k_scale").none() = nb::none(), nb::arg("v_scale").none() = nb::none(),
      nb::arg("kv_cache_dtype").none() = nb::none(), nb::arg("kv_splits").none() = nb::none(),
      "Low-level attention (use wideattn.attention): arrays (DLPack producers or capsules) and "
      "Python scalars as wideattn.attention takes them, tree as None or a 3-tuple, out given; "
      "block_table (None: contiguous caches) and kv_layout ('NHD' or 'HND') for paged pools; "
      "k_scale, v_scale (None, a float on the CPU, or a float32 array) and kv_cache_dtype (None, "
      "'auto', 'fp8', 'fp8_e4m3') for fp8 caches; kv_splits (None or 0: the plan chooses). "
      "Checks and converts every argument once. Returns None, or with return_plan the plan used "
      "as (kernel, num_splits, query_rows_per_chunk, workspace_bytes, reason, parts).");

  m.def(
      "plan",
      [](nb::handle q, nb::handle k_cache, nb::handle v_cache, nb::handle out, nb::handle lse,
         nb::handle query_offsets, nb::handle kv_lengths, nb::handle causal, nb::handle window,
         nb::handle ring_length, nb::handle ring_offset, nb::handle tree, nb::handle sinks,
         nb::handle softcap, nb::handle scale, nb::handle kernel, bool u16_is_bf16,
         nb::handle block_table, nb::handle kv_layout, nb::handle k_scale, nb::handle v_scale,
         nb::handle kv_cache_dtype, nb::handle kv_splits) {
        const char* f = "plan_attention";
        AttentionCall call;
        build(f,
              AttentionArgs{q, k_cache, v_cache, out, lse, query_offsets, kv_lengths, causal,
                            window, ring_length, ring_offset, tree, sinks, softcap, scale, kernel,
                            u16_is_bf16, block_table, kv_layout, k_scale, v_scale, kv_cache_dtype,
                            kv_splits},
              true, &call);
        const DeviceInfo& device = context_for(call.device).device();
        Plan plan;
        const Status status = plan_attention(call.problem, device, call.kernel, &plan);
        if (!status.ok()) raise_status(status);
        return plan_tuple(plan);
      },
      nb::arg("q").none(), nb::arg("k_cache").none(), nb::arg("v_cache").none(),
      nb::arg("out").none(), nb::arg("lse").none(), nb::arg("query_offsets").none(), nb::arg("kv_lengths").none(),
      nb::arg("causal").none(), nb::arg("window").none(), nb::arg("ring_length").none(),
      nb::arg("ring_offset").none(), nb::arg("tree").none(), nb::arg("sinks").none(),
      nb::arg("softcap").none(), nb::arg("scale").none(), nb::arg("kernel").none(),
      nb::arg("u16_is_bf16"), nb::arg("block_table").none() = nb::none(),
      nb::arg("kv_layout").none() = nb::none(), nb::arg("k_scale").none() = nb::none(),
      nb::arg("v_scale").none() = nb::none(), nb::arg("kv_cache_dtype").none() = nb::none(),
      nb::arg("kv_splits").none() = nb::none(),
      "Low-level plan_attention (use wideattn.plan); the arguments of attention without stream.");

  nb::class_<PlannedDecode>(m, "PlannedDecode",
                            "Low-level planned decode (use wideattn.PlannedDecode): a plan from bounds "
                            "over fixed arrays, run with attention_planned on its own Context.")
      .def(
          "__init__",
          [](PlannedDecode* self, nb::handle q, nb::handle k_cache, nb::handle v_cache, nb::handle out,
             nb::handle lse, nb::handle query_offsets, nb::handle kv_lengths, nb::handle causal,
             nb::handle window, nb::handle ring_length, nb::handle ring_offset, nb::handle tree,
             nb::handle sinks, nb::handle softcap, nb::handle scale, nb::handle kernel,
             bool u16_is_bf16, nb::handle block_table, nb::handle kv_layout,
             nb::handle max_total_tokens, nb::handle max_suffix, nb::handle max_kv_length,
             nb::handle errors, nb::handle k_scale, nb::handle v_scale, nb::handle kv_cache_dtype,
             nb::handle kv_splits) {
            new (self) PlannedDecode(
                AttentionArgs{q, k_cache, v_cache, out, lse, query_offsets, kv_lengths, causal,
                              window, ring_length, ring_offset, tree, sinks, softcap, scale,
                              kernel, u16_is_bf16, block_table, kv_layout, k_scale, v_scale,
                              kv_cache_dtype, kv_splits},
                max_total_tokens, max_suffix, max_kv_length, errors);
          },
          nb::arg("q").none(), nb::arg("k_cache").none(), nb::arg("v_cache").none(),
          nb::arg("out").none(), nb::arg("lse").none(), nb::arg("query_offsets").none(),
          nb::arg("kv_lengths").none(), nb::arg("causal").none(), nb::arg("window").none(),
          nb::arg("ring_length").none(), nb::arg("ring_offset").none(), nb::arg("tree").none(),
          nb::arg("sinks").none(), nb::arg("softcap").none(), nb::arg("scale").none(),
          nb::arg("kernel").none(), nb::arg("u16_is_bf16"), nb::arg("block_table").none(),
          nb::arg("kv_layout").none(), nb::arg("max_total_tokens").none(),
          nb::arg("max_suffix").none(), nb::arg("max_kv_length").none(), nb::arg("errors").none(),
          nb::arg("k_scale").none() = nb::none(), nb::arg("v_scale").none() = nb::none(),
          nb::arg("kv_cache_dtype").none() = nb::none(), nb::arg("kv_splits").none() = nb::none(),
          "The arguments of attention, query_offsets and kv_lengths as int32 arrays on the arrays' "
          "device, and the bounds (max_total_tokens None: q.shape[0]; max_kv_length None: the "
          "cache's capacity) and an optional int32 [1] errors word. Makes the plan.")
      .def("run", &PlannedDecode::run, nb::arg("stream"),
           "attention_planned on `stream` (a cudaStream_t as int; ignored on the CPU).")
      .def_prop_ro("plan", [](const PlannedDecode& self) { return plan_tuple(self.plan()); },
                   "(kernel, num_splits, query_rows_per_chunk, workspace_bytes, reason, parts)");
}

}  // namespace wideattn::python
