// Context-parallel prefill (include/wideattn/context_parallel.h, context_parallel_prefill): one
// sequence zig-zag sharded over the ranks of a group, which run in one process here: each packs
// its K and V rows, the packed rows are copied into every rank's gathered area (what the NCCL
// all-gather does), then each attends its two query chunks. Every rank's rows must equal the
// f64 oracle's over the whole sequence. A one-rank group runs through the public call.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/context_parallel.h"
#include "core/error.h"
#include "reference/reference.h"
#include "test_support.h"
#include "wideattn/attention.h"
#include "wideattn/context_parallel.h"

namespace wideattn::test {
namespace {

using ContextParallelPrefillTest = BackendTest;

struct PrefillCase {
  int32_t world = 2, chunk = 40;
  int32_t q_heads = 8, kv_heads = 2, head_dim = 128;
  DType dtype = DType::bf16;
  bool causal = true, sinks = false, lse = true;
  int32_t window = 0;
  float softcap = 0.0f;
};

// The whole sequence on the host (for the oracle) and each rank's zig-zag part on the device.
class PrefillRun {
 public:
  PrefillRun(Context& context, std::mt19937_64& rng, const PrefillCase& c) : context_(context), c_(c) {
    tokens_ = 2 * c.world * c.chunk;
    q_ = random_tensor(rng, c.dtype, int64_t{tokens_} * c.q_heads * c.head_dim);
    k_ = random_tensor(rng, c.dtype, int64_t{tokens_} * c.kv_heads * c.head_dim);
    v_ = random_tensor(rng, c.dtype, int64_t{tokens_} * c.kv_heads * c.head_dim);
    sinks_.assign(static_cast<std::size_t>(c.q_heads), 0.0f);
    for (int32_t h = 0; h < c.q_heads; ++h) sinks_[static_cast<std::size_t>(h)] = 0.5f * float(h % 5) - 1.0f;
    offsets_ = {0, tokens_};
    length_ = tokens_;
    whole_.batch = 1;
    whole_.q_heads = c.q_heads;
    whole_.kv_heads = c.kv_heads;
    whole_.head_dim = c.head_dim;
    whole_.dtype = c.dtype;
    whole_.kv.capacity = tokens_;
    set_dense_strides(whole_);
    whole_.query_offsets = offsets_.data();
    whole_.kv_lengths = &length_;
    whole_.q = q_.data();
    whole_.kv.k = k_.data();
    whole_.kv.v = v_.data();
    whole_.mask.causal = c.causal;
    whole_.mask.window = c.window;
    whole_.softcap = c.softcap;
    whole_.sinks = c.sinks ? sinks_.data() : nullptr;
    sinks_device_ = to_device(context, sinks_.data(), sinks_.size() * sizeof(float));
  }

  void oracle(std::vector<double>* out, std::vector<double>* lse) const { reference::attention(whole_, out, lse); }

  // Rank r's arguments: its chunks' rows of q, k and v (in zigzag_chunks order), its own out,
  // lse and scratch.
  struct Rank {
    std::unique_ptr<DeviceMemory> q, k, v, lse, scratch;
    std::unique_ptr<GuardedOutput> out;
    std::vector<int32_t> offsets, length;
    ContextParallelPrefillArguments args;
  };
  Rank rank(int32_t r) const {
    Rank rank;
    int32_t chunks[2];
    zigzag_chunks(r, c_.world, chunks);
    auto part = [&](const HostTensor& whole, int32_t heads) {
      const std::size_t row = static_cast<std::size_t>(heads) * c_.head_dim * dtype_size(c_.dtype);
      const std::size_t chunk_bytes = row * static_cast<std::size_t>(c_.chunk);
      std::vector<unsigned char> bytes(2 * chunk_bytes);
      for (int slot = 0; slot < 2; ++slot) {
        std::copy_n(static_cast<const unsigned char*>(whole.data()) + chunks[slot] * chunk_bytes, chunk_bytes,
                    bytes.begin() + static_cast<std::ptrdiff_t>(slot * chunk_bytes));
      }
      return to_device(context_, bytes.data(), bytes.size());
    };
    rank.q = part(q_, c_.q_heads);
    rank.k = part(k_, c_.kv_heads);
    rank.v = part(v_, c_.kv_heads);
    const int64_t rows = 2 * int64_t{c_.chunk};
    rank.out = std::make_unique<GuardedOutput>(context_, c_.dtype, rows * c_.q_heads * c_.head_dim);
    rank.out->upload();
    rank.lse = std::make_unique<DeviceMemory>(context_, static_cast<std::size_t>(rows * c_.q_heads) * 4);
    rank.offsets = {0, static_cast<int32_t>(rows)};
    rank.length = {static_cast<int32_t>(rows)};
    AttentionProblem p = whole_;
    p.query_offsets = rank.offsets.data();
    p.kv_lengths = rank.length.data();
    p.kv.capacity = rows;
    set_dense_strides(p);
    p.q = rank.q->get();
    p.kv.k = rank.k->get();
    p.kv.v = rank.v->get();
    p.sinks = c_.sinks ? static_cast<const float*>(sinks_device_->get()) : nullptr;
    p.out = rank.out->data();
    p.lse = c_.lse ? static_cast<float*>(rank.lse->get()) : nullptr;
    rank.args.problem = p;
    const std::size_t bytes = context_parallel_prefill_scratch_bytes(p, c_.world);
    rank.scratch = std::make_unique<DeviceMemory>(context_, bytes);
    rank.args.scratch = rank.scratch->get();
    rank.args.scratch_bytes = bytes;
    return rank;
  }

 private:
  Context& context_;
  PrefillCase c_;
  int32_t tokens_ = 0, length_ = 0;
  std::vector<int32_t> offsets_;
  HostTensor q_, k_, v_;
  std::vector<float> sinks_;
  AttentionProblem whole_;
  std::unique_ptr<DeviceMemory> sinks_device_;
};

// Every rank's out (and lse) rows against the oracle's rows at its chunks' positions.
void check_ranks(Context& context, const PrefillRun& run, const PrefillCase& c, std::vector<PrefillRun::Rank>& ranks) {
  std::vector<double> want, want_lse;
  run.oracle(&want, &want_lse);
  const int64_t row = int64_t{c.q_heads} * c.head_dim, cells = int64_t{c.chunk} * row;
  for (int32_t r = 0; r < c.world; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r) + " of " + std::to_string(c.world));
    int32_t chunks[2];
    zigzag_chunks(r, c.world, chunks);
    ranks[r].out->download();
    double error = 0.0, norm = 0.0;
    for (int slot = 0; slot < 2; ++slot) {
      for (int64_t i = 0; i < cells; ++i) {
        const double got = ranks[r].out->value(slot * cells + i);
        const double expected = want[static_cast<std::size_t>(chunks[slot] * cells + i)];
        ASSERT_TRUE(std::isfinite(got)) << "slot " << slot << " element " << i;
        error += (got - expected) * (got - expected);
        norm += expected * expected;
      }
    }
    EXPECT_LE(std::sqrt(error / norm), relative_tolerance(c.dtype));
    std::vector<int64_t> every(static_cast<std::size_t>(2 * cells));
    for (std::size_t i = 0; i < every.size(); ++i) every[i] = static_cast<int64_t>(i);
    EXPECT_TRUE(ranks[r].out->untouched_except(every)) << "the guards around out";
    if (c.lse) {
      const int64_t lse_cells = int64_t{c.chunk} * c.q_heads;
      std::vector<float> lse(static_cast<std::size_t>(2 * lse_cells));
      WA_ASSERT_OK(context.copy(lse.data(), ranks[r].args.problem.lse, lse.size() * 4, CopyKind::device_to_host));
      for (int slot = 0; slot < 2; ++slot) {
        for (int64_t i = 0; i < lse_cells; ++i) {
          EXPECT_NEAR(lse[static_cast<std::size_t>(slot * lse_cells + i)],
                      want_lse[static_cast<std::size_t>(chunks[slot] * lse_cells + i)], 2e-3)
              << "slot " << slot << " lse " << i;
        }
      }
    }
  }
}

// Runs the ranks of `c` in this process, the all-gather replaced by copies.
void check_group(Context& context, std::mt19937_64& rng, const PrefillCase& c) {
  PrefillRun run(context, rng, c);
  std::vector<PrefillRun::Rank> ranks;
  for (int32_t r = 0; r < c.world; ++r) ranks.push_back(run.rank(r));
  auto group = [&](int32_t r) { return ContextParallelGroup{reinterpret_cast<void*>(0x1), r, c.world}; };
  for (int32_t r = 0; r < c.world; ++r) {
    WA_ASSERT_OK(detail::guarded([&] { detail::context_parallel_prefill_pack(context, group(r), ranks[r].args); }));
  }
  const detail::ContextParallelPrefillScratch s = detail::context_parallel_prefill_scratch(ranks[0].args.problem, c.world);
  for (int32_t r = 0; r < c.world; ++r) {
    for (int32_t from = 0; from < c.world; ++from) {
      WA_ASSERT_OK(context.copy(static_cast<char*>(ranks[r].args.scratch) + s.gathered + from * s.mine_bytes,
                                ranks[from].args.scratch, s.mine_bytes, CopyKind::device_to_device));
    }
  }
  for (int32_t r = 0; r < c.world; ++r) {
    WA_ASSERT_OK(detail::guarded([&] { detail::context_parallel_prefill_attend(context, group(r), ranks[r].args); }));
  }
  WA_ASSERT_OK(context.synchronize());
  check_ranks(context, run, c, ranks);
}

// Causal over two and three ranks: sinks and soft-cap, a sliding window that reaches back
// across chunks, and f32.
TEST_P(ContextParallelPrefillTest, CausalMatchesTheOracle) {
  PrefillCase c;
  c.sinks = true;
  c.softcap = 30.0f;
  check_group(context(), rng(), c);
  c.world = 3;
  c.chunk = 33;
  c.sinks = false;
  c.softcap = 0.0f;
  c.window = 50;
  check_group(context(), rng(), c);
  c.dtype = DType::f32;
  c.window = 0;
  c.lse = false;
  check_group(context(), rng(), c);
}

// Bidirectional: every chunk sees the whole sequence.
TEST_P(ContextParallelPrefillTest, BidirectionalMatchesTheOracle) {
  PrefillCase c;
  c.causal = false;
  c.world = 3;
  c.chunk = 17;
  c.sinks = true;
  check_group(context(), rng(), c);
}

// A one-rank group through the public call (no NCCL: the gather is a copy).
TEST_P(ContextParallelPrefillTest, OneRankThroughThePublicCall) {
  PrefillCase c;
  c.world = 1;
  c.chunk = 64;
  c.sinks = true;
  PrefillRun run(context(), rng(), c);
  std::vector<PrefillRun::Rank> ranks;
  ranks.push_back(run.rank(0));
  WA_ASSERT_OK(context_parallel_prefill(context(), ContextParallelGroup{}, ranks[0].args));
  WA_ASSERT_OK(context().synchronize());
  check_ranks(context(), run, c, ranks);
}

// Bad groups, parts, caches and masks: a status naming the argument, nothing written.
TEST_P(ContextParallelPrefillTest, RefusesWhatItCannotServe) {
  PrefillCase c;
  PrefillRun run(context(), rng(), c);
  PrefillRun::Rank rank = run.rank(0);
  auto expect = [&](ContextParallelGroup group, const ContextParallelPrefillArguments& args, StatusCode code,
                    std::initializer_list<std::string> words) {
    EXPECT_TRUE(has_error(context_parallel_prefill(context(), group, args), code, words));
    WA_ASSERT_OK(context().synchronize());
    rank.out->download();
    EXPECT_TRUE(rank.out->unchanged());
  };
  void* comm = reinterpret_cast<void*>(0x1);
  expect({comm, 0, 0}, rank.args, StatusCode::invalid_argument, {"group.world_size", "0"});
  expect({nullptr, 0, 2}, rank.args, StatusCode::invalid_argument, {"group.nccl_comm"});
  ContextParallelPrefillArguments small = rank.args;
  small.scratch_bytes -= 1;
  expect({comm, 0, 2}, small, StatusCode::invalid_argument, {"scratch_bytes"});
  const int32_t odd[2] = {0, 79}, odd_length[1] = {79};
  ContextParallelPrefillArguments uneven = rank.args;
  uneven.problem.query_offsets = odd;
  uneven.problem.kv_lengths = odd_length;
  expect({comm, 0, 2}, uneven, StatusCode::invalid_argument, {"problem.query_offsets", "{0, 79}"});
  ContextParallelPrefillArguments strided = rank.args;
  strided.problem.kv.k_token_stride *= 2;
  expect({comm, 0, 2}, strided, StatusCode::invalid_argument, {"problem.kv token/head strides"});
  ContextParallelPrefillArguments window = rank.args;
  window.problem.mask.causal = false;
  window.problem.mask.window = 16;
  expect({comm, 0, 2}, window, StatusCode::unsupported, {"problem.mask.window", "causal = false"});
  ContextParallelPrefillArguments ring = rank.args;
  ring.problem.mask.ring_length = 10;
  expect({comm, 0, 2}, ring, StatusCode::unsupported, {"problem.mask.ring_length"});
  ContextParallelPrefillArguments two = rank.args;
  const int32_t offsets[3] = {0, 40, 80}, lengths[2] = {40, 40};
  two.problem.batch = 2;
  two.problem.query_offsets = offsets;
  two.problem.kv_lengths = lengths;
  expect({comm, 0, 2}, two, StatusCode::invalid_argument, {"problem.batch", "2"});
  ContextParallelPrefillArguments no_out = rank.args;
  no_out.problem.out = nullptr;
  expect({comm, 0, 2}, no_out, StatusCode::invalid_argument, {"out"});
  if (backend() == Backend::cpu) {  // two ranks on the CPU backend: no NCCL there
    EXPECT_TRUE(has_error(context_parallel_prefill(context(), {comm, 0, 2}, rank.args), StatusCode::unsupported,
                          {"world_size > 1", "CUDA backend"}));
  }
}

WA_INSTANTIATE_BACKENDS(ContextParallelPrefillTest);

}  // namespace
}  // namespace wideattn::test
