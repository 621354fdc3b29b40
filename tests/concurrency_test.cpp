// Thread safety (docs/reliability.md, "Threads"): what include/wideattn/context.h promises and
// the code provides.
// - Many host threads, each with its own Context, call attention and the four components at
//   once; every result is checked against the f64 oracle (ThreadSanitizer runs these in
//   scripts/sanitize.sh).
// - Threads with their own Contexts read the same input tensors at once, each writing its own
//   output.
// - plan_attention is pure: threads plan one shared problem at once and agree.
// - One Context may move between threads, used by one thread at a time (here behind a mutex).
// Calls on one Context from two threads at once are not supported and not tested.
// CPU, and CUDA where a GPU is present (skipped otherwise).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "attention_case.h"
#include "reference/components_reference.h"
#include "reference/reference.h"
#include "test_support.h"

namespace wideattn::test {
namespace {

// Threads per test: WIDEATTN_TEST_THREADS, default 8 (several per core on CI's two cores).
int thread_count() {
  if (const char* text = std::getenv("WIDEATTN_TEST_THREADS")) return std::max(1, std::atoi(text));
  return 8;
}

// Starts `threads` threads running body(index) as close to the same moment as possible, and
// joins them. gtest assertions are thread-safe where pthreads exist; each worker adds the run
// seed and its index to its own failure messages.
void run_threads(int threads, const std::function<void(int)>& body) {
  std::mutex mutex;
  std::condition_variable ready;
  int waiting = 0;
  bool go = false;
  const std::string seed = seed_note();
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      {
        std::unique_lock<std::mutex> lock(mutex);
        ++waiting;
        ready.notify_all();
        ready.wait(lock, [&] { return go; });
      }
      SCOPED_TRACE(seed + ", thread " + std::to_string(i));
      body(i);
    });
  }
  {
    std::unique_lock<std::mutex> lock(mutex);
    ready.wait(lock, [&] { return waiting == threads; });
    go = true;
  }
  ready.notify_all();
  for (std::thread& t : pool) t.join();
}

// A generator per thread, from the test's own (so a run reproduces with WIDEATTN_TEST_SEED).
std::vector<std::mt19937_64> thread_rngs(std::mt19937_64& rng, int threads) {
  std::vector<std::mt19937_64> rngs;
  for (int i = 0; i < threads; ++i) rngs.emplace_back(rng());
  return rngs;
}

// Small problems of every kind (each thread runs several, with several kernels).
AttentionCase small_case(std::mt19937_64& rng, int which) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  AttentionCase c;
  c.head_dim = which % 2 ? 64 : 128;
  c.dtype = static_cast<DType>(which % 3);
  c.kv_heads = 1 << pick(0, 1);
  c.q_heads = c.kv_heads << pick(0, 2);
  c.sequences.clear();
  const bool prefill = which % 4 == 3;
  for (int b = 0, n = pick(1, 3); b < n; ++b) {
    const int32_t suffix = prefill ? pick(9, 20) : pick(1, 8);
    c.sequences.push_back({suffix, suffix + pick(0, 90)});
  }
  c.window = which % 5 == 1 ? 24 : 0;
  c.tree = which % 6 == 2;
  c.sinks = which % 2 == 0;
  c.softcap = which % 7 == 3 ? 10.0f : 0.0f;
  c.out_gap = which % 3 == 1 ? 3 : 0;
  return c;
}

constexpr int kRounds = 6;  // calls per thread
constexpr Kernel kKernels[] = {Kernel::automatic, Kernel::single_pass, Kernel::two_pass, Kernel::prefill_unfused};

class ConcurrencyTest : public BackendTest {
 protected:
  // thread_count() threads at once, each with its own Context and generator, each making
  // kRounds calls of round(context, rng, thread, round); every round must complete.
  void rounds_on_own_contexts(
      const std::function<void(Context&, std::mt19937_64&, int thread, int round)>& round) {
    const int threads = thread_count();
    std::vector<std::mt19937_64> rngs = thread_rngs(rng(), threads);
    std::atomic<int> runs{0};
    run_threads(threads, [&](int i) {
      std::unique_ptr<Context> context;
      const Status status = Context::create(backend(), 0, nullptr, &context);
      ASSERT_TRUE(status.ok()) << status.message();
      for (int r = 0; r < kRounds; ++r) {
        round(*context, rngs[i], i, r);
        runs.fetch_add(1);
      }
    });
    EXPECT_EQ(runs.load(), kRounds * threads);
  }
};

TEST_P(ConcurrencyTest, ThreadsWithOwnContextsRunAttention) {
  const int threads = thread_count();
  rounds_on_own_contexts([&](Context& context, std::mt19937_64& rng, int i, int round) {
    const AttentionCase c = small_case(rng, i + round * threads);
    check_attention(context, rng, c, kKernels[(i + round) % 4]);
  });
}

// The serving paths at once: mixed batches (two kernels in one call), plans from bounds run with
// attention_planned (each call plans, checks and runs on its thread), fp8 caches (CPU).
TEST_P(ConcurrencyTest, ThreadsServeMixedPlannedAndFp8Batches) {
  const int threads = thread_count();
  rounds_on_own_contexts([&](Context& context, std::mt19937_64& rng, int i, int round) {
    AttentionCase c = small_case(rng, i + round * threads);
    const int kind = (i + round) % 3;
    if (kind == 0) {
      c.sequences = {{1, 40}, {3, 3}, {12, 50}, {1, 9}};  // decode, prefill, decode
      c.tree = false;
      check_attention(context, rng, c, Kernel::automatic);
    } else if (kind == 1) {
      for (SequenceShape& sequence : c.sequences) sequence.suffix = std::min(sequence.suffix, 8);
      check_attention(context, rng, c, Kernel::automatic, nullptr, run_from_bounds);
    } else if (backend() == Backend::cpu) {
      c.fp8_kv = true;
      c.kv_scales_per_head = round % 2 == 1;
      c.dtype = c.dtype == DType::f16 ? DType::f16 : DType::bf16;
      check_attention(context, rng, c, Kernel::automatic);
    }
  });
}

// ---- components ---------------------------------------------------------------------------------------

// Device copy of a host tensor, and the values back as f64.
std::vector<double> download(Context& context, const void* device, DType dtype, int64_t elements) {
  HostTensor host(dtype, elements);
  EXPECT_TRUE(context.synchronize().ok());
  EXPECT_TRUE(context.copy(host.data(), device, host.bytes(), CopyKind::device_to_host).ok());
  std::vector<double> values(elements);
  for (int64_t i = 0; i < elements; ++i) values[i] = host.get(i);
  return values;
}

// matmul, softmax, scatter_scores and scatter_values on one Context, each against its oracle.
void run_components(Context& context, std::mt19937_64& rng) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const DType dtypes[] = {DType::f32, DType::f16, DType::bf16};
  {  // matmul: a group of query heads against one shared K head (Q K^T of the prefill pipeline)
    MatmulArguments a;
    a.a_dtype = a.b_dtype = dtypes[pick(0, 2)];
    a.d_dtype = DType::f32;
    a.m = pick(1, 24);
    a.n = pick(1, 40);
    a.k = 64;
    a.batch = pick(1, 4);
    a.b_transpose = true;
    a.a_batch_stride = a.m * a.k;
    a.b_batch_stride = 0;
    a.d_batch_stride = a.m * a.n;
    a.ab_scale = 0.125f;
    const HostTensor ha = random_tensor(rng, a.a_dtype, a.batch * a.m * a.k);
    const HostTensor hb = random_tensor(rng, a.b_dtype, a.n * a.k);
    const auto da = to_device(context, ha.data(), ha.bytes());
    const auto db = to_device(context, hb.data(), hb.bytes());
    DeviceMemory dd(context, static_cast<std::size_t>(a.batch * a.m * a.n) * sizeof(float));
    MatmulArguments host = a;
    host.a = ha.data();
    host.b = hb.data();
    a.a = da->get();
    a.b = db->get();
    a.d = dd.get();
    WA_ASSERT_OK(matmul(context, a));
    EXPECT_TRUE(close_rel_l2(download(context, a.d, DType::f32, a.batch * a.m * a.n), reference::matmul(host),
                             relative_tolerance(a.a_dtype), flat_index_name()))
        << "matmul";
  }
  {  // softmax: blocks of rows with sinks and LSE, masked entries, a rounded output
    SoftmaxArguments a;
    const int64_t blocks = pick(1, 4), per_block = pick(1, 6);
    a.rows = blocks * per_block;
    a.cols = pick(1, 50);
    a.rows_per_block = per_block;
    a.input_row_stride = a.output_row_stride = a.cols;
    a.output_dtype = dtypes[pick(0, 2)];
    a.lse_block_stride = per_block;
    a.lse_row_stride = 1;
    HostTensor input = random_tensor(rng, DType::f32, a.rows * a.cols, -8.0, 8.0);
    for (int64_t i = 0; i < input.size(); i += pick(1, 4)) input.set(i, -std::numeric_limits<double>::infinity());
    const HostTensor sinks = random_tensor(rng, DType::f32, blocks, -1.0, 2.0);
    const auto din = to_device(context, input.data(), input.bytes());
    const auto dsinks = to_device(context, sinks.data(), sinks.bytes());
    DeviceMemory dout(context, static_cast<std::size_t>(a.rows * a.cols) * dtype_size(a.output_dtype));
    DeviceMemory dlse(context, static_cast<std::size_t>(a.rows) * sizeof(float));
    SoftmaxArguments host = a;
    host.input = static_cast<const float*>(input.data());
    host.sinks = static_cast<const float*>(sinks.data());
    a.input = static_cast<const float*>(din->get());
    a.sinks = static_cast<const float*>(dsinks->get());
    a.output = dout.get();
    a.lse = static_cast<float*>(dlse.get());
    WA_ASSERT_OK(softmax(context, a));
    const reference::SoftmaxResult want = reference::softmax(host);
    EXPECT_TRUE(close_abs(download(context, a.output, a.output_dtype, a.rows * a.cols), want.output,
                          a.output_dtype == DType::f32 ? 1e-6 : 4e-3, flat_index_name()))
        << "softmax";
    EXPECT_TRUE(close_abs(download(context, a.lse, DType::f32, a.rows), want.lse, 1e-4, flat_index_name())) << "softmax lse";
  }
  {  // scatter_scores: a chunk of a sequence with a window, soft-capped
    ScatterScoresArguments a;
    a.heads = pick(1, 3);
    a.mask.prefix_length = pick(0, 30);
    a.mask.suffix_length = pick(2, 12);
    a.mask.spec.causal = pick(0, 3) != 0;
    a.mask.spec.window = pick(0, 1) ? pick(1, 20) : 0;
    a.first_query = pick(0, static_cast<int>(a.mask.suffix_length) - 1);
    a.rows = pick(1, static_cast<int>(a.mask.suffix_length - a.first_query));
    a.first_key = pick(0, static_cast<int>(std::min<int64_t>(3, a.mask.prefix_length + a.mask.suffix_length - 1)));
    a.cols = a.mask.prefix_length + a.mask.suffix_length - a.first_key;
    a.scores_row_stride = a.dst_row_stride = a.cols + 2;
    a.scores_head_stride = a.dst_head_stride = a.rows * a.scores_row_stride;
    a.softcap = pick(0, 1) ? 15.0f : 0.0f;
    const HostTensor scores = random_tensor(rng, DType::f32, a.heads * a.scores_head_stride, -30.0, 30.0);
    const auto ds = to_device(context, scores.data(), scores.bytes());
    DeviceMemory dd(context, scores.bytes());
    ScatterScoresArguments host = a;
    host.scores = static_cast<const float*>(scores.data());
    a.scores = static_cast<const float*>(ds->get());
    a.dst = static_cast<float*>(dd.get());
    WA_ASSERT_OK(scatter_scores(context, a));
    const std::vector<double> all = download(context, a.dst, DType::f32, a.heads * a.dst_head_stride);
    std::vector<double> got;
    for (int64_t h = 0; h < a.heads; ++h)
      for (int64_t r = 0; r < a.rows; ++r)
        for (int64_t c = 0; c < a.cols; ++c) got.push_back(all[h * a.dst_head_stride + r * a.dst_row_stride + c]);
    EXPECT_TRUE(close_abs(got, reference::scatter_scores(host), 2e-5, flat_index_name())) << "scatter_scores";
  }
  {  // scatter_values: group-major f32 into token-major rows with gaps, rounded to the dtype
    ScatterValuesArguments a;
    a.heads = pick(1, 4);
    a.rows = pick(1, 12);
    a.head_dim = 64;
    a.dtype = dtypes[pick(0, 2)];
    a.src_row_stride = a.head_dim;
    a.src_head_stride = a.rows * a.head_dim;
    a.out_head_stride = a.head_dim + 3;
    a.out_token_stride = a.heads * a.out_head_stride + 1;
    const HostTensor src = random_tensor(rng, DType::f32, a.heads * a.src_head_stride);
    const auto ds = to_device(context, src.data(), src.bytes());
    const int64_t out_elements = a.rows * a.out_token_stride;
    DeviceMemory dout(context, static_cast<std::size_t>(out_elements) * dtype_size(a.dtype));
    ScatterValuesArguments host = a;
    host.src = static_cast<const float*>(src.data());
    a.src = static_cast<const float*>(ds->get());
    a.out = dout.get();
    WA_ASSERT_OK(scatter_values(context, a));
    const std::vector<double> all = download(context, a.out, a.dtype, out_elements);
    std::vector<double> got;
    for (int64_t r = 0; r < a.rows; ++r)
      for (int64_t h = 0; h < a.heads; ++h)
        for (int64_t x = 0; x < a.head_dim; ++x) got.push_back(all[r * a.out_token_stride + h * a.out_head_stride + x]);
    EXPECT_TRUE(close_abs(got, reference::scatter_values(host), a.dtype == DType::f32 ? 0.0 : 4e-3, flat_index_name()))
        << "scatter_values";
  }
}

TEST_P(ConcurrencyTest, ThreadsWithOwnContextsRunComponents) {
  rounds_on_own_contexts([&](Context& context, std::mt19937_64& rng, int i, int round) {
    run_components(context, rng);
    if (round % 2 == 1) {  // and attention in between, on the same Context
      check_attention(context, rng, small_case(rng, i + round), kKernels[(i + round) % 4]);
    }
  });
}

// One problem, built once: every thread reads the same q, k, v (and tree arrays, sinks) with its
// own Context and writes its own out and LSE.
TEST_P(ConcurrencyTest, ThreadsShareInputTensors) {
  AttentionCase c;
  c.head_dim = 128;
  c.dtype = DType::bf16;
  c.q_heads = 8;
  c.kv_heads = 2;
  c.sequences = {{3, 150}, {12, 40}, {1, 300}};
  c.sinks = true;
  c.window = 100;
  std::vector<int32_t> offsets{0}, lengths;
  for (const SequenceShape& s : c.sequences) {
    offsets.push_back(offsets.back() + s.suffix);
    lengths.push_back(s.kv_length);
  }
  AttentionProblem host;
  host.batch = static_cast<int32_t>(c.sequences.size());
  host.q_heads = c.q_heads;
  host.kv_heads = c.kv_heads;
  host.head_dim = c.head_dim;
  host.dtype = c.dtype;
  host.kv.capacity = 300;
  set_dense_strides(host);
  host.query_offsets = offsets.data();
  host.kv_lengths = lengths.data();
  host.mask.window = c.window;
  const int64_t tokens = offsets.back(), rows = tokens * c.q_heads, d = c.head_dim;
  const HostTensor q = random_tensor(rng(), c.dtype, rows * d);
  const HostTensor k = random_tensor(rng(), c.dtype, host.batch * host.kv.capacity * c.kv_heads * d);
  const HostTensor v = random_tensor(rng(), c.dtype, k.size());
  const HostTensor sinks = random_tensor(rng(), DType::f32, c.q_heads, -1.0, 2.0);
  host.q = q.data();
  host.kv.k = k.data();
  host.kv.v = v.data();
  host.sinks = static_cast<const float*>(sinks.data());
  std::vector<double> want_out, want_lse;
  reference::attention(host, &want_out, &want_lse);

  AttentionProblem shared = host;
  const auto dq = to_device(context(), q.data(), q.bytes());
  const auto dk = to_device(context(), k.data(), k.bytes());
  const auto dv = to_device(context(), v.data(), v.bytes());
  const auto ds = to_device(context(), sinks.data(), sinks.bytes());
  ASSERT_TRUE(context().synchronize().ok());
  shared.q = dq->get();
  shared.kv.k = dk->get();
  shared.kv.v = dv->get();
  shared.sinks = static_cast<const float*>(ds->get());

  const int threads = thread_count();
  run_threads(threads, [&](int i) {
    std::unique_ptr<Context> own;
    ASSERT_TRUE(Context::create(backend(), 0, nullptr, &own).ok());
    for (int round = 0; round < kRounds; ++round) {
      const Kernel kernel = kKernels[(i + round) % 4];
      DeviceMemory out(*own, static_cast<std::size_t>(rows * d) * dtype_size(c.dtype));
      DeviceMemory lse(*own, static_cast<std::size_t>(rows) * sizeof(float));
      AttentionProblem p = shared;
      p.out = out.get();
      p.lse = static_cast<float*>(lse.get());
      const Status status = attention(*own, p, kernel);
      ASSERT_TRUE(status.ok()) << status.message();
      EXPECT_TRUE(close_rel_l2(download(*own, p.out, c.dtype, rows * d), want_out, relative_tolerance(c.dtype),
                               flat_index_name()))
          << to_string(kernel);
      EXPECT_TRUE(close_abs(download(*own, p.lse, DType::f32, rows), want_lse, lse_tolerance(c.dtype),
                            flat_index_name()))
          << to_string(kernel);
    }
  });
  // The shared inputs are unchanged.
  for (auto [device, original, name] : {std::make_tuple(shared.q, &q, "q"), std::make_tuple(shared.kv.k, &k, "k"),
                                        std::make_tuple(shared.kv.v, &v, "v")}) {
    HostTensor after(c.dtype, original->size());
    ASSERT_TRUE(context().copy(after.data(), device, after.bytes(), CopyKind::device_to_host).ok());
    EXPECT_EQ(std::memcmp(after.data(), original->data(), after.bytes()), 0) << name << " changed";
  }
}

// plan_attention is pure: threads planning the same problem for the same device agree.
TEST_P(ConcurrencyTest, PlanAttentionIsPureAcrossThreads) {
  std::vector<int32_t> offsets{0, 1, 5, 25}, lengths{4000, 300, 25};
  std::vector<uint16_t> q(25 * 8 * 128), out(q.size()), cache(2 * 3 * 4000 * 2 * 128);
  AttentionProblem p;
  p.batch = 3;
  p.q_heads = 8;
  p.kv_heads = 2;
  p.head_dim = 128;
  p.dtype = DType::bf16;
  p.kv.capacity = 4000;
  set_dense_strides(p);
  p.query_offsets = offsets.data();
  p.kv_lengths = lengths.data();
  p.q = q.data();
  p.kv.k = cache.data();
  p.kv.v = cache.data() + cache.size() / 2;
  p.out = out.data();
  const DeviceInfo device = context().device();
  std::vector<Plan> expected;
  for (Kernel kernel : kKernels) {
    expected.emplace_back();
    ASSERT_TRUE(plan_attention(p, device, kernel, &expected.back()).ok());
  }
  run_threads(thread_count(), [&](int) {
    for (int round = 0; round < 50; ++round) {
      for (std::size_t k = 0; k < std::size(kKernels); ++k) {
        Plan plan;
        ASSERT_TRUE(plan_attention(p, device, kKernels[k], &plan).ok());
        EXPECT_EQ(plan.kernel, expected[k].kernel);
        EXPECT_EQ(plan.num_splits, expected[k].num_splits);
        EXPECT_EQ(plan.query_rows_per_chunk, expected[k].query_rows_per_chunk);
        EXPECT_EQ(plan.workspace_bytes, expected[k].workspace_bytes);
        EXPECT_EQ(plan.reason, expected[k].reason);
      }
    }
  });
}

// A Context may be used from any thread, by one thread at a time: here the threads take turns
// on the test's Context behind a mutex.
TEST_P(ConcurrencyTest, OneContextTakenInTurns) {
  const int threads = thread_count();
  std::vector<std::mt19937_64> rngs = thread_rngs(rng(), threads);
  std::mutex turn;
  run_threads(threads, [&](int i) {
    for (int round = 0; round < kRounds / 2; ++round) {
      const AttentionCase c = small_case(rngs[i], i * 2 + round);
      std::lock_guard<std::mutex> lock(turn);
      check_attention(context(), rngs[i], c, kKernels[(i + round) % 4]);
    }
  });
}

WA_INSTANTIATE_BACKENDS(ConcurrencyTest);

}  // namespace
}  // namespace wideattn::test
