// merge_states against its f64 oracle on every backend: 1 to 8 states (and the maximum) of
// mixed dtypes and strides, LSEs spread far apart, dead states (lse -inf) holding NaN, rows
// with every state dead, outputs in every dtype with guards; then bad input, nothing written.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <vector>

#include "reference/components_reference.h"
#include "test_support.h"

namespace wideattn::test {
namespace {

constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();

struct MergeCase {
  int32_t num_states = 2;
  int64_t tokens = 5;
  int32_t heads = 3;
  int32_t head_dim = 64;
  DType out_dtype = DType::f32;
  bool mixed_dtypes = false;  // state s in f32, f16, bf16 by turn (else all out_dtype)
  int64_t pad = 0;            // extra elements after each state's (and out's) head row
  double dead = 0.2;          // probability that a state is dead in a row
  bool with_lse = true;
  double lse_spread = 20.0;   // lse_s uniform in [-spread, spread]

  std::string describe() const {
    std::ostringstream s;
    s << num_states << " states, tokens " << tokens << " heads " << heads << " head_dim " << head_dim
      << ", out " << to_string(out_dtype) << (mixed_dtypes ? ", mixed state dtypes" : "") << ", pad " << pad
      << ", dead " << dead << (with_lse ? "" : ", no lse") << ", spread " << lse_spread;
    return s.str();
  }
};

DType state_dtype(const MergeCase& mc, int32_t s) {
  const DType dtypes[] = {DType::f32, DType::f16, DType::bf16};
  return mc.mixed_dtypes ? dtypes[s % 3] : mc.out_dtype;
}

void check_merge(Context& context, std::mt19937_64& rng, const MergeCase& mc) {
  SCOPED_TRACE(mc.describe());
  const int64_t rows = mc.tokens * mc.heads;
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<HostTensor> outs;
  std::vector<std::vector<float>> lses;
  std::vector<std::unique_ptr<DeviceMemory>> device;
  std::vector<AttentionState> on_host(mc.num_states), on_device(mc.num_states);
  for (int32_t s = 0; s < mc.num_states; ++s) {
    AttentionState st;
    st.dtype = state_dtype(mc, s);
    // Token-major rows padded by pad + s elements; LSE head-major [heads, tokens] (a transpose).
    st.out_head_stride = mc.head_dim + mc.pad + (mc.pad ? s : 0);
    st.out_token_stride = mc.heads * st.out_head_stride + mc.pad;
    st.lse_token_stride = 1;
    st.lse_head_stride = mc.tokens;
    outs.push_back(random_tensor(rng, st.dtype, mc.tokens * st.out_token_stride));
    lses.emplace_back(static_cast<std::size_t>(rows));
    for (int64_t t = 0; t < mc.tokens; ++t) {
      for (int64_t h = 0; h < mc.heads; ++h) {
        float& lse = lses[s][h * st.lse_head_stride + t];
        lse = static_cast<float>((2.0 * uniform(rng) - 1.0) * mc.lse_spread);
        // Dead: the state saw no key here. Its row may hold anything (NaN from 0 x inf).
        if (uniform(rng) < mc.dead) {
          lse = kMinusInfinity;
          outs[s].set(t * st.out_token_stride + h * st.out_head_stride + (t + h) % mc.head_dim,
                      std::numeric_limits<double>::quiet_NaN());
        }
      }
    }
    on_host[s] = st;
    on_host[s].out = outs[s].data();
    on_host[s].lse = lses[s].data();
    device.push_back(to_device(context, outs[s].data(), outs[s].bytes()));
    device.push_back(to_device(context, lses[s].data(), lses[s].size() * sizeof(float)));
    on_device[s] = st;
    on_device[s].out = device[device.size() - 2]->get();
    on_device[s].lse = static_cast<const float*>(device.back()->get());
  }

  MergeStatesArguments args;
  args.num_states = mc.num_states;
  args.tokens = mc.tokens;
  args.heads = mc.heads;
  args.head_dim = mc.head_dim;
  args.out_dtype = mc.out_dtype;
  args.out_head_stride = mc.head_dim + mc.pad;
  args.out_token_stride = mc.heads * args.out_head_stride;
  args.lse_head_stride = 1;
  args.lse_token_stride = mc.heads + mc.pad;
  GuardedOutput out(context, mc.out_dtype, mc.tokens * args.out_token_stride);
  GuardedOutput lse(context, DType::f32, mc.tokens * args.lse_token_stride);
  out.upload();
  lse.upload();
  MergeStatesArguments call = args;
  call.states = on_device.data();
  call.out = out.data();
  call.lse = mc.with_lse ? static_cast<float*>(lse.data()) : nullptr;
  WA_ASSERT_OK(merge_states(context, call));
  out.download();
  lse.download();

  MergeStatesArguments host = args;
  host.states = on_host.data();
  const reference::MergeStatesResult expected = reference::merge_states(host);
  std::vector<int64_t> out_written, lse_written;
  for (int64_t t = 0; t < mc.tokens; ++t) {
    for (int64_t h = 0; h < mc.heads; ++h) {
      lse_written.push_back(t * args.lse_token_stride + h);
      for (int64_t x = 0; x < mc.head_dim; ++x) out_written.push_back(t * args.out_token_stride + h * args.out_head_stride + x);
    }
  }
  const IndexName out_name = shape_index_name({"token", "head", "dim"}, {mc.tokens, mc.heads, mc.head_dim});
  EXPECT_TRUE(close_rel_l2(out.gather(out_written), expected.out, relative_tolerance(mc.out_dtype), out_name));
  EXPECT_TRUE(out.untouched_except(out_written)) << "out guards and gaps";
  if (mc.with_lse) {
    // f32 LSEs of magnitude <= spread + log(num_states): a few ulps.
    EXPECT_TRUE(close_abs(lse.gather(lse_written), expected.lse, 1e-5 * (mc.lse_spread + 4.0),
                          shape_index_name({"token", "head"}, {mc.tokens, mc.heads})));
    EXPECT_TRUE(lse.untouched_except(lse_written)) << "lse guards and gaps";
  } else {
    EXPECT_TRUE(lse.unchanged()) << "lse was not requested";
  }
}

using MergeStatesTest = BackendTest;

TEST_P(MergeStatesTest, OneToEightStatesMatchOracle) {
  for (int32_t states = 1; states <= 8; ++states) {
    MergeCase mc;
    mc.num_states = states;
    mc.tokens = 1 + 3 * states;
    mc.heads = states % 3 + 1;
    mc.head_dim = states % 2 ? 128 : 512;
    check_merge(context(), rng(), mc);
  }
}

TEST_P(MergeStatesTest, DtypesAndAwkwardSizes) {
  int sample = 0;
  for (DType out : {DType::f32, DType::f16, DType::bf16}) {
    for (int32_t head_dim : {1, 7, 66, 130}) {
      MergeCase mc;
      mc.out_dtype = out;
      mc.mixed_dtypes = sample % 2 == 0;
      mc.head_dim = head_dim;
      mc.num_states = 3 + sample % 3;
      mc.tokens = 17;
      mc.heads = 5;
      check_merge(context(), rng(), mc);
      ++sample;
    }
  }
}

// Row and head strides with gaps, some not a multiple of 4 (CUDA's element-wise path), and
// without them (its packed path).
TEST_P(MergeStatesTest, StridedLayouts) {
  for (int64_t pad : {0, 3, 4, 8}) {
    MergeCase mc;
    mc.pad = pad;
    mc.num_states = 4;
    mc.mixed_dtypes = true;
    mc.out_dtype = DType::bf16;
    mc.head_dim = 256;
    check_merge(context(), rng(), mc);
  }
}

TEST_P(MergeStatesTest, DeadStatesWithNanAndAllDeadRows) {
  for (double dead : {0.5, 0.9, 1.0}) {
    MergeCase mc;
    mc.dead = dead;
    mc.num_states = 3;
    mc.tokens = 23;
    check_merge(context(), rng(), mc);
  }
}

TEST_P(MergeStatesTest, MaximumStatesWithoutLse) {
  MergeCase mc;
  mc.num_states = kMaxMergeStates;
  mc.tokens = 3;
  mc.heads = 2;
  mc.head_dim = 72;
  mc.with_lse = false;
  mc.mixed_dtypes = true;
  check_merge(context(), rng(), mc);
}

// LSEs hundreds apart: only the largest contributes, and nothing overflows.
TEST_P(MergeStatesTest, FarApartLses) {
  MergeCase mc;
  mc.num_states = 5;
  mc.lse_spread = 400.0;
  mc.dead = 0.0;
  check_merge(context(), rng(), mc);
}

WA_INSTANTIATE_BACKENDS(MergeStatesTest);

// ---- bad input ---------------------------------------------------------------------------------

// Two valid states [2, 2, 8] and an output; each mutation breaks one thing.
class MergeStatesValidationTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped()) return;
    zeros_ = std::vector<float>(64, 0.0f);
    for (int i = 0; i < 2; ++i) {
      buffers_.push_back(to_device(context(), zeros_.data(), zeros_.size() * sizeof(float)));
      states_[i].out = buffers_.back()->get();
      states_[i].out_token_stride = 16;
      states_[i].out_head_stride = 8;
      buffers_.push_back(to_device(context(), zeros_.data(), 4 * sizeof(float)));
      states_[i].lse = static_cast<const float*>(buffers_.back()->get());
      states_[i].lse_token_stride = 2;
      states_[i].lse_head_stride = 1;
    }
    out_ = std::make_unique<GuardedOutput>(context(), DType::f32, 32);
    lse_ = std::make_unique<GuardedOutput>(context(), DType::f32, 4);
    out_->upload();
    lse_->upload();
  }
  void TearDown() override {  // device memory goes before the context that holds it
    out_.reset();
    lse_.reset();
    buffers_.clear();
    BackendTest::TearDown();
  }
  MergeStatesArguments valid() {
    MergeStatesArguments a;
    a.states = states_;
    a.num_states = 2;
    a.tokens = 2;
    a.heads = 2;
    a.head_dim = 8;
    a.out = out_->data();
    a.out_token_stride = 16;
    a.out_head_stride = 8;
    a.lse = static_cast<float*>(lse_->data());
    a.lse_token_stride = 2;
    a.lse_head_stride = 1;
    return a;
  }
  void expect_rejected(const MergeStatesArguments& a, std::initializer_list<std::string> fragments) {
    EXPECT_TRUE(has_error(merge_states(context(), a), StatusCode::invalid_argument, fragments));
    out_->download();
    lse_->download();
    EXPECT_TRUE(out_->unchanged()) << "out written on error";
    EXPECT_TRUE(lse_->unchanged()) << "lse written on error";
  }

  std::vector<float> zeros_;
  std::vector<std::unique_ptr<DeviceMemory>> buffers_;
  AttentionState states_[2];
  std::unique_ptr<GuardedOutput> out_, lse_;
};

TEST_P(MergeStatesValidationTest, ValidCallSucceeds) { WA_EXPECT_OK(merge_states(context(), valid())); }

TEST_P(MergeStatesValidationTest, BadArgumentsNameThemselves) {
  MergeStatesArguments a = valid();
  a.num_states = 0;
  expect_rejected(a, {"merge_states: num_states = 0", "[1, 32]"});
  a = valid();
  a.num_states = kMaxMergeStates + 1;
  expect_rejected(a, {"merge_states: num_states = 33"});
  a = valid();
  a.states = nullptr;
  expect_rejected(a, {"merge_states: states = null"});
  a = valid();
  a.head_dim = 0;
  expect_rejected(a, {"merge_states: head_dim = 0", ">= 1"});
  a = valid();
  a.out = nullptr;
  expect_rejected(a, {"merge_states: out = null"});
  a = valid();
  a.out_head_stride = 4;
  expect_rejected(a, {"merge_states: out_head_stride = 4", ">= 8"});
  a = valid();
  a.out_dtype = static_cast<DType>(7);
  expect_rejected(a, {"merge_states: out_dtype = 7"});
  a = valid();
  a.lse_token_stride = 1;  // rows land on each other's LSE cells
  expect_rejected(a, {"merge_states: lse_", "keeps lse's elements apart"});
}

TEST_P(MergeStatesValidationTest, BadStatesNameTheirIndex) {
  AttentionState bad[2] = {states_[0], states_[1]};
  MergeStatesArguments a = valid();
  a.states = bad;
  bad[1].lse = nullptr;
  expect_rejected(a, {"merge_states: states[1].lse = null"});
  bad[1] = states_[1];
  bad[1].out = nullptr;
  expect_rejected(a, {"merge_states: states[1].out = null"});
  bad[1] = states_[1];
  bad[0].dtype = static_cast<DType>(9);
  expect_rejected(a, {"merge_states: states[0].dtype = 9"});
  bad[0] = states_[0];
  bad[0].out_head_stride = -8;
  expect_rejected(a, {"merge_states: states[0].out_head_stride = -8"});
  bad[0] = states_[0];
  bad[1].out = out_->data();  // the output is also an input
  expect_rejected(a, {"merge_states: out overlaps states[1].out"});
}

WA_INSTANTIATE_BACKENDS(MergeStatesValidationTest);

}  // namespace
}  // namespace wideattn::test
