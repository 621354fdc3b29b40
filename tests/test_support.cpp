#include "test_support.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace wideattn::test {

// ---- seed ------------------------------------------------------------------------------------

uint64_t run_seed() {
  static const uint64_t seed = [] {
    if (const char* text = std::getenv("WIDEATTN_TEST_SEED")) {
      return static_cast<uint64_t>(std::strtoull(text, nullptr, 0));
    }
    std::random_device device;
    return (static_cast<uint64_t>(device()) << 32) ^ device();
  }();
  return seed;
}

std::string seed_note() {
  std::ostringstream s;
  s << "seed " << run_seed() << " (rerun with WIDEATTN_TEST_SEED=" << run_seed() << ")";
  return s.str();
}

std::mt19937_64 test_rng() {
  std::string name = "no test";
  if (const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info()) {
    name = std::string(info->test_suite_name()) + "." + info->name();
  }
  // FNV-1a of the name, so each test draws its own stream from the run seed.
  uint64_t hash = 1469598103934665603ull;
  for (unsigned char c : name) hash = (hash ^ c) * 1099511628211ull;
  std::seed_seq sequence{static_cast<uint32_t>(run_seed()), static_cast<uint32_t>(run_seed() >> 32),
                         static_cast<uint32_t>(hash), static_cast<uint32_t>(hash >> 32)};
  return std::mt19937_64(sequence);
}

// ---- host tensors ----------------------------------------------------------------------------

HostTensor::HostTensor(DType dtype, int64_t elements)
    : dtype_(dtype), elements_(elements), bytes_(static_cast<std::size_t>(elements) * dtype_size(dtype)) {}

double HostTensor::get(int64_t i) const { return load_as_float(data(), dtype_, static_cast<std::size_t>(i)); }

void HostTensor::set(int64_t i, double value) {
  store_from_float(data(), dtype_, static_cast<std::size_t>(i), static_cast<float>(value));
}

HostTensor random_tensor(std::mt19937_64& rng, DType dtype, int64_t elements, double low, double high) {
  HostTensor t(dtype, elements);
  std::uniform_real_distribution<double> uniform(low, high);
  for (int64_t i = 0; i < elements; ++i) t.set(i, uniform(rng));
  return t;
}

// ---- device memory -----------------------------------------------------------------------------

DeviceMemory::DeviceMemory(Context& context, std::size_t bytes) : context_(context), bytes_(bytes) {
  const Status status = context_.allocate(std::max<std::size_t>(bytes, 1), &pointer_);
  if (!status.ok()) {
    pointer_ = nullptr;
    ADD_FAILURE() << "Context::allocate(" << bytes << "): " << status.message();
  }
}

DeviceMemory::~DeviceMemory() {
  if (pointer_) {
    const Status status = context_.release(pointer_);
    EXPECT_TRUE(status.ok()) << "Context::release: " << status.message();
  }
}

std::unique_ptr<DeviceMemory> to_device(Context& context, const void* host, std::size_t bytes) {
  auto memory = std::make_unique<DeviceMemory>(context, bytes);
  if (memory->get() && bytes > 0) {
    const Status status = context.copy(memory->get(), host, bytes, CopyKind::host_to_device);
    EXPECT_TRUE(status.ok()) << "Context::copy to device: " << status.message();
  }
  return memory;
}

namespace {

// 0x7fc1 is a quiet NaN in f16 and bf16, and 0x7fc17fc1 one in f32.
void fill_poison(unsigned char* bytes, std::size_t count) {
  for (std::size_t i = 0; i + 1 < count; i += 2) {
    bytes[i] = 0xc1;
    bytes[i + 1] = 0x7f;
  }
}

}  // namespace

GuardedOutput::GuardedOutput(Context& context, DType dtype, int64_t elements, int64_t guard)
    : context_(context),
      dtype_(dtype),
      elements_(elements),
      guard_(guard),
      element_size_(dtype_size(dtype)) {
  const std::size_t total = static_cast<std::size_t>(elements + 2 * guard) * element_size_;
  memory_ = std::make_unique<DeviceMemory>(context, total);
  initial_.resize(total);
  fill_poison(initial_.data(), total);
  current_ = initial_;
}

void* GuardedOutput::data() const {
  return static_cast<unsigned char*>(memory_->get()) + guard_ * element_size_;
}

void GuardedOutput::set_initial(int64_t offset, double value) {
  store_from_float(initial_.data() + guard_ * element_size_, dtype_, static_cast<std::size_t>(offset),
                   static_cast<float>(value));
}

void GuardedOutput::upload() {
  const Status status = context_.copy(memory_->get(), initial_.data(), initial_.size(),
                                      CopyKind::host_to_device);
  EXPECT_TRUE(status.ok()) << "Context::copy: " << status.message();
  current_ = initial_;
}

void GuardedOutput::download() {
  Status status = context_.synchronize();
  EXPECT_TRUE(status.ok()) << "Context::synchronize: " << status.message();
  status = context_.copy(current_.data(), memory_->get(), current_.size(), CopyKind::device_to_host);
  EXPECT_TRUE(status.ok()) << "Context::copy: " << status.message();
}

double GuardedOutput::value(int64_t offset) const {
  return load_as_float(current_.data() + guard_ * element_size_, dtype_, static_cast<std::size_t>(offset));
}

std::vector<double> GuardedOutput::gather(const std::vector<int64_t>& offsets) const {
  std::vector<double> values(offsets.size());
  for (std::size_t i = 0; i < offsets.size(); ++i) values[i] = value(offsets[i]);
  return values;
}

::testing::AssertionResult GuardedOutput::untouched_except(const std::vector<int64_t>& written) const {
  std::vector<bool> allowed(static_cast<std::size_t>(elements_ + 2 * guard_), false);
  for (int64_t offset : written) allowed[static_cast<std::size_t>(offset + guard_)] = true;
  int64_t changed = 0;
  std::ostringstream first;
  for (int64_t e = 0; e < elements_ + 2 * guard_; ++e) {
    if (allowed[e]) continue;
    const std::size_t at = static_cast<std::size_t>(e) * element_size_;
    if (std::memcmp(&initial_[at], &current_[at], element_size_) != 0) {
      if (changed < 5) {
        const int64_t offset = e - guard_;
        first << "\n  element " << offset
              << (offset < 0 ? " (front guard)" : offset >= elements_ ? " (back guard)" : " (gap)")
              << " now " << load_as_float(&current_[at], dtype_, 0);
      }
      ++changed;
    }
  }
  if (changed == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << changed << " element(s) outside the output were written"
                                       << first.str() << "\n  " << seed_note();
}

// ---- comparison ------------------------------------------------------------------------------

double relative_tolerance(DType dtype) {
  switch (dtype) {
    case DType::f32: return 1e-5;
    case DType::f16: return 2e-3;
    case DType::bf16: return 1e-2;
    case DType::fp8_e4m3: break;  // a cache type: outputs are never fp8
  }
  return 0.0;
}

IndexName flat_index_name() {
  return [](std::size_t i) { return "element " + std::to_string(i); };
}

IndexName shape_index_name(std::vector<std::string> names, std::vector<int64_t> shape) {
  return [names, shape](std::size_t flat) {
    std::vector<int64_t> index(shape.size());
    int64_t rest = static_cast<int64_t>(flat);
    for (std::size_t d = shape.size(); d-- > 0;) {
      index[d] = rest % shape[d];
      rest /= shape[d];
    }
    std::ostringstream s;
    for (std::size_t d = 0; d < shape.size(); ++d) s << (d ? " " : "") << names[d] << " " << index[d];
    return s.str();
  };
}

namespace {

// Same NaN and +-inf positions; appends up to five mismatches to `message`.
bool same_non_finite(const std::vector<double>& actual, const std::vector<double>& expected,
                     const IndexName& name, std::ostringstream& message) {
  int64_t mismatches = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double a = actual[i], e = expected[i];
    const bool same = std::isnan(e) ? std::isnan(a)
                      : std::isinf(e) ? a == e
                                      : std::isfinite(a);
    if (!same) {
      if (mismatches < 5) message << "\n  " << name(i) << ": got " << a << ", expected " << e;
      ++mismatches;
    }
  }
  if (mismatches > 0) {
    message << "\n  " << mismatches << " of " << expected.size()
            << " element(s) differ in NaN/inf position";
  }
  return mismatches == 0;
}

}  // namespace

::testing::AssertionResult close_rel_l2(const std::vector<double>& actual,
                                        const std::vector<double>& expected, double rel_l2,
                                        const IndexName& name) {
  if (actual.size() != expected.size()) {
    return ::testing::AssertionFailure() << "size " << actual.size() << " != expected " << expected.size();
  }
  std::ostringstream message;
  if (!same_non_finite(actual, expected, name, message)) {
    return ::testing::AssertionFailure() << message.str() << "\n  " << seed_note();
  }
  double diff2 = 0.0, ref2 = 0.0, worst = -1.0;
  std::size_t worst_at = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    if (!std::isfinite(expected[i])) continue;
    const double diff = actual[i] - expected[i];
    diff2 += diff * diff;
    ref2 += expected[i] * expected[i];
    if (std::abs(diff) > worst) {
      worst = std::abs(diff);
      worst_at = i;
    }
  }
  const double error = ref2 > 0 ? std::sqrt(diff2 / ref2) : std::sqrt(diff2);
  if (error <= rel_l2) return ::testing::AssertionSuccess();
  message << "relative L2 error " << error << " > " << rel_l2 << " over " << expected.size()
          << " elements; worst at " << name(worst_at) << ": got " << actual[worst_at]
          << ", expected " << expected[worst_at] << "\n  " << seed_note();
  return ::testing::AssertionFailure() << message.str();
}

::testing::AssertionResult close_abs(const std::vector<double>& actual,
                                     const std::vector<double>& expected, double abs_tol,
                                     const IndexName& name) {
  if (actual.size() != expected.size()) {
    return ::testing::AssertionFailure() << "size " << actual.size() << " != expected " << expected.size();
  }
  std::ostringstream message;
  if (!same_non_finite(actual, expected, name, message)) {
    return ::testing::AssertionFailure() << message.str() << "\n  " << seed_note();
  }
  double worst = -1.0;
  std::size_t worst_at = 0;
  int64_t over = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    if (!std::isfinite(expected[i])) continue;
    const double diff = std::abs(actual[i] - expected[i]);
    if (diff > abs_tol) ++over;
    if (diff > worst) {
      worst = diff;
      worst_at = i;
    }
  }
  if (over == 0) return ::testing::AssertionSuccess();
  message << over << " of " << expected.size() << " element(s) off by more than " << abs_tol
          << "; worst at " << name(worst_at) << ": got " << actual[worst_at] << ", expected "
          << expected[worst_at] << "\n  " << seed_note();
  return ::testing::AssertionFailure() << message.str();
}

// ---- status checks ------------------------------------------------------------------------------

::testing::AssertionResult has_error(const Status& status, StatusCode code,
                                     std::initializer_list<std::string> fragments) {
  if (status.code() != code) {
    return ::testing::AssertionFailure() << "status " << to_string(status.code()) << " (\""
                                         << status.message() << "\"), expected " << to_string(code);
  }
  for (const std::string& fragment : fragments) {
    if (status.message().find(fragment) == std::string::npos) {
      return ::testing::AssertionFailure() << "message \"" << status.message()
                                           << "\" does not contain \"" << fragment << "\"";
    }
  }
  return ::testing::AssertionSuccess() << status.message();
}

// ---- backends --------------------------------------------------------------------------------

bool BackendSession::start(Backend backend) {
  std::string why;
  if (!backend_available(backend, &why)) {
    [&] { GTEST_SKIP() << "CUDA backend unavailable: " << why; }();
    return false;
  }
  seed_trace = std::make_unique<::testing::ScopedTrace>(__FILE__, __LINE__, seed_note());
  const Status status = Context::create(backend, 0, nullptr, &context);
  if (!status.ok()) {
    ADD_FAILURE() << "Context::create(" << to_string(backend) << "): " << status.message();
    return false;
  }
  rng = test_rng();
  return true;
}

void BackendSession::stop() {
  context.reset();
  seed_trace.reset();
}

std::string backend_param_name(const ::testing::TestParamInfo<Backend>& info) {
  return to_string(info.param);
}

DeviceInfo cpu_device() {
  DeviceInfo d;
  d.backend = Backend::cpu;
  d.name = "test CPU";
  d.compute_units = 2;
  d.memory_bytes = int64_t{32} << 30;
  return d;
}

DeviceInfo h100_device() {
  DeviceInfo d;
  d.backend = Backend::cuda;
  d.name = "test H100";
  d.compute_units = 132;
  d.compute_capability = 90;
  d.shared_memory_per_block = 227 * 1024;
  d.l2_bytes = 50 << 20;
  d.memory_bytes = int64_t{80} << 30;
  return d;
}

}  // namespace wideattn::test
