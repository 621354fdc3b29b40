// libFuzzer target over the public entry points on the CPU backend (docs/reliability.md):
// plan_attention and attention with random problem descriptions, and the components (matmul,
// softmax, scatter_scores, scatter_values, merge_states) and write_kv. Built with -fsanitize=fuzzer,address,undefined
// by CMake's WIDEATTN_FUZZ option (scripts/fuzz.sh builds and runs it).
//
// The fuzz input decides the structure of one call (sizes, strides including zero, negative,
// huge and overlapping ones, masks with random tree arrays, sinks, soft-cap, scale, null
// pointers, aliasing of outputs and inputs, the kernel); a small PRNG seeded from the input fills
// the tensors. Every tensor the call may touch gets its own heap allocation of exactly the
// extent its shape and strides describe, so AddressSanitizer flags any access outside it.
// For each input:
// - the call returns ok, or a non-ok Status whose message starts with the function's name;
// - on an error, every output buffer is byte-for-byte unchanged (checked against a copy), and
//   attention fails exactly when plan_attention does, with the same code;
// - on success, inputs are unchanged, every output cell the call owns matches the f64 oracle
//   (reference/) within the tolerance of its dtype, and every other byte of the output
//   buffers (gaps between strided rows) is unchanged;
// - a problem built valid by construction must be accepted (no false rejections), and one whose
//   output overlaps an input, or itself, must be rejected.
// Values are finite and moderate in "compare" inputs; "wild" inputs put NaN, inf, huge and
// random bit patterns into the tensors, scale, soft-cap and sinks, and are only checked for
// crashes, UB, out-of-bounds access and writes outside the outputs.
// Shapes whose tensors would not fit the allocation cap (or whose extents overflow) are only
// planned and validated, with fake device pointers: planning never reads tensors.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/validate.h"
#include "reference/components_reference.h"
#include "reference/reference.h"
#include "wideattn/wideattn.h"

namespace {

using namespace wideattn;

constexpr int64_t kMaxElements = int64_t{1} << 18;  // per tensor; keeps each input in milliseconds
constexpr double kInf = std::numeric_limits<double>::infinity();

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "\nwideattn_fuzz: FAILED: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream s;
  (s << ... << parts);
  return s.str();
}

Context& cpu_context() {
  static std::unique_ptr<Context> context = [] {
    std::unique_ptr<Context> c;
    const Status status = Context::create(Backend::cpu, 0, nullptr, &c);
    if (!status.ok()) fail("Context::create(cpu): " + status.message());
    return c;
  }();
  return *context;
}

// WIDEATTN_FUZZ_STATS=1: counts of outcomes, printed at exit (is the corpus reaching the kernels?).
struct Stats {
  long counts[20] = {};
  ~Stats() {
    if (!std::getenv("WIDEATTN_FUZZ_STATS")) return;
    static const char* names[] = {"attention planned only", "attention rejected", "attention ok, not compared",
                                  "attention ok, compared", "single_pass compared", "two_pass compared",
                                  "prefill_unfused compared", "matmul rejected", "matmul compared",
                                  "softmax rejected", "softmax compared", "scatter_scores rejected",
                                  "scatter_scores compared", "scatter_values rejected", "scatter_values compared",
                                  "merge_states rejected", "merge_states compared", "write_kv rejected",
                                  "write_kv compared", "validation only"};
    static_assert(std::size(names) == sizeof(counts) / sizeof(counts[0]), "a name for every outcome");
    for (std::size_t i = 0; i < std::size(names); ++i) std::fprintf(stderr, "  %-28s %ld\n", names[i], counts[i]);
  }
} stats;
enum Outcome { kPlanOnly, kAttnRejected, kAttnOk, kAttnCompared, kSingle, kTwo, kPrefill, kMatmulRejected,
               kMatmulCompared, kSoftmaxRejected, kSoftmaxCompared, kScoresRejected, kScoresCompared,
               kValuesRejected, kValuesCompared, kMergeRejected, kMergeCompared, kWriteRejected,
               kWriteCompared, kValidationOnly };
void count(Outcome o) { ++stats.counts[o]; }

// ---- input decoding --------------------------------------------------------------------------------

class Input {
 public:
  Input(const uint8_t* data, std::size_t size) : fdp_(data, size) {}
  int64_t pick(int64_t lo, int64_t hi) { return hi <= lo ? lo : fdp_.ConsumeIntegralInRange<int64_t>(lo, hi); }
  bool chance(int percent) { return fdp_.ConsumeIntegralInRange<int>(0, 99) < percent; }
  bool flag() { return fdp_.ConsumeBool(); }
  uint32_t seed() { return fdp_.ConsumeIntegral<uint32_t>(); }
  // An int64 that validation must survive: extremes, powers of two around 2^31/2^32, negatives.
  int64_t wild_i64() {
    static constexpr int64_t kValues[] = {
        0, 1, -1, 2, -8, 7, 1000, int64_t{1} << 31, (int64_t{1} << 31) - 1, int64_t{1} << 32,
        int64_t{1} << 40, int64_t{1} << 62, std::numeric_limits<int64_t>::max(),
        std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max() / 2,
        -(int64_t{1} << 40)};
    if (flag()) return kValues[pick(0, std::size(kValues) - 1)];
    return fdp_.ConsumeIntegral<int64_t>();
  }
  int32_t wild_i32() {
    static constexpr int32_t kValues[] = {0, 1, -1, 2, 9, 513, std::numeric_limits<int32_t>::max(),
                                          std::numeric_limits<int32_t>::min(), 1 << 30, -(1 << 20)};
    if (flag()) return kValues[pick(0, std::size(kValues) - 1)];
    return fdp_.ConsumeIntegral<int32_t>();
  }
  float wild_float() {
    static const float kValues[] = {0.0f, -0.0f, 1.0f, -1.0f, std::numeric_limits<float>::infinity(),
                                    -std::numeric_limits<float>::infinity(),
                                    std::numeric_limits<float>::quiet_NaN(),
                                    std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min(),
                                    1e-30f, 1e30f, 65504.0f, 3.0e38f};
    if (flag()) return kValues[pick(0, std::size(kValues) - 1)];
    uint32_t bits = fdp_.ConsumeIntegral<uint32_t>();
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }

 private:
  FuzzedDataProvider fdp_;
};

// ---- buffers ---------------------------------------------------------------------------------------

// One heap allocation of exactly `bytes` (new[] of 0 bytes is a valid, non-null pointer that
// AddressSanitizer treats as empty), with a copy to compare against after the call.
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(std::size_t bytes) : bytes_(bytes), data_(new unsigned char[bytes]) {}
  unsigned char* data() const { return data_.get(); }
  std::size_t bytes() const { return bytes_; }
  void snapshot() { copy_.assign(data_.get(), data_.get() + bytes_); }
  bool unchanged() const { return bytes_ == 0 || std::memcmp(copy_.data(), data_.get(), bytes_) == 0; }
  // First changed byte outside `allowed` (true = the call owns the byte), or -1.
  int64_t changed_outside(const std::vector<bool>& allowed) const {
    for (std::size_t i = 0; i < bytes_; ++i) {
      if (!allowed[i] && copy_[i] != data_[i]) return static_cast<int64_t>(i);
    }
    return -1;
  }
  const std::vector<unsigned char>& before() const { return copy_; }

 private:
  std::size_t bytes_ = 0;
  std::unique_ptr<unsigned char[]> data_;
  std::vector<unsigned char> copy_;
};

// Marks `bytes` bytes from `offset` as written by the call.
void own(std::vector<bool>& owned, int64_t offset, int64_t bytes) {
  if (bytes <= 0) return;
  if (offset < 0 || offset + bytes > static_cast<int64_t>(owned.size())) {
    fail(cat("harness: cells [", offset, ", ", offset + bytes, ") outside a buffer of ", owned.size(), " bytes"));
  }
  std::fill_n(owned.begin() + offset, bytes, true);
}

// Largest element offset + 1 of a tensor with (count, stride) dims, or -1 when it cannot be
// allocated: a negative count, a negative stride on a dim of more than one element, overflow,
// or more than kMaxElements. 0 when a count is 0.
struct Dim {
  int64_t count, stride;
};
int64_t extent_of(std::initializer_list<Dim> dims) {
  for (const Dim& d : dims) {
    if (d.count < 0) return -1;
    if (d.count == 0) return 0;
  }
  __int128 last = 0;
  for (const Dim& d : dims) {
    if (d.count > 1 && d.stride < 0) return -1;
    last += static_cast<__int128>(d.count - 1) * d.stride;
    if (last > kMaxElements) return -1;
  }
  return static_cast<int64_t>(last) + 1;
}

// Saturating int64 arithmetic for strides built from possibly huge sizes.
int64_t clamp128(__int128 x) {
  return static_cast<int64_t>(std::clamp<__int128>(x, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()));
}
int64_t smul(int64_t a, int64_t b) { return clamp128(static_cast<__int128>(a) * b); }
int64_t sadd(int64_t a, int64_t b) { return clamp128(static_cast<__int128>(a) + b); }

// Whether a call over these loop counts stays within milliseconds (counts of 0 count as 1; any
// negative count is left to validation, which must reject it before any work).
bool small_work(std::initializer_list<int64_t> counts) {
  __int128 work = 1;
  for (int64_t c : counts) {
    work *= std::max<int64_t>(c, 1);
    if (work > (int64_t{1} << 22)) return false;
  }
  return true;
}

// Tensor values: moderate finite values in compare inputs; in wild inputs a share of NaN, inf,
// huge values and random bit patterns.
struct Filler {
  std::mt19937 rng;
  bool wild;
  double range;
  float next() {
    if (wild) {
      switch (rng() % 16) {
        case 0: return std::numeric_limits<float>::quiet_NaN();
        case 1: return std::numeric_limits<float>::infinity();
        case 2: return -std::numeric_limits<float>::infinity();
        case 3: return (rng() & 1 ? 1 : -1) * 3.0e38f;
        case 4: {
          const uint32_t bits = static_cast<uint32_t>(rng());
          float f;
          std::memcpy(&f, &bits, sizeof f);
          return f;
        }
        default: break;
      }
    }
    return static_cast<float>(std::uniform_real_distribution<double>(-range, range)(rng));
  }
  void fill(void* data, DType dtype, int64_t elements) {
    for (int64_t i = 0; i < elements; ++i) store_from_float(data, dtype, static_cast<std::size_t>(i), next());
  }
};

bool valid_dtype(DType d) { return d == DType::f32 || d == DType::f16 || d == DType::bf16; }

DType pick_dtype(Input& in, bool* intended_valid) {
  if (in.chance(3)) {
    *intended_valid = false;
    return static_cast<DType>(in.flag() ? 3 : -1);
  }
  return static_cast<DType>(in.pick(0, 2));
}

std::size_t size_of(DType d) { return valid_dtype(d) ? dtype_size(d) : 4; }

// Overlap of two byte ranges, both non-empty.
bool overlap(const void* a, std::size_t a_bytes, const void* b, std::size_t b_bytes) {
  const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return a_bytes > 0 && b_bytes > 0 && x < y + b_bytes && y < x + a_bytes;
}

void check_error_message(const Status& status, const char* function) {
  if (status.ok()) return;
  if (status.code() != StatusCode::invalid_argument && status.code() != StatusCode::unsupported) {
    fail(cat(function, ": unexpected status ", to_string(status.code()), ": ", status.message()));
  }
  const std::string prefix = std::string(function) + ": ";
  if (status.message().rfind(prefix, 0) != 0 || status.message().size() <= prefix.size()) {
    fail(cat(function, ": error message does not start with \"", prefix, "\": ", status.message()));
  }
}

// |got - want| within tolerance; both non-finite in the same way otherwise.
bool close(double got, double want, double tolerance) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  return std::isfinite(got) && std::abs(got - want) <= tolerance;
}

// WIDEATTN_FUZZ_VERBOSE=1 prints each problem before the call (for reproducing a finding).
bool verbose() {
  static const bool on = std::getenv("WIDEATTN_FUZZ_VERBOSE") != nullptr;
  return on;
}

std::string describe(const AttentionProblem& p, Kernel forced) {
  std::ostringstream s;
  s << "attention: batch " << p.batch << ", heads " << p.q_heads << "/" << p.kv_heads << ", head_dim " << p.head_dim
    << ", dtype " << static_cast<int>(p.dtype) << ", forced " << static_cast<int>(forced) << "\n  sequences (suffix/kv):";
  if (p.query_offsets && p.kv_lengths) {
    for (int32_t b = 0; b < p.batch && b < 8; ++b) {
      s << " " << int64_t{p.query_offsets[b + 1]} - p.query_offsets[b] << "/" << p.kv_lengths[b];
    }
  }
  s << ", capacity " << p.kv.capacity << "\n  q strides " << p.q_token_stride << "/" << p.q_head_stride
    << ", out " << p.out_token_stride << "/" << p.out_head_stride << ", lse " << p.lse_token_stride << "/"
    << p.lse_head_stride << (p.lse ? "" : " (no lse)") << "\n  k " << p.kv.k_sequence_stride << "/"
    << p.kv.k_token_stride << "/" << p.kv.k_head_stride << ", v " << p.kv.v_sequence_stride << "/"
    << p.kv.v_token_stride << "/" << p.kv.v_head_stride
    << (p.kv.fp8 ? (p.kv.scales_per_head ? ", fp8 (scale per head)" : ", fp8") : "")
    << (!p.kv.fp8 && p.kv.k_scale ? ", scales on a 16/32-bit cache" : "") << "\n  mask causal " << p.mask.causal << " window "
    << p.mask.window << " ring " << p.mask.ring_length << "@" << p.mask.ring_offset << " tree "
    << (p.mask.tree_start != nullptr) << (p.mask.tree_end != nullptr) << (p.mask.tree_height != nullptr)
    << ", scale " << p.scale << ", softcap " << p.softcap << ", sinks " << (p.sinks != nullptr) << "\n";
  return s.str();
}

// ---- attention ---------------------------------------------------------------------------------------

// The workspace one kernel needs for sequences [first, first + count) of `p`, recomputed in
// 128-bit arithmetic from the layouts in src/core/workspace_layout.h.
__int128 kernel_workspace(const AttentionProblem& p, int32_t first, int32_t count, Kernel kernel,
                          int32_t splits, int64_t chunk) {
  using Wide = __int128;
  auto align = [](Wide bytes) { return (bytes + 255) / 256 * 256; };
  const Wide tokens = Wide{p.query_offsets[first + count]} - p.query_offsets[first], d = p.head_dim;
  Wide need = 0;
  if (kernel == Kernel::prefill_unfused) {
    int64_t longest = 0;
    for (int32_t b = first; b < first + count; ++b) longest = std::max<int64_t>(longest, p.kv_lengths[b]);
    const Wide key_capacity = (std::max<int64_t>(longest, 1) + 7) / 8 * 8;
    const Wide gqa = p.q_heads / p.kv_heads;
    need = align(gqa * chunk * key_capacity * 4) + align(gqa * chunk * d * 4);
    if (p.kv.fp8) need += 2 * align(key_capacity * d * 4);  // K and V rows dequantised to f32
  } else {
    const Wide rows = tokens * p.q_heads;
    if (splits > 1) need = align(rows * splits * d * 4) + 2 * align(rows * splits * 4);
    need += align((2 * Wide{count} + 1) * 4);
  }
  return need;
}

// The workspace plan_attention reports: the kernel's need, representable (no wrap-around); for a
// mixed batch each part's, and the largest of them for the whole call.
void check_workspace(const AttentionProblem& p, const Plan& plan) {
  using Wide = __int128;
  Wide need = 0;
  if (plan.parts.empty()) {
    need = kernel_workspace(p, 0, p.batch, plan.kernel, plan.num_splits, plan.query_rows_per_chunk);
  } else {
    int32_t next = 0;
    for (const PlanPart& part : plan.parts) {
      if (part.first_sequence != next || part.sequences < 1) {
        fail(cat("plan_attention: mixed parts do not tile the batch (part at ", part.first_sequence, ")"));
      }
      next = part.first_sequence + part.sequences;
      const Wide part_need = kernel_workspace(p, part.first_sequence, part.sequences, part.kernel,
                                              part.num_splits, part.query_rows_per_chunk);
      if (part_need != static_cast<Wide>(part.workspace_bytes)) {
        fail(cat("plan_attention: part workspace_bytes ", part.workspace_bytes, " for ", to_string(part.kernel),
                 ", expected ", static_cast<double>(part_need)));
      }
      need = std::max(need, part_need);
    }
    if (next != p.batch) fail(cat("plan_attention: mixed parts cover ", next, " of ", p.batch, " sequences"));
  }
  if (need != static_cast<Wide>(plan.workspace_bytes)) {
    fail(cat("plan_attention: workspace_bytes ", plan.workspace_bytes, " for ", to_string(plan.kernel),
             ", expected ", static_cast<double>(need), " (overflow?)"));
  }
}

// Fake, far-apart device addresses for problems too large to allocate (planning reads none).
const void* fake_pointer(int slot) { return reinterpret_cast<const void*>(static_cast<uintptr_t>(slot) << 44); }

void fuzz_attention(Input& in) {
  bool valid = true;  // built valid: must be accepted
  const bool wild = in.chance(15);
  Filler filler{std::mt19937(in.seed()), wild, 1.0};

  // Shapes.
  int32_t batch = static_cast<int32_t>(in.pick(1, 4));
  if (in.chance(3)) {
    batch = static_cast<int32_t>(in.pick(-2, 0));
    valid = false;
  }
  int32_t kv_heads = static_cast<int32_t>(in.pick(1, 3));
  int32_t q_heads = kv_heads * static_cast<int32_t>(in.pick(1, 4));
  if (in.chance(3)) {
    q_heads = static_cast<int32_t>(in.pick(-1, 9));
    kv_heads = static_cast<int32_t>(in.pick(-1, 4));
    valid = valid && q_heads >= 1 && kv_heads >= 1 && q_heads % kv_heads == 0;
  }
  static constexpr int32_t kHeadDims[] = {8, 16, 24, 32, 40, 64, 64, 72, 128, 256, 512};
  int32_t head_dim = kHeadDims[in.pick(0, std::size(kHeadDims) - 1)];
  if (in.chance(3)) {
    head_dim = static_cast<int32_t>(in.flag() ? in.pick(-16, 1024) : in.wild_i32());
    valid = valid && head_dim >= 8 && head_dim <= 512 && head_dim % 8 == 0;
  }
  const DType dtype = pick_dtype(in, &valid);
  const std::size_t es = size_of(dtype);
  const bool large_d = head_dim > 128;

  // Sequences: query_offsets and kv_lengths, host arrays of exactly batch + 1 and batch entries.
  const int32_t entries = std::max<int32_t>(batch, 0);
  Buffer offsets_buffer((entries + 1) * sizeof(int32_t)), lengths_buffer(entries * sizeof(int32_t));
  auto* offsets = reinterpret_cast<int32_t*>(offsets_buffer.data());
  auto* kv_lengths = reinterpret_cast<int32_t*>(lengths_buffer.data());
  offsets[0] = 0;
  int64_t longest_kv = 0, shortest_prefix = std::numeric_limits<int64_t>::max();
  for (int32_t b = 0; b < entries; ++b) {
    const int32_t suffix = static_cast<int32_t>(in.chance(25) ? in.pick(9, large_d ? 12 : 24) : in.pick(0, 8));
    offsets[b + 1] = offsets[b] + suffix;
    kv_lengths[b] = suffix + static_cast<int32_t>(in.pick(0, large_d ? 16 : 48));
    longest_kv = std::max<int64_t>(longest_kv, kv_lengths[b]);
    if (kv_lengths[b] > suffix) shortest_prefix = std::min<int64_t>(shortest_prefix, kv_lengths[b] - suffix);
  }
  int64_t capacity = std::max<int64_t>(1, longest_kv + in.pick(0, 3));
  if (entries > 0 && in.chance(4)) {  // broken metadata
    valid = false;
    switch (in.pick(0, 5)) {
      case 0: offsets[0] = static_cast<int32_t>(in.pick(-2, 2)); break;
      case 1: offsets[in.pick(1, entries)] = in.wild_i32(); break;
      case 2: kv_lengths[in.pick(0, entries - 1)] = in.wild_i32(); break;
      case 3: capacity = in.wild_i64(); break;
      case 4: kv_lengths[in.pick(0, entries - 1)] -= 1; break;
      default: capacity = longest_kv - 1; break;
    }
  }
  // Tokens as the library sees them (query_offsets[batch]); huge offsets make plan-only inputs.
  const int64_t tokens = entries > 0 ? offsets[entries] : 0;

  AttentionProblem p;
  p.batch = batch;
  p.q_heads = q_heads;
  p.kv_heads = kv_heads;
  p.head_dim = head_dim;
  p.dtype = dtype;
  p.query_offsets = offsets;
  p.kv_lengths = kv_lengths;
  p.kv.capacity = capacity;

  // An fp8 cache: one byte per element, scales per pool or per KV head (powers of two up to 1,
  // or anything in wild inputs); scales on a 16/32-bit cache are an error.
  const bool fp8 = valid_dtype(dtype) && in.chance(15);
  const bool stray_scales = !fp8 && in.chance(2);
  const int64_t scale_count = 2 * std::max<int64_t>(kv_heads, 1);
  Buffer scales(static_cast<std::size_t>(scale_count) * 4);
  bool sane_scales = true;
  if (fp8 || stray_scales) {
    auto* s = reinterpret_cast<float*>(scales.data());
    for (int64_t i = 0; i < scale_count; ++i) {
      const bool odd = wild && in.chance(20);
      // At most 1: dequantised values stay within the moderate range the absolute tolerances
      // of the oracle comparison assume.
      s[i] = odd ? in.wild_float() : std::exp2(static_cast<float>(in.pick(-3, 0)));
      sane_scales = sane_scales && !odd;
    }
    p.kv.fp8 = fp8;
    p.kv.scales_per_head = in.flag();
    p.kv.k_scale = s;
    p.kv.v_scale = s + scale_count / 2;
    if (stray_scales) valid = false;
  }
  const DType kv_dtype = fp8 ? DType::fp8_e4m3 : dtype;
  const std::size_t kv_es = fp8 ? 1 : es;

  // Strides: token- or head-major, dense or with gaps, overlapping inputs, zero, negative, huge.
  const int64_t d = head_dim;
  const int64_t qh = std::max<int32_t>(q_heads, 1), kvh = std::max<int32_t>(kv_heads, 1);
  const int64_t t1 = std::max<int64_t>(tokens, 1), c1 = std::max<int64_t>(capacity, 1);
  auto gap = [&] { return in.chance(30) ? in.pick(1, 5) : 0; };
  {
    const int64_t g = gap();
    if (in.flag()) {
      p.q_head_stride = d + g;
      p.q_token_stride = sadd(smul(qh, p.q_head_stride), gap());
    } else {
      p.q_token_stride = d + g;
      p.q_head_stride = sadd(smul(t1, p.q_token_stride), gap());
    }
  }
  {
    const int64_t g = gap();
    if (in.flag()) {
      p.out_head_stride = d + g;
      p.out_token_stride = sadd(smul(qh, p.out_head_stride), gap());
    } else {
      p.out_token_stride = d + g;
      p.out_head_stride = sadd(smul(t1, p.out_token_stride), gap());
    }
    if (in.flag()) {
      p.lse_head_stride = 1 + (in.chance(20) ? in.pick(1, 3) : 0);
      p.lse_token_stride = sadd(smul(qh, p.lse_head_stride), (in.chance(20) ? in.pick(1, 3) : 0));
    } else {
      p.lse_token_stride = 1 + (in.chance(20) ? in.pick(1, 3) : 0);
      p.lse_head_stride = sadd(smul(t1, p.lse_token_stride), (in.chance(20) ? in.pick(1, 3) : 0));
    }
  }
  for (int which = 0; which < 2; ++which) {
    int64_t& seq = which == 0 ? p.kv.k_sequence_stride : p.kv.v_sequence_stride;
    int64_t& tok = which == 0 ? p.kv.k_token_stride : p.kv.v_token_stride;
    int64_t& head = which == 0 ? p.kv.k_head_stride : p.kv.v_head_stride;
    if (in.flag()) {
      head = d + gap();
      tok = sadd(smul(kvh, head), gap());
      seq = sadd(smul(c1, tok), gap());
    } else {
      tok = d + gap();
      head = sadd(smul(c1, tok), gap());
      seq = sadd(smul(kvh, head), gap());
    }
  }
  // Inputs may overlap themselves (a broadcast cache, overlapping rows): any stride >= 1.
  if (in.chance(8)) {
    int64_t* input_strides[] = {&p.q_token_stride, &p.q_head_stride, &p.kv.k_token_stride, &p.kv.k_head_stride,
                                &p.kv.v_token_stride, &p.kv.v_head_stride, &p.kv.k_sequence_stride,
                                &p.kv.v_sequence_stride};
    *input_strides[in.pick(0, 7)] = in.pick(1, d);
  }
  // Strides of dims with one element are never used: any value >= 0 is valid, 2^40 included.
  if (in.chance(10)) {
    if (tokens <= 1) p.q_token_stride = in.flag() ? 0 : in.wild_i64() & ((int64_t{1} << 41) - 1);
    if (tokens <= 1) p.out_token_stride = in.flag() ? 0 : in.wild_i64() & ((int64_t{1} << 41) - 1);
    if (capacity == 1) p.kv.k_token_stride = in.flag() ? 0 : in.wild_i64() & ((int64_t{1} << 41) - 1);
    if (batch == 1) p.kv.v_sequence_stride = in.flag() ? 0 : in.wild_i64() & ((int64_t{1} << 41) - 1);
    if (q_heads == 1) p.q_head_stride = 0;
  }
  // Anything at all, including negative, zero and overlapping output strides.
  if (in.chance(6)) {
    int64_t* strides[] = {&p.q_token_stride, &p.q_head_stride, &p.out_token_stride, &p.out_head_stride,
                          &p.lse_token_stride, &p.lse_head_stride, &p.kv.k_sequence_stride,
                          &p.kv.k_token_stride, &p.kv.k_head_stride, &p.kv.v_sequence_stride,
                          &p.kv.v_token_stride, &p.kv.v_head_stride};
    const int count = static_cast<int>(in.pick(1, 3));
    for (int i = 0; i < count; ++i) {
      int64_t& s = *strides[in.pick(0, std::size(strides) - 1)];
      switch (in.pick(0, 4)) {
        case 0: s = s == std::numeric_limits<int64_t>::min() ? 0 : -s; break;
        case 1: s = 0; break;
        case 2: s = s / 2; break;
        case 3: s = in.pick(-d, d); break;
        default: s = in.wild_i64(); break;
      }
    }
    valid = false;  // possibly still valid: then nothing is required of the status
  }

  // Mask.
  p.mask.causal = in.chance(75);
  if (in.chance(30)) p.mask.window = static_cast<int32_t>(in.pick(1, 40));
  if (shortest_prefix != std::numeric_limits<int64_t>::max() && in.chance(20)) {
    p.mask.ring_length = static_cast<int32_t>(in.pick(1, shortest_prefix + 4));
    p.mask.ring_offset = static_cast<int32_t>(in.pick(0, shortest_prefix - 1));
  }
  if (in.chance(4)) {
    p.mask.window = in.wild_i32();
    p.mask.ring_length = static_cast<int32_t>(in.pick(-2, 60));
    p.mask.ring_offset = static_cast<int32_t>(in.flag() ? in.pick(-2, 60) : in.wild_i32());
    valid = false;
  }
  const int tree_mode = in.chance(25) ? static_cast<int>(in.pick(1, 4)) : 0;
  const int64_t tree_entries = tree_mode != 0 && tokens >= 0 && tokens <= kMaxElements ? tokens : 0;
  Buffer tree_start(tree_entries * 4), tree_end(tree_entries * 4), tree_height(tree_entries * 4);
  if (tree_mode != 0) {
    auto* ts = reinterpret_cast<int32_t*>(tree_start.data());
    auto* te = reinterpret_cast<int32_t*>(tree_end.data());
    auto* th = reinterpret_cast<int32_t*>(tree_height.data());
    std::mt19937 rng(in.seed());
    for (int32_t b = 0; b < entries && tree_entries > 0; ++b) {
      const int64_t first = offsets[b], nodes = int64_t{offsets[b + 1]} - offsets[b];
      if (first < 0 || nodes < 0 || first + nodes > tree_entries) break;
      // A DFS trie (valid speculative tree), small random indices, or arbitrary int32 contents.
      std::vector<int32_t> parent(nodes, -1), depth(nodes, 0), last(nodes), path;
      for (int64_t j = 0; j < nodes; ++j) {
        last[j] = static_cast<int32_t>(j);
        if (j > 0) {
          path.resize(rng() % path.size() + 1);
          parent[j] = path.back();
          depth[j] = depth[parent[j]] + 1;
        }
        path.push_back(static_cast<int32_t>(j));
      }
      for (int64_t j = nodes - 1; j > 0; --j) last[parent[j]] = std::max(last[parent[j]], last[j]);
      for (int64_t j = 0; j < nodes; ++j) {
        if (tree_mode == 1 || tree_mode == 4) {
          ts[first + j] = static_cast<int32_t>(j);
          te[first + j] = last[j];
          th[first + j] = depth[j];
        } else if (tree_mode == 2) {
          ts[first + j] = static_cast<int32_t>(static_cast<int64_t>(rng() % (nodes + 4)) - 2);
          te[first + j] = static_cast<int32_t>(static_cast<int64_t>(rng() % (nodes + 4)) - 2);
          th[first + j] = static_cast<int32_t>(static_cast<int64_t>(rng() % (nodes + 80)) - 40);
        } else {
          ts[first + j] = static_cast<int32_t>(rng());
          te[first + j] = static_cast<int32_t>(rng());
          th[first + j] = static_cast<int32_t>(rng());
        }
      }
    }
    p.mask.tree_start = ts;
    p.mask.tree_end = te;
    p.mask.tree_height = th;
    if (tree_mode == 4 && in.flag()) {  // one or two of the three arrays: rejected
      p.mask.tree_end = nullptr;
      if (in.flag()) p.mask.tree_start = nullptr;
      valid = false;
    }
  }

  // Scale, soft-cap, sinks.
  double range = 1.0;
  switch (in.pick(0, 3)) {
    case 0: p.scale = kDefaultScale; break;
    case 1: p.scale = 1.0f; break;
    case 2: p.scale = 0.05f; break;
    default: p.scale = static_cast<float>(in.pick(1, 2000)) * 1e-3f; break;
  }
  // Logits stay within a few dozen in compare inputs, so f32 agrees with f64 to ~1e-6.
  range = std::min(1.0, std::sqrt(24.0 / (std::max(p.effective_scale(), 1e-6f) * std::max<int64_t>(d, 1))));
  if (in.chance(25)) p.softcap = static_cast<float>(in.pick(1, 500)) * 0.1f;
  bool moderate = !wild;  // values for which f32 must agree with the f64 oracle
  if (in.chance(5)) {
    const float value = in.wild_float();
    if (in.flag()) p.scale = value; else p.softcap = value;
    valid = false;
    moderate = false;  // e.g. scale 3e38: logits overflow f32 (inf - inf), by design not compared
  }
  filler.range = range;
  const bool sinks_on = in.chance(30);
  Buffer sinks(sinks_on && q_heads > 0 ? static_cast<std::size_t>(q_heads) * 4 : 0);
  if (sinks_on) {
    auto* s = reinterpret_cast<float*>(sinks.data());
    std::uniform_real_distribution<float> sink(-3.0f, 5.0f);
    for (int32_t h = 0; h < q_heads; ++h) s[h] = wild && in.chance(30) ? in.wild_float() : sink(filler.rng);
    p.sinks = s;
  }
  const bool lse_on = in.chance(70);

  Kernel forced = static_cast<Kernel>(in.pick(0, 3));
  if (in.chance(4)) forced = Kernel::prefill_fused;  // no fused kernel on the CPU: unsupported
  if (in.chance(2)) {
    forced = static_cast<Kernel>(in.flag() ? 5 : -1);
    valid = false;
  }

  // Extents; tensors that fit are allocated exactly.
  const int64_t q_ext = extent_of({{tokens, p.q_token_stride}, {q_heads, p.q_head_stride}, {d, 1}});
  const int64_t o_ext = extent_of({{tokens, p.out_token_stride}, {q_heads, p.out_head_stride}, {d, 1}});
  const int64_t l_ext = extent_of({{tokens, p.lse_token_stride}, {q_heads, p.lse_head_stride}});
  const int64_t k_ext = extent_of({{batch, p.kv.k_sequence_stride}, {capacity, p.kv.k_token_stride},
                                   {kv_heads, p.kv.k_head_stride}, {d, 1}});
  const int64_t v_ext = extent_of({{batch, p.kv.v_sequence_stride}, {capacity, p.kv.v_token_stride},
                                   {kv_heads, p.kv.v_head_stride}, {d, 1}});
  const bool metadata_sane = tree_mode == 0 || tree_entries == tokens;
  const bool runnable = q_ext >= 0 && o_ext >= 0 && k_ext >= 0 && v_ext >= 0 && (!lse_on || l_ext >= 0) &&
                        metadata_sane && valid_dtype(dtype) && small_work({tokens, q_heads, capacity, d});

  Buffer q, k, v, out, lse;
  // Aliasing: out (or lse) placed inside an input or inside out: must be rejected.
  const int alias = runnable && in.chance(6) ? static_cast<int>(in.pick(1, 4)) : 0;
  if (runnable) {
    const int64_t alias_at = in.pick(0, 3);
    q = Buffer(std::max<int64_t>(q_ext, alias == 1 ? o_ext + alias_at : 0) * es);
    k = Buffer(std::max<int64_t>(k_ext * kv_es, alias == 2 ? (o_ext + alias_at) * es : 0));
    v = Buffer(v_ext * kv_es);
    out = Buffer(std::max<int64_t>(o_ext * es, alias == 3 ? (l_ext + alias_at) * 4 : 0));
    lse = Buffer(lse_on ? l_ext * 4 : 0);
    filler.fill(q.data(), dtype, static_cast<int64_t>(q.bytes() / es));
    filler.fill(k.data(), kv_dtype, static_cast<int64_t>(k.bytes() / kv_es));
    filler.fill(v.data(), kv_dtype, static_cast<int64_t>(v.bytes() / kv_es));
    std::memset(out.data(), 0x7f, out.bytes());  // NaN in every dtype
    std::memset(lse.data(), 0x7f, lse.bytes());
    p.q = q.data();
    p.kv.k = k.data();
    p.kv.v = v.data();
    p.out = out.data();
    p.lse = lse_on ? reinterpret_cast<float*>(lse.data()) : nullptr;
    if (alias == 1) p.out = q.data() + alias_at * es;
    if (alias == 2) p.out = k.data() + alias_at * es;
    if (alias == 3 && lse_on) p.lse = reinterpret_cast<float*>(out.data() + alias_at * 4);
    // Inputs may share memory: valid. (Not for an fp8 cache: q's 16/32-bit values read as e4m3
    // codes reach 448, outside the moderate values the oracle comparison's tolerance assumes.)
    if (alias == 4 && q.bytes() >= v.bytes() && !fp8) p.kv.v = q.data();
  } else {
    p.q = fake_pointer(1);
    p.kv.k = fake_pointer(2);
    p.kv.v = fake_pointer(3);
    p.out = const_cast<void*>(fake_pointer(4));
    p.lse = lse_on ? static_cast<float*>(const_cast<void*>(fake_pointer(5))) : nullptr;
  }
  // Null pointers.
  if (in.chance(4)) {
    switch (in.pick(0, 6)) {
      case 0: p.query_offsets = nullptr; break;
      case 1: p.kv_lengths = nullptr; break;
      case 2: p.q = nullptr; break;
      case 3: p.kv.k = nullptr; break;
      case 4: p.kv.v = nullptr; break;
      case 5: p.out = nullptr; break;
      default: p.lse = nullptr; break;  // valid: no LSE
    }
    if (p.lse != nullptr || !lse_on) valid = false;
  }

  // Would the library's extents make out or lse overlap an input or each other?
  const std::size_t q_bytes = q_ext > 0 ? q_ext * es : 0, o_bytes = o_ext > 0 ? o_ext * es : 0;
  const std::size_t k_bytes = k_ext > 0 ? k_ext * kv_es : 0, v_bytes = v_ext > 0 ? v_ext * kv_es : 0;
  const std::size_t l_bytes = l_ext > 0 ? l_ext * 4 : 0;
  bool overlapping = false;
  if (runnable) {
    for (auto [ptr, bytes] : {std::pair<const void*, std::size_t>{p.q, q_bytes}, {p.kv.k, k_bytes}, {p.kv.v, v_bytes}}) {
      overlapping = overlapping || (p.out && overlap(p.out, o_bytes, ptr, bytes)) ||
                    (p.lse && overlap(p.lse, l_bytes, ptr, bytes));
    }
    overlapping = overlapping || (p.lse && p.out && overlap(p.lse, l_bytes, p.out, o_bytes));
    if (overlapping) valid = false;
  }

  // ---- plan_attention (pure), then attention ------------------------------------------------------
  if (verbose()) std::fprintf(stderr, "%s", describe(p, forced).c_str());
  const Plan sentinel{Kernel::automatic, -7, -7, 7777, "untouched"};
  Plan plan = sentinel;
  const Status planned = plan_attention(p, cpu_context().device(), forced, &plan);
  check_error_message(planned, "plan_attention");
  if (planned.ok()) {
    if (plan.kernel != Kernel::single_pass && plan.kernel != Kernel::two_pass &&
        plan.kernel != Kernel::prefill_unfused) {
      fail(cat("plan_attention: kernel ", to_string(plan.kernel), " on the CPU"));
    }
    if (plan.num_splits < 1 || plan.num_splits > 64 || (plan.kernel != Kernel::two_pass && plan.num_splits != 1) ||
        (plan.kernel == Kernel::two_pass && plan.num_splits < 2)) {
      fail(cat("plan_attention: num_splits ", plan.num_splits, " for ", to_string(plan.kernel)));
    }
    if (plan.kernel == Kernel::prefill_unfused && plan.query_rows_per_chunk < 1) {
      fail(cat("plan_attention: query_rows_per_chunk ", plan.query_rows_per_chunk));
    }
    check_workspace(p, plan);
    if (forced != Kernel::automatic && plan.kernel != forced) fail("plan_attention: forced kernel not honoured");
    if (overlapping) fail("plan_attention accepted an output that overlaps an input or the other output");
  } else if (plan.num_splits != sentinel.num_splits || plan.reason != sentinel.reason) {
    fail("plan_attention wrote the Plan on an error");
  }
  if (valid && forced == Kernel::prefill_fused) {
    if (planned.code() != StatusCode::unsupported) fail("forced prefill_fused on the CPU: " + planned.message());
  } else if (valid && !planned.ok()) {
    fail("a valid problem was rejected: " + planned.message());
  }
  if (!runnable && planned.ok()) {  // too large to run here: planning was the test
    count(kPlanOnly);
    return;
  }

  for (Buffer* b : {&q, &k, &v, &out, &lse, &tree_start, &tree_end, &tree_height, &sinks, &offsets_buffer,
                    &lengths_buffer}) {
    b->snapshot();
  }
  Plan used = sentinel;
  const Status status = attention(cpu_context(), p, forced, &used);
  check_error_message(status, "attention");
  if (status.code() != planned.code()) {
    fail(cat("attention returned ", to_string(status.code()), " (", status.message(), "), plan_attention ",
             to_string(planned.code()), " (", planned.message(), ")"));
  }
  // Inputs and host metadata never change (nor the outputs an aliased input shares with them).
  for (Buffer* b : {&tree_start, &tree_end, &tree_height, &sinks, &offsets_buffer, &lengths_buffer}) {
    if (!b->unchanged()) fail("attention changed an input (metadata, tree, sinks)");
  }
  if (!status.ok()) {
    for (Buffer* b : {&q, &k, &v, &out, &lse}) {
      if (!b->unchanged()) fail("attention failed (" + status.message() + ") but changed a buffer");
    }
    if (used.num_splits != sentinel.num_splits || used.reason != sentinel.reason) {
      fail("attention wrote plan_used on an error");
    }
    count(kAttnRejected);
    return;
  }
  if (used.kernel != plan.kernel || used.num_splits != plan.num_splits ||
      used.query_rows_per_chunk != plan.query_rows_per_chunk || used.workspace_bytes != plan.workspace_bytes) {
    fail("attention ran another plan than plan_attention chose");
  }
  for (Buffer* b : {&q, &k, &v}) {
    if (!b->unchanged()) fail("attention changed q, k or v");
  }

  // Cells the call owns; every other byte of out and lse keeps its value.
  std::vector<bool> out_owned(out.bytes(), false), lse_owned(lse.bytes(), false);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < q_heads; ++h) {
      const int64_t o = t * p.out_token_stride + h * p.out_head_stride;
      own(out_owned, o * es, d * es);
      if (p.lse) own(lse_owned, (t * p.lse_token_stride + h * p.lse_head_stride) * 4, 4);
    }
  }
  if (const int64_t at = out.changed_outside(out_owned); at >= 0) fail(cat("attention wrote out byte ", at, " outside its cells"));
  if (const int64_t at = lse.changed_outside(lse_owned); at >= 0) fail(cat("attention wrote lse byte ", at, " outside its cells"));
  if (!moderate || !sane_scales || tokens == 0) {
    count(kAttnOk);
    return;
  }
  count(kAttnCompared);
  count(used.kernel == Kernel::single_pass ? kSingle : used.kernel == Kernel::two_pass ? kTwo : kPrefill);

  // Against the f64 oracle (the problem's pointers are host memory on the CPU backend).
  std::vector<double> ref_out, ref_lse;
  reference::attention(p, &ref_out, &ref_lse);
  const double out_tol = dtype == DType::f32 ? 5e-5 : dtype == DType::f16 ? 1.5e-3 : 8e-3;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < q_heads; ++h) {
      const int64_t row = t * q_heads + h;
      const int64_t o = t * p.out_token_stride + h * p.out_head_stride;
      for (int64_t x = 0; x < d; ++x) {
        const double got = load_as_float(out.data(), dtype, static_cast<std::size_t>(o + x));
        const double want = ref_out[row * d + x];
        if (!close(got, want, out_tol)) {
          fail(cat("attention (", to_string(used.kernel), ", ", used.num_splits, " splits, ", to_string(dtype),
                   ", d ", d, ") token ", t, " head ", h, " dim ", x, ": got ", got, ", oracle ", want));
        }
      }
      if (p.lse) {
        const double got = reinterpret_cast<const float*>(lse.data())[t * p.lse_token_stride + h * p.lse_head_stride];
        const double want = ref_lse[row];
        if (!close(got, want, 2e-4 + 2e-5 * std::abs(want))) {
          fail(cat("attention (", to_string(used.kernel), ") lse of token ", t, " head ", h, ": got ", got,
                   ", oracle ", want));
        }
      }
      // A row that sees no key: exactly zero, LSE exactly -inf (or exactly the sink).
      const bool sees_nothing =
          ref_lse[row] == -kInf ||
          (p.sinks && ref_lse[row] == static_cast<double>(p.sinks[h]) &&
           std::all_of(ref_out.begin() + row * d, ref_out.begin() + (row + 1) * d, [](double x) { return x == 0.0; }));
      if (sees_nothing) {
        for (int64_t x = 0; x < d; ++x) {
          if (load_as_float(out.data(), dtype, static_cast<std::size_t>(o + x)) != 0.0f) {
            fail(cat("attention (", to_string(used.kernel), "): token ", t, " head ", h, " sees no key, out not zero"));
          }
        }
        if (p.lse && reinterpret_cast<const float*>(lse.data())[t * p.lse_token_stride + h * p.lse_head_stride] !=
                         static_cast<float>(ref_lse[row])) {
          fail(cat("attention (", to_string(used.kernel), "): token ", t, " head ", h, " sees no key, LSE not exact"));
        }
      }
    }
  }

  // The same call through a plan made from bounds (the call's own extents) and
  // attention_planned: on the CPU the same decode kernel with the same splits, so the same bits.
  const bool decode = used.kernel == Kernel::single_pass || used.kernel == Kernel::two_pass;
  if (!decode || !used.parts.empty() || !in.chance(40)) return;
  ProblemBounds bounds;
  bounds.max_total_tokens = tokens;
  for (int32_t b = 0; b < batch; ++b) {
    bounds.max_suffix = std::max<int32_t>(bounds.max_suffix, offsets[b + 1] - offsets[b]);
    bounds.max_kv_length = std::max<int64_t>(bounds.max_kv_length, kv_lengths[b]);
  }
  Plan bounded;
  const Status from_bounds = plan_attention(p, bounds, cpu_context().device(), forced, &bounded);
  check_error_message(from_bounds, "plan_attention");
  // Refused, e.g.: a forced decode kernel over suffixes past 8, or a ring offset past the prefix
  // some slot would have at the bounds.
  if (!from_bounds.ok()) return;
  if (!bounded.device_metadata || bounded.kernel != used.kernel || bounded.num_splits != used.num_splits) {
    fail(cat("plan from bounds: ", to_string(bounded.kernel), " x", bounded.num_splits, ", attention used ",
             to_string(used.kernel), " x", used.num_splits));
  }
  const std::vector<unsigned char> first_out(out.data(), out.data() + out.bytes());
  const std::vector<unsigned char> first_lse(lse.data(), lse.data() + lse.bytes());
  std::memset(out.data(), 0x7f, out.bytes());
  std::memset(lse.data(), 0x7f, lse.bytes());
  const Status again = attention_planned(cpu_context(), p, bounded);
  if (!again.ok()) fail("attention_planned rejected what attention ran: " + again.message());
  if (!std::equal(first_out.begin(), first_out.end(), out.data()) ||
      !std::equal(first_lse.begin(), first_lse.end(), lse.data())) {
    fail(cat("attention_planned (", to_string(bounded.kernel), ") wrote other bytes than attention"));
  }
}

// ---- matmul ------------------------------------------------------------------------------------------

void fuzz_matmul(Input& in) {
  bool valid = true;
  const bool wild = in.chance(15);
  Filler filler{std::mt19937(in.seed()), wild, 1.0};
  MatmulArguments a;
  a.a_dtype = pick_dtype(in, &valid);
  a.b_dtype = pick_dtype(in, &valid);
  a.d_dtype = pick_dtype(in, &valid);
  a.m = in.pick(0, 20);
  a.n = in.pick(0, 20);
  a.k = in.pick(0, 24);
  a.batch = static_cast<int32_t>(in.pick(1, 3));
  a.b_transpose = in.flag();
  a.a_leading_dimension = in.flag() ? 0 : a.k + in.pick(0, 3);
  a.b_leading_dimension = in.flag() ? 0 : (a.b_transpose ? a.k : a.n) + in.pick(0, 3);
  a.d_leading_dimension = in.flag() ? 0 : a.n + in.pick(0, 3);
  const int64_t lda = a.a_leading_dimension ? a.a_leading_dimension : a.k;
  const int64_t ldb = a.b_leading_dimension ? a.b_leading_dimension : (a.b_transpose ? a.k : a.n);
  const int64_t ldd = a.d_leading_dimension ? a.d_leading_dimension : a.n;
  const int64_t b_rows = a.b_transpose ? a.n : a.k, b_cols = a.b_transpose ? a.k : a.n;
  a.a_offset = in.chance(30) ? in.pick(1, 7) : 0;
  a.b_offset = in.chance(30) ? in.pick(1, 7) : 0;
  a.d_offset = in.chance(30) ? in.pick(1, 7) : 0;
  // A and B may be shared (0), stacked, spaced or overlapping across the batch; D never overlaps.
  auto input_stride = [&](int64_t rows, int64_t ld) -> int64_t {
    switch (in.pick(0, 3)) {
      case 0: return 0;
      case 1: return rows * ld;
      case 2: return rows * ld + in.pick(1, 9);
      default: return in.pick(1, std::max<int64_t>(1, rows * ld));
    }
  };
  a.a_batch_stride = input_stride(a.m, lda);
  a.b_batch_stride = input_stride(b_rows, ldb);
  a.d_batch_stride = a.m * ldd + (in.flag() ? in.pick(0, 5) : 0);
  if (a.m > 0 && a.d_batch_stride == a.m * ldd && in.flag()) a.d_batch_stride = (a.m - 1) * ldd + a.n;  // tight
  a.c = static_cast<MatmulC>(in.pick(0, 2));
  a.ab_scale = in.flag() ? 1.0f : static_cast<float>(in.pick(-400, 400)) * 0.01f;
  if (in.chance(10)) {  // broken or extreme arguments
    valid = false;
    int64_t* fields[] = {&a.m, &a.n, &a.k, &a.a_leading_dimension, &a.b_leading_dimension, &a.d_leading_dimension,
                         &a.a_offset, &a.b_offset, &a.d_offset, &a.a_batch_stride, &a.b_batch_stride,
                         &a.d_batch_stride};
    const int count = static_cast<int>(in.pick(1, 3));
    for (int i = 0; i < count; ++i) {
      int64_t& f = *fields[in.pick(0, std::size(fields) - 1)];
      f = in.flag() ? in.pick(-3, 30) : in.wild_i64();
    }
    if (in.flag()) a.batch = in.wild_i32();
    if (in.flag()) a.c = static_cast<MatmulC>(in.pick(3, 4));
    if (in.flag()) a.ab_scale = in.wild_float();
  }
  const int64_t lda2 = a.a_leading_dimension ? a.a_leading_dimension : a.k;
  const int64_t ldb2 = a.b_leading_dimension ? a.b_leading_dimension : (a.b_transpose ? a.k : a.n);
  const int64_t ldd2 = a.d_leading_dimension ? a.d_leading_dimension : a.n;
  const int64_t b_rows2 = a.b_transpose ? a.n : a.k, b_cols2 = a.b_transpose ? a.k : a.n;
  (void)b_rows;
  (void)b_cols;
  auto with_offset = [](int64_t extent, int64_t offset) -> int64_t {
    if (extent < 0 || offset < 0 || offset > kMaxElements) return -1;
    return extent == 0 ? 0 : extent + offset;
  };
  const int64_t ea = with_offset(extent_of({{a.batch, a.a_batch_stride}, {a.m, lda2}, {a.k, 1}}), a.a_offset);
  const int64_t eb = with_offset(extent_of({{a.batch, a.b_batch_stride}, {b_rows2, ldb2}, {b_cols2, 1}}), a.b_offset);
  const int64_t ed = with_offset(extent_of({{a.batch, a.d_batch_stride}, {a.m, ldd2}, {a.n, 1}}), a.d_offset);
  // The bias row has n elements even when m = 0 leaves D empty (n is then bounded by nothing else).
  const int64_t ec = a.c == MatmulC::bias ? extent_of({{a.n, 1}}) : 0;
  const bool runnable = ea >= 0 && eb >= 0 && ed >= 0 && ec >= 0 && valid_dtype(a.a_dtype) &&
                        valid_dtype(a.b_dtype) && valid_dtype(a.d_dtype) && small_work({a.batch, a.m, a.n, a.k});
  const std::size_t sa = size_of(a.a_dtype), sb = size_of(a.b_dtype), sd = size_of(a.d_dtype);

  if (!runnable) {
    // Validation only (pure): it must survive any value without UB.
    a.a = fake_pointer(1);
    a.b = fake_pointer(2);
    a.d = const_cast<void*>(fake_pointer(3));
    a.c_data = fake_pointer(4);
    count(kValidationOnly);
    try {
      detail::validate_matmul(a);
    } catch (const detail::Error& e) {
      if (std::string(e.what()).rfind("matmul: ", 0) != 0) fail(cat("validate_matmul message: ", e.what()));
    }
    return;
  }
  Buffer A(ea * sa), B(eb * sb), D(ed * sd), C(ec * sd);
  filler.fill(A.data(), a.a_dtype, ea);
  filler.fill(B.data(), a.b_dtype, eb);
  filler.fill(D.data(), a.d_dtype, ed);
  filler.fill(C.data(), a.d_dtype, static_cast<int64_t>(C.bytes() / sd));
  a.a = A.data();
  a.b = B.data();
  a.d = D.data();
  a.c_data = a.c == MatmulC::bias ? C.data() : nullptr;
  bool aliased = false;
  if (in.chance(5) && ed > 0 && a.m > 0 && a.n > 0 && a.k > 0) {  // D inside A: rejected
    Buffer* host = in.flag() ? &A : &B;
    if (host->bytes() > 0) {
      a.d = host->data();
      aliased = true;
      valid = false;
    }
  }
  if (in.chance(3)) {
    switch (in.pick(0, 3)) {
      case 0: a.a = nullptr; break;
      case 1: a.b = nullptr; break;
      case 2: a.d = nullptr; break;
      default: a.c_data = nullptr; break;
    }
    valid = false;
  }
  std::vector<double> expected;
  const bool compare = !wild && a.d != nullptr && !aliased;
  if (compare && valid) expected = reference::matmul(a);  // before the call: accumulate reads D

  for (Buffer* b : {&A, &B, &C, &D}) b->snapshot();
  const Status status = matmul(cpu_context(), a);
  check_error_message(status, "matmul");
  if (valid && !status.ok()) fail("matmul rejected valid arguments: " + status.message());
  if (aliased && status.ok()) fail("matmul accepted a D that overlaps A or B");
  if (!status.ok()) {
    for (Buffer* b : {&A, &B, &C, &D}) {
      if (!b->unchanged()) fail("matmul failed (" + status.message() + ") but changed a buffer");
    }
    count(kMatmulRejected);
    return;
  }
  for (Buffer* b : {&A, &B, &C}) {
    if (!b->unchanged()) fail("matmul changed an input");
  }
  std::vector<bool> owned(D.bytes(), false);
  if (a.d == D.data() && a.m > 0 && a.n > 0) {  // (m or n 0: nothing to do, strides unchecked)
    for (int64_t bt = 0; bt < a.batch; ++bt)
      for (int64_t r = 0; r < a.m; ++r)
        own(owned, (a.d_offset + bt * a.d_batch_stride + r * ldd2) * sd, a.n * sd);
    if (const int64_t at = D.changed_outside(owned); at >= 0) fail(cat("matmul wrote D byte ", at, " outside D"));
  }
  if (!compare || expected.empty()) return;
  count(kMatmulCompared);
  const double rounding = a.d_dtype == DType::f32 ? 0.0 : a.d_dtype == DType::f16 ? 1e-3 : 8e-3;
  const double subnormal = a.d_dtype == DType::f16 ? 6e-8 : 0.0;  // f16 spacing below 2^-14
  for (int64_t bt = 0; bt < a.batch; ++bt) {
    for (int64_t r = 0; r < a.m; ++r) {
      for (int64_t c = 0; c < a.n; ++c) {
        double magnitude = 0.0;  // sum of |a||b|, the scale of the rounding error
        for (int64_t x = 0; x < a.k; ++x) {
          const int64_t bi = a.b_transpose ? c * ldb2 + x : x * ldb2 + c;
          magnitude += std::abs(load_as_float(A.data(), a.a_dtype, a.a_offset + bt * a.a_batch_stride + r * lda2 + x) *
                                load_as_float(B.data(), a.b_dtype, a.b_offset + bt * a.b_batch_stride + bi));
        }
        const double want = expected[(bt * a.m + r) * a.n + c];
        const double got = load_as_float(D.data(), a.d_dtype, a.d_offset + bt * a.d_batch_stride + r * ldd2 + c);
        const double tol = 2e-6 * (std::abs(a.ab_scale) * magnitude + std::abs(want)) + rounding * std::abs(want) + subnormal + 1e-30;
        if (!close(got, want, tol)) {
          fail(cat("matmul batch ", bt, " row ", r, " col ", c, ": got ", got, ", oracle ", want, " (m ", a.m, " n ", a.n,
                   " k ", a.k, ", dtypes ", to_string(a.a_dtype), "/", to_string(a.b_dtype), "/", to_string(a.d_dtype), ")"));
        }
      }
    }
  }
}

// ---- softmax -----------------------------------------------------------------------------------------

void fuzz_softmax(Input& in) {
  bool valid = true;
  const bool wild = in.chance(15);
  Filler filler{std::mt19937(in.seed()), wild, 20.0};
  SoftmaxArguments a;
  const int64_t blocks = in.pick(1, 4), per_block = in.pick(0, 6);
  a.rows = blocks * per_block;
  a.cols = in.pick(0, 40);
  a.rows_per_block = blocks == 1 && in.flag() ? 0 : per_block;
  a.input_row_stride = a.cols + (in.chance(30) ? in.pick(1, 4) : 0);
  a.output_row_stride = a.cols + (in.chance(30) ? in.pick(1, 4) : 0);
  a.output_dtype = pick_dtype(in, &valid);
  const bool in_place = in.chance(25) && a.output_dtype == DType::f32;
  if (in_place) a.output_row_stride = a.input_row_stride;
  const bool sinks_on = in.chance(30);
  const bool lse_on = in.chance(60);
  const int64_t rows_in_block = a.rows_per_block > 0 ? a.rows_per_block : a.rows;
  const int64_t block_count = a.rows_per_block > 0 ? blocks : 1;
  if (lse_on) {
    if (in.flag()) {
      a.lse_row_stride = 1;
      a.lse_block_stride = rows_in_block + (in.chance(30) ? in.pick(1, 3) : 0);
    } else {
      a.lse_block_stride = 1;
      a.lse_row_stride = block_count + (in.chance(30) ? in.pick(1, 3) : 0);
    }
  }
  if (in.chance(10)) {
    valid = false;
    int64_t* fields[] = {&a.rows, &a.cols, &a.input_row_stride, &a.output_row_stride, &a.rows_per_block,
                         &a.lse_block_stride, &a.lse_row_stride};
    const int count = static_cast<int>(in.pick(1, 2));
    for (int i = 0; i < count; ++i) {
      int64_t& f = *fields[in.pick(0, std::size(fields) - 1)];
      f = in.flag() ? in.pick(-2, 12) : in.wild_i64();
    }
  }
  const int64_t ei = extent_of({{a.rows, a.input_row_stride}, {a.cols, 1}});
  const int64_t eo = extent_of({{a.rows, a.output_row_stride}, {a.cols, 1}});
  const int64_t nb = a.rows_per_block > 0 && a.rows >= 0 ? a.rows / a.rows_per_block : 1;
  const int64_t pb = a.rows_per_block > 0 ? a.rows_per_block : a.rows;
  const int64_t el = extent_of({{nb, a.lse_block_stride}, {pb, a.lse_row_stride}});
  const bool runnable = ei >= 0 && eo >= 0 && el >= 0 && valid_dtype(a.output_dtype) && nb <= kMaxElements &&
                        small_work({a.rows, a.cols});
  const std::size_t so = size_of(a.output_dtype);
  if (!runnable) {
    a.input = static_cast<const float*>(fake_pointer(1));
    a.output = const_cast<void*>(fake_pointer(in_place ? 1 : 2));
    a.sinks = sinks_on ? static_cast<const float*>(fake_pointer(3)) : nullptr;
    a.lse = lse_on ? static_cast<float*>(const_cast<void*>(fake_pointer(4))) : nullptr;
    count(kValidationOnly);
    try {
      detail::validate_softmax(a);
    } catch (const detail::Error& e) {
      if (std::string(e.what()).rfind("softmax: ", 0) != 0) fail(cat("validate_softmax message: ", e.what()));
    }
    return;
  }
  Buffer input(ei * 4), output(in_place ? 0 : eo * so), sinks(sinks_on ? nb * 4 : 0), lse(lse_on ? el * 4 : 0);
  {
    auto* x = reinterpret_cast<float*>(input.data());
    for (int64_t i = 0; i < ei; ++i) x[i] = filler.next();
    // Masked entries (-inf), and whole rows of them, as scatter_scores leaves them.
    std::mt19937 rng(in.seed());
    const int mask_percent = static_cast<int>(rng() % 3) * 40;
    for (int64_t r = 0; r < a.rows && a.rows > 0; ++r) {
      const bool all = rng() % 5 == 0;
      for (int64_t c = 0; c < a.cols; ++c) {
        if (all || static_cast<int>(rng() % 100) < mask_percent) x[r * a.input_row_stride + c] = -std::numeric_limits<float>::infinity();
      }
    }
    auto* s = reinterpret_cast<float*>(sinks.data());
    for (int64_t b = 0; b < static_cast<int64_t>(sinks.bytes() / 4); ++b) s[b] = wild ? filler.next() : static_cast<float>(rng() % 80) * 0.1f - 3.0f;
  }
  std::memset(output.data(), 0x7f, output.bytes());
  std::memset(lse.data(), 0x7f, lse.bytes());
  a.input = reinterpret_cast<const float*>(input.data());
  a.output = in_place ? static_cast<void*>(input.data()) : output.data();
  a.sinks = sinks_on ? reinterpret_cast<const float*>(sinks.data()) : nullptr;
  a.lse = lse_on ? reinterpret_cast<float*>(lse.data()) : nullptr;
  bool overlapping = false;
  if (!in_place && in.chance(5) && ei > 1 && a.cols > 0) {  // output partly over the input: rejected
    a.output = input.data() + 4;
    overlapping = true;
    valid = false;
  }
  if (in.chance(3)) {
    if (in.flag()) a.input = nullptr; else a.output = nullptr;
    valid = false;
  }

  Buffer& written = in_place ? input : output;
  SoftmaxArguments host = a;
  std::vector<float> input_copy(reinterpret_cast<const float*>(input.data()), reinterpret_cast<const float*>(input.data()) + ei);
  static const float kNoColumns = 0.0f;  // the oracle offsets its row pointers even with no columns
  host.input = input_copy.empty() ? &kNoColumns : input_copy.data();
  reference::SoftmaxResult expected;
  const bool compare = !wild && valid && a.input && a.output;
  if (compare) expected = reference::softmax(host);
  for (Buffer* b : {&input, &output, &sinks, &lse}) b->snapshot();
  const Status status = softmax(cpu_context(), a);
  check_error_message(status, "softmax");
  if (valid && !status.ok()) fail("softmax rejected valid arguments: " + status.message());
  if (overlapping && status.ok()) fail("softmax accepted an output that overlaps the input");
  if (!status.ok()) {
    for (Buffer* b : {&input, &output, &sinks, &lse}) {
      if (!b->unchanged()) fail("softmax failed (" + status.message() + ") but changed a buffer");
    }
    count(kSoftmaxRejected);
    return;
  }
  if (!sinks.unchanged() || (!in_place && !input.unchanged())) fail("softmax changed an input");
  if (a.output != written.data() && !in_place) return;  // only the aliased cases remain
  std::vector<bool> owned(written.bytes(), false), lse_owned(lse.bytes(), false);
  const std::size_t wsize = in_place ? 4 : so;
  for (int64_t r = 0; r < a.rows; ++r) {
    if (a.cols > 0) own(owned, r * a.output_row_stride * wsize, a.cols * wsize);
    if (a.lse) own(lse_owned, ((r / pb) * a.lse_block_stride + (r % pb) * a.lse_row_stride) * 4, 4);
  }
  if (const int64_t at = written.changed_outside(owned); at >= 0) fail(cat("softmax wrote output byte ", at, " outside its rows"));
  if (const int64_t at = lse.changed_outside(lse_owned); at >= 0) fail(cat("softmax wrote lse byte ", at, " outside its entries"));
  if (!compare) return;
  count(kSoftmaxCompared);
  for (int64_t r = 0; r < a.rows; ++r) {
    for (int64_t c = 0; c < a.cols; ++c) {
      const double got = in_place ? reinterpret_cast<const float*>(input.data())[r * a.output_row_stride + c]
                                  : load_as_float(output.data(), a.output_dtype, r * a.output_row_stride + c);
      const double want = expected.output[r * a.cols + c];
      const double tol = a.output_dtype == DType::f32 ? 1e-6 + 2e-5 * std::abs(want)
                         : a.output_dtype == DType::f16 ? 1e-3 : 4e-3;
      if (!close(got, want, tol)) fail(cat("softmax row ", r, " col ", c, ": got ", got, ", oracle ", want));
      if (expected.lse[r] == -kInf && got != 0.0) fail("softmax: a fully masked row is not exactly zero");
    }
    if (a.lse) {
      const double got = reinterpret_cast<const float*>(lse.data())[(r / pb) * a.lse_block_stride + (r % pb) * a.lse_row_stride];
      if (!close(got, expected.lse[r], 1e-5 * (1 + std::abs(expected.lse[r])))) {
        fail(cat("softmax lse of row ", r, ": got ", got, ", oracle ", expected.lse[r]));
      }
    }
  }
}

// ---- scatter_scores ----------------------------------------------------------------------------------

void fuzz_scatter_scores(Input& in) {
  bool valid = true;
  const bool wild = in.chance(15);
  Filler filler{std::mt19937(in.seed()), wild, 30.0};
  ScatterScoresArguments a;
  a.mask.prefix_length = in.pick(0, 30);
  a.mask.suffix_length = in.pick(0, 12);
  const int64_t keys = a.mask.prefix_length + a.mask.suffix_length;
  a.heads = static_cast<int32_t>(in.pick(0, 3));
  a.first_query = in.pick(0, a.mask.suffix_length);
  a.rows = in.pick(0, a.mask.suffix_length - a.first_query);
  a.first_key = in.pick(0, keys);
  a.cols = in.pick(0, keys - a.first_key);
  a.scores_row_stride = a.cols + (in.chance(30) ? in.pick(1, 4) : 0);
  a.scores_head_stride = a.rows * a.scores_row_stride + (in.chance(30) ? in.pick(1, 4) : 0);
  const bool in_place = in.chance(30);
  a.dst_row_stride = in_place ? a.scores_row_stride : a.cols + (in.chance(30) ? in.pick(1, 4) : 0);
  a.dst_head_stride = in_place ? a.scores_head_stride : a.rows * a.dst_row_stride + (in.chance(30) ? in.pick(1, 4) : 0);
  a.softcap = in.chance(30) ? static_cast<float>(in.pick(1, 500)) * 0.1f : 0.0f;
  MaskSpec& m = a.mask.spec;
  m.causal = in.chance(70);
  if (in.chance(30)) m.window = static_cast<int32_t>(in.pick(1, 30));
  if (a.mask.prefix_length > 0 && in.chance(25)) {
    m.ring_length = static_cast<int32_t>(in.pick(1, a.mask.prefix_length + 3));
    m.ring_offset = static_cast<int32_t>(in.pick(0, a.mask.prefix_length - 1));
  }
  const bool tree = in.chance(25);
  Buffer tree_start(tree ? a.mask.suffix_length * 4 : 0), tree_end(tree_start.bytes()), tree_height(tree_start.bytes());
  if (tree) {
    std::mt19937 rng(in.seed());
    for (int64_t j = 0; j < a.mask.suffix_length; ++j) {
      const int64_t n = a.mask.suffix_length;
      reinterpret_cast<int32_t*>(tree_start.data())[j] = in.flag() ? static_cast<int32_t>(rng()) : static_cast<int32_t>(rng() % (n + 2)) - 1;
      reinterpret_cast<int32_t*>(tree_end.data())[j] = static_cast<int32_t>(rng() % (n + 2)) - 1;
      reinterpret_cast<int32_t*>(tree_height.data())[j] = static_cast<int32_t>(rng() % 64) - 8;
    }
    m.tree_start = reinterpret_cast<const int32_t*>(tree_start.data());
    m.tree_end = reinterpret_cast<const int32_t*>(tree_end.data());
    m.tree_height = reinterpret_cast<const int32_t*>(tree_height.data());
  }
  if (in.chance(10)) {
    valid = false;
    int64_t* fields[] = {&a.rows, &a.cols, &a.first_query, &a.first_key, &a.scores_row_stride, &a.scores_head_stride,
                         &a.dst_row_stride, &a.dst_head_stride, &a.mask.prefix_length, &a.mask.suffix_length};
    const int count = static_cast<int>(in.pick(1, 2));
    for (int i = 0; i < count; ++i) {
      int64_t& f = *fields[in.pick(0, std::size(fields) - 1)];
      f = in.flag() ? in.pick(-2, 40) : in.wild_i64();
    }
    if (in.flag()) a.heads = in.wild_i32();
    if (in.flag()) {
      m.window = in.wild_i32();
      m.ring_length = in.wild_i32();
      m.ring_offset = in.wild_i32();
    }
    if (in.flag()) a.softcap = in.wild_float();
  }
  const int64_t es_ = extent_of({{a.heads, a.scores_head_stride}, {a.rows, a.scores_row_stride}, {a.cols, 1}});
  const int64_t ed = extent_of({{a.heads, a.dst_head_stride}, {a.rows, a.dst_row_stride}, {a.cols, 1}});
  // The tree arrays hold suffix_length entries; a different suffix_length may read past them.
  const bool tree_sane = !tree || a.mask.suffix_length == static_cast<int64_t>(tree_start.bytes() / 4);
  const bool runnable = es_ >= 0 && ed >= 0 && tree_sane && small_work({a.heads, a.rows, a.cols});
  if (!runnable) {
    a.scores = static_cast<const float*>(fake_pointer(1));
    a.dst = static_cast<float*>(const_cast<void*>(fake_pointer(in_place ? 1 : 2)));
    count(kValidationOnly);
    try {
      detail::validate_scatter_scores(a);
    } catch (const detail::Error& e) {
      if (std::string(e.what()).rfind("scatter_scores: ", 0) != 0) fail(cat("validate_scatter_scores message: ", e.what()));
    }
    return;
  }
  Buffer scores(es_ * 4), dst(in_place ? 0 : ed * 4);
  filler.fill(scores.data(), DType::f32, es_);
  std::memset(dst.data(), 0x7f, dst.bytes());
  a.scores = reinterpret_cast<const float*>(scores.data());
  a.dst = in_place ? reinterpret_cast<float*>(scores.data()) : reinterpret_cast<float*>(dst.data());
  bool overlapping = false;
  if (!in_place && in.chance(5) && es_ > 1 && a.heads > 0 && a.rows > 0 && a.cols > 0) {
    a.dst = reinterpret_cast<float*>(scores.data()) + 1;
    overlapping = true;
    valid = false;
  }
  if (in.chance(3)) {
    if (in.flag()) a.scores = nullptr; else a.dst = nullptr;
    valid = false;
  }
  std::vector<float> scores_copy(reinterpret_cast<const float*>(scores.data()), reinterpret_cast<const float*>(scores.data()) + es_);
  ScatterScoresArguments host = a;
  host.scores = scores_copy.data();
  std::vector<double> expected;
  const bool compare = !wild && valid && a.scores && a.dst;
  if (compare) expected = reference::scatter_scores(host);
  for (Buffer* b : {&scores, &dst, &tree_start, &tree_end, &tree_height}) b->snapshot();
  const Status status = scatter_scores(cpu_context(), a);
  check_error_message(status, "scatter_scores");
  if (valid && !status.ok()) fail("scatter_scores rejected valid arguments: " + status.message());
  if (overlapping && status.ok()) fail("scatter_scores accepted a dst that partly overlaps scores");
  for (Buffer* b : {&tree_start, &tree_end, &tree_height}) {
    if (!b->unchanged()) fail("scatter_scores changed the tree arrays");
  }
  if (!status.ok()) {
    for (Buffer* b : {&scores, &dst}) {
      if (!b->unchanged()) fail("scatter_scores failed (" + status.message() + ") but changed a buffer");
    }
    count(kScoresRejected);
    return;
  }
  if (!in_place && !scores.unchanged()) fail("scatter_scores changed scores");
  Buffer& written = in_place ? scores : dst;
  if (a.dst != reinterpret_cast<float*>(written.data())) return;
  if (a.heads == 0 || a.rows == 0 || a.cols == 0) return;  // nothing to do, strides unchecked
  std::vector<bool> owned(written.bytes(), false);
  for (int64_t h = 0; h < a.heads; ++h)
    for (int64_t r = 0; r < a.rows; ++r)
      own(owned, (h * a.dst_head_stride + r * a.dst_row_stride) * 4, a.cols * 4);
  if (const int64_t at = written.changed_outside(owned); at >= 0) fail(cat("scatter_scores wrote dst byte ", at, " outside"));
  if (!compare) return;
  count(kScoresCompared);
  for (int64_t h = 0; h < a.heads; ++h) {
    for (int64_t r = 0; r < a.rows; ++r) {
      for (int64_t c = 0; c < a.cols; ++c) {
        const double got = reinterpret_cast<const float*>(written.data())[h * a.dst_head_stride + r * a.dst_row_stride + c];
        const double want = expected[(h * a.rows + r) * a.cols + c];
        if (!close(got, want, 1e-6 * (1 + std::abs(want) + a.softcap))) {
          fail(cat("scatter_scores head ", h, " row ", r, " col ", c, ": got ", got, ", oracle ", want));
        }
      }
    }
  }
}

// ---- scatter_values ----------------------------------------------------------------------------------

void fuzz_scatter_values(Input& in) {
  bool valid = true;
  const bool wild = in.chance(15);
  Filler filler{std::mt19937(in.seed()), wild, 4.0};
  ScatterValuesArguments a;
  a.heads = static_cast<int32_t>(in.pick(0, 4));
  a.rows = in.pick(0, 12);
  a.head_dim = static_cast<int32_t>(in.pick(1, 64));
  a.dtype = pick_dtype(in, &valid);
  a.src_row_stride = a.head_dim + (in.chance(30) ? in.pick(1, 4) : 0);
  a.src_head_stride = a.rows * a.src_row_stride + (in.chance(30) ? in.pick(1, 4) : 0);
  if (in.flag()) {
    a.out_head_stride = a.head_dim + (in.chance(30) ? in.pick(1, 4) : 0);
    a.out_token_stride = a.heads * a.out_head_stride + (in.chance(30) ? in.pick(1, 4) : 0);
  } else {
    a.out_token_stride = a.head_dim + (in.chance(30) ? in.pick(1, 4) : 0);
    a.out_head_stride = a.rows * a.out_token_stride + (in.chance(30) ? in.pick(1, 4) : 0);
  }
  bool self_overlap = false;
  if (in.chance(8) && a.heads > 1 && a.rows > 1) {  // tokens and heads land on the same cells
    a.out_token_stride = a.head_dim;
    a.out_head_stride = a.head_dim;
    self_overlap = true;
    valid = false;
  }
  if (in.chance(10)) {
    valid = false;
    int64_t* fields[] = {&a.rows, &a.src_head_stride, &a.src_row_stride, &a.out_token_stride, &a.out_head_stride};
    const int count = static_cast<int>(in.pick(1, 2));
    for (int i = 0; i < count; ++i) {
      int64_t& f = *fields[in.pick(0, std::size(fields) - 1)];
      f = in.flag() ? in.pick(-2, 70) : in.wild_i64();
    }
    if (in.flag()) a.heads = in.wild_i32();
    if (in.flag()) a.head_dim = static_cast<int32_t>(in.pick(-2, 70));
  }
  // Still overlapping after the mutations above? (Equal strides: row 1 of head 0 is row 0 of head 1.)
  self_overlap = self_overlap && a.heads > 1 && a.rows > 1 && a.head_dim >= 1 && a.out_token_stride == a.out_head_stride;
  const int64_t esrc = extent_of({{a.heads, a.src_head_stride}, {a.rows, a.src_row_stride}, {a.head_dim, 1}});
  const int64_t eout = extent_of({{a.rows, a.out_token_stride}, {a.heads, a.out_head_stride}, {a.head_dim, 1}});
  const bool runnable = esrc >= 0 && eout >= 0 && valid_dtype(a.dtype) && small_work({a.heads, a.rows, a.head_dim});
  if (!runnable) {
    a.src = static_cast<const float*>(fake_pointer(1));
    a.out = const_cast<void*>(fake_pointer(2));
    count(kValidationOnly);
    try {
      detail::validate_scatter_values(a);
    } catch (const detail::Error& e) {
      if (std::string(e.what()).rfind("scatter_values: ", 0) != 0) fail(cat("validate_scatter_values message: ", e.what()));
    }
    return;
  }
  const std::size_t so = dtype_size(a.dtype);
  // Out inside src (from one of its first elements): rejected. src gets room for all of out.
  const bool alias = in.chance(5) && esrc > 0 && eout > 0 && a.heads > 0 && a.rows > 0;
  const int64_t alias_at = alias ? 4 * in.pick(0, std::min<int64_t>(esrc - 1, 2)) : 0;
  Buffer src(std::max<int64_t>(esrc * 4, alias ? alias_at + eout * static_cast<int64_t>(so) : 0)), out(eout * so);
  filler.fill(src.data(), DType::f32, static_cast<int64_t>(src.bytes() / 4));
  std::memset(out.data(), 0x7f, out.bytes());
  a.src = reinterpret_cast<const float*>(src.data());
  a.out = out.data();
  const bool overlapping = alias;
  if (alias) {
    a.out = src.data() + alias_at;
    valid = false;
  }
  if (in.chance(3)) {
    if (in.flag()) a.src = nullptr; else a.out = nullptr;
    valid = false;
  }
  for (Buffer* b : {&src, &out}) b->snapshot();
  if (verbose()) {
    std::fprintf(stderr, "scatter_values: heads %d rows %ld head_dim %d dtype %d, src %p strides %ld/%ld (buffer %p, %zu bytes), out %p strides %ld/%ld (buffer %p, %zu bytes)\n",
                 a.heads, static_cast<long>(a.rows), a.head_dim, static_cast<int>(a.dtype), static_cast<const void*>(a.src),
                 static_cast<long>(a.src_head_stride), static_cast<long>(a.src_row_stride), static_cast<void*>(src.data()),
                 src.bytes(), a.out, static_cast<long>(a.out_token_stride), static_cast<long>(a.out_head_stride),
                 static_cast<void*>(out.data()), out.bytes());
  }
  const Status status = scatter_values(cpu_context(), a);
  check_error_message(status, "scatter_values");
  if (valid && !status.ok()) fail("scatter_values rejected valid arguments: " + status.message());
  if (overlapping && status.ok()) fail("scatter_values accepted an out that overlaps src");
  if (self_overlap && status.ok()) fail("scatter_values accepted an out whose rows and heads overlap");
  if (!status.ok()) {
    for (Buffer* b : {&src, &out}) {
      if (!b->unchanged()) fail("scatter_values failed (" + status.message() + ") but changed a buffer");
    }
    count(kValuesRejected);
    return;
  }
  if (!src.unchanged()) fail("scatter_values changed src");
  if (a.out != out.data() || a.heads == 0 || a.rows == 0) return;  // nothing to do, strides unchecked
  std::vector<bool> owned(out.bytes(), false);
  for (int64_t r = 0; r < a.rows; ++r)
    for (int64_t h = 0; h < a.heads; ++h)
      own(owned, (r * a.out_token_stride + h * a.out_head_stride) * so, a.head_dim * so);
  if (const int64_t at = out.changed_outside(owned); at >= 0) fail(cat("scatter_values wrote out byte ", at, " outside"));
  count(kValuesCompared);
  // Exact: each element is src rounded to the dtype (NaN stays NaN).
  const auto* s = reinterpret_cast<const float*>(src.data());
  for (int64_t r = 0; r < a.rows; ++r) {
    for (int64_t h = 0; h < a.heads; ++h) {
      for (int64_t x = 0; x < a.head_dim; ++x) {
        const float value = s[h * a.src_head_stride + r * a.src_row_stride + x];
        unsigned char want[4];
        store_from_float(want, a.dtype, 0, value);
        const unsigned char* got = out.data() + (r * a.out_token_stride + h * a.out_head_stride + x) * so;
        const bool same = std::isnan(value) ? std::isnan(load_as_float(got, a.dtype, 0)) : std::memcmp(got, want, so) == 0;
        if (!same) {
          fail(cat("scatter_values row ", r, " head ", h, " dim ", x, ": got ", load_as_float(got, a.dtype, 0),
                   ", expected ", value, " in ", to_string(a.dtype)));
        }
      }
    }
  }
}

// merge_states: 1-6 states (sometimes 0 or kMaxMergeStates + 1), each its own dtype and strides
// (token- or head-major with gaps, or broadcasting with stride 0), states that saw no key (lse
// -inf, out NaN), an optional lse output, an out placed inside a state (rejected), null
// pointers, mutated strides and sizes; checked against the merge in f64.
void fuzz_merge_states(Input& in) {
  bool valid = true;
  const bool wild = in.chance(10);
  Filler filler{std::mt19937(in.seed()), wild, 4.0};
  std::mt19937 rng(in.seed());
  MergeStatesArguments a;
  int32_t n = static_cast<int32_t>(in.pick(1, 6));
  if (in.chance(4)) {
    n = in.flag() ? 0 : kMaxMergeStates + 1;
    valid = false;
  }
  a.num_states = n;
  a.tokens = in.pick(0, 9);
  a.heads = static_cast<int32_t>(in.pick(0, 4));
  a.head_dim = static_cast<int32_t>(in.pick(1, 40));
  a.out_dtype = pick_dtype(in, &valid);
  auto gap = [&] { return in.chance(30) ? in.pick(1, 4) : int64_t{0}; };
  // Strides of a [tokens, heads, inner] tensor, token- or head-major, with gaps.
  auto strides = [&](int64_t inner, int64_t* token_stride, int64_t* head_stride) {
    if (in.flag()) {
      *head_stride = inner + gap();
      *token_stride = a.heads * *head_stride + gap();
    } else {
      *token_stride = inner + gap();
      *head_stride = a.tokens * *token_stride + gap();
    }
  };
  strides(a.head_dim, &a.out_token_stride, &a.out_head_stride);
  const bool want_lse = in.flag();
  strides(1, &a.lse_token_stride, &a.lse_head_stride);
  std::vector<AttentionState> states(static_cast<std::size_t>(std::max(n, 0)));
  for (AttentionState& st : states) {
    st.dtype = pick_dtype(in, &valid);
    strides(a.head_dim, &st.out_token_stride, &st.out_head_stride);
    strides(1, &st.lse_token_stride, &st.lse_head_stride);
    if (in.chance(10)) st.out_token_stride = st.lse_token_stride = 0;  // every token the same state
    if (in.chance(10)) st.out_head_stride = st.lse_head_stride = 0;    // every head the same state
  }
  if (in.chance(10) && n > 0) {
    valid = false;
    AttentionState& st = states[static_cast<std::size_t>(in.pick(0, n - 1))];
    int64_t* fields[] = {&a.tokens, &a.out_token_stride, &a.out_head_stride, &a.lse_token_stride,
                         &a.lse_head_stride, &st.out_token_stride, &st.out_head_stride,
                         &st.lse_token_stride, &st.lse_head_stride};
    int64_t& field = *fields[in.pick(0, std::size(fields) - 1)];
    field = in.flag() ? in.pick(-2, 60) : in.wild_i64();
    if (in.flag()) a.heads = in.wild_i32();
    if (in.flag()) a.head_dim = static_cast<int32_t>(in.pick(-2, 50));
  }
  const int64_t eout = extent_of({{a.tokens, a.out_token_stride}, {a.heads, a.out_head_stride}, {a.head_dim, 1}});
  const int64_t else_extent = extent_of({{a.tokens, a.lse_token_stride}, {a.heads, a.lse_head_stride}});
  bool runnable = eout >= 0 && else_extent >= 0 && valid_dtype(a.out_dtype) && n >= 1 && n <= kMaxMergeStates &&
                  small_work({a.tokens, a.heads, a.head_dim, n});
  std::vector<int64_t> e_state_out, e_state_lse;
  for (const AttentionState& st : states) {
    e_state_out.push_back(extent_of({{a.tokens, st.out_token_stride}, {a.heads, st.out_head_stride}, {a.head_dim, 1}}));
    e_state_lse.push_back(extent_of({{a.tokens, st.lse_token_stride}, {a.heads, st.lse_head_stride}}));
    runnable = runnable && e_state_out.back() >= 0 && e_state_lse.back() >= 0 && valid_dtype(st.dtype);
  }
  if (!runnable) {
    for (std::size_t s = 0; s < states.size(); ++s) {
      states[s].out = fake_pointer(static_cast<int>(3 + 2 * s));
      states[s].lse = static_cast<const float*>(fake_pointer(static_cast<int>(4 + 2 * s)));
    }
    a.states = states.data();
    a.out = const_cast<void*>(fake_pointer(1));
    a.lse = want_lse ? static_cast<float*>(const_cast<void*>(fake_pointer(2))) : nullptr;
    count(kValidationOnly);
    try {
      detail::validate_merge_states(a);
    } catch (const detail::Error& e) {
      if (std::string(e.what()).rfind("merge_states: ", 0) != 0) fail(cat("validate_merge_states message: ", e.what()));
    }
    return;
  }
  const std::size_t so = dtype_size(a.out_dtype);
  std::vector<std::unique_ptr<Buffer>> state_out, state_lse;
  for (std::size_t s = 0; s < states.size(); ++s) {
    state_out.push_back(std::make_unique<Buffer>(e_state_out[s] * dtype_size(states[s].dtype)));
    state_lse.push_back(std::make_unique<Buffer>(e_state_lse[s] * 4));
    filler.fill(state_out[s]->data(), states[s].dtype, e_state_out[s]);
    auto* l = reinterpret_cast<float*>(state_lse[s]->data());
    for (int64_t i = 0; i < e_state_lse[s]; ++i) {
      // Compare inputs: finite or -inf (a state that saw no key), as a partial result's are.
      l[i] = !wild && rng() % 5 == 0 ? -std::numeric_limits<float>::infinity() : filler.next();
    }
    states[s].out = state_out[s]->data();
    states[s].lse = l;
    if (wild) continue;
    // A state that saw no key may hold anything, NaN included: it must contribute nothing.
    for (int64_t t = 0; t < a.tokens; ++t) {
      for (int64_t h = 0; h < a.heads; ++h) {
        if (!std::isinf(l[t * states[s].lse_token_stride + h * states[s].lse_head_stride])) continue;
        for (int64_t x = 0; x < a.head_dim; ++x) {
          const int64_t at = t * states[s].out_token_stride + h * states[s].out_head_stride + x;
          store_from_float(state_out[s]->data(), states[s].dtype, static_cast<std::size_t>(at),
                           std::numeric_limits<float>::quiet_NaN());
        }
      }
    }
  }
  Buffer out(eout * so), lse(want_lse ? else_extent * 4 : 0);
  std::memset(out.data(), 0x7f, out.bytes());
  std::memset(lse.data(), 0x7f, lse.bytes());
  a.states = states.data();
  a.out = out.data();
  a.lse = want_lse ? reinterpret_cast<float*>(lse.data()) : nullptr;
  // Out inside the first state's out: rejected (when both hold something).
  const bool alias = in.chance(5) && eout > 0 && a.tokens > 0 && a.heads > 0 &&
                     state_out[0]->bytes() >= static_cast<std::size_t>(eout) * so;
  if (alias) {
    a.out = state_out[0]->data();
    valid = false;
  }
  const bool empty = a.tokens == 0 || a.heads == 0;
  if (in.chance(3)) {
    switch (in.pick(0, 2)) {
      case 0: a.out = nullptr; break;
      case 1: states[0].out = nullptr; break;
      default: states[0].lse = nullptr; break;
    }
    valid = valid && empty;  // an empty merge reads and writes nothing
  }
  for (auto& b : state_out) b->snapshot();
  for (auto& b : state_lse) b->snapshot();
  out.snapshot();
  lse.snapshot();
  if (verbose()) {
    std::fprintf(stderr, "merge_states: %d states, tokens %ld heads %d head_dim %d out dtype %d strides %ld/%ld, lse %s\n",
                 n, static_cast<long>(a.tokens), a.heads, a.head_dim, static_cast<int>(a.out_dtype),
                 static_cast<long>(a.out_token_stride), static_cast<long>(a.out_head_stride), want_lse ? "yes" : "no");
  }
  const Status status = merge_states(cpu_context(), a);
  check_error_message(status, "merge_states");
  if (valid && !status.ok()) fail("merge_states rejected valid arguments: " + status.message());
  if (alias && status.ok()) fail("merge_states accepted an out that overlaps a state");
  for (std::size_t s = 0; s < states.size(); ++s) {
    if (!state_out[s]->unchanged() || !state_lse[s]->unchanged()) fail(cat("merge_states changed state ", s));
  }
  if (!status.ok()) {
    if (!out.unchanged() || !lse.unchanged()) fail("merge_states failed (" + status.message() + ") but wrote an output");
    count(kMergeRejected);
    return;
  }
  if (empty) {
    if (!out.unchanged() || !lse.unchanged()) fail("merge_states wrote an output for an empty merge");
    return;
  }
  std::vector<bool> owned_out(out.bytes(), false), owned_lse(lse.bytes(), false);
  for (int64_t t = 0; t < a.tokens; ++t) {
    for (int64_t h = 0; h < a.heads; ++h) {
      own(owned_out, (t * a.out_token_stride + h * a.out_head_stride) * static_cast<int64_t>(so), a.head_dim * static_cast<int64_t>(so));
      if (want_lse) own(owned_lse, (t * a.lse_token_stride + h * a.lse_head_stride) * 4, 4);
    }
  }
  if (const int64_t at = out.changed_outside(owned_out); at >= 0) fail(cat("merge_states wrote out byte ", at, " outside"));
  if (const int64_t at = lse.changed_outside(owned_lse); at >= 0) fail(cat("merge_states wrote lse byte ", at, " outside"));
  if (wild) return;
  count(kMergeCompared);
  // The f64 merge of the stored (rounded) states.
  const double out_tolerance = a.out_dtype == DType::f32 ? 2e-5 : a.out_dtype == DType::f16 ? 4e-3 : 3e-2;
  for (int64_t t = 0; t < a.tokens; ++t) {
    for (int64_t h = 0; h < a.heads; ++h) {
      double top = -std::numeric_limits<double>::infinity();
      for (std::size_t s = 0; s < states.size(); ++s) {
        top = std::max<double>(top, states[s].lse[t * states[s].lse_token_stride + h * states[s].lse_head_stride]);
      }
      double total = 0.0;
      std::vector<double> weight(states.size(), 0.0);
      for (std::size_t s = 0; s < states.size(); ++s) {
        const double l = states[s].lse[t * states[s].lse_token_stride + h * states[s].lse_head_stride];
        weight[s] = std::isinf(top) || std::isinf(l) ? 0.0 : std::exp(l - top);
        total += weight[s];
      }
      if (want_lse) {
        const double want = total > 0.0 ? top + std::log(total) : -std::numeric_limits<double>::infinity();
        const double got = a.lse[t * a.lse_token_stride + h * a.lse_head_stride];
        if (!close(got, want, 2e-5 * std::max(1.0, std::abs(want)))) {
          fail(cat("merge_states lse token ", t, " head ", h, ": got ", got, ", expected ", want));
        }
      }
      for (int64_t x = 0; x < a.head_dim; ++x) {
        double want = 0.0;
        for (std::size_t s = 0; s < states.size(); ++s) {
          if (weight[s] == 0.0) continue;  // a dead state contributes nothing, NaN included
          const int64_t at = t * states[s].out_token_stride + h * states[s].out_head_stride + x;
          want += weight[s] / total * load_as_float(states[s].out, states[s].dtype, static_cast<std::size_t>(at));
        }
        const double got = load_as_float(a.out, a.out_dtype, static_cast<std::size_t>(t * a.out_token_stride + h * a.out_head_stride + x));
        if (!close(got, want, out_tolerance * 4.0)) {
          fail(cat("merge_states out token ", t, " head ", h, " dim ", x, ": got ", got, ", expected ", want,
                   " in ", to_string(a.out_dtype)));
        }
      }
    }
  }
}

// write_kv: contiguous (token- or head-major, several sequences) and paged caches (page sizes
// 1-16), a 16/32-bit or an fp8 cache (scales per pool or per KV head), the new rows strided as
// separate tensors or as the K/V slices of a fused QKV projection, slots distinct, -1 (skip) or
// out of range (rejected), stray scales, aliasing, nulls and mutated sizes and strides. Every
// written cell is checked bit for bit (fp8: convert.h's encoder of x / scale), every other byte
// of the cache is unchanged.
void fuzz_write_kv(Input& in) {
  bool valid = true;
  const bool wild = in.chance(10);
  Filler filler{std::mt19937(in.seed()), wild, 8.0};
  std::mt19937 rng(in.seed());
  WriteKvArguments a;
  a.dtype = pick_dtype(in, &valid);
  a.tokens = in.pick(0, 10);
  a.kv_heads = static_cast<int32_t>(in.pick(1, 3));
  a.head_dim = static_cast<int32_t>(in.pick(1, 40));
  KvCache& kv = a.kv;
  const bool paged = in.flag();
  int64_t outer = 0, slots = 0;
  static const int32_t kUnreadTable[1] = {0};  // paged() asks for a table; write_kv never reads it
  if (paged) {
    kv.block_table = kUnreadTable;
    kv.max_pages = 1;
    kv.page_size = 1 << in.pick(0, 4);
    kv.num_pages = in.pick(1, 6);
    outer = kv.num_pages;
    slots = kv.page_size;
  } else {
    kv.capacity = in.pick(1, 20);
    a.sequences = static_cast<int32_t>(in.pick(1, 3));
    outer = a.sequences;
    slots = kv.capacity;
  }
  const int64_t d = a.head_dim, h = a.kv_heads;
  auto gap = [&] { return in.chance(30) ? in.pick(1, 4) : int64_t{0}; };
  // The cache: [outer, slots, heads, d] or [outer, heads, slots, d], with gaps.
  int64_t outer_stride = 0, token_stride = 0, head_stride = 0;
  if (in.flag()) {
    head_stride = d + gap();
    token_stride = h * head_stride + gap();
    outer_stride = slots * token_stride + gap();
  } else {
    token_stride = d + gap();
    head_stride = slots * token_stride + gap();
    outer_stride = h * head_stride + gap();
  }
  kv.k_token_stride = kv.v_token_stride = token_stride;
  kv.k_head_stride = kv.v_head_stride = head_stride;
  (paged ? kv.k_page_stride : kv.k_sequence_stride) = outer_stride;
  (paged ? kv.v_page_stride : kv.v_sequence_stride) = outer_stride;
  // The new rows: separate [tokens, heads, d] tensors, or K/V slices of one QKV row.
  const bool fused_qkv = in.flag();
  const int64_t q_width = fused_qkv ? in.pick(0, 3) * d : 0;
  if (fused_qkv) {
    a.k_new_token_stride = a.v_new_token_stride = q_width + 2 * h * d;
    a.k_new_head_stride = a.v_new_head_stride = d;
  } else {
    a.k_new_head_stride = a.v_new_head_stride = d + gap();
    a.k_new_token_stride = a.v_new_token_stride = h * a.k_new_head_stride + gap();
  }
  const bool fp8 = valid_dtype(a.dtype) && in.chance(25);
  const bool stray_scales = !fp8 && in.chance(3);
  float scales[6] = {};  // K then V, per head (at most 3)
  if (fp8 || stray_scales) {
    for (float& x : scales) x = wild && in.chance(20) ? in.wild_float() : std::exp2(static_cast<float>(in.pick(-4, 4)));
    kv.fp8 = fp8;
    kv.scales_per_head = in.flag();
    kv.k_scale = scales;
    kv.v_scale = scales + 3;
    if (stray_scales) valid = false;
  }
  if (in.chance(10)) {
    valid = false;
    int64_t* fields[] = {&a.tokens, &a.k_new_token_stride, &a.k_new_head_stride, &a.v_new_token_stride,
                         &a.v_new_head_stride, &kv.k_token_stride, &kv.v_head_stride,
                         paged ? &kv.k_page_stride : &kv.k_sequence_stride, paged ? &kv.num_pages : &kv.capacity};
    int64_t& field = *fields[in.pick(0, std::size(fields) - 1)];
    field = in.flag() ? in.pick(-2, 60) : in.wild_i64();
    if (in.flag()) a.kv_heads = in.wild_i32();
    if (in.flag()) a.head_dim = static_cast<int32_t>(in.pick(-2, 50));
    if (in.flag()) (paged ? kv.page_size : a.sequences) = in.wild_i32();
  }
  const int64_t o1 = paged ? kv.num_pages : a.sequences, s1 = paged ? kv.page_size : kv.capacity;
  const int64_t k_extent = extent_of({{o1, paged ? kv.k_page_stride : kv.k_sequence_stride},
                                      {s1, kv.k_token_stride}, {a.kv_heads, kv.k_head_stride}, {a.head_dim, 1}});
  const int64_t v_extent = extent_of({{o1, paged ? kv.v_page_stride : kv.v_sequence_stride},
                                      {s1, kv.v_token_stride}, {a.kv_heads, kv.v_head_stride}, {a.head_dim, 1}});
  // The new rows' buffer: both slices in one allocation for a fused QKV row, else two.
  const int64_t kn_extent = extent_of({{a.tokens, a.k_new_token_stride}, {a.kv_heads, a.k_new_head_stride}, {a.head_dim, 1}});
  const int64_t vn_extent = extent_of({{a.tokens, a.v_new_token_stride}, {a.kv_heads, a.v_new_head_stride}, {a.head_dim, 1}});
  const bool runnable = valid_dtype(a.dtype) && k_extent >= 0 && v_extent >= 0 && kn_extent >= 0 && vn_extent >= 0 &&
                        a.kv_heads >= 1 && a.kv_heads <= 3 && a.head_dim >= 1 && o1 >= 1 && s1 >= 1 &&
                        (!paged || (kv.page_size & (kv.page_size - 1)) == 0) &&
                        small_work({a.tokens, a.kv_heads, a.head_dim}) && small_work({o1, s1, a.kv_heads, a.head_dim});
  // A token count past any allocation (a wild value) gets one slot, a bad one: CPU validation
  // reads the slots in order once everything else passes, and stops at the first bad one.
  const bool huge_tokens = a.tokens > (int64_t{1} << 16);
  std::vector<int32_t> slot_mapping(huge_tokens ? 1 : static_cast<std::size_t>(std::max<int64_t>(a.tokens, 0)),
                                    huge_tokens ? -2 : -1);
  if (!runnable) {
    a.k_new = fake_pointer(1);
    a.v_new = fake_pointer(2);
    a.slot_mapping = slot_mapping.empty() ? static_cast<const int32_t*>(fake_pointer(3)) : slot_mapping.data();
    kv.k = fake_pointer(4);
    kv.v = fake_pointer(5);
    count(kValidationOnly);
    try {
      detail::validate_write_kv(a, Backend::cpu);
    } catch (const detail::Error& e) {
      if (std::string(e.what()).rfind("write_kv: ", 0) != 0) fail(cat("validate_write_kv message: ", e.what()));
    }
    return;
  }
  // Distinct slots from a shuffled pool, some tokens skipped; sometimes one out of range.
  const int64_t total = o1 * s1;
  std::vector<int32_t> pool(static_cast<std::size_t>(total));
  for (int64_t i = 0; i < total; ++i) pool[static_cast<std::size_t>(i)] = static_cast<int32_t>(i);
  std::shuffle(pool.begin(), pool.end(), rng);
  for (std::size_t t = 0; t < slot_mapping.size(); ++t) {
    slot_mapping[t] = t < pool.size() && rng() % 6 != 0 ? pool[t] : -1;
  }
  bool bad_slot = false;
  if (!slot_mapping.empty() && in.chance(8)) {
    const int32_t bad[] = {-2, static_cast<int32_t>(std::min<int64_t>(total, INT32_MAX)), INT32_MAX, INT32_MIN};
    slot_mapping[static_cast<std::size_t>(in.pick(0, a.tokens - 1))] = bad[in.pick(0, 3)];
    bad_slot = true;
    valid = false;
  }
  const std::size_t es = dtype_size(a.dtype), kv_es = kv.fp8 ? 1 : es;
  const DType cache_dtype = kv.fp8 ? DType::fp8_e4m3 : a.dtype;
  Buffer k_cache(k_extent * kv_es), v_cache(v_extent * kv_es);
  Buffer qkv(fused_qkv ? std::max(q_width + kn_extent, q_width + h * d + vn_extent) * es : 0);
  Buffer k_new(fused_qkv ? 0 : kn_extent * es), v_new(fused_qkv ? 0 : vn_extent * es);
  for (Buffer* b : {&k_cache, &v_cache}) {
    for (std::size_t i = 0; i < b->bytes(); ++i) b->data()[i] = static_cast<unsigned char>(rng());
  }
  filler.fill(qkv.data(), a.dtype, static_cast<int64_t>(qkv.bytes() / es));
  if (!fused_qkv) {
    filler.fill(k_new.data(), a.dtype, kn_extent);
    filler.fill(v_new.data(), a.dtype, vn_extent);
  }
  a.k_new = fused_qkv ? static_cast<const void*>(qkv.data() + q_width * es) : k_new.data();
  a.v_new = fused_qkv ? static_cast<const void*>(qkv.data() + (q_width + h * d) * es) : v_new.data();
  a.slot_mapping = slot_mapping.data();
  kv.k = k_cache.data();
  kv.v = v_cache.data();
  const bool alias = in.chance(5) && a.tokens > 0 && !fused_qkv && k_new.bytes() > 0;
  if (alias) {  // the new K rows inside the K cache: rejected
    a.k_new = k_cache.data();
    valid = false;
  }
  if (in.chance(3)) {
    switch (in.pick(0, 4)) {
      case 0: a.k_new = nullptr; break;
      case 1: a.v_new = nullptr; break;
      case 2: a.slot_mapping = nullptr; break;
      case 3: kv.k = nullptr; break;
      default: kv.v = nullptr; break;
    }
    valid = valid && a.tokens == 0;
  }
  for (Buffer* b : {&k_cache, &v_cache, &qkv, &k_new, &v_new}) b->snapshot();
  const std::vector<int32_t> slots_before = slot_mapping;
  if (verbose()) {
    std::fprintf(stderr, "write_kv: %s cache, tokens %ld heads %d head_dim %d dtype %d%s%s\n",
                 paged ? "paged" : "contiguous", static_cast<long>(a.tokens), a.kv_heads, a.head_dim,
                 static_cast<int>(a.dtype), kv.fp8 ? ", fp8" : "", fused_qkv ? ", fused QKV" : "");
  }
  const Status status = write_kv(cpu_context(), a);
  check_error_message(status, "write_kv");
  if (valid && !status.ok()) fail("write_kv rejected valid arguments: " + status.message());
  if (bad_slot && status.ok()) fail("write_kv accepted a slot outside the cache");
  if (alias && status.ok()) fail("write_kv accepted new rows inside the cache");
  for (Buffer* b : {&qkv, &k_new, &v_new}) {
    if (!b->unchanged()) fail("write_kv changed an input");
  }
  if (slot_mapping != slots_before) fail("write_kv changed slot_mapping");
  if (!status.ok()) {
    if (!k_cache.unchanged() || !v_cache.unchanged()) fail("write_kv failed (" + status.message() + ") but wrote the cache");
    count(kWriteRejected);
    return;
  }
  if (a.tokens == 0) {
    if (!k_cache.unchanged() || !v_cache.unchanged()) fail("write_kv wrote the cache for no tokens");
    return;
  }
  count(kWriteCompared);
  for (int which = 0; which < 2; ++which) {
    const Buffer& cache = which == 0 ? k_cache : v_cache;
    const auto* src = static_cast<const unsigned char*>(which == 0 ? a.k_new : a.v_new);
    const int64_t src_token = which == 0 ? a.k_new_token_stride : a.v_new_token_stride;
    const int64_t src_head = which == 0 ? a.k_new_head_stride : a.v_new_head_stride;
    const int64_t c_outer = paged ? (which == 0 ? kv.k_page_stride : kv.v_page_stride)
                                  : (which == 0 ? kv.k_sequence_stride : kv.v_sequence_stride);
    const int64_t c_token = which == 0 ? kv.k_token_stride : kv.v_token_stride;
    const int64_t c_head = which == 0 ? kv.k_head_stride : kv.v_head_stride;
    const float* scale = which == 0 ? kv.k_scale : kv.v_scale;
    std::vector<bool> owned(cache.bytes(), false);
    for (int64_t t = 0; t < a.tokens; ++t) {
      const int32_t slot = slot_mapping[static_cast<std::size_t>(t)];
      if (slot < 0) continue;
      for (int64_t hd = 0; hd < a.kv_heads; ++hd) {
        const int64_t row = (slot / s1) * c_outer + (slot % s1) * c_token + hd * c_head;
        own(owned, row * static_cast<int64_t>(kv_es), int64_t{a.head_dim} * static_cast<int64_t>(kv_es));
        for (int64_t x = 0; x < a.head_dim; ++x) {
          const std::size_t from = static_cast<std::size_t>(t * src_token + hd * src_head + x);
          unsigned char want[4];
          if (kv.fp8) {
            const float sc = scale ? scale[kv.scales_per_head ? hd : 0] : 1.0f;
            store_from_float(want, DType::fp8_e4m3, 0, load_as_float(src, a.dtype, from) / sc);
          } else {
            std::memcpy(want, src + from * es, es);
          }
          if (std::memcmp(cache.data() + (row + x) * kv_es, want, kv_es) != 0) {
            fail(cat("write_kv ", which == 0 ? "K" : "V", " token ", t, " slot ", slot, " head ", hd, " dim ", x,
                     ": got ", load_as_float(cache.data(), cache_dtype, static_cast<std::size_t>(row + x)),
                     ", expected ", load_as_float(want, cache_dtype, 0)));
          }
        }
      }
    }
    if (const int64_t at = cache.changed_outside(owned); at >= 0) {
      fail(cat("write_kv wrote ", which == 0 ? "K" : "V", " cache byte ", at, " outside the slots"));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  cpu_context();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  Input in(data, size);
  // The input's last byte picks the call. merge_states and write_kv, added last, take 250-252
  // and 253-255, so that 0-249 keep the mapping the committed corpus (its regression inputs
  // above all) was made with.
  const int64_t pick = in.pick(0, 255);
  if (pick >= 250) {
    if (pick >= 253) fuzz_write_kv(in); else fuzz_merge_states(in);
    return 0;
  }
  switch (pick % 10) {
    case 0: case 1: case 2: case 3: case 4: fuzz_attention(in); break;
    case 5: case 6: fuzz_matmul(in); break;
    case 7: fuzz_softmax(in); break;
    case 8: fuzz_scatter_scores(in); break;
    default: fuzz_scatter_values(in); break;
  }
  return 0;
}
