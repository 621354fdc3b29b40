#include "bench_suites.h"

#include "args.h"

namespace wideattn::cli {
namespace {

struct Shape {
  const char* name;
  int32_t q_heads, kv_heads, head_dim;
};

// The 512-wide (global) layers of Gemma 4 (scale 1.0, causal).
constexpr Shape kE2B{"E2B", 8, 1, 512};
constexpr Shape kE4B{"E4B", 8, 2, 512};
constexpr Shape k26B{"26B", 16, 2, 512};
constexpr Shape k31B{"31B", 32, 4, 512};
// The shapes peers.md measured other implementations at.
constexpr Shape kPeer512{"d512", 16, 4, 512};
constexpr Shape kPeer256{"d256", 16, 8, 256};
constexpr Shape kPeer128{"d128", 32, 8, 128};
// Gemma 4's sliding-window layers (head_dim 256, window 1024).
constexpr Shape kSliding31B{"sliding", 32, 16, 256};
constexpr Shape kSliding26B{"sliding", 16, 8, 256};

ProblemSpec make(const Shape& shape, const std::string& what, int32_t batch, int64_t prefix,
                 int64_t suffix) {
  ProblemSpec s;
  s.name = std::string(shape.name) + " " + what + " (" + std::to_string(shape.q_heads) + "/" +
           std::to_string(shape.kv_heads) + ")";
  s.batch = batch;
  s.q_heads = shape.q_heads;
  s.kv_heads = shape.kv_heads;
  s.head_dim = shape.head_dim;
  s.dtype = DType::bf16;
  s.prefix = prefix;
  s.suffix = suffix;
  s.scale = 1.0f;
  s.causal = true;
  return s;
}

ProblemSpec prefill(const Shape& shape, int64_t tokens) {
  return make(shape, "prefill " + std::to_string(tokens / 1024) + "K", 1, 0, tokens);
}

ProblemSpec decode(const Shape& shape, int32_t batch, int32_t new_tokens, int64_t kv) {
  const std::string what = "decode b" + std::to_string(batch) +
                           (new_tokens > 1 ? "x" + std::to_string(new_tokens) : "") + " kv " +
                           std::to_string(kv / 1024) + "K";
  return make(shape, what, batch, kv - new_tokens, new_tokens);
}

// The same problem with a paged cache, pages shuffled (issue 10's target for decode: >= 95% of
// the contiguous rate from 16-token pages up).
ProblemSpec paged(ProblemSpec contiguous, int32_t page_size) {
  contiguous.name += " paged " + std::to_string(page_size);
  contiguous.page_size = page_size;
  return contiguous;
}

// The same decode problem over an fp8 (e4m3) cache: half the K/V bytes (issue 10's target: about
// 1.8x the 16-bit cache's speed).
ProblemSpec fp8(ProblemSpec wide) {
  wide.name += " fp8";
  wide.kv_fp8 = true;
  return wide;
}

ProblemSpec chunk(const Shape& shape, int64_t new_tokens, int64_t kv) {
  return make(shape, "chunk " + std::to_string(new_tokens) + " on " + std::to_string(kv / 1024) + "K", 1,
              kv - new_tokens, new_tokens);
}

ProblemSpec sliding(const Shape& shape, int64_t tokens, int32_t window) {
  ProblemSpec s = make(shape, "prefill " + std::to_string(tokens / 1024) + "K window " + std::to_string(window), 1,
                       0, tokens);
  s.window = window;
  return s;
}

// A sliding layer's chunk over a ring cache of `window` slots, the oldest mid-ring (the window's
// live slots wrap around the ring's end): the fused kernel's ring/tree variant.
ProblemSpec ring_chunk(const Shape& shape, int64_t new_tokens, int32_t window, int32_t oldest) {
  ProblemSpec s = make(shape, "chunk " + std::to_string(new_tokens) + " on a " + std::to_string(window / 1024) +
                                  "K ring window " + std::to_string(window),
                       1, window, new_tokens);
  s.window = window;
  s.ring_length = window;
  s.ring_offset = oldest;
  return s;
}

// A speculative token tree (random, DFS order) over a prefix.
ProblemSpec tree(const Shape& shape, int64_t nodes, int64_t kv) {
  ProblemSpec s = make(shape, "tree " + std::to_string(nodes) + " on " + std::to_string(kv / 1024) + "K", 1,
                       kv - nodes, nodes);
  s.tree = TreeKind::tree;
  return s;
}

// The fused kernels' problems: head_dim 128/256 prefill, a chunk on a prefix, the sliding
// layers (part 1's targets), head_dim 512 at the peers' shape and Gemma 4 31B's (part 2), and
// the ring/tree variant.
void append_fused_problems(std::vector<ProblemSpec>& suite) {
  suite.push_back(prefill(kPeer128, 4096));
  suite.push_back(prefill(kPeer128, 16384));
  suite.push_back(prefill(kPeer256, 4096));
  suite.push_back(prefill(kPeer256, 16384));
  suite.push_back(chunk(kPeer256, 512, 8192));
  suite.push_back(sliding(kSliding31B, 8192, 1024));
  suite.push_back(sliding(kSliding26B, 8192, 1024));
  suite.push_back(prefill(kPeer512, 1024));
  suite.push_back(prefill(kPeer512, 4096));
  suite.push_back(prefill(kPeer512, 16384));
  suite.push_back(chunk(kPeer512, 512, 8192));
  suite.push_back(prefill(k31B, 4096));
  // Paged caches (16-token pages, shuffled) next to the contiguous chunk and prefill above.
  suite.push_back(paged(chunk(kPeer256, 512, 8192), 16));
  suite.push_back(paged(chunk(kPeer512, 512, 8192), 16));
  suite.push_back(paged(prefill(k31B, 4096), 16));
  suite.push_back(ring_chunk(kSliding26B, 2048, 1024, 377));
  suite.push_back(tree(k31B, 64, 4096));
}

}  // namespace

std::vector<ProblemSpec> bench_suite(const std::string& name) {
  std::vector<ProblemSpec> suite;
  if (name == "cpu") {
    suite.push_back(prefill(kE4B, 1024));
    suite.push_back(prefill(kE4B, 4096));
    suite.push_back(decode(kE4B, 1, 1, 32768));
    suite.push_back(decode(k26B, 1, 1, 32768));
    return suite;
  }
  if (name == "gpu") {
    // Gemma 4 global layers.
    for (const Shape& shape : {kE4B, k26B, k31B}) {
      suite.push_back(prefill(shape, 1024));
      suite.push_back(prefill(shape, 4096));
      suite.push_back(prefill(shape, 16384));
      suite.push_back(chunk(shape, 512, 8192));
      suite.push_back(decode(shape, 32, 1, 4096));
      suite.push_back(decode(shape, 1, 1, 32768));
      suite.push_back(decode(shape, 1, 1, 131072));
      suite.push_back(decode(shape, 8, 4, 8192));
    }
    // E2B (one KV head): issue 9's 1K and 4K prefill, issue 12's batch-1 decode over 32K.
    suite.push_back(prefill(kE2B, 1024));
    suite.push_back(prefill(kE2B, 4096));
    suite.push_back(decode(kE2B, 1, 1, 32768));
    // The shapes peers.md reports other implementations at (d=512 16/4; d=128, d=256).
    suite.push_back(prefill(kPeer512, 4096));
    suite.push_back(prefill(kPeer512, 16384));
    suite.push_back(chunk(kPeer512, 512, 8192));
    suite.push_back(decode(kPeer512, 32, 1, 4096));
    suite.push_back(decode(kPeer512, 1, 1, 32768));
    suite.push_back(decode(kPeer512, 8, 4, 8192));
    // Paged decode next to the contiguous figures above (31B, shuffled block tables): issue
    // 10's four problems at 16-token pages, two at 64.
    for (int32_t page : {16, 64}) {
      suite.push_back(paged(decode(k31B, 32, 1, 4096), page));
      suite.push_back(paged(decode(k31B, 1, 1, 32768), page));
    }
    suite.push_back(paged(decode(k31B, 1, 1, 131072), 16));
    suite.push_back(paged(decode(k31B, 8, 4, 8192), 16));
    // fp8 caches next to the 16-bit figures above.
    suite.push_back(fp8(decode(k31B, 32, 1, 4096)));
    suite.push_back(fp8(decode(k31B, 1, 1, 32768)));
    suite.push_back(fp8(decode(k31B, 1, 1, 131072)));
    suite.push_back(fp8(decode(k31B, 8, 4, 8192)));
    suite.push_back(fp8(decode(kE4B, 1, 1, 32768)));
    suite.push_back(fp8(decode(kE4B, 8, 4, 8192)));  // 16 rows a KV head (gqa 4 x 4 tokens)
    suite.push_back(fp8(decode(k26B, 1, 1, 32768)));
    suite.push_back(fp8(paged(decode(k31B, 32, 1, 4096), 16)));
    suite.push_back(fp8(paged(decode(k31B, 1, 1, 32768), 64)));
    append_fused_problems(suite);
    return suite;
  }
  if (name == "fused") {
    append_fused_problems(suite);
    return suite;
  }
  throw UsageError("unknown suite '" + name + "': expected cpu, gpu or fused");
}

}  // namespace wideattn::cli
