// The NaN/inf policy (docs/reliability.md, "Non-finite values"), on every kernel of both
// backends:
// 1. a NaN (or inf) in one query row stays in that row: every other row matches the oracle;
// 2. inf/NaN in K or V rows that the mask hides from a query never reaches that query's output,
//    whatever hides the row: causality, a sliding window, a ring, a speculative tree, or a
//    cache slot past kv_length;
// 3. rows that see no key give zeros and LSE -inf (or exactly the sink).
// Each test injects the values into otherwise random inputs, runs one kernel and compares the
// rows the policy protects with the f64 oracle of the clean problem. Every kernel gives every
// guarantee (docs/reliability.md, "Non-finite values"). The CUDA cases skip without a GPU,
// prefill_fused without Hopper.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "attention_case.h"
#include "core/debug_options.h"
#include "reference/components_reference.h"
#include "reference/reference.h"
#include "test_support.h"

namespace wideattn::test {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// A dense problem on the host: q [tokens, q_heads, d], K/V [batch, capacity, kv_heads, d].
struct PolicySetup {
  DType dtype = DType::f32;
  int32_t q_heads = 4, kv_heads = 2, head_dim = 64;
  std::vector<SequenceShape> sequences;
  int64_t extra_capacity = 5;
  bool causal = true;
  int32_t window = 0, ring_length = 0, ring_offset = 0;
  bool tree = false;
  bool sinks = true;
};

class HostProblem {
 public:
  HostProblem(const PolicySetup& s, std::mt19937_64& rng) : setup_(s) {
    const int32_t batch = static_cast<int32_t>(s.sequences.size());
    offsets_.push_back(0);
    int64_t longest = 0;
    for (const SequenceShape& seq : s.sequences) {
      offsets_.push_back(offsets_.back() + seq.suffix);
      lengths_.push_back(seq.kv_length);
      longest = std::max<int64_t>(longest, seq.kv_length);
      if (s.tree) append_random_trie(rng, seq.suffix, &tree_start_, &tree_end_, &tree_height_);
    }
    p_.batch = batch;
    p_.q_heads = s.q_heads;
    p_.kv_heads = s.kv_heads;
    p_.head_dim = s.head_dim;
    p_.dtype = s.dtype;
    p_.kv.capacity = longest + s.extra_capacity;
    set_dense_strides(p_);
    p_.mask.causal = s.causal;
    p_.mask.window = s.window;
    p_.mask.ring_length = s.ring_length;
    p_.mask.ring_offset = s.ring_offset;
    q = random_tensor(rng, s.dtype, tokens() * s.q_heads * s.head_dim);
    k = random_tensor(rng, s.dtype, int64_t{batch} * p_.kv.capacity * s.kv_heads * s.head_dim);
    v = random_tensor(rng, s.dtype, k.size());
    if (s.sinks) {
      for (int32_t h = 0; h < s.q_heads; ++h) sinks_.push_back(std::uniform_real_distribution<float>(-1.0f, 2.0f)(rng));
    }
  }

  int64_t tokens() const { return offsets_.back(); }
  int32_t sequence_of(int64_t token) const {
    int32_t b = 0;
    while (token >= offsets_[b + 1]) ++b;
    return b;
  }
  int64_t q_index(int64_t token, int64_t head) const { return (token * p_.q_heads + head) * p_.head_dim; }
  int64_t kv_index(int32_t b, int64_t slot, int64_t kv_head) const {
    return ((b * p_.kv.capacity + slot) * p_.kv_heads + kv_head) * p_.head_dim;
  }
  // Whether query (token) sees cache slot `slot` of its sequence (the oracle's predicate).
  bool sees(int64_t token, int64_t slot) const {
    const int32_t b = sequence_of(token);
    const int64_t suffix = offsets_[b + 1] - offsets_[b], prefix = lengths_[b] - suffix;
    if (slot >= lengths_[b]) return false;
    MaskSpec spec = problem().mask;
    if (spec.tree_start) {
      spec.tree_start += offsets_[b];
      spec.tree_end += offsets_[b];
      spec.tree_height += offsets_[b];
    }
    return reference::key_visible(spec, prefix, suffix, token - offsets_[b], slot);
  }
  // The problem with host pointers (the oracle reads it).
  AttentionProblem problem() const {
    AttentionProblem p = p_;
    p.query_offsets = offsets_.data();
    p.kv_lengths = lengths_.data();
    p.q = q.data();
    p.kv.k = k.data();
    p.kv.v = v.data();
    if (!tree_start_.empty()) {
      p.mask.tree_start = tree_start_.data();
      p.mask.tree_end = tree_end_.data();
      p.mask.tree_height = tree_height_.data();
    }
    p.sinks = sinks_.empty() ? nullptr : sinks_.data();
    return p;
  }
  const PolicySetup& setup() const { return setup_; }
  const std::vector<float>& sinks() const { return sinks_; }

  HostTensor q, k, v;

 private:
  PolicySetup setup_;
  std::vector<int32_t> offsets_, lengths_, tree_start_, tree_end_, tree_height_;
  std::vector<float> sinks_;
  AttentionProblem p_;
};

struct Result {
  std::vector<double> out, lse;  // dense [tokens, q_heads(, d)]
};

// Runs `kernel` on `context` with device copies of `host`; checks that nothing outside out and
// lse was written.
Result run(Context& context, const HostProblem& host, Kernel kernel) {
  AttentionProblem p = host.problem();
  const auto q = to_device(context, host.q.data(), host.q.bytes());
  const auto k = to_device(context, host.k.data(), host.k.bytes());
  const auto v = to_device(context, host.v.data(), host.v.bytes());
  const auto sinks = to_device(context, host.sinks().data(), host.sinks().size() * sizeof(float));
  std::vector<std::unique_ptr<DeviceMemory>> tree;
  if (p.mask.tree_start) {
    const std::size_t bytes = static_cast<std::size_t>(host.tokens()) * sizeof(int32_t);
    for (const int32_t** array : {&p.mask.tree_start, &p.mask.tree_end, &p.mask.tree_height}) {
      tree.push_back(to_device(context, *array, bytes));
      *array = static_cast<const int32_t*>(tree.back()->get());
    }
  }
  const int64_t rows = host.tokens() * p.q_heads, d = p.head_dim;
  GuardedOutput out(context, p.dtype, std::max<int64_t>(rows * d, 1)), lse(context, DType::f32, std::max<int64_t>(rows, 1));
  out.upload();
  lse.upload();
  p.q = q->get();
  p.kv.k = k->get();
  p.kv.v = v->get();
  p.sinks = p.sinks ? static_cast<const float*>(sinks->get()) : nullptr;
  p.out = out.data();
  p.lse = static_cast<float*>(lse.data());
  Plan plan;
  const Status status = attention(context, p, kernel, &plan);
  EXPECT_TRUE(status.ok()) << status.message();
  EXPECT_EQ(plan.kernel, kernel);
  out.download();
  lse.download();
  std::vector<int64_t> out_cells(rows * d), lse_cells(rows);
  for (int64_t i = 0; i < rows * d; ++i) out_cells[i] = i;
  for (int64_t i = 0; i < rows; ++i) lse_cells[i] = i;
  EXPECT_TRUE(out.untouched_except(out_cells));
  EXPECT_TRUE(lse.untouched_except(lse_cells));
  return Result{out.gather(out_cells), lse.gather(lse_cells)};
}

// Rows (token, head) for which `protect` holds must match the oracle of the clean problem, all
// finite; returns how many rows were compared.
int64_t expect_rows_match(const HostProblem& clean, const Result& got,
                          const std::function<bool(int64_t token, int64_t head)>& protect) {
  std::vector<double> ref_out, ref_lse;
  reference::attention(clean.problem(), &ref_out, &ref_lse);
  const int64_t d = clean.setup().head_dim, heads = clean.setup().q_heads;
  std::vector<double> got_rows, want_rows, got_lse, want_lse;
  std::vector<std::string> names;
  for (int64_t t = 0; t < clean.tokens(); ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      if (!protect(t, h)) continue;
      const int64_t row = t * heads + h;
      got_rows.insert(got_rows.end(), got.out.begin() + row * d, got.out.begin() + (row + 1) * d);
      want_rows.insert(want_rows.end(), ref_out.begin() + row * d, ref_out.begin() + (row + 1) * d);
      got_lse.push_back(got.lse[row]);
      want_lse.push_back(ref_lse[row]);
      names.push_back("token " + std::to_string(t) + " head " + std::to_string(h));
    }
  }
  const DType dtype = clean.setup().dtype;
  EXPECT_TRUE(close_rel_l2(got_rows, want_rows, relative_tolerance(dtype),
                           [&](std::size_t i) { return names[i / d] + " dim " + std::to_string(i % d); }))
      << "protected rows differ from the oracle of the clean problem";
  EXPECT_TRUE(close_abs(got_lse, want_lse, lse_tolerance(dtype), [&](std::size_t i) { return names[i]; }))
      << "LSE of protected rows";
  return static_cast<int64_t>(names.size());
}

using Param = std::tuple<Backend, Kernel, DType>;

bool is_prefill(Kernel kernel) { return kernel == Kernel::prefill_unfused || kernel == Kernel::prefill_fused; }

class NanPolicyTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    if (!session_.start(backend())) return;
    if (kernel() == Kernel::prefill_fused) {
      if (backend() != Backend::cuda || session_.context->device().compute_capability != 90) {
        GTEST_SKIP() << "prefill_fused needs a Hopper GPU";
      }
      if (dtype() == DType::f32) GTEST_SKIP() << "prefill_fused takes f16 and bf16";
    }
    context_ = session_.context.get();
    rng_ = session_.rng;
  }
  void TearDown() override { session_.stop(); }
  Backend backend() const { return std::get<0>(GetParam()); }
  Kernel kernel() const { return std::get<1>(GetParam()); }
  DType dtype() const { return std::get<2>(GetParam()); }
  // Decode kernels take suffixes of up to 8 rows as they come; prefill takes any. The fused
  // kernel gets items of several key tiles, so that a boundary tile's P V also runs inside its
  // pipelined loop (not only as an item's last tile).
  PolicySetup base() const {
    PolicySetup s;
    s.dtype = dtype();
    s.sequences = kernel() == Kernel::prefill_fused ? std::vector<SequenceShape>{{150, 400}, {20, 20}, {70, 130}}
                  : is_prefill(kernel())            ? std::vector<SequenceShape>{{12, 40}, {20, 20}, {5, 70}}
                                                    : std::vector<SequenceShape>{{4, 40}, {8, 8}, {1, 70}};
    return s;
  }
  BackendSession session_;
  Context* context_ = nullptr;
  std::mt19937_64 rng_;
};

// ---- 1. a non-finite query row stays in its row --------------------------------------------------

TEST_P(NanPolicyTest, NonFiniteQueryRowStaysInItsRow) {
  for (int variant = 0; variant < 6; ++variant) {
    const double bad = variant % 3 == 0 ? kNaN : variant % 3 == 1 ? kInf : -kInf;
    PolicySetup s = base();
    s.sinks = variant < 3;
    SCOPED_TRACE("q value " + std::to_string(bad) + (s.sinks ? ", sinks" : ", no sinks"));
    s.window = 30;
    HostProblem host(s, rng_);
    const HostProblem clean = host;
    // One row per sequence, in heads that share their KV head with clean rows (GQA).
    std::vector<std::pair<int64_t, int64_t>> poisoned;
    for (int64_t t = 0; t < host.tokens(); t += 7) poisoned.emplace_back(t, t % s.q_heads);
    for (auto [t, h] : poisoned) {
      for (int64_t x = 0; x < s.head_dim; x += 5) host.q.set(host.q_index(t, h) + x, bad);
    }
    const Result got = run(*context_, host, kernel());
    const int64_t rows = expect_rows_match(clean, got, [&](int64_t t, int64_t h) {
      for (auto [pt, ph] : poisoned) {
        if (pt == t && ph == h) return false;
      }
      return true;
    });
    EXPECT_EQ(rows, host.tokens() * s.q_heads - static_cast<int64_t>(poisoned.size()));
    // What the poisoned row holds on the CPU today (docs/reliability.md): either NaN throughout
    // (LSE NaN), or, when the kernel's max over the row's logits skipped the NaN logits, what a
    // row that sees no key gets: zeros, and LSE -inf or exactly the sink. Never a mix. The CUDA
    // kernels make no such promise (the row is unspecified there).
    for (auto [t, h] : poisoned) {
      if (backend() != Backend::cpu) break;
      const int64_t row = t * s.q_heads + h;
      int64_t nan = 0, zero = 0;
      for (int64_t x = 0; x < s.head_dim; ++x) {
        nan += std::isnan(got.out[row * s.head_dim + x]);
        zero += got.out[row * s.head_dim + x] == 0.0;
      }
      const double empty_lse = s.sinks ? static_cast<double>(host.sinks()[h]) : -kInf;
      const bool all_nan = nan == s.head_dim && std::isnan(got.lse[row]);
      const bool empty = zero == s.head_dim && got.lse[row] == empty_lse;
      EXPECT_TRUE(all_nan || empty) << "token " << t << " head " << h << ": " << nan << " NaN, " << zero
                                    << " zeros, LSE " << got.lse[row];
    }
  }
}

// ---- 2. non-finite K/V rows the mask hides ------------------------------------------------------------

enum class Hider { causal, window, ring, tree, past_kv_length };

const char* to_string(Hider h) {
  switch (h) {
    case Hider::causal: return "causal";
    case Hider::window: return "window";
    case Hider::ring: return "ring";
    case Hider::tree: return "tree";
    case Hider::past_kv_length: return "past_kv_length";
  }
  return "?";
}

class HiddenRowsTest : public NanPolicyTest {
 protected:
  // Poisons the K or V rows (every KV head) of the chosen slots with `bad`, runs, and checks
  // every row that sees none of them.
  void check(Hider hider, char tensor, double bad, int32_t head_dim) {
    PolicySetup s = base();
    s.head_dim = head_dim;
    switch (hider) {
      case Hider::causal: break;
      case Hider::window: s.window = 6; break;
      case Hider::ring:
        s.ring_length = 9;
        s.ring_offset = 4;
        for (SequenceShape& seq : s.sequences) seq.kv_length = std::max(seq.kv_length, seq.suffix + 20);
        break;
      case Hider::tree: s.tree = true; break;
      case Hider::past_kv_length: s.extra_capacity = 9; break;
    }
    HostProblem host(s, rng_);
    const HostProblem clean = host;
    // Slots to poison, per sequence: the last slot its last query does not see (inside the key
    // range of the other queries), else the last one its first query does not see; past
    // kv_length: every slot there.
    std::vector<std::vector<int64_t>> slots(s.sequences.size());
    int64_t first = 0;
    for (std::size_t b = 0; b < s.sequences.size(); ++b) {
      const int64_t suffix = s.sequences[b].suffix, length = s.sequences[b].kv_length;
      if (hider == Hider::past_kv_length) {
        for (int64_t slot = length; slot < length + s.extra_capacity; ++slot) slots[b].push_back(slot);
      } else {
        for (int64_t query : {first + suffix - 1, first}) {
          for (int64_t slot = length - 1; slot >= 0 && slots[b].empty(); --slot) {
            if (!host.sees(query, slot)) slots[b].push_back(slot);
          }
        }
      }
      first += suffix;
    }
    int64_t poisoned = 0;
    for (std::size_t b = 0; b < slots.size(); ++b) {
      for (int64_t slot : slots[b]) {
        for (int64_t g = 0; g < s.kv_heads; ++g) {
          HostTensor& target = tensor == 'k' ? host.k : host.v;
          for (int64_t x = 0; x < s.head_dim; x += 3) target.set(host.kv_index(static_cast<int32_t>(b), slot, g) + x, bad);
        }
        ++poisoned;
      }
    }
    ASSERT_GT(poisoned, 0) << "the mask hides nothing here";
    const Result got = run(*context_, host, kernel());
    // Rows that see no poisoned slot, rows that see no key at all included.
    std::vector<int32_t> sequence_of_token;
    for (std::size_t b = 0; b < s.sequences.size(); ++b) {
      for (int32_t t = 0; t < s.sequences[b].suffix; ++t) sequence_of_token.push_back(static_cast<int32_t>(b));
    }
    const int64_t protected_rows = expect_rows_match(clean, got, [&](int64_t t, int64_t) {
      for (int64_t slot : slots[sequence_of_token[t]]) {
        if (host.sees(t, slot)) return false;
      }
      return true;
    });
    EXPECT_GT(protected_rows, 0) << "no row is protected: the test checks nothing";
    // A row that sees a poisoned V row holds the value's class exactly where the poison is (every
    // third column) and finite values elsewhere, as the f64 oracle does: every kernel but the CUDA
    // unfused pipeline (not held to it here), the tensor-core ones through their key-by-key pass
    // (the inputs keep every probability and split weight far above 0).
    if (tensor != 'v' || hider == Hider::past_kv_length || (backend() == Backend::cuda && kernel() == Kernel::prefill_unfused)) {
      return;
    }
    int64_t contaminated = 0;
    for (int64_t t = 0; t < host.tokens(); ++t) {
      bool sees = false;
      for (int64_t slot : slots[sequence_of_token[t]]) sees = sees || host.sees(t, slot);
      if (!sees) continue;
      for (int64_t h = 0; h < s.q_heads; ++h) {
        const double* row = got.out.data() + (t * s.q_heads + h) * s.head_dim;
        for (int64_t x = 0; x < s.head_dim; ++x) {
          const bool poisoned_column = x % 3 == 0;
          const bool right = poisoned_column ? (std::isnan(bad) ? std::isnan(row[x]) : row[x] == bad)
                                             : std::isfinite(row[x]);
          EXPECT_TRUE(right) << "token " << t << " head " << h << " dim " << x << ": " << row[x];
          if (!right) return;
        }
        ++contaminated;
      }
    }
    // (A ring's poisoned slot is a dead one: no row sees it.)
    if (hider != Hider::ring) EXPECT_GT(contaminated, 0) << "no row sees a poisoned V row: the check checks nothing";
  }

  // The fused kernel at the head_dims of its three schedules (64: overlapping, 256: one tile at a
  // time, 512: a pair, whose ring/tree variant recomputes late, run with whole 128-row tiles and
  // with alternate_keys, whose late recompute writes over the added shares); the others at 64.
  void run_all(Hider hider, char tensor) {
    const std::vector<int32_t> head_dims =
        kernel() == Kernel::prefill_fused ? std::vector<int32_t>{64, 256, 512} : std::vector<int32_t>{64};
    for (const int32_t head_dim : head_dims) {
      for (const int alternate : head_dim == 512 ? std::vector<int>{0, 1} : std::vector<int>{-1}) {
        detail::set_fused_alternate_override(alternate);
        for (double bad : {kNaN, kInf, -kInf}) {
          SCOPED_TRACE(std::string(1, tensor) + " value " + std::to_string(bad) + ", hidden by " +
                       to_string(hider) + ", head_dim " + std::to_string(head_dim) + ", alternate_keys " +
                       std::to_string(alternate));
          check(hider, tensor, bad, head_dim);
          if (HasFailure()) break;
        }
        detail::set_fused_alternate_override(-1);
        if (HasFailure()) return;
      }
    }
  }
};

TEST_P(HiddenRowsTest, NonFiniteKHiddenByCausality) { run_all(Hider::causal, 'k'); }
TEST_P(HiddenRowsTest, NonFiniteKHiddenByWindow) { run_all(Hider::window, 'k'); }
TEST_P(HiddenRowsTest, NonFiniteKHiddenByRing) { run_all(Hider::ring, 'k'); }
TEST_P(HiddenRowsTest, NonFiniteKHiddenByTree) { run_all(Hider::tree, 'k'); }
TEST_P(HiddenRowsTest, NonFiniteKPastKvLength) { run_all(Hider::past_kv_length, 'k'); }
TEST_P(HiddenRowsTest, NonFiniteVHiddenByCausality) { run_all(Hider::causal, 'v'); }
TEST_P(HiddenRowsTest, NonFiniteVHiddenByWindow) { run_all(Hider::window, 'v'); }
TEST_P(HiddenRowsTest, NonFiniteVHiddenByRing) { run_all(Hider::ring, 'v'); }
TEST_P(HiddenRowsTest, NonFiniteVHiddenByTree) { run_all(Hider::tree, 'v'); }
TEST_P(HiddenRowsTest, NonFiniteVPastKvLength) { run_all(Hider::past_kv_length, 'v'); }

// ---- 3. rows that see no key ----------------------------------------------------------------------------

// Tree rows whose subtree holds no key, and no prefix: they see nothing. Once with clean
// inputs, once with NaN in K of every key no row sees (not in V: see the documented limitation
// above).
TEST_P(NanPolicyTest, RowsThatSeeNoKeyAreZeroWithLseMinusInfinityOrTheSink) {
  for (int variant = 0; variant < 4; ++variant) {
    const bool sinks = variant % 2 == 1, poison = variant >= 2;
    SCOPED_TRACE(std::string(sinks ? "with sinks" : "without sinks") + (poison ? ", NaN in hidden K" : ""));
    PolicySetup s = base();
    s.sinks = sinks;
    for (SequenceShape& seq : s.sequences) seq.kv_length = seq.suffix;  // no prefix
    HostProblem host(s, rng_);
    // Replace the tree: node j's subtree is [j + 1, j] (empty) for odd j, [j, j] for even j.
    std::vector<int32_t> start, end, height;
    for (const SequenceShape& seq : s.sequences) {
      for (int32_t j = 0; j < seq.suffix; ++j) {
        start.push_back(j % 2 ? j + 1 : j);
        end.push_back(j);
        height.push_back(j);
      }
    }
    // Build a HostProblem-like problem with these arrays by hand.
    AttentionProblem p = host.problem();
    p.mask.tree_start = start.data();
    p.mask.tree_end = end.data();
    p.mask.tree_height = height.data();
    // Poison K of every odd suffix key (each is hidden from every row, including its own).
    for (std::size_t b = 0; b < s.sequences.size() && poison; ++b) {
      for (int32_t j = 1; j < s.sequences[b].suffix; j += 2) {
        for (int64_t g = 0; g < s.kv_heads; ++g) host.k.set(host.kv_index(static_cast<int32_t>(b), j, g), kNaN);
      }
    }
    // Device copies, with these tree arrays.
    const auto q = to_device(*context_, host.q.data(), host.q.bytes());
    const auto k = to_device(*context_, host.k.data(), host.k.bytes());
    const auto v = to_device(*context_, host.v.data(), host.v.bytes());
    const auto sk = to_device(*context_, host.sinks().data(), host.sinks().size() * sizeof(float));
    const std::size_t tree_bytes = start.size() * sizeof(int32_t);
    const auto ts = to_device(*context_, start.data(), tree_bytes);
    const auto te = to_device(*context_, end.data(), tree_bytes);
    const auto th = to_device(*context_, height.data(), tree_bytes);
    const int64_t rows = host.tokens() * s.q_heads;
    GuardedOutput out(*context_, s.dtype, rows * s.head_dim), lse(*context_, DType::f32, rows);
    out.upload();
    lse.upload();
    AttentionProblem device = p;
    device.q = q->get();
    device.kv.k = k->get();
    device.kv.v = v->get();
    device.sinks = sinks ? static_cast<const float*>(sk->get()) : nullptr;
    device.mask.tree_start = static_cast<const int32_t*>(ts->get());
    device.mask.tree_end = static_cast<const int32_t*>(te->get());
    device.mask.tree_height = static_cast<const int32_t*>(th->get());
    device.out = out.data();
    device.lse = static_cast<float*>(lse.data());
    WA_ASSERT_OK(attention(*context_, device, kernel()));
    out.download();
    lse.download();
    std::vector<double> ref_out, ref_lse;
    p.kv.k = host.k.data();
    reference::attention(p, &ref_out, &ref_lse);
    int64_t empty = 0;
    for (int64_t t = 0; t < host.tokens(); ++t) {
      for (int64_t h = 0; h < s.q_heads; ++h) {
        const int64_t row = t * s.q_heads + h;
        const bool sees_nothing = sinks ? ref_lse[row] == static_cast<double>(host.sinks()[h]) : ref_lse[row] == -kInf;
        if (sees_nothing) {
          ++empty;
          for (int64_t x = 0; x < s.head_dim; ++x) {
            ASSERT_EQ(out.value(row * s.head_dim + x), 0.0) << "token " << t << " head " << h;
          }
          ASSERT_EQ(lse.value(row), ref_lse[row]) << "token " << t << " head " << h;
        } else {
          for (int64_t x = 0; x < s.head_dim; ++x) {
            ASSERT_NEAR(out.value(row * s.head_dim + x), ref_out[row * s.head_dim + x],
                        dtype() == DType::f32 ? 1e-4 : 2e-2)
                << "token " << t << " head " << h << " dim " << x;
          }
        }
      }
    }
    EXPECT_GT(empty, 0) << "the tree was meant to leave rows that see nothing";
  }
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  return std::string(wideattn::to_string(std::get<0>(info.param))) + "_" +
         wideattn::to_string(std::get<1>(info.param)) + "_" + wideattn::to_string(std::get<2>(info.param));
}

// f32 and bf16: on CUDA the f32 decode kernel is the SIMT one, bf16 the tensor-core one.
INSTANTIATE_TEST_SUITE_P(Kernels, NanPolicyTest,
                         ::testing::Combine(::testing::Values(Backend::cpu, Backend::cuda),
                                            ::testing::Values(Kernel::single_pass, Kernel::two_pass,
                                                              Kernel::prefill_unfused, Kernel::prefill_fused),
                                            ::testing::Values(DType::f32, DType::bf16)),
                         param_name);
INSTANTIATE_TEST_SUITE_P(Kernels, HiddenRowsTest,
                         ::testing::Combine(::testing::Values(Backend::cpu, Backend::cuda),
                                            ::testing::Values(Kernel::single_pass, Kernel::two_pass,
                                                              Kernel::prefill_unfused, Kernel::prefill_fused),
                                            ::testing::Values(DType::f32, DType::bf16)),
                         param_name);

}  // namespace
}  // namespace wideattn::test
