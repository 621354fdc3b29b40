// Shared test helpers: the per-run seed, random host tensors in a dtype, device buffers
// with poisoned guard regions, the comparison against the f64 oracle, and the backend
// fixture every test body is parameterised over.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "wideattn/wideattn.h"

namespace wideattn {
// Readable parameters in gtest's messages ("GetParam() = cpu").
inline void PrintTo(Backend backend, std::ostream* os) { *os << to_string(backend); }
inline void PrintTo(Kernel kernel, std::ostream* os) { *os << to_string(kernel); }
}  // namespace wideattn

namespace wideattn::test {

// ---- seed ------------------------------------------------------------------------------------
// One seed per process: WIDEATTN_TEST_SEED when set, else std::random_device.
uint64_t run_seed();
// "seed 1234 (rerun with WIDEATTN_TEST_SEED=1234)", for SCOPED_TRACE.
std::string seed_note();
// A generator for the current test: the run seed mixed with the test's full name, so a test
// reproduces on its own with the same WIDEATTN_TEST_SEED.
std::mt19937_64 test_rng();

// ---- host tensors ----------------------------------------------------------------------------
// Elements of `dtype` in host memory.
class HostTensor {
 public:
  HostTensor() = default;
  HostTensor(DType dtype, int64_t elements);
  DType dtype() const { return dtype_; }
  int64_t size() const { return elements_; }
  std::size_t bytes() const { return bytes_.size(); }
  void* data() { return bytes_.data(); }
  const void* data() const { return bytes_.data(); }
  double get(int64_t i) const;
  void set(int64_t i, double value);  // rounds to the dtype

 private:
  DType dtype_ = DType::f32;
  int64_t elements_ = 0;
  std::vector<unsigned char> bytes_;
};

// Uniform values in [low, high], rounded to `dtype`.
HostTensor random_tensor(std::mt19937_64& rng, DType dtype, int64_t elements, double low = -1.0,
                         double high = 1.0);

// ---- device memory -----------------------------------------------------------------------------
// An allocation on a context's device, released on destruction.
class DeviceMemory {
 public:
  DeviceMemory(Context& context, std::size_t bytes);
  ~DeviceMemory();
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  void* get() const { return pointer_; }
  std::size_t bytes() const { return bytes_; }

 private:
  Context& context_;
  void* pointer_ = nullptr;
  std::size_t bytes_ = 0;
};

// A device copy of a host array (input tensors, tree arrays, sinks).
std::unique_ptr<DeviceMemory> to_device(Context& context, const void* host, std::size_t bytes);

// An output on the device with `guard` poisoned elements before and after its `elements`. The
// default guard is 64 elements, a multiple of 16 bytes in every dtype, so data() is as aligned
// as an allocation: kernels that need 16-byte rows (the tensor-core decode kernel, the fused
// prefill's bulk stores) run on it. With 67 (before 2026-12-02) every CUDA decode case of
// check_attention fell back to the SIMT kernel unnoticed; misaligned outputs are tested on
// purpose through AttentionCase::out_gap.
// The host keeps an image of everything the device should hold: poison (a NaN in every dtype)
// except where a test sets initial values. After the call under test, `download` reads it all
// back; `untouched_except` checks that every element outside the given offsets (gaps of
// non-dense strides, the guards) still holds its initial bytes.
class GuardedOutput {
 public:
  GuardedOutput(Context& context, DType dtype, int64_t elements, int64_t guard = 64);
  void* data() const;  // first element after the front guard
  DType dtype() const { return dtype_; }
  int64_t size() const { return elements_; }
  void set_initial(int64_t offset, double value);  // before upload
  void upload();
  void download();
  double value(int64_t offset) const;  // downloaded element, as f64
  std::vector<double> gather(const std::vector<int64_t>& offsets) const;
  // Checks that no element but `written` (offsets from data()) changed, guards included.
  ::testing::AssertionResult untouched_except(const std::vector<int64_t>& written) const;
  ::testing::AssertionResult unchanged() const { return untouched_except({}); }

 private:
  Context& context_;
  DType dtype_;
  int64_t elements_;
  int64_t guard_;
  std::size_t element_size_;
  std::unique_ptr<DeviceMemory> memory_;
  std::vector<unsigned char> initial_;
  std::vector<unsigned char> current_;
};

// ---- comparison ------------------------------------------------------------------------------
// Relative L2 error allowed for a result stored in (or computed through) `dtype`:
// 1e-5 f32, 2e-3 f16, 1e-2 bf16.
double relative_tolerance(DType dtype);

// Names element i of a compared vector in failure messages ("token 3 head 1 dim 7").
using IndexName = std::function<std::string(std::size_t)>;
IndexName flat_index_name();
IndexName shape_index_name(std::vector<std::string> names, std::vector<int64_t> shape);

// NaN and +-inf positions must match exactly; then ||actual - expected|| / ||expected||
// must be <= rel_l2 (||actual - expected|| <= rel_l2 when expected is all zeros). Failure
// messages give the error, the worst element, its index and the run seed.
::testing::AssertionResult close_rel_l2(const std::vector<double>& actual,
                                        const std::vector<double>& expected, double rel_l2,
                                        const IndexName& name);
// Same non-finite rule, then |actual - expected| <= abs_tol element-wise.
::testing::AssertionResult close_abs(const std::vector<double>& actual,
                                     const std::vector<double>& expected, double abs_tol,
                                     const IndexName& name);

// ---- status checks ------------------------------------------------------------------------------
// `status` has `code` and its message contains every one of `fragments`.
::testing::AssertionResult has_error(const Status& status, StatusCode code,
                                     std::initializer_list<std::string> fragments);
#define WA_ASSERT_OK(expr)                                                              \
  do {                                                                                  \
    const ::wideattn::Status wa_status_ = (expr);                                       \
    ASSERT_TRUE(wa_status_.ok()) << #expr << ": " << ::wideattn::to_string(wa_status_.code()) \
                                 << ": " << wa_status_.message();                       \
  } while (0)
#define WA_EXPECT_OK(expr)                                                              \
  do {                                                                                  \
    const ::wideattn::Status wa_status_ = (expr);                                       \
    EXPECT_TRUE(wa_status_.ok()) << #expr << ": " << ::wideattn::to_string(wa_status_.code()) \
                                 << ": " << wa_status_.message();                       \
  } while (0)

// ---- devices for planning tests ----------------------------------------------------------------
// Descriptions of a 2-thread CPU and an H100 (sm_90, 132 SMs) for plan_attention, which reads
// the device but never runs on it.
DeviceInfo cpu_device();
DeviceInfo h100_device();

// ---- backends --------------------------------------------------------------------------------
// What a test on one backend holds: the Context, the seed in every failure message, and the
// test's random generator. start() skips the test ("CUDA backend unavailable: <why>") and
// returns false when the backend is absent.
struct BackendSession {
  bool start(Backend backend);
  void stop();
  std::unique_ptr<Context> context;
  std::unique_ptr<::testing::ScopedTrace> seed_trace;
  std::mt19937_64 rng;
};

// Fixture for one test body run on every backend.
class BackendTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override { session_.start(GetParam()); }
  void TearDown() override { session_.stop(); }
  Backend backend() const { return GetParam(); }
  Context& context() { return *session_.context; }
  std::mt19937_64& rng() { return session_.rng; }

 private:
  BackendSession session_;
};

std::string backend_param_name(const ::testing::TestParamInfo<Backend>& info);

#define WA_INSTANTIATE_BACKENDS(suite)                                                    \
  INSTANTIATE_TEST_SUITE_P(Backends, suite,                                              \
                           ::testing::Values(::wideattn::Backend::cpu, ::wideattn::Backend::cuda), \
                           ::wideattn::test::backend_param_name)

}  // namespace wideattn::test
