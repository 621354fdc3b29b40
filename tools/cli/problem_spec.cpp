#include "problem_spec.h"

#include <cmath>
#include <limits>
#include <sstream>

#include "wideattn/problem.h"

namespace wideattn::cli {

std::vector<FlagSpec> problem_flags() {
  return {
      {"batch", "N", "sequences (default 1)"},
      {"q-heads", "N", "query heads (default 8: Gemma 4 E4B)"},
      {"kv-heads", "N", "KV heads (default 2)"},
      {"head-dim", "N", "head dimension (default 512)"},
      {"dtype", "T", "storage of q, k, v, out: bf16 (default), f16 or f32"},
      {"tokens", "N", "default scenario: prompt length (default 2048)"},
      {"decode-steps", "N", "decode calls after the first call (default 16; 0 with --suffix)"},
      {"prefix", "N", "cached tokens before the new ones (one call instead of the scenario)"},
      {"suffix", "N", "new tokens per sequence (one call instead of the scenario)"},
      {"kv-length", "N", "KV length per sequence (sets the prefix to kv-length - suffix)"},
      {"scale", "X", "logit scale (default 1.0 as in Gemma 4; 'default' = 1/sqrt(head_dim))"},
      {"softcap", "X", "logit soft-capping (default 0: off)"},
      {"window", "N", "sliding window (default 0: off)"},
      {"bidirectional", nullptr, "the new tokens see each other both ways (default causal)"},
      {"ring-length", "N", "live slots of a ring-buffer prefix (default 0: no ring)"},
      {"ring-offset", "N", "slot of the ring's oldest entry (default 0)"},
      {"tree", "KIND", "token tree over the suffix: none (default), chain or tree (random, --seed)"},
      {"sinks", nullptr, "one sink logit per query head (random)"},
      {"lse", nullptr, "also write and check the log-sum-exp"},
      {"page-size", "N", "paged KV cache with pages of N tokens in shuffled order (default 0: contiguous)"},
      {"pages-in-order", nullptr, "paged: each sequence's pages in pool order, not shuffled (locality A/B)"},
      {"kv-fp8", nullptr, "fp8 (e4m3) KV cache with per-tensor scales (CUDA prefill: the unfused pipeline)"},
      {"kv-splits", "N", "KV splits, fixed (batch-invariant; default 0: the plan chooses)"},
  };
}

DType parse_dtype(const std::string& text) {
  if (text == "bf16") return DType::bf16;
  if (text == "f16" || text == "fp16") return DType::f16;
  if (text == "f32" || text == "fp32") return DType::f32;
  throw UsageError("dtype '" + text + "': expected bf16, f16 or f32");
}

Kernel parse_kernel(const std::string& text) {
  if (text == "auto" || text == "automatic") return Kernel::automatic;
  if (text == "single_pass" || text == "single-pass") return Kernel::single_pass;
  if (text == "two_pass" || text == "two-pass") return Kernel::two_pass;
  if (text == "prefill_unfused" || text == "prefill-unfused" || text == "prefill") {
    return Kernel::prefill_unfused;
  }
  if (text == "prefill_fused" || text == "prefill-fused" || text == "fused") {
    return Kernel::prefill_fused;
  }
  throw UsageError("kernel '" + text + "': expected auto, single_pass, two_pass, prefill_unfused or prefill_fused");
}

Backend parse_backend(const std::string& text) {
  if (text == "cpu") return Backend::cpu;
  if (text == "cuda") return Backend::cuda;
  throw UsageError("backend '" + text + "': expected cpu, cuda or auto");
}

const char* to_string(TreeKind tree) {
  switch (tree) {
    case TreeKind::none: return "none";
    case TreeKind::chain: return "chain";
    case TreeKind::tree: return "tree";
  }
  return "unknown";
}

void apply_problem_flags(const Args& args, ProblemSpec* spec) {
  constexpr int64_t kMaxInt = std::numeric_limits<int32_t>::max();
  spec->batch = static_cast<int32_t>(args.get_int("batch", spec->batch, 1, 1 << 20));
  spec->q_heads = static_cast<int32_t>(args.get_int("q-heads", spec->q_heads, 1, 4096));
  spec->kv_heads = static_cast<int32_t>(args.get_int("kv-heads", spec->kv_heads, 1, 4096));
  spec->head_dim = static_cast<int32_t>(args.get_int("head-dim", spec->head_dim, 1, 4096));
  if (args.has("dtype")) spec->dtype = parse_dtype(args.get_string("dtype", ""));
  if (spec->q_heads % spec->kv_heads != 0) {
    throw UsageError("--q-heads " + std::to_string(spec->q_heads) + " is not a multiple of --kv-heads " +
                     std::to_string(spec->kv_heads));
  }

  const bool one_call = args.has("prefix") || args.has("suffix") || args.has("kv-length");
  if (one_call && args.has("tokens")) {
    throw UsageError("--tokens sets the default scenario; use --prefix/--suffix/--kv-length or --tokens, not both");
  }
  if (one_call) {
    spec->suffix = args.get_int("suffix", 1, 0, kMaxInt);
    if (args.has("kv-length") && args.has("prefix")) {
      throw UsageError("give --prefix or --kv-length, not both (kv-length = prefix + suffix)");
    }
    if (args.has("kv-length")) {
      const int64_t kv = args.get_int("kv-length", 0, 0, kMaxInt);
      if (kv < spec->suffix) {
        throw UsageError("--kv-length " + std::to_string(kv) + " is shorter than --suffix " +
                         std::to_string(spec->suffix) + " (the new tokens' keys are in the cache)");
      }
      spec->prefix = kv - spec->suffix;
    } else {
      spec->prefix = args.get_int("prefix", 0, 0, kMaxInt);
    }
  } else {
    spec->prefix = 0;
    spec->suffix = args.get_int("tokens", spec->suffix, 1, kMaxInt);
  }
  if (spec->prefix + spec->suffix > kMaxInt) {
    throw UsageError("prefix + suffix = " + std::to_string(spec->prefix + spec->suffix) +
                     " does not fit int32 KV lengths");
  }
  if (int64_t{spec->batch} * spec->suffix > kMaxInt) {
    throw UsageError("batch * suffix = " + std::to_string(int64_t{spec->batch} * spec->suffix) +
                     " query rows do not fit int32 offsets");
  }

  if (args.has("scale")) {
    if (args.get_string("scale", "") == "default") {
      spec->scale = std::numeric_limits<float>::quiet_NaN();
    } else {
      const double scale = args.get_double("scale", 1.0, 0.0, 1e30);
      if (!(scale > 0)) throw UsageError("flag --scale must be > 0 (or 'default')");
      spec->scale = static_cast<float>(scale);
    }
  }
  spec->softcap = static_cast<float>(args.get_double("softcap", spec->softcap, 0.0, 1e30));
  spec->window = static_cast<int32_t>(args.get_int("window", spec->window, 0, kMaxInt));
  if (args.get_switch("bidirectional")) spec->causal = false;
  spec->ring_length = static_cast<int32_t>(args.get_int("ring-length", spec->ring_length, 0, kMaxInt));
  spec->ring_offset = static_cast<int32_t>(args.get_int("ring-offset", spec->ring_offset, 0, kMaxInt));
  if (args.has("ring-offset") && spec->ring_length == 0) {
    throw UsageError("--ring-offset needs --ring-length");
  }
  if (spec->ring_length > 0 && spec->prefix > 0 && spec->ring_offset >= spec->prefix) {
    throw UsageError("--ring-offset " + std::to_string(spec->ring_offset) +
                     " must be below the prefix length " + std::to_string(spec->prefix));
  }
  if (args.has("tree")) {
    const std::string tree = args.get_string("tree", "none");
    if (tree == "none") spec->tree = TreeKind::none;
    else if (tree == "chain") spec->tree = TreeKind::chain;
    else if (tree == "tree") spec->tree = TreeKind::tree;
    else throw UsageError("--tree '" + tree + "': expected none, chain or tree");
  }
  if (args.get_switch("sinks")) spec->sinks = true;
  if (args.get_switch("lse")) spec->lse = true;
  spec->page_size = static_cast<int32_t>(args.get_int("page-size", spec->page_size, 0, kMaxPageSize));
  if (args.get_switch("pages-in-order")) spec->pages_in_order = true;
  if (args.has("kv-fp8")) spec->kv_fp8 = true;
  spec->kv_splits = static_cast<int32_t>(args.get_int("kv-splits", spec->kv_splits, 0, kMaxKvSplits));
}

std::string describe(const ProblemSpec& s) {
  std::ostringstream o;
  o << "batch " << s.batch << ", heads " << s.q_heads << "/" << s.kv_heads << ", d=" << s.head_dim
    << ", " << to_string(s.dtype) << ", prefix " << s.prefix << " + suffix " << s.suffix << " (kv "
    << s.kv_length() << "), " << (s.causal ? "causal" : "bidirectional");
  if (std::isnan(s.scale)) o << ", scale 1/sqrt(d)";
  else o << ", scale " << s.scale;
  if (s.softcap > 0) o << ", softcap " << s.softcap;
  if (s.window > 0) o << ", window " << s.window;
  if (s.ring_length > 0) o << ", ring " << s.ring_length << "@" << s.ring_offset;
  if (s.tree != TreeKind::none) o << ", tree " << to_string(s.tree);
  if (s.sinks) o << ", sinks";
  if (s.kv_fp8) o << ", fp8 KV";
  if (s.kv_splits > 0) o << ", " << s.kv_splits << " KV split(s) fixed";
  if (s.lse) o << ", lse";
  if (s.page_size > 0) o << ", paged " << s.page_size << (s.pages_in_order ? " (in order)" : " (shuffled)");
  return o.str();
}

}  // namespace wideattn::cli
