// Bad input to attention() and plan_attention(): each item is one test that checks the status
// code, that the message names the argument and its value, and that nothing was written.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "test_support.h"

namespace wideattn::test {
namespace {

// A small valid problem on the device: batch 2 (suffix 3 and 1, kv 10 and 6), heads 4/2,
// head_dim 64, f32, LSE and dense strides. Mutations make it invalid one way at a time.
struct ValidProblem {
  explicit ValidProblem(Context& context)
      : context(context),
        q(context, 4 * 4 * 64 * 4),
        k(context, 2 * 12 * 2 * 64 * 4),
        v(context, 2 * 12 * 2 * 64 * 4),
        out(context, DType::f32, 4 * 4 * 64),
        lse(context, DType::f32, 4 * 4) {
    out.upload();
    lse.upload();
    // Defined inputs (random values would do as well): the baseline really runs, and
    // compute-sanitizer's initcheck must not see reads of uninitialised memory.
    for (DeviceMemory* input : {&q, &k, &v}) {
      const std::vector<char> zeros(input->bytes(), 0);
      EXPECT_TRUE(context.copy(input->get(), zeros.data(), zeros.size(), CopyKind::host_to_device).ok());
    }
    p.batch = 2;
    p.q_heads = 4;
    p.kv_heads = 2;
    p.head_dim = 64;
    p.dtype = DType::f32;
    p.kv.capacity = 12;
    set_dense_strides(p);
    p.query_offsets = offsets.data();
    p.kv_lengths = kv_lengths.data();
    p.q = q.get();
    p.kv.k = k.get();
    p.kv.v = v.get();
    p.out = out.data();
    p.lse = static_cast<float*>(lse.data());
  }
  std::vector<int32_t> offsets{0, 3, 4};
  std::vector<int32_t> kv_lengths{10, 6};
  std::vector<int32_t> tree{0, 0, 0, 0};
  Context& context;
  DeviceMemory q, k, v;
  GuardedOutput out, lse;
  AttentionProblem p;
  Kernel forced = Kernel::automatic;

  // Makes the cache paged: k and v as pools of 6 pages of 4 tokens, block table [2, 3] from
  // `pages` (uploaded to the device now: change `pages` before calling).
  void use_pages() {
    table = to_device(context, pages.data(), pages.size() * sizeof(int32_t));
    set_paged_kv(p, k.get(), v.get(), 6, 4, static_cast<const int32_t*>(table->get()), 3);
  }
  std::vector<int32_t> pages{5, 1, 3, 0, 2, 4};
  std::unique_ptr<DeviceMemory> table;
};

struct BadProblem {
  std::string name;
  std::function<void(ValidProblem&, Backend)> mutate;
  // Fragments the message must contain, e.g. "q_heads = 6". May depend on the backend.
  std::function<std::vector<std::string>(Backend)> fragments;
};

std::function<std::vector<std::string>(Backend)> words(std::vector<std::string> fragments) {
  return [fragments](Backend) { return fragments; };
}

constexpr int64_t kHuge = std::numeric_limits<int64_t>::max() / 2;

const std::vector<BadProblem>& bad_problems() {
  static const std::vector<BadProblem> cases = {
      {"batch_zero", [](ValidProblem& v, Backend) { v.p.batch = 0; }, words({"batch = 0"})},
      {"q_heads_zero", [](ValidProblem& v, Backend) { v.p.q_heads = 0; }, words({"q_heads = 0"})},
      {"kv_heads_zero", [](ValidProblem& v, Backend) { v.p.kv_heads = 0; }, words({"kv_heads = 0"})},
      {"q_heads_not_a_multiple_of_kv_heads",
       [](ValidProblem& v, Backend) { v.p.q_heads = 6; v.p.kv_heads = 4; },
       words({"q_heads = 6", "kv_heads = 4"})},
      {"head_dim_unsupported",
       [](ValidProblem& v, Backend b) { v.p.head_dim = b == Backend::cuda ? 96 : 520; },
       [](Backend b) { return std::vector<std::string>{b == Backend::cuda ? "head_dim = 96" : "head_dim = 520"}; }},
      {"head_dim_not_a_multiple_of_8", [](ValidProblem& v, Backend) { v.p.head_dim = 60; }, words({"head_dim = 60"})},
      {"head_dim_zero", [](ValidProblem& v, Backend) { v.p.head_dim = 0; }, words({"head_dim = 0"})},
      {"dtype_unknown", [](ValidProblem& v, Backend) { v.p.dtype = static_cast<DType>(9); }, words({"dtype = 9"})},
      {"query_offsets_null", [](ValidProblem& v, Backend) { v.p.query_offsets = nullptr; }, words({"query_offsets = null"})},
      {"kv_lengths_null", [](ValidProblem& v, Backend) { v.p.kv_lengths = nullptr; }, words({"kv_lengths = null"})},
      {"q_null", [](ValidProblem& v, Backend) { v.p.q = nullptr; }, words({"q = null"})},
      {"k_null", [](ValidProblem& v, Backend) { v.p.kv.k = nullptr; }, words({"kv.k = null"})},
      {"v_null", [](ValidProblem& v, Backend) { v.p.kv.v = nullptr; }, words({"kv.v = null"})},
      {"out_null", [](ValidProblem& v, Backend) { v.p.out = nullptr; }, words({"out = null"})},
      {"first_offset_not_zero", [](ValidProblem& v, Backend) { v.offsets = {1, 3, 4}; }, words({"query_offsets[0] = 1"})},
      {"offsets_decrease", [](ValidProblem& v, Backend) { v.offsets = {0, 3, 2}; },
       words({"query_offsets[2] = 2", "query_offsets[1] = 3"})},
      {"kv_length_negative", [](ValidProblem& v, Backend) { v.kv_lengths = {-1, 6}; }, words({"kv_lengths[0] = -1"})},
      {"kv_length_shorter_than_suffix", [](ValidProblem& v, Backend) { v.kv_lengths = {2, 6}; },
       words({"kv_lengths[0] = 2", "suffix length 3"})},
      {"kv_length_beyond_capacity", [](ValidProblem& v, Backend) { v.kv_lengths = {10, 13}; },
       words({"kv_lengths[1] = 13", "kv.capacity = 12"})},
      {"capacity_zero", [](ValidProblem& v, Backend) { v.p.kv.capacity = 0; }, words({"kv.capacity = 0"})},
      {"window_negative", [](ValidProblem& v, Backend) { v.p.mask.window = -1; }, words({"mask.window = -1"})},
      {"ring_length_negative", [](ValidProblem& v, Backend) { v.p.mask.ring_length = -2; }, words({"mask.ring_length = -2"})},
      {"ring_offset_negative",
       [](ValidProblem& v, Backend) { v.p.mask.ring_length = 3; v.p.mask.ring_offset = -1; },
       words({"mask.ring_offset = -1"})},
      {"ring_offset_past_prefix",
       [](ValidProblem& v, Backend) { v.p.mask.ring_length = 4; v.p.mask.ring_offset = 7; },
       words({"mask.ring_offset = 7", "prefix length 7"})},
      {"tree_arrays_partial",
       [](ValidProblem& v, Backend) { v.p.mask.tree_start = v.tree.data(); v.p.mask.tree_height = v.tree.data(); },
       words({"mask.tree_start/tree_end/tree_height = 2 of 3 set"})},
      {"scale_zero", [](ValidProblem& v, Backend) { v.p.scale = 0.0f; }, words({"scale = 0"})},
      {"scale_negative", [](ValidProblem& v, Backend) { v.p.scale = -1.0f; }, words({"scale = -1"})},
      {"scale_infinite", [](ValidProblem& v, Backend) { v.p.scale = std::numeric_limits<float>::infinity(); },
       words({"scale = inf"})},
      {"softcap_negative", [](ValidProblem& v, Backend) { v.p.softcap = -1.0f; }, words({"softcap = -1"})},
      {"softcap_nan", [](ValidProblem& v, Backend) { v.p.softcap = std::numeric_limits<float>::quiet_NaN(); },
       words({"softcap = nan"})},
      {"q_head_stride_zero", [](ValidProblem& v, Backend) { v.p.q_head_stride = 0; }, words({"q_head_stride = 0"})},
      {"q_token_stride_negative", [](ValidProblem& v, Backend) { v.p.q_token_stride = -256; },
       words({"q_token_stride = -256"})},
      {"out_head_stride_below_head_dim", [](ValidProblem& v, Backend) { v.p.out_head_stride = 32; },
       words({"out_head_stride = 32"})},
      {"out_token_stride_below_head_dim", [](ValidProblem& v, Backend) { v.p.out_token_stride = 63; },
       words({"out_token_stride = 63"})},
      {"k_token_stride_zero", [](ValidProblem& v, Backend) { v.p.kv.k_token_stride = 0; }, words({"kv.k_token_stride = 0"})},
      {"v_head_stride_zero", [](ValidProblem& v, Backend) { v.p.kv.v_head_stride = 0; }, words({"kv.v_head_stride = 0"})},
      {"k_sequence_stride_negative", [](ValidProblem& v, Backend) { v.p.kv.k_sequence_stride = -1; },
       words({"kv.k_sequence_stride = -1"})},
      {"lse_head_stride_zero", [](ValidProblem& v, Backend) { v.p.lse_head_stride = 0; }, words({"lse_head_stride = 0"})},
      {"out_overlaps_itself",
       [](ValidProblem& v, Backend) { v.p.out_token_stride = v.p.head_dim; v.p.out_head_stride = v.p.head_dim; },
       words({"out_head_stride = 64", "keeps out's elements apart"})},
      {"lse_overlaps_itself", [](ValidProblem& v, Backend) { v.p.lse_token_stride = 1; v.p.lse_head_stride = 1; },
       words({"lse_head_stride = 1", "keeps lse's elements apart"})},
      {"out_overlaps_q", [](ValidProblem& v, Backend) { v.p.out = const_cast<void*>(v.p.q); }, words({"out overlaps q"})},
      {"out_overlaps_k",
       [](ValidProblem& v, Backend) { v.p.out = static_cast<char*>(const_cast<void*>(v.p.kv.k)) + 4096; },
       words({"out overlaps kv.k"})},
      {"out_overlaps_v",
       [](ValidProblem& v, Backend) { v.p.out = static_cast<char*>(const_cast<void*>(v.p.kv.v)) + 1000; },
       words({"out overlaps kv.v"})},
      {"lse_overlaps_out", [](ValidProblem& v, Backend) { v.p.lse = static_cast<float*>(v.p.out) + 17; },
       words({"lse overlaps out"})},
      {"lse_overlaps_k", [](ValidProblem& v, Backend) { v.p.lse = static_cast<float*>(const_cast<void*>(v.p.kv.k)); },
       words({"lse overlaps kv.k"})},
      {"q_index_overflows", [](ValidProblem& v, Backend) { v.p.q_token_stride = kHuge; },
       words({"q index arithmetic overflows int64"})},
      {"k_index_overflows",
       [](ValidProblem& v, Backend) { v.p.kv.k_sequence_stride = std::numeric_limits<int64_t>::max() - 10; },
       words({"kv.k index arithmetic overflows int64"})},
      {"v_bytes_overflow", [](ValidProblem& v, Backend) { v.p.kv.v_sequence_stride = int64_t{1} << 62; },
       words({"kv.v bytes index arithmetic overflows int64"})},
      // Paged caches (the block table's entries: PagedBlockTable below, the CPU reads them).
      {"paged_capacity_set", [](ValidProblem& v, Backend) { v.use_pages(); v.p.kv.capacity = 12; },
       words({"kv.capacity = 12", "0 for a paged cache"})},
      {"paged_page_size_not_a_power_of_two",
       [](ValidProblem& v, Backend) { v.use_pages(); v.p.kv.page_size = 3; },
       words({"kv.page_size = 3", "a power of two"})},
      {"paged_page_size_zero", [](ValidProblem& v, Backend) { v.use_pages(); v.p.kv.page_size = 0; },
       words({"kv.page_size = 0"})},
      {"paged_page_size_too_large",
       [](ValidProblem& v, Backend) { v.use_pages(); v.p.kv.page_size = 8192; },
       words({"kv.page_size = 8192", "[1, 4096]"})},
      {"paged_block_table_too_short",
       [](ValidProblem& v, Backend) { v.use_pages(); v.p.kv.max_pages = 2; },
       words({"kv.max_pages = 2", ">= 3 pages for kv_lengths[0] = 10", "shorter than sequence 0 needs"})},
      {"paged_block_table_rows_overlap",
       [](ValidProblem& v, Backend) { v.use_pages(); v.p.kv.block_table_stride = 2; },
       words({"kv.block_table_stride = 2", ">= kv.max_pages = 3"})},
      {"paged_no_pages", [](ValidProblem& v, Backend) { v.use_pages(); v.p.kv.num_pages = 0; },
       words({"kv.num_pages = 0"})},
      {"paged_page_stride_negative",
       [](ValidProblem& v, Backend) { v.use_pages(); v.p.kv.v_page_stride = -512; },
       words({"kv.v_page_stride = -512"})},
      {"paged_kv_length_negative",
       [](ValidProblem& v, Backend) { v.use_pages(); v.kv_lengths = {10, -4}; },
       words({"kv_lengths[1] = -4"})},
      {"paged_out_overlaps_pool",
       [](ValidProblem& v, Backend) {
         v.use_pages();
         v.p.out = static_cast<char*>(const_cast<void*>(v.p.kv.v)) + 256;
       },
       words({"out overlaps kv.v"})},
      {"paged_pool_index_overflows",
       [](ValidProblem& v, Backend) { v.use_pages(); v.p.kv.k_page_stride = kHuge; },
       words({"kv.k index arithmetic overflows int64"})},
      {"forced_kernel_unknown", [](ValidProblem& v, Backend) { v.forced = static_cast<Kernel>(7); }, words({"forced = 7"})},
  };
  return cases;
}

void PrintTo(const BadProblem& item, std::ostream* os) { *os << item.name; }

class AttentionRejects : public ::testing::TestWithParam<std::tuple<Backend, BadProblem>> {
 protected:
  void SetUp() override { session_.start(std::get<0>(GetParam())); }
  void TearDown() override { session_.stop(); }
  BackendSession session_;
};

TEST_P(AttentionRejects, NamesArgumentAndValueAndWritesNothing) {
  const Backend backend = std::get<0>(GetParam());
  const BadProblem& bad = std::get<1>(GetParam());
  Context& context = *session_.context;
  ValidProblem valid(context);
  bad.mutate(valid, backend);
  const std::vector<std::string> fragments = bad.fragments(backend);

  const Status status = attention(context, valid.p, valid.forced);
  EXPECT_EQ(status.code(), StatusCode::invalid_argument) << status.message();
  EXPECT_EQ(status.message().rfind("attention: ", 0), 0u) << status.message();
  for (const std::string& fragment : fragments) {
    EXPECT_NE(status.message().find(fragment), std::string::npos)
        << "message \"" << status.message() << "\" lacks \"" << fragment << "\"";
  }
  valid.out.download();
  valid.lse.download();
  EXPECT_TRUE(valid.out.unchanged()) << "a rejected call wrote to out";
  EXPECT_TRUE(valid.lse.unchanged()) << "a rejected call wrote to lse";

  Plan plan;
  plan.reason = "untouched";
  const Status planned = plan_attention(valid.p, context.device(), valid.forced, &plan);
  EXPECT_EQ(planned.code(), StatusCode::invalid_argument);
  EXPECT_EQ(planned.message().rfind("plan_attention: ", 0), 0u) << planned.message();
  EXPECT_EQ(plan.reason, "untouched") << "a rejected plan was filled";
}

std::string bad_problem_name(const ::testing::TestParamInfo<std::tuple<Backend, BadProblem>>& info) {
  return std::string(to_string(std::get<0>(info.param))) + "_" + std::get<1>(info.param).name;
}

INSTANTIATE_TEST_SUITE_P(Items, AttentionRejects,
                         ::testing::Combine(::testing::Values(Backend::cpu, Backend::cuda),
                                            ::testing::ValuesIn(bad_problems())),
                         bad_problem_name);

// Page indices are checked where the host can read the block table (the CPU backend): an entry
// a sequence reads that is not a page of the pools is named with its row and column, and
// nothing is written. Entries past a sequence's last page are never read, so anything goes.
TEST(PagedBlockTable, EntriesCheckedOnTheHost) {
  BackendSession session;
  if (!session.start(Backend::cpu)) return;
  Context& context = *session.context;
  struct Item {
    std::vector<int32_t> pages;
    std::string fragment;
  };
  const Item items[] = {{{5, 1, 6, 0, 2, 4}, "kv.block_table[0][2] = 6, expected a page index in [0, kv.num_pages = 6)"},
                        {{5, 1, 3, 0, -1, 4}, "kv.block_table[1][1] = -1"}};
  for (const Item& item : items) {
    SCOPED_TRACE(item.fragment);
    ValidProblem valid(context);
    valid.pages = item.pages;
    valid.use_pages();
    EXPECT_TRUE(has_error(attention(context, valid.p), StatusCode::invalid_argument, {"attention: ", item.fragment}));
    Plan plan;
    EXPECT_TRUE(has_error(plan_attention(valid.p, context.device(), Kernel::automatic, &plan),
                          StatusCode::invalid_argument, {"plan_attention: ", item.fragment}));
    valid.out.download();
    valid.lse.download();
    EXPECT_TRUE(valid.out.unchanged()) << "a rejected call wrote to out";
    EXPECT_TRUE(valid.lse.unchanged()) << "a rejected call wrote to lse";
  }
  ValidProblem unread(context);
  unread.pages = {5, 1, 3, 0, 2, 99};  // sequence 1 (6 tokens) reads 2 pages of 4
  unread.use_pages();
  WA_EXPECT_OK(attention(context, unread.p));
}

// The unmutated problem runs, so each rejection above is down to its one mutation.
using ValidProblemTest = BackendTest;

TEST_P(ValidProblemTest, BaselineRuns) {
  ValidProblem valid(context());
  WA_EXPECT_OK(attention(context(), valid.p));
  // And edge values that are allowed: scale kDefaultScale, softcap 0, window 0, empty sequence.
  valid.offsets = {0, 4, 4};
  valid.kv_lengths = {10, 0};
  WA_EXPECT_OK(attention(context(), valid.p));
  // And as a paged cache.
  valid.use_pages();
  WA_EXPECT_OK(attention(context(), valid.p));
}

TEST_P(ValidProblemTest, PlanRejectsNullPlan) {
  ValidProblem valid(context());
  EXPECT_TRUE(has_error(plan_attention(valid.p, context().device(), Kernel::automatic, nullptr),
                        StatusCode::invalid_argument, {"plan = null"}));
}

WA_INSTANTIATE_BACKENDS(ValidProblemTest);

}  // namespace
}  // namespace wideattn::test
