// Context parallelism (include/wideattn/context_parallel.h): the ranks of a group run in one
// process here, each attending its shard into its partial state, the states copied into every
// rank's gathered area (what the NCCL all-gather does), then each rank merging them. Every
// rank's result must equal the f64 oracle over the whole cache. The NCCL path itself needs
// several GPUs (docs/design.md, issue 14); a one-rank group runs through the public call.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/context_parallel.h"
#include "core/backend.h"
#include "core/error.h"
#include "reference/reference.h"
#include "test_support.h"
#include "wideattn/attention.h"
#include "wideattn/context_parallel.h"

namespace wideattn::test {
namespace {

using ContextParallelTest = BackendTest;

struct Sharding {
  std::vector<std::vector<int32_t>> starts, lengths;  // [rank][sequence]
};

struct CpCase {
  int32_t q_heads = 8, kv_heads = 2, head_dim = 128;
  DType dtype = DType::bf16;
  std::vector<int32_t> suffix, length;  // per sequence
  Sharding shards;
  bool causal = true, sinks = false, lse = true;
  float softcap = 0.0f;
};

// The whole problem on the host (for the oracle) and each rank's shard cache on the device.
class CpRun {
 public:
  CpRun(Context& context, std::mt19937_64& rng, const CpCase& c) : context_(context), c_(c) {
    const int32_t batch = static_cast<int32_t>(c.suffix.size());
    offsets_.assign(1, 0);
    for (int32_t s : c.suffix) offsets_.push_back(offsets_.back() + s);
    capacity_ = 1;
    for (int32_t n : c.length) capacity_ = std::max(capacity_, n);
    const int64_t row = int64_t{c.kv_heads} * c.head_dim, tokens = offsets_.back();
    q_ = random_tensor(rng, c.dtype, tokens * c.q_heads * c.head_dim);
    k_ = random_tensor(rng, c.dtype, batch * capacity_ * row);
    v_ = random_tensor(rng, c.dtype, batch * capacity_ * row);
    sinks_ = {0.5f, -1.0f, 2.0f, 0.0f, 1.5f, -0.5f, 0.25f, 3.0f};
    sinks_.resize(static_cast<std::size_t>(c.q_heads), 0.75f);
    whole_.batch = batch;
    whole_.q_heads = c.q_heads;
    whole_.kv_heads = c.kv_heads;
    whole_.head_dim = c.head_dim;
    whole_.dtype = c.dtype;
    whole_.kv.capacity = capacity_;
    set_dense_strides(whole_);
    whole_.query_offsets = offsets_.data();
    whole_.kv_lengths = c.length.data();
    whole_.q = q_.data();
    whole_.kv.k = k_.data();
    whole_.kv.v = v_.data();
    whole_.mask.causal = c.causal;
    whole_.softcap = c.softcap;
    whole_.sinks = c.sinks ? sinks_.data() : nullptr;
    q_device_ = to_device(context, q_.data(), q_.bytes());
    sinks_device_ = to_device(context, sinks_.data(), sinks_.size() * sizeof(float));
  }

  // The oracle over the whole cache.
  void oracle(std::vector<double>* out, std::vector<double>* lse) const { reference::attention(whole_, out, lse); }

  // Rank r's arguments: its shard copied out of the whole cache (rows 0 .. length - 1 hold
  // positions start ..), outputs into `out`/`lse`, scratch of its own.
  struct Rank {
    std::unique_ptr<DeviceMemory> k, v, scratch, lse;
    std::unique_ptr<GuardedOutput> out;
    ContextParallelArguments args;
  };
  Rank rank(int32_t r, int32_t world) const {
    Rank rank;
    const int32_t batch = whole_.batch;
    const int64_t row = int64_t{c_.kv_heads} * c_.head_dim, bytes = dtype_size(c_.dtype);
    std::vector<unsigned char> k(static_cast<std::size_t>(batch * capacity_ * row * bytes)), v(k.size());
    for (int32_t b = 0; b < batch; ++b) {
      const int64_t start = c_.shards.starts[r][b], n = c_.shards.lengths[r][b];
      const int64_t from = (b * capacity_ + start) * row * bytes, to = b * capacity_ * row * bytes;
      std::copy_n(static_cast<const unsigned char*>(k_.data()) + from, n * row * bytes, k.begin() + to);
      std::copy_n(static_cast<const unsigned char*>(v_.data()) + from, n * row * bytes, v.begin() + to);
    }
    rank.k = to_device(context_, k.data(), k.size());
    rank.v = to_device(context_, v.data(), v.size());
    rank.out = std::make_unique<GuardedOutput>(context_, c_.dtype, q_.size());
    rank.out->upload();
    const int64_t cells = int64_t{offsets_.back()} * c_.q_heads;
    rank.lse = std::make_unique<DeviceMemory>(context_, static_cast<std::size_t>(std::max<int64_t>(cells, 1)) * 4);
    AttentionProblem p = whole_;
    p.q = q_device_->get();
    p.kv.k = rank.k->get();
    p.kv.v = rank.v->get();
    p.sinks = c_.sinks ? static_cast<const float*>(sinks_device_->get()) : nullptr;
    p.out = rank.out->data();
    p.lse = c_.lse ? static_cast<float*>(rank.lse->get()) : nullptr;
    rank.args.problem = p;
    rank.args.shard_starts = c_.shards.starts[r].data();
    rank.args.shard_kv_lengths = c_.shards.lengths[r].data();
    const std::size_t bytes_needed = context_parallel_scratch_bytes(p, world);
    rank.scratch = std::make_unique<DeviceMemory>(context_, bytes_needed);
    rank.args.scratch = rank.scratch->get();
    rank.args.scratch_bytes = bytes_needed;
    return rank;
  }

  const AttentionProblem& whole() const { return whole_; }
  int64_t lse_cells() const { return int64_t{offsets_.back()} * c_.q_heads; }

 private:
  Context& context_;
  CpCase c_;
  std::vector<int32_t> offsets_;
  int32_t capacity_ = 1;
  HostTensor q_, k_, v_;
  std::vector<float> sinks_;
  AttentionProblem whole_;
  std::unique_ptr<DeviceMemory> q_device_, sinks_device_;
};

// Runs the ranks of `c` in this process and checks every rank's result against the oracle.
void check_group(Context& context, std::mt19937_64& rng, const CpCase& c) {
  const int32_t world = static_cast<int32_t>(c.shards.starts.size());
  CpRun run(context, rng, c);
  std::vector<CpRun::Rank> ranks;
  for (int32_t r = 0; r < world; ++r) ranks.push_back(run.rank(r, world));
  // A non-null communicator: the all-gather is the copies below.
  auto group = [&](int32_t r) { return ContextParallelGroup{reinterpret_cast<void*>(0x1), r, world}; };
  for (int32_t r = 0; r < world; ++r) {
    WA_ASSERT_OK(detail::guarded([&] { detail::context_parallel_local_state(context, group(r), ranks[r].args); }));
  }
  const detail::ContextParallelScratch s = detail::context_parallel_scratch(run.whole(), world);
  for (int32_t r = 0; r < world; ++r) {
    for (int32_t from = 0; from < world; ++from) {
      WA_ASSERT_OK(context.copy(static_cast<char*>(ranks[r].args.scratch) + s.gathered + from * s.state_bytes,
                                ranks[from].args.scratch, s.state_bytes, CopyKind::device_to_device));
    }
  }
  for (int32_t r = 0; r < world; ++r) {
    WA_ASSERT_OK(detail::guarded([&] { detail::context_parallel_merge(context, group(r), ranks[r].args); }));
  }
  WA_ASSERT_OK(context.synchronize());
  std::vector<double> want, want_lse;
  run.oracle(&want, &want_lse);
  for (int32_t r = 0; r < world; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r) + " of " + std::to_string(world));
    ranks[r].out->download();
    double error = 0.0, norm = 0.0;
    for (std::size_t i = 0; i < want.size(); ++i) {
      const double got = ranks[r].out->value(static_cast<int64_t>(i));
      ASSERT_TRUE(std::isfinite(got)) << "element " << i;
      error += (got - want[i]) * (got - want[i]);
      norm += want[i] * want[i];
    }
    EXPECT_LE(std::sqrt(error / norm), relative_tolerance(c.dtype));
    std::vector<int64_t> every(want.size());
    for (std::size_t i = 0; i < every.size(); ++i) every[i] = static_cast<int64_t>(i);
    EXPECT_TRUE(ranks[r].out->untouched_except(every)) << "the guards around out";
    if (c.lse) {
      std::vector<float> lse(static_cast<std::size_t>(run.lse_cells()));
      WA_ASSERT_OK(context.copy(lse.data(), ranks[r].args.problem.lse, lse.size() * 4, CopyKind::device_to_host));
      for (std::size_t i = 0; i < lse.size(); ++i) EXPECT_NEAR(lse[i], want_lse[i], 2e-3) << "lse " << i;
    }
  }
}

// Decode over three ranks: a sequence on one rank only (the others empty), a long one cut in
// three, sinks and soft-cap; f32 as well.
TEST_P(ContextParallelTest, DecodeMatchesTheOracle) {
  CpCase c;
  c.suffix = {1, 1, 1};
  c.length = {300, 5, 1000};
  c.shards.starts = {{0, 0, 0}, {100, 5, 333}, {200, 5, 700}};
  c.shards.lengths = {{100, 5, 333}, {100, 0, 367}, {100, 0, 300}};
  c.sinks = true;
  c.softcap = 30.0f;
  check_group(context(), rng(), c);
  c.dtype = DType::f32;
  c.sinks = false;
  check_group(context(), rng(), c);
}

// Speculative steps over two ranks: the rank that ends at the sequence's end holds its new
// keys (causal), the other sees all of its shard; and the bidirectional mask.
TEST_P(ContextParallelTest, SpeculativeStepsAndBidirectionalMatchTheOracle) {
  CpCase c;
  c.suffix = {3, 3, 2};
  c.length = {400, 64, 90};
  c.shards.starts = {{0, 0, 0}, {200, 61, 0}};
  c.shards.lengths = {{200, 61, 90}, {200, 3, 0}};
  c.sinks = true;
  check_group(context(), rng(), c);
  c.causal = false;
  c.shards.starts = {{0, 0, 0}, {200, 32, 45}};
  c.shards.lengths = {{200, 32, 45}, {200, 32, 45}};
  check_group(context(), rng(), c);
}

// A one-rank group through the public call (no NCCL): the same bits as attention() itself.
TEST_P(ContextParallelTest, OneRankIsTheWholeCall) {
  CpCase c;
  c.suffix = {1, 4};
  c.length = {500, 77};
  c.shards.starts = {{0, 0}};
  c.shards.lengths = {{500, 77}};
  c.sinks = true;
  CpRun run(context(), rng(), c);
  CpRun::Rank rank = run.rank(0, 1);
  WA_ASSERT_OK(context_parallel_attention(context(), ContextParallelGroup{}, rank.args));
  GuardedOutput direct(context(), c.dtype, rank.out->size());
  direct.upload();
  AttentionProblem p = rank.args.problem;
  p.out = direct.data();
  p.lse = nullptr;
  WA_ASSERT_OK(attention(context(), p));
  WA_ASSERT_OK(context().synchronize());
  rank.out->download();
  direct.download();
  for (int64_t i = 0; i < direct.size(); ++i) {
    ASSERT_EQ(rank.out->value(i), direct.value(i)) << "element " << i;
  }
}

// Bad groups, shardings and masks: a status naming the argument, nothing written.
TEST_P(ContextParallelTest, RefusesWhatItCannotServe) {
  CpCase c;
  c.suffix = {3};
  c.length = {100};
  c.shards.starts = {{0}, {50}};
  c.shards.lengths = {{50}, {50}};
  CpRun run(context(), rng(), c);
  CpRun::Rank rank = run.rank(0, 2);
  auto expect = [&](ContextParallelGroup group, const ContextParallelArguments& args, StatusCode code,
                    std::initializer_list<std::string> words) {
    EXPECT_TRUE(has_error(context_parallel_attention(context(), group, args), code, words));
    WA_ASSERT_OK(context().synchronize());
    rank.out->download();
    EXPECT_TRUE(rank.out->unchanged());
  };
  void* comm = reinterpret_cast<void*>(0x1);
  expect({comm, 0, 0}, rank.args, StatusCode::invalid_argument, {"group.world_size", "0"});
  expect({comm, 2, 2}, rank.args, StatusCode::invalid_argument, {"group.rank", "2"});
  expect({nullptr, 0, 2}, rank.args, StatusCode::invalid_argument, {"group.nccl_comm"});
  ContextParallelArguments small = rank.args;
  small.scratch_bytes -= 1;
  expect({comm, 0, 2}, small, StatusCode::invalid_argument, {"scratch_bytes"});
  ContextParallelArguments window = rank.args;
  window.problem.mask.window = 16;
  expect({comm, 0, 2}, window, StatusCode::unsupported, {"problem.mask.window"});
  // Rank 1 would hold keys 50-99, among them the 3 new tokens' (97-99) only in part if it
  // ended at 98:
  const int32_t starts[1] = {48}, lengths[1] = {50};
  ContextParallelArguments partial = rank.args;
  partial.shard_starts = starts;
  partial.shard_kv_lengths = lengths;
  expect({comm, 1, 2}, partial, StatusCode::unsupported, {"shard_starts[0] = 48", "new tokens"});
  const int32_t past[1] = {60};
  partial.shard_starts = past;
  expect({comm, 1, 2}, partial, StatusCode::invalid_argument, {"shard_starts[0] = 60", "kv_lengths[0] = 100"});
  // Two ranks on the CPU backend: no NCCL there.
  if (backend() == Backend::cpu) {
    EXPECT_TRUE(has_error(context_parallel_attention(context(), {comm, 0, 2}, rank.args), StatusCode::unsupported,
                          {"world_size > 1", "CUDA backend"}));
  }
}

// NCCL through the loader (cuda/launch/nccl.cpp): a one-rank communicator on this GPU and an
// all-gather over it (the copy it reduces to), when the process can load NCCL
// (WIDEATTN_NCCL_LIBRARY or libnccl.so.2); skipped, saying why, when it cannot.
TEST_P(ContextParallelTest, NcclOneRankCommunicatorGathers) {
  NcclUniqueId id;
  const Status made = nccl_unique_id(&id);
  if (backend() == Backend::cpu || made.code() == StatusCode::backend_unavailable) {
    GTEST_SKIP() << (backend() == Backend::cpu ? std::string("NCCL needs the CUDA backend") : made.message());
  }
  WA_ASSERT_OK(made);
  void* comm = nullptr;
  WA_ASSERT_OK(nccl_comm_init(context(), 1, id, 0, &comm));
  std::vector<uint8_t> bytes(1000);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 7 + 3);
  const auto send = to_device(context(), bytes.data(), bytes.size());
  DeviceMemory recv(context(), bytes.size());
  WA_ASSERT_OK(detail::guarded([&] { context().impl().all_gather(comm, send->get(), recv.get(), bytes.size()); }));
  std::vector<uint8_t> back(bytes.size());
  WA_ASSERT_OK(context().copy(back.data(), recv.get(), back.size(), CopyKind::device_to_host));
  EXPECT_EQ(back, bytes);
  WA_EXPECT_OK(nccl_comm_destroy(comm));
  EXPECT_TRUE(has_error(nccl_comm_init(context(), 2, id, 2, &comm), StatusCode::invalid_argument, {"rank", "2"}));
}

WA_INSTANTIATE_BACKENDS(ContextParallelTest);

}  // namespace
}  // namespace wideattn::test
