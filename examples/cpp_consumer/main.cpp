// Runs a tiny causal attention on the CPU through wideattn's public API and compares it with a
// naive f64 computation. Exit code 0 when the largest error is below 1e-4.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "wideattn/wideattn.h"

namespace {

bool check(const wideattn::Status& status, const char* what) {
  if (status.ok()) return true;
  std::fprintf(stderr, "cpp_consumer: %s failed: %s: %s\n", what,
               wideattn::to_string(status.code()), status.message().c_str());
  return false;
}

// Deterministic values in [-1, 1).
void fill(std::vector<float>& values, uint32_t seed) {
  for (float& x : values) {
    seed = seed * 1664525u + 1013904223u;
    x = static_cast<float>(seed >> 8) / static_cast<float>(1u << 23) - 1.0f;
  }
}

}  // namespace

int main() {
  using namespace wideattn;

#ifdef WIDEATTN_WITH_CUDA
  const int with_cuda = 1;
#else
  const int with_cuda = 0;
#endif
  std::string reason;
  const bool cuda_here = backend_available(Backend::cuda, &reason);
  std::printf("cpp_consumer: wideattn built with CUDA: %s; CUDA backend available: %s%s%s\n",
              with_cuda ? "yes" : "no", cuda_here ? "yes" : "no", cuda_here ? "" : " - ",
              cuda_here ? "" : reason.c_str());
  if (with_cuda != CONSUMER_EXPECT_CUDA) {
    std::fprintf(stderr, "cpp_consumer: WIDEATTN_WITH_CUDA is %d, the package says %d\n",
                 with_cuda, CONSUMER_EXPECT_CUDA);
    return 1;
  }

  std::unique_ptr<Context> context;
  if (!check(Context::create(Backend::cpu, /*device_index=*/0, /*stream=*/nullptr, &context),
             "Context::create"))
    return 1;

  // One sequence of 16 new tokens attending to themselves, causal, GQA 4/2 heads, head_dim 64.
  const int32_t tokens = 16, q_heads = 4, kv_heads = 2, head_dim = 64;
  std::vector<int32_t> query_offsets = {0, tokens}, kv_lengths = {tokens};
  std::vector<float> q(size_t(tokens) * q_heads * head_dim), out(q.size(), 0.0f);
  std::vector<float> k(size_t(tokens) * kv_heads * head_dim), v(k.size());
  fill(q, 1);
  fill(k, 2);
  fill(v, 3);

  AttentionProblem p;
  p.batch = 1;
  p.q_heads = q_heads;
  p.kv_heads = kv_heads;
  p.head_dim = head_dim;
  p.dtype = DType::f32;
  p.query_offsets = query_offsets.data();
  p.kv_lengths = kv_lengths.data();
  p.q = q.data();
  p.kv.k = k.data();
  p.kv.v = v.data();
  p.kv.capacity = tokens;
  p.out = out.data();
  p.scale = kDefaultScale;  // 1/sqrt(head_dim)
  p.mask.causal = true;
  set_dense_strides(p);

  Plan plan;
  if (!check(attention(*context, p, Kernel::automatic, &plan), "attention")) return 1;
  if (!check(context->synchronize(), "Context::synchronize")) return 1;
  std::printf("cpp_consumer: kernel %s (%s)\n", to_string(plan.kernel), plan.reason.c_str());

  // Naive f64 attention over the same dense layouts: Q/O [tokens, q_heads, dim], K/V [tokens,
  // kv_heads, dim]; query head h reads KV head h / (q_heads / kv_heads); token t sees keys 0..t.
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  const int32_t group = q_heads / kv_heads;
  double max_error = 0.0;
  for (int32_t t = 0; t < tokens; ++t) {
    for (int32_t h = 0; h < q_heads; ++h) {
      const float* qrow = &q[(size_t(t) * q_heads + h) * head_dim];
      const int32_t g = h / group;
      std::vector<double> logits(t + 1);
      double max_logit = -INFINITY;
      for (int32_t j = 0; j <= t; ++j) {
        const float* krow = &k[(size_t(j) * kv_heads + g) * head_dim];
        double dot = 0.0;
        for (int32_t d = 0; d < head_dim; ++d) dot += double(qrow[d]) * double(krow[d]);
        logits[j] = dot * scale;
        max_logit = std::max(max_logit, logits[j]);
      }
      double sum = 0.0;
      for (double& l : logits) sum += (l = std::exp(l - max_logit));
      for (int32_t d = 0; d < head_dim; ++d) {
        double expected = 0.0;
        for (int32_t j = 0; j <= t; ++j)
          expected += logits[j] * double(v[(size_t(j) * kv_heads + g) * head_dim + d]);
        expected /= sum;
        const double got = out[(size_t(t) * q_heads + h) * head_dim + d];
        const double error = std::fabs(got - expected);
        if (std::isnan(error) || error > max_error) max_error = error;  // a NaN sticks
      }
    }
  }
  const double tolerance = 1e-4;
  std::printf("cpp_consumer: max abs error vs f64 reference: %.3g (tolerance %.0e)\n", max_error,
              tolerance);
  if (!(max_error <= tolerance)) {
    std::fprintf(stderr, "cpp_consumer: FAILED, error above tolerance\n");
    return 1;
  }
  std::printf("cpp_consumer: OK\n");
  return 0;
}
