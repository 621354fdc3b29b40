#include "core/validate.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>

#include "core/error.h"
#include "core/kv_layout.h"

namespace wideattn::detail {
namespace {

bool valid_dtype(DType d) { return d == DType::f32 || d == DType::f16 || d == DType::bf16; }

// a * b + c without overflow, else throws naming `what`.
int64_t checked_mul_add(const char* function, const char* what, int64_t a, int64_t b, int64_t c) {
  int64_t product = 0, sum = 0;
  if (__builtin_mul_overflow(a, b, &product) || __builtin_add_overflow(product, c, &sum)) {
    std::ostringstream s;
    s << function << ": " << what << " index arithmetic overflows int64 (" << a << " * " << b
      << " + " << c << ")";
    throw_error(StatusCode::invalid_argument, s.str());
  }
  return sum;
}

// a * b for a lower bound on a stride: the int64 product, or the nearest int64 limit when it
// does not fit (the extent check that follows rejects such a stride), so that no check overflows.
int64_t saturating_mul(int64_t a, int64_t b) {
  int64_t product = 0;
  if (!__builtin_mul_overflow(a, b, &product)) return product;
  return (a < 0) != (b < 0) ? std::numeric_limits<int64_t>::min() : std::numeric_limits<int64_t>::max();
}

// Whether [first, first + count) ends past `end`, or its end does not fit in int64 (its last
// index would overflow in the kernels).
bool range_exceeds(int64_t first, int64_t count, int64_t end) {
  int64_t last = 0;
  return __builtin_add_overflow(first, count, &last) || last > end;
}

// Largest element offset of a tensor with the given (count, stride) dims, plus one.
struct Dim {
  int64_t count;
  int64_t stride;
};
template <int N>
int64_t extent(const char* function, const char* what, const Dim (&dims)[N]) {
  int64_t last = 0;
  for (const Dim& d : dims) {
    if (d.count == 0) return 0;
    last = checked_mul_add(function, what, d.count - 1, d.stride, last);
  }
  return checked_mul_add(function, what, 1, 1, last);
}

void require_positive_stride(const char* function, const char* name, int64_t stride,
                             int64_t minimum) {
  if (stride < minimum) {
    throw_invalid(function, name, stride, ">= " + std::to_string(minimum));
  }
}

struct ByteRange {
  const char* name;
  uintptr_t first;
  uintptr_t last;  // exclusive
};
bool overlaps(const ByteRange& a, const ByteRange& b) {
  return a.first < b.last && b.first < a.last && a.first != a.last && b.first != b.last;
}
ByteRange range_of(const char* name, const void* p, int64_t elements, std::size_t element_size) {
  const auto first = reinterpret_cast<uintptr_t>(p);
  return ByteRange{name, first, first + static_cast<uintptr_t>(elements) * element_size};
}
void require_disjoint(const char* function, const ByteRange& output, const ByteRange& input) {
  if (overlaps(output, input)) {
    std::ostringstream s;
    s << function << ": " << output.name << " overlaps " << input.name
      << ", expected outputs that do not overlap inputs";
    throw_error(StatusCode::invalid_argument, s.str());
  }
}

// An output's own elements must not alias: sorted by stride, each dimension's stride must step
// past everything the inner dimensions span (e.g. out_head_stride >= head_dim and
// out_token_stride >= (q_heads - 1) * out_head_stride + head_dim for token-major outputs).
template <int N>
void require_no_self_overlap(const char* function, const char* tensor, const Dim (&dims)[N],
                             const char* const (&names)[N]) {
  int order[N];
  for (int i = 0; i < N; ++i) order[i] = i;
  for (int i = 1; i < N; ++i) {  // insertion sort by stride
    for (int j = i; j > 0 && dims[order[j]].stride < dims[order[j - 1]].stride; --j) {
      std::swap(order[j], order[j - 1]);
    }
  }
  int64_t span = 1;  // elements spanned by the inner dimensions so far
  bool first = true;
  for (int i = 0; i < N; ++i) {
    const Dim& d = dims[order[i]];
    if (d.count <= 1) continue;
    if (!first && d.stride < span) {
      std::ostringstream s;
      s << "a stride that keeps " << tensor << "'s elements apart (>= " << span << ")";
      throw_invalid(function, names[order[i]], d.stride, s.str());
    }
    span = checked_mul_add(function, tensor, d.count - 1, d.stride, span);  // may run before extent()
    first = false;
  }
}

// The checks of a MaskSpec that need no sequence lengths; `name` prefixes the field names
// ("mask." in attention, "mask.spec." in scatter_scores).
void validate_mask_spec(const char* f, const std::string& name, const MaskSpec& m) {
  if (m.window < 0) throw_invalid(f, name + "window", m.window, ">= 0 (0: no window)");
  if (m.ring_length < 0) throw_invalid(f, name + "ring_length", m.ring_length, ">= 0 (0: no ring)");
  if (m.ring_offset < 0) throw_invalid(f, name + "ring_offset", m.ring_offset, ">= 0");
  const int tree_parts = (m.tree_start != nullptr) + (m.tree_end != nullptr) + (m.tree_height != nullptr);
  if (tree_parts != 0 && tree_parts != 3) {
    throw_invalid(f, name + "tree_start/tree_end/tree_height", std::to_string(tree_parts) + " of 3 set",
                  "all three or none");
  }
}

void validate_head_dim(const char* function, int32_t head_dim, Backend backend) {
  const bool cuda_ok = head_dim == 64 || head_dim == 128 || head_dim == 256 || head_dim == 512;
  const bool cpu_ok = head_dim >= 8 && head_dim <= 512 && head_dim % 8 == 0;
  if (backend == Backend::cuda ? !cuda_ok : !cpu_ok) {
    throw_invalid(function, "head_dim", head_dim,
                  backend == Backend::cuda ? "one of 64, 128, 256, 512 on CUDA"
                                           : "a multiple of 8 in [8, 512]");
  }
}

// The paged cache's own fields, and each sequence's block-table row: long enough for its
// kv_length and, where the host can read the table (the CPU backend), every entry it will read
// is a page of the pools.
void validate_paged_kv(const char* f, const AttentionProblem& p, Backend backend, bool check_block_table) {
  const KvCache& kv = p.kv;
  if (kv.capacity != 0) {
    throw_invalid(f, "kv.capacity", kv.capacity,
                  "0 for a paged cache (kv.max_pages * kv.page_size bounds each sequence)");
  }
  if (kv.page_size < 1 || kv.page_size > kMaxPageSize || (kv.page_size & (kv.page_size - 1)) != 0) {
    throw_invalid(f, "kv.page_size", kv.page_size,
                  "a power of two in [1, " + std::to_string(kMaxPageSize) +
                      "] (e.g. 1, 16, 32, 64, 128, 256)");
  }
  if (kv.max_pages < 1) throw_invalid(f, "kv.max_pages", kv.max_pages, ">= 1");
  if (kv.num_pages < 1) throw_invalid(f, "kv.num_pages", kv.num_pages, ">= 1");
  if (p.batch > 1 && kv.block_table_stride < kv.max_pages) {
    throw_invalid(f, "kv.block_table_stride", kv.block_table_stride,
                  ">= kv.max_pages = " + std::to_string(kv.max_pages) +
                      " (one row of page indices per sequence)");
  }
  checked_mul_add(f, "kv.block_table", p.batch - 1, kv.block_table_stride, kv.max_pages);
  require_positive_stride(f, "kv.k_page_stride", kv.k_page_stride, kv.num_pages > 1 ? 1 : 0);
  require_positive_stride(f, "kv.v_page_stride", kv.v_page_stride, kv.num_pages > 1 ? 1 : 0);
  const bool table_on_host = backend == Backend::cpu && check_block_table;
  for (int32_t b = 0; b < p.batch; ++b) {
    const int64_t length = p.kv_lengths[b];
    const int64_t needed = (length + kv.page_size - 1) / kv.page_size;
    if (needed > kv.max_pages) {
      throw_invalid(f, "kv.max_pages", kv.max_pages,
                    ">= " + std::to_string(needed) + " pages for kv_lengths[" + std::to_string(b) +
                        "] = " + std::to_string(length) + " at kv.page_size = " +
                        std::to_string(kv.page_size) + " (the block table is shorter than sequence " +
                        std::to_string(b) + " needs)");
    }
    if (!table_on_host) continue;
    for (int64_t j = 0; j < needed; ++j) {
      const int32_t page = kv.block_table[b * kv.block_table_stride + j];
      if (page < 0 || page >= kv.num_pages) {
        throw_invalid(f, "kv.block_table[" + std::to_string(b) + "][" + std::to_string(j) + "]", page,
                      "a page index in [0, kv.num_pages = " + std::to_string(kv.num_pages) +
                          ") (sequence " + std::to_string(b) + " reads it)");
      }
    }
  }
}

}  // namespace

void validate_problem(const char* f, const AttentionProblem& p, Backend backend,
                      bool check_block_table) {
  if (p.batch < 1) throw_invalid(f, "batch", p.batch, ">= 1");
  if (p.q_heads < 1) throw_invalid(f, "q_heads", p.q_heads, ">= 1");
  if (p.kv_heads < 1) throw_invalid(f, "kv_heads", p.kv_heads, ">= 1");
  if (p.q_heads % p.kv_heads != 0) {
    throw_invalid(f, "q_heads", p.q_heads,
                  "a multiple of kv_heads = " + std::to_string(p.kv_heads));
  }
  validate_head_dim(f, p.head_dim, backend);
  if (p.kv_splits < 0 || p.kv_splits > kMaxKvSplits) {
    throw_invalid(f, "kv_splits", p.kv_splits,
                  "0 (chosen by dispatch) or 1 to " + std::to_string(kMaxKvSplits));
  }
  if (!valid_dtype(p.dtype)) throw_invalid(f, "dtype", static_cast<int>(p.dtype), "f32, f16 or bf16");
  if (!p.query_offsets) throw_invalid(f, "query_offsets", "null", "a host array of batch + 1 offsets");
  if (!p.kv_lengths) throw_invalid(f, "kv_lengths", "null", "a host array of batch lengths");
  if (!p.q) throw_invalid(f, "q", "null", "a device pointer");
  if (!p.kv.k) throw_invalid(f, "kv.k", "null", "a device pointer");
  if (!p.kv.v) throw_invalid(f, "kv.v", "null", "a device pointer");
  if (!p.out) throw_invalid(f, "out", "null", "a device pointer");
  if (p.query_offsets[0] != 0) throw_invalid(f, "query_offsets[0]", p.query_offsets[0], "0");
  if (!p.kv.paged() && p.kv.capacity < 1) throw_invalid(f, "kv.capacity", p.kv.capacity, ">= 1");
  if (!p.kv.fp8 && (p.kv.k_scale || p.kv.v_scale || p.kv.scales_per_head)) {
    throw_invalid(f, "kv.k_scale/kv.v_scale/kv.scales_per_head", "set on a cache with kv.fp8 = false",
                  "scales only for an fp8 cache (a 16/32-bit cache holds its values as they are)");
  }

  int64_t max_suffix = 0;
  for (int32_t b = 0; b < p.batch; ++b) {
    const int64_t suffix = int64_t{p.query_offsets[b + 1]} - p.query_offsets[b];
    // Only an error message needs the index as text (this loop runs on every call).
    const auto idx = [b] { return "[" + std::to_string(b) + "]"; };
    if (suffix < 0) {
      throw_invalid(f, "query_offsets[" + std::to_string(b + 1) + "]", p.query_offsets[b + 1],
                    ">= query_offsets" + idx() + " = " + std::to_string(p.query_offsets[b]) +
                        " (offsets must not decrease)");
    }
    if (p.kv_lengths[b] < 0) throw_invalid(f, "kv_lengths" + idx(), p.kv_lengths[b], ">= 0");
    if (p.kv_lengths[b] < suffix) {
      throw_invalid(f, "kv_lengths" + idx(), p.kv_lengths[b],
                    ">= the sequence's suffix length " + std::to_string(suffix) +
                        " (the suffix's keys are in the cache)");
    }
    if (!p.kv.paged() && p.kv_lengths[b] > p.kv.capacity) {
      throw_invalid(f, "kv_lengths" + idx(), p.kv_lengths[b],
                    "<= kv.capacity = " + std::to_string(p.kv.capacity));
    }
    if (p.mask.ring_length > 0) {
      const int64_t prefix = p.kv_lengths[b] - suffix;
      if (prefix > 0 && p.mask.ring_offset >= prefix) {
        throw_invalid(f, "mask.ring_offset", p.mask.ring_offset,
                      "< the prefix length " + std::to_string(prefix) + " of sequence " +
                          std::to_string(b));
      }
    }
    if (suffix > max_suffix) max_suffix = suffix;
  }
  if (p.kv.paged()) validate_paged_kv(f, p, backend, check_block_table);
  const int64_t tokens = p.total_tokens();
  validate_mask_spec(f, "mask.", p.mask);
  if (!(std::isnan(p.scale) || (std::isfinite(p.scale) && p.scale > 0))) {
    throw_invalid(f, "scale", p.scale, "a finite value > 0 (or kDefaultScale)");
  }
  if (!(std::isfinite(p.softcap) && p.softcap >= 0)) {
    throw_invalid(f, "softcap", p.softcap, "a finite value >= 0 (0: no soft-capping)");
  }

  const int64_t d = p.head_dim;
  require_positive_stride(f, "q_head_stride", p.q_head_stride, p.q_heads > 1 ? 1 : 0);
  require_positive_stride(f, "q_token_stride", p.q_token_stride, tokens > 1 ? 1 : 0);
  require_positive_stride(f, "out_head_stride", p.out_head_stride, p.q_heads > 1 ? d : 0);
  require_positive_stride(f, "out_token_stride", p.out_token_stride, tokens > 1 ? d : 0);
  // Paged: the pools' dims are (page, slot in page); contiguous: (sequence, slot).
  const bool paged = p.kv.paged();
  const int64_t slots = paged ? p.kv.page_size : p.kv.capacity;
  const int64_t outer = paged ? p.kv.num_pages : p.batch;
  const int64_t k_outer_stride = paged ? p.kv.k_page_stride : p.kv.k_sequence_stride;
  const int64_t v_outer_stride = paged ? p.kv.v_page_stride : p.kv.v_sequence_stride;
  require_positive_stride(f, "kv.k_token_stride", p.kv.k_token_stride, slots > 1 ? 1 : 0);
  require_positive_stride(f, "kv.v_token_stride", p.kv.v_token_stride, slots > 1 ? 1 : 0);
  require_positive_stride(f, "kv.k_head_stride", p.kv.k_head_stride, p.kv_heads > 1 ? 1 : 0);
  require_positive_stride(f, "kv.v_head_stride", p.kv.v_head_stride, p.kv_heads > 1 ? 1 : 0);
  if (!paged) {
    require_positive_stride(f, "kv.k_sequence_stride", p.kv.k_sequence_stride, p.batch > 1 ? 1 : 0);
    require_positive_stride(f, "kv.v_sequence_stride", p.kv.v_sequence_stride, p.batch > 1 ? 1 : 0);
  }
  if (p.lse) {
    require_positive_stride(f, "lse_head_stride", p.lse_head_stride, p.q_heads > 1 ? 1 : 0);
    require_positive_stride(f, "lse_token_stride", p.lse_token_stride, tokens > 1 ? 1 : 0);
  }

  const Dim q_dims[] = {{tokens, p.q_token_stride}, {p.q_heads, p.q_head_stride}, {d, 1}};
  const Dim o_dims[] = {{tokens, p.out_token_stride}, {p.q_heads, p.out_head_stride}, {d, 1}};
  const Dim k_dims[] = {{outer, k_outer_stride}, {slots, p.kv.k_token_stride},
                        {p.kv_heads, p.kv.k_head_stride}, {d, 1}};
  const Dim v_dims[] = {{outer, v_outer_stride}, {slots, p.kv.v_token_stride},
                        {p.kv_heads, p.kv.v_head_stride}, {d, 1}};
  const std::size_t es = dtype_size(p.dtype);
  const std::size_t kv_es = dtype_size(kv_dtype(p.kv, p.dtype));  // 1 for an fp8 cache
  const int64_t q_extent = extent(f, "q", q_dims);
  const int64_t o_extent = extent(f, "out", o_dims);
  const int64_t k_extent = extent(f, "kv.k", k_dims);
  const int64_t v_extent = extent(f, "kv.v", v_dims);
  // Byte sizes must fit too.
  checked_mul_add(f, "kv.k bytes", k_extent, static_cast<int64_t>(kv_es), 0);
  checked_mul_add(f, "kv.v bytes", v_extent, static_cast<int64_t>(kv_es), 0);

  const char* const o_names[] = {"out_token_stride", "out_head_stride", "head_dim"};
  require_no_self_overlap(f, "out", o_dims, o_names);
  const ByteRange out = range_of("out", p.out, o_extent, es);
  require_disjoint(f, out, range_of("q", p.q, q_extent, es));
  require_disjoint(f, out, range_of("kv.k", p.kv.k, k_extent, kv_es));
  require_disjoint(f, out, range_of("kv.v", p.kv.v, v_extent, kv_es));
  const int64_t table_extent =
      paged ? checked_mul_add(f, "kv.block_table", p.batch - 1, p.kv.block_table_stride, p.kv.max_pages) : 0;
  const ByteRange table = range_of("kv.block_table", p.kv.block_table, table_extent, sizeof(int32_t));
  require_disjoint(f, out, table);
  if (p.lse) {
    const Dim l_dims[] = {{tokens, p.lse_token_stride}, {p.q_heads, p.lse_head_stride}};
    const char* const l_names[] = {"lse_token_stride", "lse_head_stride"};
    require_no_self_overlap(f, "lse", l_dims, l_names);
    const ByteRange lse = range_of("lse", p.lse, extent(f, "lse", l_dims), sizeof(float));
    require_disjoint(f, lse, range_of("q", p.q, q_extent, es));
    require_disjoint(f, lse, range_of("kv.k", p.kv.k, k_extent, kv_es));
    require_disjoint(f, lse, range_of("kv.v", p.kv.v, v_extent, kv_es));
    require_disjoint(f, lse, table);
    require_disjoint(f, lse, out);
  }
  (void)max_suffix;
}

void validate_matmul(const MatmulArguments& a) {
  const char* f = "matmul";
  if (!valid_dtype(a.a_dtype)) throw_invalid(f, "a_dtype", static_cast<int>(a.a_dtype), "f32, f16 or bf16");
  if (!valid_dtype(a.b_dtype)) throw_invalid(f, "b_dtype", static_cast<int>(a.b_dtype), "f32, f16 or bf16");
  if (!valid_dtype(a.d_dtype)) throw_invalid(f, "d_dtype", static_cast<int>(a.d_dtype), "f32, f16 or bf16");
  if (a.m < 0) throw_invalid(f, "m", a.m, ">= 0");
  if (a.n < 0) throw_invalid(f, "n", a.n, ">= 0");
  if (a.k < 0) throw_invalid(f, "k", a.k, ">= 0");
  if (a.batch < 1) throw_invalid(f, "batch", a.batch, ">= 1");
  if (!std::isfinite(a.ab_scale)) throw_invalid(f, "ab_scale", a.ab_scale, "a finite value");
  if (a.m == 0 || a.n == 0) return;
  if (!a.d) throw_invalid(f, "d", "null", "a device pointer");
  if (a.k > 0 && !a.a) throw_invalid(f, "a", "null", "a device pointer");
  if (a.k > 0 && !a.b) throw_invalid(f, "b", "null", "a device pointer");
  if (a.c == MatmulC::bias && !a.c_data) throw_invalid(f, "c_data", "null", "a bias vector of n elements when c = bias");
  if (a.c != MatmulC::none && a.c != MatmulC::accumulate && a.c != MatmulC::bias) {
    throw_invalid(f, "c", static_cast<int>(a.c), "none, accumulate or bias");
  }
  const int64_t lda = a.a_leading_dimension ? a.a_leading_dimension : a.k;
  const int64_t ldb = a.b_leading_dimension ? a.b_leading_dimension : (a.b_transpose ? a.k : a.n);
  const int64_t ldd = a.d_leading_dimension ? a.d_leading_dimension : a.n;
  if (lda < a.k) throw_invalid(f, "a_leading_dimension", lda, ">= k = " + std::to_string(a.k));
  if (ldb < (a.b_transpose ? a.k : a.n)) {
    throw_invalid(f, "b_leading_dimension", ldb,
                  std::string(">= ") + (a.b_transpose ? "k = " + std::to_string(a.k)
                                                      : "n = " + std::to_string(a.n)));
  }
  if (ldd < a.n) throw_invalid(f, "d_leading_dimension", ldd, ">= n = " + std::to_string(a.n));
  for (auto [name, value] : {std::pair<const char*, int64_t>{"a_offset", a.a_offset},
                             {"b_offset", a.b_offset}, {"d_offset", a.d_offset},
                             {"a_batch_stride", a.a_batch_stride},
                             {"b_batch_stride", a.b_batch_stride},
                             {"d_batch_stride", a.d_batch_stride}}) {
    if (value < 0) throw_invalid(f, name, value, ">= 0");
  }
  const int64_t d_span = a.batch > 1 ? checked_mul_add(f, "d", a.m - 1, ldd, a.n) : 0;
  if (a.batch > 1 && a.d_batch_stride < d_span) {
    throw_invalid(f, "d_batch_stride", a.d_batch_stride,
                  ">= " + std::to_string(d_span) + " (batches of D must not overlap)");
  }
  const Dim a_dims[] = {{a.batch, a.a_batch_stride}, {a.m, lda}, {a.k, 1}};
  const Dim b_dims[] = {{a.batch, a.b_batch_stride},
                        {a.b_transpose ? a.n : a.k, ldb},
                        {a.b_transpose ? a.k : a.n, 1}};
  const Dim d_dims[] = {{a.batch, a.d_batch_stride}, {a.m, ldd}, {a.n, 1}};
  const int64_t ea = checked_mul_add(f, "a", 1, extent(f, "a", a_dims), a.a_offset);
  const int64_t eb = checked_mul_add(f, "b", 1, extent(f, "b", b_dims), a.b_offset);
  const int64_t ed = checked_mul_add(f, "d", 1, extent(f, "d", d_dims), a.d_offset);
  const ByteRange d = range_of("d", a.d, ed, dtype_size(a.d_dtype));
  if (a.k > 0) {
    require_disjoint(f, d, range_of("a", a.a, ea, dtype_size(a.a_dtype)));
    require_disjoint(f, d, range_of("b", a.b, eb, dtype_size(a.b_dtype)));
  }
}

void validate_softmax(const SoftmaxArguments& a) {
  const char* f = "softmax";
  if (a.rows < 0) throw_invalid(f, "rows", a.rows, ">= 0");
  if (a.cols < 0) throw_invalid(f, "cols", a.cols, ">= 0");
  if (!valid_dtype(a.output_dtype)) throw_invalid(f, "output_dtype", static_cast<int>(a.output_dtype), "f32, f16 or bf16");
  if (a.rows == 0) return;
  if (a.cols > 0 && !a.input) throw_invalid(f, "input", "null", "a device pointer");
  if (a.cols > 0 && !a.output) throw_invalid(f, "output", "null", "a device pointer");
  if (a.input_row_stride < a.cols) throw_invalid(f, "input_row_stride", a.input_row_stride, ">= cols = " + std::to_string(a.cols));
  if (a.output_row_stride < a.cols) throw_invalid(f, "output_row_stride", a.output_row_stride, ">= cols = " + std::to_string(a.cols));
  if (a.rows_per_block < 0) throw_invalid(f, "rows_per_block", a.rows_per_block, ">= 0 (0: one block)");
  if (a.rows_per_block > 0 && a.rows % a.rows_per_block != 0) {
    throw_invalid(f, "rows_per_block", a.rows_per_block, "a divisor of rows = " + std::to_string(a.rows));
  }
  const bool in_place = a.output == static_cast<const void*>(a.input);
  if (in_place && (a.output_dtype != DType::f32 || a.output_row_stride != a.input_row_stride)) {
    throw_invalid(f, "output", "input", "in-place only with f32 output and equal row strides");
  }
  if (!in_place && a.cols > 0) {
    const Dim in_dims[] = {{a.rows, a.input_row_stride}, {a.cols, 1}};
    const Dim out_dims[] = {{a.rows, a.output_row_stride}, {a.cols, 1}};
    require_disjoint(f, range_of("output", a.output, extent(f, "output", out_dims), dtype_size(a.output_dtype)),
                     range_of("input", a.input, extent(f, "input", in_dims), sizeof(float)));
  }
  if (a.lse) {
    const int64_t blocks = a.rows_per_block > 0 ? a.rows / a.rows_per_block : 1;
    const int64_t per_block = a.rows_per_block > 0 ? a.rows_per_block : a.rows;
    if (blocks > 1 && a.lse_block_stride < 1) throw_invalid(f, "lse_block_stride", a.lse_block_stride, ">= 1");
    if (per_block > 1 && a.lse_row_stride < 1) throw_invalid(f, "lse_row_stride", a.lse_row_stride, ">= 1");
    const Dim l_dims[] = {{blocks, a.lse_block_stride}, {per_block, a.lse_row_stride}};
    const char* const l_names[] = {"lse_block_stride", "lse_row_stride"};
    require_no_self_overlap(f, "lse", l_dims, l_names);
    const ByteRange lse = range_of("lse", a.lse, extent(f, "lse", l_dims), sizeof(float));
    if (a.cols > 0) {
      const Dim in_dims[] = {{a.rows, a.input_row_stride}, {a.cols, 1}};
      const Dim out_dims[] = {{a.rows, a.output_row_stride}, {a.cols, 1}};
      require_disjoint(f, lse, range_of("input", a.input, extent(f, "input", in_dims), sizeof(float)));
      require_disjoint(f, lse, range_of("output", a.output, extent(f, "output", out_dims), dtype_size(a.output_dtype)));
    }
  }
}

void validate_scatter_scores(const ScatterScoresArguments& a) {
  const char* f = "scatter_scores";
  if (a.heads < 0) throw_invalid(f, "heads", a.heads, ">= 0");
  if (a.rows < 0) throw_invalid(f, "rows", a.rows, ">= 0");
  if (a.cols < 0) throw_invalid(f, "cols", a.cols, ">= 0");
  if (a.heads == 0 || a.rows == 0 || a.cols == 0) return;
  if (!a.scores) throw_invalid(f, "scores", "null", "a device pointer");
  if (!a.dst) throw_invalid(f, "dst", "null", "a device pointer");
  if (a.scores_row_stride < a.cols) throw_invalid(f, "scores_row_stride", a.scores_row_stride, ">= cols = " + std::to_string(a.cols));
  if (a.dst_row_stride < a.cols) throw_invalid(f, "dst_row_stride", a.dst_row_stride, ">= cols = " + std::to_string(a.cols));
  if (a.heads > 1 && a.scores_head_stride < saturating_mul(a.rows, a.scores_row_stride)) {
    throw_invalid(f, "scores_head_stride", a.scores_head_stride, ">= rows * scores_row_stride");
  }
  if (a.heads > 1 && a.dst_head_stride < saturating_mul(a.rows, a.dst_row_stride)) {
    throw_invalid(f, "dst_head_stride", a.dst_head_stride, ">= rows * dst_row_stride");
  }
  if (a.first_query < 0 || range_exceeds(a.first_query, a.rows, a.mask.suffix_length)) {
    throw_invalid(f, "first_query", a.first_query,
                  "rows [first_query, first_query + rows) inside the suffix of " +
                      std::to_string(a.mask.suffix_length));
  }
  // The mask's position arithmetic (prefix + key, prefix + tree height, ring positions) must
  // not overflow: at most 2^61 cache rows, far past any real sequence.
  int64_t cache_rows = 0;
  if (__builtin_add_overflow(a.mask.prefix_length, a.mask.suffix_length, &cache_rows) ||
      cache_rows > (int64_t{1} << 61)) {
    throw_invalid(f, "mask.prefix_length", a.mask.prefix_length,
                  "prefix_length + suffix_length <= 2^61 (suffix_length = " + std::to_string(a.mask.suffix_length) + ")");
  }
  if (a.first_key < 0 || range_exceeds(a.first_key, a.cols, cache_rows)) {
    throw_invalid(f, "first_key", a.first_key,
                  "columns [first_key, first_key + cols) inside the " + std::to_string(cache_rows) + " cache rows");
  }
  if (!(std::isfinite(a.softcap) && a.softcap >= 0)) throw_invalid(f, "softcap", a.softcap, "a finite value >= 0");
  const bool in_place = a.dst == a.scores;
  if (in_place && (a.dst_row_stride != a.scores_row_stride || a.dst_head_stride != a.scores_head_stride)) {
    throw_invalid(f, "dst", "scores", "in-place only with equal strides");
  }
  if (!in_place) {
    const Dim s_dims[] = {{a.heads, a.scores_head_stride}, {a.rows, a.scores_row_stride}, {a.cols, 1}};
    const Dim d_dims[] = {{a.heads, a.dst_head_stride}, {a.rows, a.dst_row_stride}, {a.cols, 1}};
    require_disjoint(f, range_of("dst", a.dst, extent(f, "dst", d_dims), sizeof(float)),
                     range_of("scores", a.scores, extent(f, "scores", s_dims), sizeof(float)));
  }
  if (a.mask.prefix_length < 0) throw_invalid(f, "mask.prefix_length", a.mask.prefix_length, ">= 0");
  validate_mask_spec(f, "mask.spec.", a.mask.spec);
  const MaskSpec& m = a.mask.spec;
  if (m.ring_length > 0 && a.mask.prefix_length > 0 && m.ring_offset >= a.mask.prefix_length) {
    throw_invalid(f, "mask.spec.ring_offset", m.ring_offset,
                  "in [0, prefix_length = " + std::to_string(a.mask.prefix_length) + ")");
  }
}

void validate_scatter_values(const ScatterValuesArguments& a) {
  const char* f = "scatter_values";
  if (a.heads < 0) throw_invalid(f, "heads", a.heads, ">= 0");
  if (a.rows < 0) throw_invalid(f, "rows", a.rows, ">= 0");
  if (a.head_dim < 1) throw_invalid(f, "head_dim", a.head_dim, ">= 1");
  if (!valid_dtype(a.dtype)) throw_invalid(f, "dtype", static_cast<int>(a.dtype), "f32, f16 or bf16");
  if (a.heads == 0 || a.rows == 0) return;
  if (!a.src) throw_invalid(f, "src", "null", "a device pointer");
  if (!a.out) throw_invalid(f, "out", "null", "a device pointer");
  if (a.src_row_stride < a.head_dim) throw_invalid(f, "src_row_stride", a.src_row_stride, ">= head_dim = " + std::to_string(a.head_dim));
  if (a.heads > 1 && a.src_head_stride < saturating_mul(a.rows, a.src_row_stride)) throw_invalid(f, "src_head_stride", a.src_head_stride, ">= rows * src_row_stride");
  if (a.heads > 1 && a.out_head_stride < a.head_dim) throw_invalid(f, "out_head_stride", a.out_head_stride, ">= head_dim = " + std::to_string(a.head_dim));
  if (a.rows > 1 && a.out_token_stride < a.head_dim) throw_invalid(f, "out_token_stride", a.out_token_stride, ">= head_dim = " + std::to_string(a.head_dim));
  const Dim s_dims[] = {{a.heads, a.src_head_stride}, {a.rows, a.src_row_stride}, {a.head_dim, 1}};
  const Dim o_dims[] = {{a.rows, a.out_token_stride}, {a.heads, a.out_head_stride}, {a.head_dim, 1}};
  const int64_t o_extent = extent(f, "out", o_dims);
  // Rows and heads must not land on the same cells (as attention's out, validate_problem).
  const char* const o_names[] = {"out_token_stride", "out_head_stride", "head_dim"};
  require_no_self_overlap(f, "out", o_dims, o_names);
  require_disjoint(f, range_of("out", a.out, o_extent, dtype_size(a.dtype)),
                   range_of("src", a.src, extent(f, "src", s_dims), sizeof(float)));
}


void validate_merge_states(const MergeStatesArguments& a) {
  const char* f = "merge_states";
  if (a.num_states < 1 || a.num_states > kMaxMergeStates) {
    throw_invalid(f, "num_states", a.num_states, "in [1, " + std::to_string(kMaxMergeStates) + "]");
  }
  if (!a.states) throw_invalid(f, "states", "null", "a host array of num_states states");
  if (a.tokens < 0) throw_invalid(f, "tokens", a.tokens, ">= 0");
  if (a.heads < 0) throw_invalid(f, "heads", a.heads, ">= 0");
  if (a.head_dim < 1) throw_invalid(f, "head_dim", a.head_dim, ">= 1");
  if (!valid_dtype(a.out_dtype)) {
    throw_invalid(f, "out_dtype", static_cast<int>(a.out_dtype), "f32, f16 or bf16");
  }
  for (int32_t s = 0; s < a.num_states; ++s) {
    if (!valid_dtype(a.states[s].dtype)) {
      throw_invalid(f, "states[" + std::to_string(s) + "].dtype", static_cast<int>(a.states[s].dtype),
                    "f32, f16 or bf16");
    }
  }
  if (a.tokens == 0 || a.heads == 0) return;
  if (!a.out) throw_invalid(f, "out", "null", "a device pointer");
  require_positive_stride(f, "out_head_stride", a.out_head_stride, a.heads > 1 ? a.head_dim : 0);
  require_positive_stride(f, "out_token_stride", a.out_token_stride, a.tokens > 1 ? a.head_dim : 0);
  const Dim o_dims[] = {{a.tokens, a.out_token_stride}, {a.heads, a.out_head_stride}, {a.head_dim, 1}};
  const char* const o_names[] = {"out_token_stride", "out_head_stride", "head_dim"};
  require_no_self_overlap(f, "out", o_dims, o_names);
  const ByteRange out = range_of("out", a.out, extent(f, "out", o_dims), dtype_size(a.out_dtype));
  ByteRange lse{"lse", 0, 0};
  if (a.lse) {
    require_positive_stride(f, "lse_head_stride", a.lse_head_stride, a.heads > 1 ? 1 : 0);
    require_positive_stride(f, "lse_token_stride", a.lse_token_stride, a.tokens > 1 ? 1 : 0);
    const Dim l_dims[] = {{a.tokens, a.lse_token_stride}, {a.heads, a.lse_head_stride}};
    const char* const l_names[] = {"lse_token_stride", "lse_head_stride"};
    require_no_self_overlap(f, "lse", l_dims, l_names);
    lse = range_of("lse", a.lse, extent(f, "lse", l_dims), sizeof(float));
    require_disjoint(f, lse, out);
  }
  for (int32_t s = 0; s < a.num_states; ++s) {
    const AttentionState& st = a.states[s];
    const std::string name = "states[" + std::to_string(s) + "].";
    // Inputs may repeat elements (stride 0 broadcasts), but never step backwards.
    if (!st.out) throw_invalid(f, name + "out", "null", "a device pointer");
    if (!st.lse) throw_invalid(f, name + "lse", "null", "a device pointer (f32 [tokens, heads])");
    require_positive_stride(f, (name + "out_token_stride").c_str(), st.out_token_stride, 0);
    require_positive_stride(f, (name + "out_head_stride").c_str(), st.out_head_stride, 0);
    require_positive_stride(f, (name + "lse_token_stride").c_str(), st.lse_token_stride, 0);
    require_positive_stride(f, (name + "lse_head_stride").c_str(), st.lse_head_stride, 0);
    const Dim so_dims[] = {{a.tokens, st.out_token_stride}, {a.heads, st.out_head_stride}, {a.head_dim, 1}};
    const Dim sl_dims[] = {{a.tokens, st.lse_token_stride}, {a.heads, st.lse_head_stride}};
    const std::string so_name = name + "out", sl_name = name + "lse";
    const ByteRange state_out = range_of(so_name.c_str(), st.out, extent(f, so_name.c_str(), so_dims),
                                         dtype_size(st.dtype));
    const ByteRange state_lse = range_of(sl_name.c_str(), st.lse, extent(f, sl_name.c_str(), sl_dims),
                                         sizeof(float));
    require_disjoint(f, out, state_out);
    require_disjoint(f, out, state_lse);
    if (a.lse) {
      require_disjoint(f, lse, state_out);
      require_disjoint(f, lse, state_lse);
    }
  }
}

void validate_write_kv(const WriteKvArguments& a, Backend backend) {
  const char* f = "write_kv";
  const KvCache& kv = a.kv;
  if (!valid_dtype(a.dtype)) throw_invalid(f, "dtype", static_cast<int>(a.dtype), "f32, f16 or bf16");
  if (a.tokens < 0) throw_invalid(f, "tokens", a.tokens, ">= 0");
  if (a.kv_heads < 1) throw_invalid(f, "kv_heads", a.kv_heads, ">= 1");
  if (a.head_dim < 1) throw_invalid(f, "head_dim", a.head_dim, ">= 1");
  const bool paged = kv.paged();
  if (paged) {
    if (kv.capacity != 0) {
      throw_invalid(f, "kv.capacity", kv.capacity, "0 for a paged cache (slots are page * page_size + offset)");
    }
    if (kv.page_size < 1 || kv.page_size > kMaxPageSize || (kv.page_size & (kv.page_size - 1)) != 0) {
      throw_invalid(f, "kv.page_size", kv.page_size,
                    "a power of two in [1, " + std::to_string(kMaxPageSize) + "]");
    }
    if (kv.num_pages < 1) throw_invalid(f, "kv.num_pages", kv.num_pages, ">= 1");
  } else {
    if (kv.capacity < 1) throw_invalid(f, "kv.capacity", kv.capacity, ">= 1");
    if (a.sequences < 1) throw_invalid(f, "sequences", a.sequences, ">= 1");
  }
  if (!kv.fp8 && (kv.k_scale || kv.v_scale || kv.scales_per_head)) {
    throw_invalid(f, "kv.k_scale/kv.v_scale/kv.scales_per_head", "set on a cache with kv.fp8 = false",
                  "scales only for an fp8 cache");
  }
  if (a.tokens == 0) return;
  if (!a.k_new) throw_invalid(f, "k_new", "null", "a device pointer");
  if (!a.v_new) throw_invalid(f, "v_new", "null", "a device pointer");
  if (!a.slot_mapping) throw_invalid(f, "slot_mapping", "null", "a device array of tokens int32 slots");
  if (!kv.k) throw_invalid(f, "kv.k", "null", "a device pointer");
  if (!kv.v) throw_invalid(f, "kv.v", "null", "a device pointer");

  const int64_t d = a.head_dim;
  require_positive_stride(f, "k_new_token_stride", a.k_new_token_stride, a.tokens > 1 ? 1 : 0);
  require_positive_stride(f, "k_new_head_stride", a.k_new_head_stride, a.kv_heads > 1 ? 1 : 0);
  require_positive_stride(f, "v_new_token_stride", a.v_new_token_stride, a.tokens > 1 ? 1 : 0);
  require_positive_stride(f, "v_new_head_stride", a.v_new_head_stride, a.kv_heads > 1 ? 1 : 0);
  // The pools' dims as validate_problem sees them: (page, slot) or (sequence, row).
  const int64_t slots = paged ? kv.page_size : kv.capacity;
  const int64_t outer = paged ? kv.num_pages : a.sequences;
  const int64_t k_outer_stride = paged ? kv.k_page_stride : kv.k_sequence_stride;
  const int64_t v_outer_stride = paged ? kv.v_page_stride : kv.v_sequence_stride;
  require_positive_stride(f, paged ? "kv.k_page_stride" : "kv.k_sequence_stride", k_outer_stride,
                          outer > 1 ? 1 : 0);
  require_positive_stride(f, paged ? "kv.v_page_stride" : "kv.v_sequence_stride", v_outer_stride,
                          outer > 1 ? 1 : 0);
  require_positive_stride(f, "kv.k_token_stride", kv.k_token_stride, slots > 1 ? 1 : 0);
  require_positive_stride(f, "kv.v_token_stride", kv.v_token_stride, slots > 1 ? 1 : 0);
  require_positive_stride(f, "kv.k_head_stride", kv.k_head_stride, a.kv_heads > 1 ? 1 : 0);
  require_positive_stride(f, "kv.v_head_stride", kv.v_head_stride, a.kv_heads > 1 ? 1 : 0);
  const Dim k_dims[] = {{outer, k_outer_stride}, {slots, kv.k_token_stride}, {a.kv_heads, kv.k_head_stride}, {d, 1}};
  const Dim v_dims[] = {{outer, v_outer_stride}, {slots, kv.v_token_stride}, {a.kv_heads, kv.v_head_stride}, {d, 1}};
  const char* const k_names[] = {paged ? "kv.k_page_stride" : "kv.k_sequence_stride", "kv.k_token_stride",
                                 "kv.k_head_stride", "head_dim"};
  const char* const v_names[] = {paged ? "kv.v_page_stride" : "kv.v_sequence_stride", "kv.v_token_stride",
                                 "kv.v_head_stride", "head_dim"};
  // Two slots must not share cells, or one token's write would land on another's.
  require_no_self_overlap(f, "kv.k", k_dims, k_names);
  require_no_self_overlap(f, "kv.v", v_dims, v_names);
  const std::size_t es = dtype_size(a.dtype);
  const std::size_t kv_es = dtype_size(kv_dtype(kv, a.dtype));  // 1 for an fp8 cache
  const int64_t k_extent = extent(f, "kv.k", k_dims), v_extent = extent(f, "kv.v", v_dims);
  checked_mul_add(f, "kv.k bytes", k_extent, static_cast<int64_t>(kv_es), 0);
  checked_mul_add(f, "kv.v bytes", v_extent, static_cast<int64_t>(kv_es), 0);
  const Dim kn_dims[] = {{a.tokens, a.k_new_token_stride}, {a.kv_heads, a.k_new_head_stride}, {d, 1}};
  const Dim vn_dims[] = {{a.tokens, a.v_new_token_stride}, {a.kv_heads, a.v_new_head_stride}, {d, 1}};
  const ByteRange inputs[] = {range_of("k_new", a.k_new, extent(f, "k_new", kn_dims), es),
                              range_of("v_new", a.v_new, extent(f, "v_new", vn_dims), es),
                              range_of("slot_mapping", a.slot_mapping, a.tokens, sizeof(int32_t))};
  for (const ByteRange& input : inputs) {
    require_disjoint(f, range_of("kv.k", kv.k, k_extent, kv_es), input);
    require_disjoint(f, range_of("kv.v", kv.v, v_extent, kv_es), input);
  }

  if (backend != Backend::cpu) return;  // device memory: the kernel skips bad slots
  const int64_t total_slots = checked_mul_add(f, "slots", outer, slots, 0);
  for (int64_t t = 0; t < a.tokens; ++t) {
    const int32_t s = a.slot_mapping[t];
    if (s < -1 || s >= total_slots) {
      throw_invalid(f, "slot_mapping[" + std::to_string(t) + "]", s,
                    "-1 (skip) or a slot in [0, " + std::to_string(total_slots) + ") (" +
                        (paged ? "kv.num_pages * kv.page_size" : "sequences * kv.capacity") + ")");
    }
  }
}

}  // namespace wideattn::detail
