// The f64 oracle of attention, one query row at a time, written from problem.h:
//   logits_i = scale * q . k_i (soft-capped when softcap > 0) for every visible key i,
//   plus the head's sink logit (unscaled) in the normaliser;
//   out = sum_i exp(logit_i - max) v_i / (sum_i exp(logit_i - max) + exp(sink - max)),
//   lse = max + log(that normaliser).
#include "reference/reference.h"

#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "reference/components_reference.h"
#include "wideattn/convert.h"

namespace wideattn::reference {
namespace {

constexpr double kMinusInfinity = -std::numeric_limits<double>::infinity();

double element(const void* data, DType dtype, int64_t index) {
  return load_as_float(data, dtype, static_cast<std::size_t>(index));
}

// The sequence that owns global query row `token`.
int32_t sequence_of(const AttentionProblem& p, int64_t token) {
  for (int32_t b = 0; b < p.batch; ++b) {
    if (token < p.query_offsets[b + 1]) return b;
  }
  return p.batch - 1;
}

// Element offset of cache row i, KV head g of sequence b, as problem.h's KvCache describes it.
int64_t cache_offset(const AttentionProblem& p, bool k, int32_t b, int64_t i, int32_t g) {
  const KvCache& kv = p.kv;
  const int64_t token_stride = k ? kv.k_token_stride : kv.v_token_stride;
  const int64_t head_stride = k ? kv.k_head_stride : kv.v_head_stride;
  if (!kv.paged()) {
    const int64_t sequence_stride = k ? kv.k_sequence_stride : kv.v_sequence_stride;
    return b * sequence_stride + i * token_stride + g * head_stride;
  }
  const int64_t page = kv.block_table[b * kv.block_table_stride + i / kv.page_size];
  const int64_t page_stride = k ? kv.k_page_stride : kv.v_page_stride;
  return page * page_stride + (i % kv.page_size) * token_stride + g * head_stride;
}

}  // namespace

double attention_row(const AttentionProblem& p, int64_t token, int32_t head, double* out_row) {
  const int32_t b = sequence_of(p, token);
  const int64_t first_row = p.query_offsets[b];
  const int64_t suffix = p.query_offsets[b + 1] - first_row;
  const int64_t kv_length = p.kv_lengths[b];
  const int64_t prefix = kv_length - suffix;
  const int64_t t = token - first_row;
  const int32_t kv_head = head / (p.q_heads / p.kv_heads);
  const int64_t d = p.head_dim;
  const double scale = std::isnan(p.scale) ? 1.0 / std::sqrt(static_cast<double>(d)) : p.scale;

  MaskSpec spec = p.mask;  // this sequence's slice of the tree arrays
  if (spec.tree_start) {
    spec.tree_start += first_row;
    spec.tree_end += first_row;
    spec.tree_height += first_row;
  }

  std::vector<double> q(static_cast<std::size_t>(d));
  for (int64_t x = 0; x < d; ++x) {
    q[x] = element(p.q, p.dtype, token * p.q_token_stride + head * p.q_head_stride + x);
  }

  // An fp8 cache: stored e4m3 values times the head's scale, exactly (in f64).
  const DType cache_dtype = p.kv.fp8 ? DType::fp8_e4m3 : p.dtype;
  auto head_scale = [&](const float* s) {
    return s ? static_cast<double>(s[p.kv.scales_per_head ? kv_head : 0]) : 1.0;
  };
  const double k_scale = head_scale(p.kv.k_scale), v_scale = head_scale(p.kv.v_scale);

  std::vector<int64_t> keys;
  std::vector<double> logits;
  for (int64_t i = 0; i < kv_length; ++i) {
    if (!key_visible(spec, prefix, suffix, t, i)) continue;
    double dot = 0.0;
    const int64_t k_row = cache_offset(p, true, b, i, kv_head);
    for (int64_t x = 0; x < d; ++x) dot += q[x] * (k_scale * element(p.kv.k, cache_dtype, k_row + x));
    double logit = scale * dot;
    if (p.softcap > 0) logit = p.softcap * std::tanh(logit / p.softcap);
    keys.push_back(i);
    logits.push_back(logit);
  }

  const bool has_sink = p.sinks != nullptr;
  const double sink = has_sink ? p.sinks[head] : kMinusInfinity;
  double maximum = sink;
  for (double l : logits) maximum = std::max(maximum, l);

  for (int64_t x = 0; x < d; ++x) out_row[x] = 0.0;
  if (maximum == kMinusInfinity) return kMinusInfinity;  // no key, no sink

  double normaliser = has_sink ? std::exp(sink - maximum) : 0.0;
  for (std::size_t n = 0; n < keys.size(); ++n) {
    const double weight = std::exp(logits[n] - maximum);
    normaliser += weight;
    const int64_t v_row = cache_offset(p, false, b, keys[n], kv_head);
    for (int64_t x = 0; x < d; ++x) out_row[x] += weight * (v_scale * element(p.kv.v, cache_dtype, v_row + x));
  }
  for (int64_t x = 0; x < d; ++x) out_row[x] /= normaliser;
  return maximum + std::log(normaliser);
}

void attention(const AttentionProblem& p, std::vector<double>* out, std::vector<double>* lse) {
  const int64_t tokens = p.total_tokens();
  const int64_t d = p.head_dim;
  out->assign(static_cast<std::size_t>(tokens * p.q_heads * d), 0.0);
  lse->assign(static_cast<std::size_t>(tokens * p.q_heads), kMinusInfinity);
  for (int64_t token = 0; token < tokens; ++token) {
    for (int32_t h = 0; h < p.q_heads; ++h) {
      (*lse)[token * p.q_heads + h] = attention_row(p, token, h, out->data() + (token * p.q_heads + h) * d);
    }
  }
}

}  // namespace wideattn::reference
