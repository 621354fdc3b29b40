// The checks themselves can fail: the comparison flags errors above tolerance and NaN/inf
// mismatches, names the worst element, and the guard check notices writes outside an output.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "test_support.h"

namespace wideattn::test {
namespace {

const double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::numeric_limits<double>::quiet_NaN();

TEST(Compare, RelativeL2PassesWithinAndFailsBeyondTolerance) {
  const std::vector<double> expected{1.0, -2.0, 3.0, 0.5};
  std::vector<double> actual = expected;
  EXPECT_TRUE(close_rel_l2(actual, expected, 0.0, flat_index_name()));
  actual[2] += 3.0 * 1e-4;  // relative L2 ~ 8e-5
  EXPECT_TRUE(close_rel_l2(actual, expected, 1e-4, flat_index_name()));
  const ::testing::AssertionResult r = close_rel_l2(actual, expected, 1e-5, flat_index_name());
  EXPECT_FALSE(r);
  EXPECT_NE(std::string(r.message()).find("worst at element 2"), std::string::npos) << r.message();
  EXPECT_NE(std::string(r.message()).find("WIDEATTN_TEST_SEED="), std::string::npos) << r.message();
}

TEST(Compare, NonFinitePositionsMustMatch) {
  const std::vector<double> expected{1.0, -kInf, 0.0};
  EXPECT_TRUE(close_rel_l2({1.0, -kInf, 0.0}, expected, 1e-5, flat_index_name()));
  EXPECT_FALSE(close_rel_l2({1.0, -1e30, 0.0}, expected, 1e9, flat_index_name()));  // finite for -inf
  EXPECT_FALSE(close_rel_l2({1.0, kInf, 0.0}, expected, 1e9, flat_index_name()));   // wrong sign
  EXPECT_FALSE(close_rel_l2({kNaN, -kInf, 0.0}, expected, 1e9, flat_index_name()));  // NaN for finite
  EXPECT_FALSE(close_abs({1.0, -kInf, kNaN}, expected, 1e9, flat_index_name()));
}

TEST(Compare, AbsoluteToleranceAndIndexNames) {
  const IndexName name = shape_index_name({"token", "head"}, {3, 2});
  EXPECT_EQ(name(5), "token 2 head 1");
  const std::vector<double> expected{0.0, 1.0, 2.0, 3.0, 4.0, 5.0};
  std::vector<double> actual = expected;
  actual[3] += 2e-4;
  EXPECT_TRUE(close_abs(actual, expected, 1e-3, name));
  const ::testing::AssertionResult r = close_abs(actual, expected, 1e-4, name);
  EXPECT_FALSE(r);
  EXPECT_NE(std::string(r.message()).find("token 1 head 1"), std::string::npos) << r.message();
}

TEST(Compare, AllZeroReferenceUsesAbsoluteNorm) {
  EXPECT_TRUE(close_rel_l2({0.0, 0.0}, {0.0, 0.0}, 0.0, flat_index_name()));
  EXPECT_FALSE(close_rel_l2({0.0, 1e-3}, {0.0, 0.0}, 1e-5, flat_index_name()));
}

using GuardTest = BackendTest;

TEST_P(GuardTest, NoticesWritesInGuardsAndGaps) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    GuardedOutput out(context(), dtype, 8, 4);
    out.upload();
    const std::vector<unsigned char> bytes(dtype_size(dtype), 0);
    // Write element 3 (allowed) and element -1 (the front guard).
    auto* base = static_cast<unsigned char*>(out.data());
    WA_ASSERT_OK(context().copy(base + 3 * dtype_size(dtype), bytes.data(), bytes.size(), CopyKind::host_to_device));
    out.download();
    EXPECT_TRUE(out.untouched_except({3}));
    EXPECT_FALSE(out.unchanged());
    EXPECT_EQ(out.value(3), 0.0);
    EXPECT_TRUE(std::isnan(out.value(2))) << "outputs start poisoned";
    WA_ASSERT_OK(context().copy(base - dtype_size(dtype), bytes.data(), bytes.size(), CopyKind::host_to_device));
    out.download();
    const ::testing::AssertionResult r = out.untouched_except({3});
    EXPECT_FALSE(r);
    EXPECT_NE(std::string(r.message()).find("front guard"), std::string::npos) << r.message();
    WA_ASSERT_OK(context().copy(base + 8 * dtype_size(dtype), bytes.data(), bytes.size(), CopyKind::host_to_device));
    out.download();
    EXPECT_NE(std::string(out.untouched_except({3, -1}).message()).find("back guard"), std::string::npos);
  }
}

WA_INSTANTIATE_BACKENDS(GuardTest);

}  // namespace
}  // namespace wideattn::test
