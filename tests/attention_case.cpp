#include "attention_case.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <sstream>

#include "reference/reference.h"

namespace wideattn::test {

int64_t AttentionCase::total_tokens() const {
  int64_t tokens = 0;
  for (const SequenceShape& s : sequences) tokens += s.suffix;
  return tokens;
}

std::string AttentionCase::describe() const {
  std::ostringstream s;
  s << "head_dim " << head_dim << ", " << to_string(dtype) << ", heads " << q_heads << "/" << kv_heads
    << ", sequences (suffix/kv)";
  for (std::size_t b = 0; b < sequences.size() && b < 8; ++b) {
    s << " " << sequences[b].suffix << "/" << sequences[b].kv_length;
  }
  if (sequences.size() > 8) s << " ... (" << sequences.size() << " in all)";
  s << ", " << (causal ? "causal" : "bidirectional");
  if (window) s << ", window " << window;
  if (ring_length) s << ", ring " << ring_length << " at " << ring_offset;
  if (tree || !tree_start.empty()) s << ", tree";
  if (!std::isnan(scale)) s << ", scale " << scale;
  if (softcap > 0) s << ", softcap " << softcap;
  if (sinks) s << ", sinks";
  if (!lse) s << ", no lse";
  if (q_head_major) s << ", head-major q";
  if (kv_head_major) s << ", head-major kv";
  if (out_head_major) s << ", head-major out";
  if (out_gap) s << ", out gap " << out_gap;
  if (lse_gap) s << ", lse gap " << lse_gap;
  if (nan_past_kv_length) s << ", NaN past kv_length";
  if (fp8_kv) s << ", fp8 KV" << (kv_scales_per_head ? " (scale per head)" : "");
  if (shared_prefix) s << ", shared prefix " << shared_prefix;
  if (page_size) {
    s << ", paged " << page_size << (kv_head_major ? " head-major" : "");
    if (page_gap) s << " gap " << page_gap;
    if (kv_one_tensor) s << " K/V in one tensor";
  }
  return s.str();
}

void append_random_trie(std::mt19937_64& rng, int32_t nodes, std::vector<int32_t>* start,
                        std::vector<int32_t>* end, std::vector<int32_t>* height) {
  std::vector<int32_t> parent(nodes, -1), depth(nodes, 0), last(nodes);
  std::vector<int32_t> path;  // root .. previous node
  for (int32_t j = 0; j < nodes; ++j) {
    last[j] = j;
    if (j > 0) {
      std::uniform_int_distribution<std::size_t> pick(0, path.size() - 1);
      path.resize(pick(rng) + 1);  // keep the chosen ancestor as the parent
      parent[j] = path.back();
      depth[j] = depth[parent[j]] + 1;
    }
    path.push_back(j);
  }
  for (int32_t j = nodes - 1; j > 0; --j) last[parent[j]] = std::max(last[parent[j]], last[j]);
  for (int32_t j = 0; j < nodes; ++j) {
    start->push_back(j);
    end->push_back(last[j]);
    height->push_back(depth[j]);
  }
}

namespace {

// A contiguous cache's data scattered into pages (AttentionCase::page_size).
struct PagedCache {
  HostTensor k, v;  // the pools (one tensor for both when kv_one_tensor: v is empty)
  int64_t v_offset = 0;  // elements from the K pool's start to the V pool's
  std::vector<int32_t> table;
  int32_t max_pages = 0;
  int64_t num_pages = 0, page_stride = 0, token_stride = 0, head_stride = 0;
};

// Sequence b's pages are a random permutation of the pool's pages (a quarter more than needed,
// the rest NaN), except the whole pages of the shared prefix, which are sequence 0's.
PagedCache make_paged_cache(std::mt19937_64& rng, const AttentionCase& c, const AttentionProblem& host,
                            const HostTensor& k, const HostTensor& v) {
  PagedCache pc;
  const int64_t d = c.head_dim, page = c.page_size, capacity = host.kv.capacity;
  const int32_t batch = host.batch;
  pc.max_pages = static_cast<int32_t>((capacity + page - 1) / page);
  const int64_t shared_rows = std::min<int64_t>(c.shared_prefix, host.kv_lengths[0]);
  const int64_t shared_pages = std::min<int64_t>(shared_rows / page, pc.max_pages);
  const int64_t needed = pc.max_pages + int64_t{batch - 1} * (pc.max_pages - shared_pages);
  pc.num_pages = needed + needed / 4 + 1;
  const int64_t page_elements = page * c.kv_heads * d;
  pc.token_stride = c.kv_head_major ? d : c.kv_heads * d;
  pc.head_stride = c.kv_head_major ? page * d : d;
  const int64_t page_span = page_elements + c.page_gap;
  pc.page_stride = c.kv_one_tensor ? 2 * page_span : page_span;
  pc.v_offset = c.kv_one_tensor ? page_span : 0;

  std::vector<int32_t> order(static_cast<std::size_t>(pc.num_pages));
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::shuffle(order.begin(), order.end(), rng);
  pc.table.assign(static_cast<std::size_t>(batch) * pc.max_pages, -1);
  std::size_t next = 0;
  for (int32_t b = 0; b < batch; ++b) {
    for (int32_t j = 0; j < pc.max_pages; ++j) {
      pc.table[b * pc.max_pages + j] = b > 0 && j < shared_pages ? pc.table[j] : order[next++];
    }
  }

  const int64_t pool_elements = pc.num_pages * pc.page_stride;
  pc.k = HostTensor(k.dtype(), pool_elements);
  if (!c.kv_one_tensor) pc.v = HostTensor(k.dtype(), pool_elements);
  HostTensor& v_pool = c.kv_one_tensor ? pc.k : pc.v;
  for (int64_t i = 0; i < pool_elements; ++i) {
    pc.k.set(i, std::nan(""));
    if (!c.kv_one_tensor) pc.v.set(i, std::nan(""));
  }
  for (int32_t b = 0; b < batch; ++b) {
    for (int64_t slot = 0; slot < capacity; ++slot) {
      const int64_t physical = pc.table[b * pc.max_pages + slot / page];
      for (int64_t h = 0; h < c.kv_heads; ++h) {
        const int64_t from = b * host.kv.k_sequence_stride + slot * host.kv.k_token_stride + h * host.kv.k_head_stride;
        const int64_t to = physical * pc.page_stride + (slot % page) * pc.token_stride + h * pc.head_stride;
        for (int64_t x = 0; x < d; ++x) {
          pc.k.set(to + x, k.get(from + x));
          v_pool.set(pc.v_offset + to + x, v.get(from + x));
        }
      }
    }
  }
  return pc;
}

}  // namespace

// Tensor-core kernels sum the probabilities after rounding them to the storage type (so that
// the normaliser matches the P V product): each term is off by at most half an ulp, 2^-9
// relative in bf16 and 2^-12 in f16, which bounds the LSE error by log(1 + 2^-9) ~ 2e-3.
double lse_tolerance(DType dtype) {
  return dtype == DType::f32 ? 1e-4 : dtype == DType::f16 ? 1e-3 : 2.5e-3;
}

void check_attention(Context& context, std::mt19937_64& rng, const AttentionCase& c, Kernel kernel,
                     AttentionOutcome* outcome, const AttentionRunner& runner) {
  SCOPED_TRACE(c.describe() + ", kernel " + to_string(kernel) + ", backend " +
               to_string(context.backend()));
  const int32_t batch = static_cast<int32_t>(c.sequences.size());
  const int64_t tokens = c.total_tokens();
  const int64_t d = c.head_dim;

  std::vector<int32_t> query_offsets(batch + 1, 0), kv_lengths(batch);
  int64_t longest = 0;
  for (int32_t b = 0; b < batch; ++b) {
    query_offsets[b + 1] = query_offsets[b] + c.sequences[b].suffix;
    kv_lengths[b] = c.sequences[b].kv_length;
    longest = std::max<int64_t>(longest, kv_lengths[b]);
  }

  AttentionProblem host;
  host.batch = batch;
  host.q_heads = c.q_heads;
  host.kv_heads = c.kv_heads;
  host.head_dim = c.head_dim;
  host.dtype = c.dtype;
  host.query_offsets = query_offsets.data();
  host.kv_lengths = kv_lengths.data();
  host.kv.capacity = std::max<int64_t>(1, longest + c.extra_capacity);
  const int64_t capacity = host.kv.capacity;

  const int64_t strided_tokens = std::max<int64_t>(tokens, 1);  // head-major strides stay valid
  if (c.q_head_major) {
    host.q_head_stride = strided_tokens * d;
    host.q_token_stride = d;
  } else {
    host.q_token_stride = c.q_heads * d;
    host.q_head_stride = d;
  }
  if (c.kv_head_major) {
    host.kv.k_token_stride = host.kv.v_token_stride = d;
    host.kv.k_head_stride = host.kv.v_head_stride = capacity * d;
  } else {
    host.kv.k_token_stride = host.kv.v_token_stride = c.kv_heads * d;
    host.kv.k_head_stride = host.kv.v_head_stride = d;
  }
  host.kv.k_sequence_stride = host.kv.v_sequence_stride = capacity * c.kv_heads * d;
  const int64_t row = d + c.out_gap;
  const int64_t lse_step = 1 + c.lse_gap;
  if (c.out_head_major) {
    host.out_token_stride = row;
    host.out_head_stride = strided_tokens * row + c.out_gap;
    host.lse_token_stride = lse_step;
    host.lse_head_stride = strided_tokens * lse_step;
  } else {
    host.out_head_stride = row;
    host.out_token_stride = c.q_heads * row + c.out_gap;
    host.lse_head_stride = lse_step;
    host.lse_token_stride = c.q_heads * lse_step;
  }
  host.scale = c.scale;
  host.softcap = c.softcap;
  host.mask.causal = c.causal;
  host.mask.window = c.window;
  host.mask.ring_length = c.ring_length;
  host.mask.ring_offset = c.ring_offset;

  // Inputs on the host.
  const HostTensor q = random_tensor(rng, c.dtype, tokens * c.q_heads * d, -c.input_range, c.input_range);
  const int64_t cache_elements = int64_t{batch} * capacity * c.kv_heads * d;
  const DType cache_dtype = c.fp8_kv ? DType::fp8_e4m3 : c.dtype;
  HostTensor k_cache = random_tensor(rng, cache_dtype, cache_elements, -c.input_range, c.input_range);
  HostTensor v_cache = random_tensor(rng, cache_dtype, cache_elements, -c.input_range, c.input_range);
  if (c.nan_past_kv_length) {
    for (int32_t b = 0; b < batch; ++b) {
      for (int64_t slot = kv_lengths[b]; slot < capacity; ++slot) {
        for (int64_t h = 0; h < c.kv_heads; ++h) {
          const int64_t base = b * host.kv.k_sequence_stride + slot * host.kv.k_token_stride + h * host.kv.k_head_stride;
          for (int64_t x = 0; x < d; ++x) {
            k_cache.set(base + x, std::nan(""));
            v_cache.set(base + x, std::nan(""));
          }
        }
      }
    }
  }
  // Prefix sharing: sequence 0's first rows (never its NaN slots) in every sequence.
  const int64_t shared_rows = std::min<int64_t>(c.shared_prefix, batch > 0 ? kv_lengths[0] : 0);
  for (int32_t b = 1; b < batch; ++b) {
    for (int64_t slot = 0; slot < shared_rows; ++slot) {
      for (int64_t h = 0; h < c.kv_heads; ++h) {
        const int64_t row = slot * host.kv.k_token_stride + h * host.kv.k_head_stride;
        for (int64_t x = 0; x < d; ++x) {
          k_cache.set(b * host.kv.k_sequence_stride + row + x, k_cache.get(row + x));
          v_cache.set(b * host.kv.v_sequence_stride + row + x, v_cache.get(row + x));
        }
      }
    }
  }
  const HostTensor& k = k_cache;
  const HostTensor& v = v_cache;
  std::vector<int32_t> tree_start = c.tree_start, tree_end = c.tree_end, tree_height = c.tree_height;
  if (c.tree && tree_start.empty()) {
    for (const SequenceShape& s : c.sequences) append_random_trie(rng, s.suffix, &tree_start, &tree_end, &tree_height);
  }
  std::vector<float> sinks;
  if (c.sinks) {
    std::uniform_real_distribution<float> sink(-1.0f, 3.0f);
    for (int32_t h = 0; h < c.q_heads; ++h) sinks.push_back(sink(rng));
  }
  host.q = q.data();
  host.kv.k = k.data();
  host.kv.v = v.data();
  if (!tree_start.empty()) {
    host.mask.tree_start = tree_start.data();
    host.mask.tree_end = tree_end.data();
    host.mask.tree_height = tree_height.data();
  }
  host.sinks = c.sinks ? sinks.data() : nullptr;
  std::vector<float> k_scales, v_scales;
  if (c.fp8_kv) {
    std::uniform_real_distribution<float> log2_scale(-2.0f, 2.0f);
    for (int32_t g = 0; g < (c.kv_scales_per_head ? c.kv_heads : 1); ++g) {
      k_scales.push_back(std::exp2(log2_scale(rng)));
      v_scales.push_back(std::exp2(log2_scale(rng)));
    }
    host.kv.fp8 = true;
    host.kv.scales_per_head = c.kv_scales_per_head;
    host.kv.k_scale = k_scales.data();
    host.kv.v_scale = v_scales.data();
  }

  // The same problem on the device.
  AttentionProblem device = host;
  const auto q_device = to_device(context, q.data(), q.bytes());
  const auto k_device = to_device(context, k.data(), k.bytes());
  const auto v_device = to_device(context, v.data(), v.bytes());
  const std::size_t tree_bytes = tree_start.size() * sizeof(int32_t);
  const auto start_device = to_device(context, tree_start.data(), tree_bytes);
  const auto end_device = to_device(context, tree_end.data(), tree_bytes);
  const auto height_device = to_device(context, tree_height.data(), tree_bytes);
  const auto sinks_device = to_device(context, sinks.data(), sinks.size() * sizeof(float));
  device.q = q_device->get();
  device.kv.k = k_device->get();
  device.kv.v = v_device->get();
  // Paged: the device reads the pools through a block table; the oracle keeps the original.
  PagedCache paged;
  std::unique_ptr<DeviceMemory> k_pool_device, v_pool_device, table_device;
  if (c.page_size > 0) {
    paged = make_paged_cache(rng, c, host, k, v);
    k_pool_device = to_device(context, paged.k.data(), paged.k.bytes());
    table_device = to_device(context, paged.table.data(), paged.table.size() * sizeof(int32_t));
    const char* k_pool = static_cast<const char*>(k_pool_device->get());
    const char* v_pool = k_pool + paged.v_offset * dtype_size(k.dtype());
    if (!c.kv_one_tensor) {
      v_pool_device = to_device(context, paged.v.data(), paged.v.bytes());
      v_pool = static_cast<const char*>(v_pool_device->get());
    }
    KvCache& kv = device.kv;
    kv.k = k_pool;
    kv.v = v_pool;
    kv.capacity = 0;
    kv.k_sequence_stride = kv.v_sequence_stride = 0;
    kv.block_table = static_cast<const int32_t*>(table_device->get());
    kv.block_table_stride = paged.max_pages;
    kv.max_pages = paged.max_pages;
    kv.page_size = c.page_size;
    kv.num_pages = paged.num_pages;
    kv.k_page_stride = kv.v_page_stride = paged.page_stride;
    kv.k_token_stride = kv.v_token_stride = paged.token_stride;
    kv.k_head_stride = kv.v_head_stride = paged.head_stride;
  }
  if (!tree_start.empty()) {
    device.mask.tree_start = static_cast<const int32_t*>(start_device->get());
    device.mask.tree_end = static_cast<const int32_t*>(end_device->get());
    device.mask.tree_height = static_cast<const int32_t*>(height_device->get());
  }
  device.sinks = c.sinks ? static_cast<const float*>(sinks_device->get()) : nullptr;
  const auto k_scales_device = to_device(context, k_scales.data(), k_scales.size() * sizeof(float));
  const auto v_scales_device = to_device(context, v_scales.data(), v_scales.size() * sizeof(float));
  if (c.fp8_kv) {
    device.kv.k_scale = static_cast<const float*>(k_scales_device->get());
    device.kv.v_scale = static_cast<const float*>(v_scales_device->get());
  }

  // Outputs: poisoned, with guards; offsets of every element the call must write.
  std::vector<int64_t> out_offsets, lse_offsets;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < c.q_heads; ++h) {
      for (int64_t x = 0; x < d; ++x) out_offsets.push_back(t * host.out_token_stride + h * host.out_head_stride + x);
      lse_offsets.push_back(t * host.lse_token_stride + h * host.lse_head_stride);
    }
  }
  const int64_t out_extent = tokens == 0 ? 0 : out_offsets.back() + 1 + c.out_gap;
  const int64_t lse_extent = tokens == 0 ? 0 : *std::max_element(lse_offsets.begin(), lse_offsets.end()) + 1 + c.lse_gap;
  GuardedOutput out(context, c.dtype, std::max<int64_t>(out_extent, 1));
  GuardedOutput lse(context, DType::f32, std::max<int64_t>(lse_extent, 1));
  out.upload();
  lse.upload();
  device.out = out.data();
  device.lse = c.lse ? static_cast<float*>(lse.data()) : nullptr;
  if (!c.lse) host.lse_token_stride = host.lse_head_stride = device.lse_token_stride = device.lse_head_stride = 0;

  AttentionOutcome local;
  AttentionOutcome& result = outcome ? *outcome : local;
  const Status status = runner ? runner(context, device, kernel, &result.plan)
                               : attention(context, device, kernel, &result.plan);
  ASSERT_TRUE(status.ok()) << to_string(status.code()) << ": " << status.message();
  if (kernel != Kernel::automatic) {
    EXPECT_EQ(result.plan.kernel, kernel);
  }
  out.download();
  lse.download();

  reference::attention(host, &result.ref_out, &result.ref_lse);
  result.out = out.gather(out_offsets);
  const IndexName out_name = shape_index_name({"token", "head", "dim"}, {tokens, c.q_heads, d});
  const IndexName lse_name = shape_index_name({"token", "head"}, {tokens, c.q_heads});
  EXPECT_TRUE(close_rel_l2(result.out, result.ref_out, relative_tolerance(c.dtype), out_name)) << "out";
  EXPECT_TRUE(out.untouched_except(out_offsets)) << "out guards and gaps";
  if (c.lse) {
    result.lse = lse.gather(lse_offsets);
    EXPECT_TRUE(close_abs(result.lse, result.ref_lse, lse_tolerance(c.dtype), lse_name)) << "lse";
    EXPECT_TRUE(lse.untouched_except(lse_offsets)) << "lse guards and gaps";
  } else {
    EXPECT_TRUE(lse.unchanged()) << "lse is null, yet the buffer changed";
  }

  // A row that sees no key is exactly zero, whether or not it has a sink.
  int64_t nonzero = 0;
  std::string first;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < c.q_heads; ++h) {
      const std::size_t base = static_cast<std::size_t>((t * c.q_heads + h) * d);
      bool sees_nothing = result.ref_lse[t * c.q_heads + h] == -std::numeric_limits<double>::infinity();
      if (c.sinks && !sees_nothing) {
        // With a sink, the row sees nothing when the oracle's LSE is the sink alone.
        sees_nothing = std::all_of(result.ref_out.begin() + base, result.ref_out.begin() + base + d,
                                   [](double x) { return x == 0.0; }) &&
                       result.ref_lse[t * c.q_heads + h] == static_cast<double>(sinks[h]);
      }
      if (!sees_nothing) continue;
      if (c.lse && c.sinks) {
        const double got = result.lse[t * c.q_heads + h];
        if (got != static_cast<double>(sinks[h])) {
          ADD_FAILURE() << "token " << t << " head " << h << " sees no key: LSE " << got
                        << ", expected exactly the sink " << sinks[h];
        }
      }
      for (int64_t x = 0; x < d; ++x) {
        if (result.out[base + x] != 0.0) {
          if (nonzero == 0) first = "token " + std::to_string(t) + " head " + std::to_string(h) + " dim " + std::to_string(x) + " = " + std::to_string(result.out[base + x]);
          ++nonzero;
        }
      }
    }
  }
  EXPECT_EQ(nonzero, 0) << "rows that see no key must be exactly zero; first: " << first;
}

void check_host_attention(Context& context, const AttentionProblem& p, Kernel kernel,
                          const HostTensor& out, const std::vector<float>& lse) {
  WA_ASSERT_OK(attention(context, p, kernel));
  std::vector<double> ref_out, ref_lse, got_out, got_lse(lse.begin(), lse.end());
  reference::attention(p, &ref_out, &ref_lse);
  for (int64_t i = 0; i < out.size(); ++i) got_out.push_back(out.get(i));
  EXPECT_TRUE(close_rel_l2(got_out, ref_out, relative_tolerance(p.dtype), flat_index_name()));
  EXPECT_TRUE(close_abs(got_lse, ref_lse, lse_tolerance(p.dtype), flat_index_name()));
}

// Runs `problem` (host metadata, as check_attention builds it) the serving way: the metadata
// copied to the device, a plan from bounds (the longest suffix 8 or the capacity, the cache's
// capacity), then attention_planned. On CUDA the bounds' error word must stay 0.
Status run_from_bounds(Context& context, const AttentionProblem& problem, Kernel kernel, Plan* plan) {
  const int32_t batch = problem.batch;
  auto offsets = to_device(context, problem.query_offsets, (batch + 1) * sizeof(int32_t));
  auto lengths = to_device(context, problem.kv_lengths, batch * sizeof(int32_t));
  const int32_t zero = 0;
  auto errors = to_device(context, &zero, sizeof(int32_t));
  AttentionProblem on_device = problem;
  on_device.query_offsets = static_cast<const int32_t*>(offsets->get());
  on_device.kv_lengths = static_cast<const int32_t*>(lengths->get());
  ProblemBounds bounds;
  bounds.max_total_tokens = std::max<int64_t>(1, problem.total_tokens());
  // The decode limit, or the cache's capacity when that is smaller (a suffix never passes it).
  bounds.max_suffix = static_cast<int32_t>(std::clamp<int64_t>(problem.kv.sequence_capacity(), 1, 8));
  bounds.max_kv_length = problem.kv.sequence_capacity();
  bounds.errors = static_cast<int32_t*>(errors->get());
  Status status = plan_attention(on_device, bounds, context.device(), kernel, plan);
  if (status.ok()) status = attention_planned(context, on_device, *plan);
  if (status.ok()) status = context.synchronize();
  int32_t reported = 0;
  if (status.ok()) status = context.copy(&reported, errors->get(), sizeof(int32_t), CopyKind::device_to_host);
  if (status.ok() && reported != 0 && context.backend() == Backend::cuda) {
    return Status(StatusCode::internal, "bounds.errors = " + std::to_string(reported) + " for valid metadata");
  }
  return status;
}

}  // namespace wideattn::test
