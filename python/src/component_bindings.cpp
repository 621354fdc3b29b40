// The building blocks (matmul, softmax, scatter_scores, scatter_values) from Python. Arrays
// arrive through DLPack; strides become the components' leading dimensions and batch strides.
#include <nanobind/stl/string.h>

#include <algorithm>
#include <limits>
#include <string>

#include "arrays.h"
#include "bindings.h"
#include "contexts.h"
#include "wideattn/components.h"

namespace wideattn::python {
namespace {

// Row stride of a matrix whose rows are dimension -2: for one row any stride is as good as the
// dense one, and frameworks report arbitrary strides for size-1 dimensions.
int64_t row_stride(const Array& a) { return a.shape(-2) > 1 ? a.stride(-2) : a.shape(-1); }
int64_t batch_stride(const Array& a) { return a.ndim() == 3 && a.shape(0) > 1 ? a.stride(0) : 0; }

void require_matrix(const Array& a, const char* layout) {
  if (a.ndim() != 2 && a.ndim() != 3) {
    throw_value_error(std::string("matmul: ") + a.name() + " must have 2 dimensions " + layout +
                      " or 3 [batch, ...], got shape " + a.shape_str());
  }
  a.require_float();
  a.require_last_contiguous();
  a.require_nonnegative_strides();
}

MatmulC parse_c(const std::string& c) {
  if (c == "none") return MatmulC::none;
  if (c == "accumulate") return MatmulC::accumulate;
  if (c == "bias") return MatmulC::bias;
  throw_value_error("matmul: c = '" + c + "', expected 'none', 'accumulate' or 'bias'");
}

void matmul_binding(nb::handle a_obj, nb::handle b_obj, nb::handle d_obj, nb::handle bias_obj,
                    bool b_transpose, const std::string& c, float ab_scale, uintptr_t stream,
                    bool u16_is_bf16) {
  const char* f = "matmul";
  Array a(a_obj, f, "a", false, u16_is_bf16), b(b_obj, f, "b", false, u16_is_bf16);
  Array d(d_obj, f, "d", true, u16_is_bf16), bias(bias_obj, f, "bias", false, u16_is_bf16);
  require_matrix(a, "[m, k]");
  require_matrix(b, b_transpose ? "[n, k]" : "[k, n]");
  require_matrix(d, "[m, n]");
  const Device device = a.device();
  b.require_device(device, a);
  d.require_device(device, a);
  int64_t batch = 1;
  for (const Array* t : {&a, &b, &d}) {
    if (t->ndim() == 3 && batch == 1) batch = t->shape(0);
  }
  for (const Array* t : {&a, &b, &d}) {
    if (t->ndim() == 3) t->require_dim(0, batch, "batch");
  }
  if (batch > 1 && d.ndim() != 3) {
    throw_value_error("matmul: d must be 3-D [batch, m, n] when a or b has a batch of " +
                      std::to_string(batch));
  }
  const int64_t m = a.shape(-2), k = a.shape(-1);
  const int64_t n = b_transpose ? b.shape(-2) : b.shape(-1);
  const int64_t bk = b_transpose ? b.shape(-1) : b.shape(-2);
  if (bk != k) {
    throw_value_error("matmul: b has shape " + b.shape_str() + ", whose k = " + std::to_string(bk) +
                      " differs from a's k = " + std::to_string(k) +
                      (b_transpose ? " (b_transpose: b is [n, k])" : " (b is [k, n])"));
  }
  d.require_dim(-2, m, "m, a.shape[-2]");
  d.require_dim(-1, n, "n");
  MatmulArguments args;
  args.c = parse_c(c);
  if (args.c == MatmulC::bias) {
    if (!bias.present()) throw_value_error("matmul: c = 'bias' needs a bias array of n elements");
    bias.require_contiguous_1d();
    bias.require_same_dtype(d);
    bias.require_device(device, a);
    bias.require_dim(0, n, "n");
    args.c_data = bias.data();
  }
  args.a_dtype = a.dtype();
  args.b_dtype = b.dtype();
  args.d_dtype = d.dtype();
  args.a = a.data();
  args.a_leading_dimension = row_stride(a);
  args.a_batch_stride = batch_stride(a);
  args.b = b.data();
  args.b_leading_dimension = row_stride(b);
  args.b_batch_stride = batch_stride(b);
  args.b_transpose = b_transpose;
  args.d = d.data();
  args.d_leading_dimension = row_stride(d);
  args.d_batch_stride = batch_stride(d);
  args.m = m;
  args.n = n;
  args.k = k;
  if (batch > std::numeric_limits<int32_t>::max()) throw_value_error("matmul: batch does not fit in int32");
  args.batch = static_cast<int32_t>(batch);
  args.ab_scale = ab_scale;
  run_on(device, reinterpret_cast<void*>(stream),
         [&](Context& context) { return wideattn::matmul(context, args); });
}

void softmax_binding(nb::handle input_obj, nb::handle output_obj, int64_t rows_per_block,
                     nb::handle sinks_obj, nb::handle lse_obj, uintptr_t stream, bool u16_is_bf16) {
  const char* f = "softmax";
  Array input(input_obj, f, "input", false, false), output(output_obj, f, "output", true, u16_is_bf16);
  Array sinks(sinks_obj, f, "sinks", false, false), lse(lse_obj, f, "lse", true, false);
  input.require_ndim(2, "[rows, cols]");
  input.require_element(Element::f32, "float32");
  input.require_last_contiguous();
  input.require_nonnegative_strides();
  const Device device = input.device();
  output.require_ndim(2, "[rows, cols]");
  output.require_float();
  output.require_device(device, input);
  output.require_dim(0, input.shape(0), "rows, input.shape[0]");
  output.require_dim(1, input.shape(1), "cols, input.shape[1]");
  output.require_last_contiguous();
  output.require_nonnegative_strides();
  const int64_t rows = input.shape(0), cols = input.shape(1);
  SoftmaxArguments args;
  args.input = static_cast<const float*>(input.data());
  args.input_row_stride = rows > 1 ? input.stride(0) : cols;
  args.output = output.data();
  args.output_dtype = output.dtype();
  args.output_row_stride = rows > 1 ? output.stride(0) : cols;
  args.rows = rows;
  args.cols = cols;
  args.rows_per_block = rows_per_block;
  const int64_t block_rows = rows_per_block > 0 ? rows_per_block : rows;
  const int64_t blocks = block_rows > 0 ? rows / block_rows : 0;
  if (sinks.present()) {
    sinks.require_contiguous_1d();
    sinks.require_element(Element::f32, "float32");
    sinks.require_device(device, input);
    sinks.require_dim(0, blocks, "one sink per block of rows_per_block rows");
    args.sinks = static_cast<const float*>(sinks.data());
  }
  if (lse.present()) {
    lse.require_element(Element::f32, "float32");
    lse.require_device(device, input);
    lse.require_nonnegative_strides();
    args.lse = static_cast<float*>(lse.data());
    if (lse.ndim() == 1) {
      lse.require_dim(0, rows, "rows");
      args.lse_row_stride = lse.stride(0);
      args.lse_block_stride = block_rows * lse.stride(0);
    } else if (lse.ndim() == 2) {
      lse.require_dim(0, blocks, "blocks = rows / rows_per_block");
      lse.require_dim(1, block_rows, "rows_per_block");
      args.lse_block_stride = lse.stride(0);
      args.lse_row_stride = lse.stride(1);
    } else {
      lse.require_ndim(2, "[rows] or [blocks, rows_per_block]");
    }
  }
  run_on(device, reinterpret_cast<void*>(stream),
         [&](Context& context) { return wideattn::softmax(context, args); });
}

void scatter_scores_binding(nb::handle scores_obj, nb::handle dst_obj, int64_t first_query,
                            int64_t first_key, int64_t prefix_length, int64_t suffix_length,
                            bool causal, int32_t window, int32_t ring_length, int32_t ring_offset,
                            nb::handle tree_start_obj, nb::handle tree_end_obj,
                            nb::handle tree_height_obj, float softcap, uintptr_t stream) {
  const char* f = "scatter_scores";
  Array scores(scores_obj, f, "scores", false, false), dst(dst_obj, f, "dst", true, false);
  Array tree_start(tree_start_obj, f, "tree_start", false, false);
  Array tree_end(tree_end_obj, f, "tree_end", false, false);
  Array tree_height(tree_height_obj, f, "tree_height", false, false);
  for (Array* t : {&scores, &dst}) {
    t->require_ndim(3, "[heads, rows, cols]");
    t->require_element(Element::f32, "float32");
    t->require_last_contiguous();
    t->require_nonnegative_strides();
  }
  const Device device = scores.device();
  dst.require_device(device, scores);
  for (int64_t i = 0; i < 3; ++i) dst.require_dim(i, scores.shape(i), "scores' shape");
  const int tree_parts = tree_start.present() + tree_end.present() + tree_height.present();
  if (tree_parts != 0 && tree_parts != 3) {
    throw_value_error("scatter_scores: tree needs all three of tree_start, tree_end and tree_height");
  }
  for (Array* t : {&tree_start, &tree_end, &tree_height}) {
    if (!t->present()) continue;
    t->require_contiguous_1d();
    t->require_element(Element::i32, "int32");
    t->require_device(device, scores);
    t->require_dim(0, suffix_length, "suffix_length");
  }
  const int64_t heads = scores.shape(0), rows = scores.shape(1), cols = scores.shape(2);
  ScatterScoresArguments args;
  args.scores = static_cast<const float*>(scores.data());
  args.scores_row_stride = rows > 1 ? scores.stride(1) : cols;
  args.scores_head_stride = heads > 1 ? scores.stride(0) : rows * args.scores_row_stride;
  args.dst = static_cast<float*>(dst.data());
  args.dst_row_stride = rows > 1 ? dst.stride(1) : cols;
  args.dst_head_stride = heads > 1 ? dst.stride(0) : rows * args.dst_row_stride;
  if (heads > std::numeric_limits<int32_t>::max()) throw_value_error("scatter_scores: heads does not fit in int32");
  args.heads = static_cast<int32_t>(heads);
  args.rows = rows;
  args.cols = cols;
  args.first_query = first_query;
  args.first_key = first_key;
  args.mask.prefix_length = prefix_length;
  args.mask.suffix_length = suffix_length;
  args.mask.spec.causal = causal;
  args.mask.spec.window = window;
  args.mask.spec.ring_length = ring_length;
  args.mask.spec.ring_offset = ring_offset;
  if (tree_parts == 3) {
    args.mask.spec.tree_start = static_cast<const int32_t*>(tree_start.data());
    args.mask.spec.tree_end = static_cast<const int32_t*>(tree_end.data());
    args.mask.spec.tree_height = static_cast<const int32_t*>(tree_height.data());
  }
  args.softcap = softcap;
  run_on(device, reinterpret_cast<void*>(stream),
         [&](Context& context) { return wideattn::scatter_scores(context, args); });
}

void scatter_values_binding(nb::handle src_obj, nb::handle out_obj, uintptr_t stream,
                            bool u16_is_bf16) {
  const char* f = "scatter_values";
  Array src(src_obj, f, "src", false, false), out(out_obj, f, "out", true, u16_is_bf16);
  src.require_ndim(3, "[heads, rows, head_dim]");
  src.require_element(Element::f32, "float32");
  src.require_last_contiguous();
  src.require_nonnegative_strides();
  out.require_ndim(3, "[rows, heads, head_dim]");
  out.require_float();
  out.require_last_contiguous();
  out.require_nonnegative_strides();
  const Device device = src.device();
  out.require_device(device, src);
  const int64_t heads = src.shape(0), rows = src.shape(1), head_dim = src.shape(2);
  out.require_dim(0, rows, "rows, src.shape[1]");
  out.require_dim(1, heads, "heads, src.shape[0]");
  out.require_dim(2, head_dim, "head_dim, src.shape[2]");
  ScatterValuesArguments args;
  args.src = static_cast<const float*>(src.data());
  args.src_row_stride = rows > 1 ? src.stride(1) : head_dim;
  args.src_head_stride = heads > 1 ? src.stride(0) : rows * args.src_row_stride;
  args.out = out.data();
  args.dtype = out.dtype();
  args.out_token_stride = rows > 1 ? out.stride(0) : heads * head_dim;
  args.out_head_stride = heads > 1 ? out.stride(1) : head_dim;
  if (heads > std::numeric_limits<int32_t>::max() || head_dim > std::numeric_limits<int32_t>::max()) {
    throw_value_error("scatter_values: heads or head_dim does not fit in int32");
  }
  args.heads = static_cast<int32_t>(heads);
  args.rows = rows;
  args.head_dim = static_cast<int32_t>(head_dim);
  run_on(device, reinterpret_cast<void*>(stream),
         [&](Context& context) { return wideattn::scatter_values(context, args); });
}

}  // namespace

void bind_components(nb::module_& m) {
  m.def("matmul", &matmul_binding, nb::arg("a"), nb::arg("b"), nb::arg("d"),
        nb::arg("bias").none(), nb::arg("b_transpose"), nb::arg("c"), nb::arg("ab_scale"),
        nb::arg("stream"), nb::arg("u16_is_bf16"),
        "Low-level matmul; use wideattn.matmul instead.");
  m.def("softmax", &softmax_binding, nb::arg("input"), nb::arg("output"),
        nb::arg("rows_per_block"), nb::arg("sinks").none(), nb::arg("lse").none(),
        nb::arg("stream"), nb::arg("u16_is_bf16"),
        "Low-level softmax; use wideattn.softmax instead.");
  m.def("scatter_scores", &scatter_scores_binding, nb::arg("scores"), nb::arg("dst"),
        nb::arg("first_query"), nb::arg("first_key"), nb::arg("prefix_length"),
        nb::arg("suffix_length"), nb::arg("causal"), nb::arg("window"), nb::arg("ring_length"),
        nb::arg("ring_offset"), nb::arg("tree_start").none(), nb::arg("tree_end").none(),
        nb::arg("tree_height").none(), nb::arg("softcap"), nb::arg("stream"),
        "Low-level scatter_scores; use wideattn.scatter_scores instead.");
  m.def("scatter_values", &scatter_values_binding, nb::arg("src"), nb::arg("out"),
        nb::arg("stream"), nb::arg("u16_is_bf16"),
        "Low-level scatter_values; use wideattn.scatter_values instead.");
}

}  // namespace wideattn::python
