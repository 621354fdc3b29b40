// write_kv on every backend: a fused QKV projection's K/V slices scattered through a slot
// mapping (-1 skips) into contiguous and paged caches of every layout, with every other cache
// element checked untouched; out-of-range slots (an error on the CPU, skipped on CUDA); and a
// step that writes its new keys and then attends to them, against the f64 oracle.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <vector>

#include "reference/reference.h"
#include "test_support.h"

namespace wideattn::test {
namespace {

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

struct CacheShape {
  bool paged = false;
  int32_t sequences = 2;   // contiguous
  int64_t capacity = 24;   // contiguous
  int64_t num_pages = 5;   // paged
  int32_t page_size = 8;   // paged
  bool head_major = false;
  int64_t gap = 0;         // unused elements after every page / sequence
  int64_t slots() const { return paged ? num_pages * page_size : sequences * capacity; }
  std::string describe() const {
    std::ostringstream s;
    if (paged) {
      s << "paged " << num_pages << " x " << page_size << (head_major ? " head-major" : " token-major");
    } else {
      s << "contiguous " << sequences << " x " << capacity;
    }
    s << ", gap " << gap;
    return s.str();
  }
};

// Element strides of one pool of `shape` for kv_heads x head_dim rows; returns its size.
int64_t fill_cache_strides(const CacheShape& shape, int32_t kv_heads, int32_t head_dim, KvCache* kv) {
  const int64_t rows = shape.paged ? shape.page_size : shape.capacity;
  const int64_t token = shape.head_major ? head_dim : int64_t{kv_heads} * head_dim;
  const int64_t head = shape.head_major ? rows * head_dim : head_dim;
  const int64_t outer = rows * kv_heads * head_dim + shape.gap;
  kv->k_token_stride = kv->v_token_stride = token;
  kv->k_head_stride = kv->v_head_stride = head;
  if (shape.paged) {
    kv->page_size = shape.page_size;
    kv->num_pages = shape.num_pages;
    kv->k_page_stride = kv->v_page_stride = outer;
    kv->capacity = 0;
    kv->max_pages = 1;
  } else {
    kv->capacity = shape.capacity;
    kv->k_sequence_stride = kv->v_sequence_stride = outer;
  }
  return (shape.paged ? shape.num_pages : shape.sequences) * outer;
}

int64_t cache_offset(const CacheShape& shape, const KvCache& kv, int64_t slot, int64_t head) {
  const int64_t rows = shape.paged ? shape.page_size : shape.capacity;
  const int64_t outer_stride = shape.paged ? kv.k_page_stride : kv.k_sequence_stride;
  return slot / rows * outer_stride + slot % rows * kv.k_token_stride + head * kv.k_head_stride;
}

struct ScatterCase {
  DType dtype = DType::bf16;
  int64_t tokens = 13;
  int32_t q_heads = 4, kv_heads = 2, head_dim = 64;
  CacheShape cache;
  int64_t bad_token = -1;  // >= 0: that token's slot is out of range
  int32_t bad_slot = 0;
};

// Writes `sc.tokens` tokens of a fused QKV tensor to distinct random slots (every fifth -1).
void check_scatter(Context& context, std::mt19937_64& rng, const ScatterCase& sc) {
  SCOPED_TRACE(sc.cache.describe() + ", " + to_string(sc.dtype) + ", head_dim " + std::to_string(sc.head_dim));
  const int64_t d = sc.head_dim, row = int64_t{sc.q_heads + 2 * sc.kv_heads} * d;
  const HostTensor qkv = random_tensor(rng, sc.dtype, sc.tokens * row);
  const auto qkv_device = to_device(context, qkv.data(), qkv.bytes());
  std::vector<int32_t> slots(static_cast<std::size_t>(sc.cache.slots()));
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), rng);
  ASSERT_GE(static_cast<int64_t>(slots.size()), sc.tokens);
  std::vector<int32_t> mapping(slots.begin(), slots.begin() + sc.tokens);
  for (int64_t t = 0; t < sc.tokens; t += 5) mapping[t] = -1;
  if (sc.bad_token >= 0) mapping[sc.bad_token] = sc.bad_slot;
  const auto mapping_device = to_device(context, mapping.data(), mapping.size() * sizeof(int32_t));

  WriteKvArguments args;
  args.dtype = sc.dtype;
  args.tokens = sc.tokens;
  args.kv_heads = sc.kv_heads;
  args.head_dim = sc.head_dim;
  const int64_t elements = fill_cache_strides(sc.cache, sc.kv_heads, sc.head_dim, &args.kv);
  args.sequences = sc.cache.sequences;
  GuardedOutput k(context, sc.dtype, elements), v(context, sc.dtype, elements);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  for (int64_t i = 0; i < elements; ++i) {
    k.set_initial(i, uniform(rng));
    v.set_initial(i, uniform(rng));
  }
  k.upload();
  v.upload();
  std::vector<int32_t> table(1, 0);  // paged() needs a table; write_kv never reads it
  const auto table_device = to_device(context, table.data(), sizeof(int32_t));
  if (sc.cache.paged) args.kv.block_table = static_cast<const int32_t*>(table_device->get());
  args.kv.k = k.data();
  args.kv.v = v.data();
  const auto* base = static_cast<const char*>(qkv_device->get());
  const std::size_t es = dtype_size(sc.dtype);
  args.k_new = base + sc.q_heads * d * es;
  args.v_new = base + (sc.q_heads + sc.kv_heads) * d * es;
  args.k_new_token_stride = args.v_new_token_stride = row;
  args.k_new_head_stride = args.v_new_head_stride = d;
  args.slot_mapping = static_cast<const int32_t*>(mapping_device->get());
  const Status status = write_kv(context, args);
  k.download();
  v.download();

  const bool bad = sc.bad_token >= 0;
  if (bad && context.backend() == Backend::cpu) {
    std::ostringstream value;
    value << "slot_mapping[" << sc.bad_token << "] = " << sc.bad_slot;
    EXPECT_TRUE(has_error(status, StatusCode::invalid_argument, {"write_kv: ", value.str(), "-1 (skip)"}));
    EXPECT_TRUE(k.unchanged()) << "K written on error";
    EXPECT_TRUE(v.unchanged()) << "V written on error";
    return;
  }
  ASSERT_TRUE(status.ok()) << status.message();  // CUDA: a bad slot is skipped
  std::vector<int64_t> written;
  std::vector<double> expected_k, expected_v;
  for (int64_t t = 0; t < sc.tokens; ++t) {
    if (mapping[t] < 0 || mapping[t] >= sc.cache.slots()) continue;
    for (int64_t g = 0; g < sc.kv_heads; ++g) {
      for (int64_t x = 0; x < d; ++x) {
        written.push_back(cache_offset(sc.cache, args.kv, mapping[t], g) + x);
        expected_k.push_back(qkv.get(t * row + (sc.q_heads + g) * d + x));
        expected_v.push_back(qkv.get(t * row + (sc.q_heads + sc.kv_heads + g) * d + x));
      }
    }
  }
  EXPECT_TRUE(close_abs(k.gather(written), expected_k, 0.0, flat_index_name())) << "K rows (copies: exact)";
  EXPECT_TRUE(close_abs(v.gather(written), expected_v, 0.0, flat_index_name())) << "V rows (copies: exact)";
  EXPECT_TRUE(k.untouched_except(written)) << "K outside the written slots";
  EXPECT_TRUE(v.untouched_except(written)) << "V outside the written slots";
}

using WriteKvTest = BackendTest;

TEST_P(WriteKvTest, ContiguousCaches) {
  for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    ScatterCase sc;
    sc.dtype = dtype;
    sc.head_dim = dtype == DType::f32 ? 40 : 128;
    check_scatter(context(), rng(), sc);
    sc.cache.sequences = 1;  // one sequence: the slot is the row
    sc.cache.capacity = 31;
    sc.cache.gap = 3;
    check_scatter(context(), rng(), sc);
  }
}

TEST_P(WriteKvTest, PagedLayouts) {
  int sample = 0;
  for (bool head_major : {false, true}) {
    for (int64_t gap : {0, 5}) {
      ScatterCase sc;
      sc.cache.paged = true;
      sc.cache.head_major = head_major;
      sc.cache.gap = gap;
      sc.cache.page_size = sample % 2 ? 16 : 1;
      sc.cache.num_pages = sample % 2 ? 3 : 40;
      sc.kv_heads = 1 + sample % 3;
      sc.head_dim = sample == 3 ? 7 : 64;  // 7: element-wise copies on CUDA
      sc.dtype = sample % 2 ? DType::f16 : DType::f32;
      check_scatter(context(), rng(), sc);
      ++sample;
    }
  }
}

// CPU: an error naming the token and slot, nothing written. CUDA: the token is skipped.
TEST_P(WriteKvTest, OutOfRangeSlots) {
  for (bool paged : {false, true}) {
    ScatterCase sc;
    sc.cache.paged = paged;
    sc.bad_token = 7;
    sc.bad_slot = static_cast<int32_t>(sc.cache.slots());
    check_scatter(context(), rng(), sc);
    sc.bad_token = 3;
    sc.bad_slot = -2;
    check_scatter(context(), rng(), sc);
  }
}

TEST_P(WriteKvTest, BadArgumentsNameThemselves) {
  WriteKvArguments a;
  a.tokens = 1;
  a.kv_heads = 0;
  a.head_dim = 8;
  a.kv.capacity = 4;
  EXPECT_TRUE(has_error(write_kv(context(), a), StatusCode::invalid_argument, {"write_kv: kv_heads = 0"}));
  a.kv_heads = 1;
  EXPECT_TRUE(has_error(write_kv(context(), a), StatusCode::invalid_argument, {"write_kv: k_new = null"}));
  a.kv.capacity = 0;
  EXPECT_TRUE(has_error(write_kv(context(), a), StatusCode::invalid_argument, {"write_kv: kv.capacity = 0"}));
  int32_t table = 0;
  a.kv.block_table = &table;
  a.kv.page_size = 12;
  a.kv.num_pages = 2;
  EXPECT_TRUE(has_error(write_kv(context(), a), StatusCode::invalid_argument,
                        {"write_kv: kv.page_size = 12", "power of two"}));
}

// K and V of the new tokens written into the cache, then attention over it: the result must be
// the oracle's on the full cache (the new rows start as NaN, so a missing write shows).
TEST_P(WriteKvTest, WriteThenAttend) {
  for (bool paged : {false, true}) {
    for (DType dtype : {DType::f32, DType::bf16}) {
      SCOPED_TRACE(std::string(paged ? "paged" : "contiguous") + ", " + to_string(dtype));
      std::mt19937_64& r = rng();
      const int32_t batch = 2, q_heads = 4, kv_heads = 2, head_dim = 64, page_size = 16, capacity = 48;
      const std::vector<int32_t> query_offsets = {0, 5, 6}, kv_lengths = {37, 20};
      const int64_t tokens = query_offsets[batch], d = head_dim;
      const int64_t qkv_row = int64_t{q_heads + 2 * kv_heads} * d;

      // The truth: a dense cache [batch, capacity, kv_heads, head_dim] and the step's Q K V.
      AttentionProblem truth;
      truth.batch = batch;
      truth.q_heads = q_heads;
      truth.kv_heads = kv_heads;
      truth.head_dim = head_dim;
      truth.dtype = dtype;
      truth.query_offsets = query_offsets.data();
      truth.kv_lengths = kv_lengths.data();
      truth.kv.capacity = capacity;
      set_dense_strides(truth);
      const int64_t cache_elements = int64_t{batch} * capacity * kv_heads * d;
      HostTensor k_true = random_tensor(r, dtype, cache_elements), v_true = random_tensor(r, dtype, cache_elements);
      HostTensor qkv = random_tensor(r, dtype, tokens * qkv_row);
      std::vector<int32_t> token_row(static_cast<std::size_t>(tokens)), token_seq(token_row.size());
      for (int32_t b = 0; b < batch; ++b) {
        const int64_t prefix = kv_lengths[b] - (query_offsets[b + 1] - query_offsets[b]);
        for (int64_t t = query_offsets[b]; t < query_offsets[b + 1]; ++t) {
          token_seq[t] = b;
          token_row[t] = static_cast<int32_t>(prefix + t - query_offsets[b]);
          for (int64_t g = 0; g < kv_heads; ++g) {
            for (int64_t x = 0; x < d; ++x) {
              const int64_t at = b * truth.kv.k_sequence_stride + token_row[t] * truth.kv.k_token_stride +
                                 g * truth.kv.k_head_stride + x;
              qkv.set(t * qkv_row + (q_heads + g) * d + x, k_true.get(at));
              qkv.set(t * qkv_row + (q_heads + kv_heads + g) * d + x, v_true.get(at));
            }
          }
        }
      }
      HostTensor q(dtype, tokens * q_heads * d);
      for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t i = 0; i < q_heads * d; ++i) q.set(t * q_heads * d + i, qkv.get(t * qkv_row + i));
      }
      truth.q = q.data();
      truth.kv.k = k_true.data();
      truth.kv.v = v_true.data();
      std::vector<double> expected_out, expected_lse;
      reference::attention(truth, &expected_out, &expected_lse);

      // The cache under test: prefix rows only, NaN everywhere else; paged in shuffled pages.
      AttentionProblem p = truth;
      const int32_t max_pages = capacity / page_size;
      const int64_t num_pages = int64_t{batch} * max_pages + 2;
      std::vector<int32_t> pages(static_cast<std::size_t>(num_pages));
      std::iota(pages.begin(), pages.end(), 0);
      std::shuffle(pages.begin(), pages.end(), r);
      std::vector<int32_t> block_table(pages.begin(), pages.begin() + batch * max_pages);
      const auto table_device = to_device(context(), block_table.data(), block_table.size() * sizeof(int32_t));
      if (paged) {
        set_paged_kv(p, nullptr, nullptr, num_pages, page_size,
                     static_cast<const int32_t*>(table_device->get()), max_pages);
      }
      const int64_t pool_elements = paged ? num_pages * page_size * kv_heads * d : cache_elements;
      HostTensor k_cache(dtype, pool_elements), v_cache(dtype, pool_elements);
      for (int64_t i = 0; i < pool_elements; ++i) {
        k_cache.set(i, kNan);
        v_cache.set(i, kNan);
      }
      const int64_t outer_stride = paged ? p.kv.k_page_stride : p.kv.k_sequence_stride;
      // The slot of (sequence b, row i): page * page_size + offset, or b * capacity + i.
      const auto slot_of = [&](int32_t b, int64_t i) -> int64_t {
        return paged ? int64_t{block_table[b * max_pages + i / page_size]} * page_size + i % page_size
                     : b * capacity + i;
      };
      const auto cell = [&](int64_t slot, int64_t g) {
        const int64_t rows = paged ? page_size : capacity;
        return slot / rows * outer_stride + slot % rows * p.kv.k_token_stride + g * p.kv.k_head_stride;
      };
      for (int32_t b = 0; b < batch; ++b) {
        const int64_t prefix = kv_lengths[b] - (query_offsets[b + 1] - query_offsets[b]);
        for (int64_t i = 0; i < prefix; ++i) {
          for (int64_t g = 0; g < kv_heads; ++g) {
            for (int64_t x = 0; x < d; ++x) {
              const int64_t at = b * truth.kv.k_sequence_stride + i * truth.kv.k_token_stride +
                                 g * truth.kv.k_head_stride + x;
              k_cache.set(cell(slot_of(b, i), g) + x, k_true.get(at));
              v_cache.set(cell(slot_of(b, i), g) + x, v_true.get(at));
            }
          }
        }
      }
      const auto k_device = to_device(context(), k_cache.data(), k_cache.bytes());
      const auto v_device = to_device(context(), v_cache.data(), v_cache.bytes());
      const auto qkv_device = to_device(context(), qkv.data(), qkv.bytes());
      p.kv.k = k_device->get();
      p.kv.v = v_device->get();
      std::vector<int32_t> mapping(static_cast<std::size_t>(tokens));
      for (int64_t t = 0; t < tokens; ++t) mapping[t] = static_cast<int32_t>(slot_of(token_seq[t], token_row[t]));
      const auto mapping_device = to_device(context(), mapping.data(), mapping.size() * sizeof(int32_t));

      const std::size_t es = dtype_size(dtype);
      const auto* base = static_cast<const char*>(qkv_device->get());
      WriteKvArguments w;
      w.dtype = dtype;
      w.tokens = tokens;
      w.kv_heads = kv_heads;
      w.head_dim = head_dim;
      w.k_new = base + q_heads * d * es;
      w.v_new = base + (q_heads + kv_heads) * d * es;
      w.k_new_token_stride = w.v_new_token_stride = qkv_row;
      w.k_new_head_stride = w.v_new_head_stride = d;
      w.slot_mapping = static_cast<const int32_t*>(mapping_device->get());
      w.kv = p.kv;
      w.sequences = batch;
      WA_ASSERT_OK(write_kv(context(), w));

      p.q = base;  // the Q slice of the same fused tensor
      p.q_token_stride = qkv_row;
      DeviceMemory out(context(), static_cast<std::size_t>(tokens * q_heads * d) * es);
      DeviceMemory lse(context(), static_cast<std::size_t>(tokens * q_heads) * sizeof(float));
      p.out = out.get();
      p.lse = static_cast<float*>(lse.get());
      WA_ASSERT_OK(attention(context(), p));
      HostTensor out_host(dtype, tokens * q_heads * d);
      WA_ASSERT_OK(context().copy(out_host.data(), out.get(), out_host.bytes(), CopyKind::device_to_host));
      std::vector<double> actual(static_cast<std::size_t>(out_host.size()));
      for (int64_t i = 0; i < out_host.size(); ++i) actual[i] = out_host.get(i);
      EXPECT_TRUE(close_rel_l2(actual, expected_out, relative_tolerance(dtype),
                               shape_index_name({"token", "head", "dim"}, {tokens, q_heads, d})));
    }
  }
}

WA_INSTANTIATE_BACKENDS(WriteKvTest);

}  // namespace
}  // namespace wideattn::test
