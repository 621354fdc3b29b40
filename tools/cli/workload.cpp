#include "workload.h"

#include <algorithm>
#include <cmath>

#include "format.h"
#include "wideattn/convert.h"

namespace wideattn::cli {
namespace {

// splitmix64: small, fast, and good enough for test data.
struct Random {
  uint64_t state;
  explicit Random(uint64_t seed) : state(seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull) {}
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
};

std::string gib(double bytes) { return format_bytes(bytes); }

}  // namespace

// Per-tensor scales of an fp8 cache: stored values of a few units to a hundred, well inside
// e4m3's range (448) and above its subnormals.
constexpr float kFp8KScale = 1.0f / 32, kFp8VScale = 1.0f / 64;

void fill_random(void* data, DType dtype, std::size_t count, double stddev, uint64_t seed) {
  Random random(seed);
  const double amplitude = stddev * std::sqrt(3.0);  // uniform on [-a, a] has std a / sqrt(3)
  for (std::size_t i = 0; i < count; ++i) {
    store_from_float(data, dtype, i, static_cast<float>((2.0 * random.uniform() - 1.0) * amplitude));
  }
}

void make_tree(TreeKind kind, int64_t length, uint64_t seed, int32_t* start, int32_t* end,
               int32_t* height) {
  Random random(seed);
  std::vector<int32_t> path;  // root .. most recent node: the nodes a new node may hang from
  for (int64_t j = 0; j < length; ++j) {
    start[j] = static_cast<int32_t>(j);
    end[j] = static_cast<int32_t>(j);
    if (j > 0) {
      std::size_t keep = path.size();  // chain: the parent is the previous node
      if (kind == TreeKind::tree && random.uniform() >= 0.5) {
        keep = 1 + static_cast<std::size_t>(random.uniform() * path.size());  // some ancestor
        keep = std::min(keep, path.size());
      }
      path.resize(keep);
    }
    height[j] = static_cast<int32_t>(path.size());
    for (int32_t ancestor : path) end[ancestor] = static_cast<int32_t>(j);
    path.push_back(static_cast<int32_t>(j));
  }
}

Workload::Workload(Context& context, const ProblemSpec& spec, const WorkloadOptions& options)
    : context_(context), spec_(spec), options_(options) {
  const DeviceInfo& device = context.device();
  const std::size_t es = dtype_size(spec.dtype);
  const DType cache_dtype = spec.kv_fp8 ? DType::fp8_e4m3 : spec.dtype;
  const std::size_t kv_es = dtype_size(cache_dtype);
  capacity_ = std::max<int64_t>(1, spec.kv_length() + options.decode_steps);
  if (spec.page_size > 0) capacity_ = (capacity_ + spec.page_size - 1) / spec.page_size * spec.page_size;
  const std::size_t kv_elements =
      static_cast<std::size_t>(spec.batch) * capacity_ * spec.kv_heads * spec.head_dim;
  const std::size_t kv_bytes = 2 * kv_elements * kv_es;  // K and V
  auto phase_bytes = [&](int64_t suffix) {
    const std::size_t rows = static_cast<std::size_t>(spec.batch) * suffix * spec.q_heads;
    return 2 * rows * spec.head_dim * es + (spec.lse ? rows * sizeof(float) : 0);
  };
  const std::size_t phases_bytes = phase_bytes(spec.suffix) + options.decode_steps * phase_bytes(1);

  int32_t copies = 1;
  if (options.rotate_kv && device.l2_bytes > 0) {
    const double target = 2.2 * static_cast<double>(device.l2_bytes);
    copies = static_cast<int32_t>(std::ceil(target / static_cast<double>(kv_bytes)));
    copies = std::clamp(copies, 1, std::max(1, options.max_kv_copies));
    while (copies > 1 && static_cast<double>(copies) * kv_bytes > 0.25 * device.memory_bytes) --copies;
  }
  // Host copies (for the oracle) come on top; on the CPU they share the same memory.
  const double device_need = static_cast<double>(copies) * kv_bytes + phases_bytes;
  const double host_need = static_cast<double>(kv_bytes) + phases_bytes / 2.0;
  const double need = device_need + (device.backend == Backend::cpu ? host_need : 0.0);
  if (device.memory_bytes > 0 && need > 0.8 * static_cast<double>(device.memory_bytes)) {
    throw UsageError("problem needs about " + gib(need) + " of " + to_string(device.backend) +
                     " memory; " + device.name + " has " + gib(static_cast<double>(device.memory_bytes)));
  }

  const double scale = std::isnan(spec.scale) ? 1.0 / std::sqrt(static_cast<double>(spec.head_dim))
                                              : static_cast<double>(spec.scale);
  // Inputs are drawn so that logits have a standard deviation of about 2 whatever the scale
  // and head_dim: sharp enough to exercise the softmax, not so sharp that it is one-hot.
  const double qk_std = std::sqrt(2.0 / (scale * std::sqrt(static_cast<double>(spec.head_dim))));

  host_k_.resize(kv_elements * kv_es);
  host_v_.resize(kv_elements * kv_es);
  if (options.fill) {
    // An fp8 cache stores x / scale: the scales stretch e4m3's values to the same spread.
    const double k_std = spec.kv_fp8 ? qk_std / kFp8KScale : qk_std, v_std = spec.kv_fp8 ? 1.0 / kFp8VScale : 1.0;
    fill_random(host_k_.data(), cache_dtype, kv_elements, k_std, options.seed * 16 + 1);
    fill_random(host_v_.data(), cache_dtype, kv_elements, v_std, options.seed * 16 + 2);
  }
  if (spec.kv_fp8) {
    host_scales_ = {kFp8KScale, kFp8VScale};
    scales_ = DeviceBuffer(context, 2 * sizeof(float));
    scales_.upload(host_scales_.data(), 2 * sizeof(float));
  }
  // Paged: page j of sequence b (a run of page_size rows of the host cache) goes to a random
  // page of the pools, the same for every copy.
  const std::vector<unsigned char>* device_k = &host_k_;
  const std::vector<unsigned char>* device_v = &host_v_;
  std::vector<unsigned char> pool_k, pool_v;
  if (spec.page_size > 0) {
    const int64_t pages_per_sequence = capacity_ / spec.page_size;
    const int64_t pages = pages_per_sequence * spec.batch;
    host_table_.resize(static_cast<std::size_t>(pages));
    for (int64_t i = 0; i < pages; ++i) host_table_[i] = static_cast<int32_t>(i);
    Random random(options.seed * 16 + 6);
    for (int64_t i = pages - 1; i > 0 && !spec.pages_in_order; --i) {  // Fisher-Yates
      std::swap(host_table_[i], host_table_[static_cast<int64_t>(random.uniform() * (i + 1))]);
    }
    if (options.fill) {
      const std::size_t page_bytes = static_cast<std::size_t>(spec.page_size) * spec.kv_heads * spec.head_dim * kv_es;
      pool_k.resize(host_k_.size());
      pool_v.resize(host_v_.size());
      for (int64_t i = 0; i < pages; ++i) {  // logical page i (sequence i / pages_per_sequence)
        std::copy_n(host_k_.data() + i * page_bytes, page_bytes, pool_k.data() + host_table_[i] * page_bytes);
        std::copy_n(host_v_.data() + i * page_bytes, page_bytes, pool_v.data() + host_table_[i] * page_bytes);
      }
      device_k = &pool_k;
      device_v = &pool_v;
    }
    table_ = DeviceBuffer(context, host_table_.size() * sizeof(int32_t));
    table_.upload(host_table_.data(), host_table_.size() * sizeof(int32_t));
  }
  for (int32_t c = 0; c < copies; ++c) {
    k_copies_.emplace_back(context, kv_elements * kv_es);
    v_copies_.emplace_back(context, kv_elements * kv_es);
    if (options.fill) {
      k_copies_.back().upload(device_k->data(), device_k->size());
      v_copies_.back().upload(device_v->data(), device_v->size());
    }
  }
  if (spec.sinks) {
    host_sinks_.resize(spec.q_heads);
    fill_random(host_sinks_.data(), DType::f32, host_sinks_.size(), 2.0, options.seed * 16 + 3);
    sinks_ = DeviceBuffer(context, host_sinks_.size() * sizeof(float));
    sinks_.upload(host_sinks_.data(), host_sinks_.size() * sizeof(float));
  }

  const bool single_call = options.decode_steps == 0;
  build_phase(spec.suffix > 8 ? "prefill" : (single_call ? "call" : "first call"), spec, 0);
  for (int32_t step = 0; step < options.decode_steps; ++step) {
    ProblemSpec decode = spec;
    decode.prefix = spec.kv_length() + step;
    decode.suffix = 1;
    decode.tree = TreeKind::none;
    build_phase("decode " + std::to_string(step + 1), decode, 1 + static_cast<uint64_t>(step));
  }
}

void Workload::build_phase(const std::string& label, const ProblemSpec& spec, uint64_t stream) {
  auto phase = std::make_unique<Phase>();
  Phase& p = *phase;
  p.label = label;
  p.spec = spec;
  const std::size_t es = dtype_size(spec.dtype);
  const int64_t tokens = int64_t{spec.batch} * spec.suffix;
  p.query_offsets.resize(spec.batch + 1);
  p.kv_lengths.assign(spec.batch, static_cast<int32_t>(spec.kv_length()));
  for (int32_t b = 0; b <= spec.batch; ++b) p.query_offsets[b] = static_cast<int32_t>(int64_t{b} * spec.suffix);

  const std::size_t q_elements = static_cast<std::size_t>(tokens) * spec.q_heads * spec.head_dim;
  p.host_q.resize(q_elements * es);
  const double scale = std::isnan(spec.scale) ? 1.0 / std::sqrt(static_cast<double>(spec.head_dim))
                                              : static_cast<double>(spec.scale);
  const double qk_std = std::sqrt(2.0 / (scale * std::sqrt(static_cast<double>(spec.head_dim))));
  if (options_.fill) fill_random(p.host_q.data(), spec.dtype, q_elements, qk_std, options_.seed * 16 + 4 + stream * 16);
  p.q = DeviceBuffer(context_, p.host_q.size());
  if (options_.fill) p.q.upload(p.host_q.data(), p.host_q.size());
  p.out = DeviceBuffer(context_, q_elements * es);
  if (spec.lse) p.lse = DeviceBuffer(context_, static_cast<std::size_t>(tokens) * spec.q_heads * sizeof(float));

  if (spec.tree != TreeKind::none && tokens > 0) {
    p.tree_start.resize(tokens);
    p.tree_end.resize(tokens);
    p.tree_height.resize(tokens);
    for (int32_t b = 0; b < spec.batch; ++b) {
      const int64_t first = int64_t{b} * spec.suffix;
      make_tree(spec.tree, spec.suffix, options_.seed * 16 + 5 + b, &p.tree_start[first],
                &p.tree_end[first], &p.tree_height[first]);
    }
    const std::size_t bytes = static_cast<std::size_t>(tokens) * sizeof(int32_t);
    p.tree = DeviceBuffer(context_, 3 * bytes);
    std::vector<int32_t> packed;
    packed.insert(packed.end(), p.tree_start.begin(), p.tree_start.end());
    packed.insert(packed.end(), p.tree_end.begin(), p.tree_end.end());
    packed.insert(packed.end(), p.tree_height.begin(), p.tree_height.end());
    p.tree.upload(packed.data(), 3 * bytes);
  }

  AttentionProblem base;
  base.batch = spec.batch;
  base.q_heads = spec.q_heads;
  base.kv_heads = spec.kv_heads;
  base.head_dim = spec.head_dim;
  base.dtype = spec.dtype;
  base.query_offsets = p.query_offsets.data();
  base.kv_lengths = p.kv_lengths.data();
  base.kv.capacity = capacity_;
  base.mask.causal = spec.causal;
  base.mask.window = spec.window;
  base.mask.ring_length = spec.ring_length;
  base.mask.ring_offset = spec.ring_offset;
  base.scale = spec.scale;
  base.softcap = spec.softcap;
  base.kv.fp8 = spec.kv_fp8;
  base.kv_splits = spec.kv_splits;
  set_dense_strides(base);

  for (std::size_t c = 0; c < k_copies_.size(); ++c) {
    AttentionProblem d = base;
    d.q = p.q.get();
    d.out = p.out.get();
    d.lse = spec.lse ? static_cast<float*>(p.lse.get()) : nullptr;
    d.kv.k = k_copies_[c].get();
    d.kv.v = v_copies_[c].get();
    if (spec.page_size > 0) {
      const int32_t pages_per_sequence = static_cast<int32_t>(capacity_ / spec.page_size);
      set_paged_kv(d, d.kv.k, d.kv.v, int64_t{pages_per_sequence} * spec.batch, spec.page_size,
                   static_cast<const int32_t*>(table_.get()), pages_per_sequence);
    }
    d.sinks = spec.sinks ? static_cast<const float*>(sinks_.get()) : nullptr;
    if (spec.kv_fp8) {
      d.kv.k_scale = static_cast<const float*>(scales_.get());
      d.kv.v_scale = d.kv.k_scale + 1;
    }
    if (!p.tree_start.empty()) {
      const int32_t* t = static_cast<const int32_t*>(p.tree.get());
      d.mask.tree_start = t;
      d.mask.tree_end = t + tokens;
      d.mask.tree_height = t + 2 * tokens;
    }
    p.device_problems.push_back(d);
  }
  AttentionProblem h = base;
  h.q = p.host_q.data();
  h.kv.k = host_k_.data();
  h.kv.v = host_v_.data();
  h.out = nullptr;
  h.lse = nullptr;
  h.sinks = spec.sinks ? host_sinks_.data() : nullptr;
  if (spec.kv_fp8) {
    h.kv.k_scale = host_scales_.data();
    h.kv.v_scale = host_scales_.data() + 1;
  }
  if (!p.tree_start.empty()) {
    h.mask.tree_start = p.tree_start.data();
    h.mask.tree_end = p.tree_end.data();
    h.mask.tree_height = p.tree_height.data();
  }
  p.host_problem = h;
  phases_.push_back(std::move(phase));
}

}  // namespace wideattn::cli
