#include "core/fused_support.h"

#include <algorithm>
#include <cstdint>
#include <sstream>

#include "core/debug_options.h"
#include "core/mask.h"
#include "cuda/fused/tile_config.h"

namespace wideattn::detail {
namespace {

bool aligned16(const void* pointer) { return reinterpret_cast<std::uintptr_t>(pointer) % 16 == 0; }

// TMA: strides in bytes multiples of 16, below 2^40 (2-byte elements: multiples of 8 below
// 2^39, tested on the element count so that no stride overflows).
bool tma_stride(int64_t elements) {
  return elements >= 0 && elements % 8 == 0 && elements < (int64_t{1} << 39);
}

// Query tiles of `rows_per_tile` rows over the problem's sequences (tokens x packed heads).
int64_t query_tiles(const AttentionProblem& p, int64_t rows_per_tile, int32_t packed) {
  const int64_t tokens_per_tile = rows_per_tile / packed;
  int64_t tiles = 0;
  for (int32_t b = 0; b < p.batch; ++b) {
    const int64_t suffix = p.query_offsets[b + 1] - p.query_offsets[b];
    if (suffix > 0) tiles += (suffix + tokens_per_tile - 1) / tokens_per_tile * (p.q_heads / packed);
  }
  return tiles;
}

// alternate_keys is possible: the pair, plain masks (the ring/tree variant walks holes), 64 rows
// holding whole GQA packings, and no fixed split count.
bool alternate_keys_possible(const AttentionProblem& p, const fused::TileConfig& c) {
  return c.cluster > 1 && p.mask.ring_length == 0 && p.mask.tree_start == nullptr && p.kv_splits == 0 &&
         fused::packed_heads(c, p.q_heads / p.kv_heads) <= 64;
}

}  // namespace

std::string fused_prefill_unsupported(const AttentionProblem& p, const DeviceInfo& device) {
#if !defined(WIDEATTN_WITH_CUDA)
  (void)p;
  (void)device;
  return "built without the CUDA backend";
#else
  std::ostringstream why;
  const fused::TileConfig* config = fused::tile_config(p.head_dim);
  if (device.backend != Backend::cuda) {
    why << "needs a CUDA device";
  } else if (device.compute_capability != 90) {
    why << "built for sm_90a (Hopper); the device is sm_" << device.compute_capability;
  } else if (p.kv.paged() && p.kv.page_size < 16) {
    // Each page is a TMA box of its own: at least 16 rows (a multiple of the 8-row swizzle
    // pattern, and at most 8 boxes a key tile).
    why << "paged KV cache with pages of " << p.kv.page_size << " tokens: the fused kernels need pages of at least 16";
  } else if (p.kv.paged() && p.kv.num_pages >= (int64_t{1} << 31)) {
    why << "paged KV cache of 2^31 pages or more";
  } else if (p.kv.fp8) {
    why << "fp8 KV cache: not served by the fused kernels yet";
  } else if (p.dtype == DType::f32) {
    why << "needs f16 or bf16 storage (f32 given)";
  } else if (!config) {
    why << "no fused kernel for head_dim " << p.head_dim << " (built: 64, 128, 256, 512)";
  } else if (!aligned16(p.q) || !aligned16(p.kv.k) || !aligned16(p.kv.v)) {
    why << "q, k and v must be 16-byte aligned for TMA";
  } else if (!tma_stride(p.q_token_stride) || !tma_stride(p.q_head_stride) ||
             !tma_stride(p.kv.k_token_stride) || !tma_stride(p.kv.k_head_stride) ||
             !tma_stride(p.kv.k_sequence_stride) || !tma_stride(p.kv.v_token_stride) ||
             !tma_stride(p.kv.v_head_stride) || !tma_stride(p.kv.v_sequence_stride) ||
             !tma_stride(p.kv.k_page_stride) || !tma_stride(p.kv.v_page_stride)) {
    why << "q, k and v strides must be multiples of 8 elements (16 bytes, for TMA)";
  } else {
    int32_t sequences = 0;
    for (int32_t b = 0; b < p.batch; ++b) sequences += p.query_offsets[b + 1] > p.query_offsets[b];
    if (sequences > fused::kMaxSequences) {
      why << sequences << " sequences with new tokens; one launch carries at most "
          << fused::kMaxSequences;
    } else if (p.kv.capacity >= (int64_t{1} << 31) || p.total_tokens() >= (int64_t{1} << 31)) {
      why << "more than 2^31 tokens";
    }
  }
  return why.str();
#endif
}

int32_t fused_prefill_splits(const AttentionProblem& p, const DeviceInfo& device) {
  const fused::TileConfig* c = fused::tile_config(p.head_dim);
  if (!c) return 1;
  if (fused_alternate_override() == 1 && alternate_keys_possible(p, *c)) return 1;  // forced instead
  const int32_t packed = fused::packed_heads(*c, p.q_heads / p.kv_heads);
  const int64_t tiles = query_tiles(p, c->block_m, packed);
  int64_t longest_kv = 0;
  for (int32_t b = 0; b < p.batch; ++b) {
    if (p.query_offsets[b + 1] > p.query_offsets[b]) longest_kv = std::max<int64_t>(longest_kv, p.kv_lengths[b]);
  }
  if (tiles == 0) return 1;
  // As many parts as keep every SM busy, each at least two key tiles of the longest sequence
  // (a split carries a fixed cost: its Q load, its epilogue and a share of the merge).
  const int64_t key_tiles = (longest_kv + c->block_n - 1) / c->block_n;
  int64_t splits = device.compute_units / c->cluster / tiles;  // a pair of CTAs per tile at 512
  splits = std::min<int64_t>({splits, fused::kMaxSplits, key_tiles / 2});
  return static_cast<int32_t>(std::max<int64_t>(1, splits));
}

bool fused_prefill_alternate_keys(const AttentionProblem& p, const DeviceInfo& device, int32_t splits) {
  const fused::TileConfig* c = fused::tile_config(p.head_dim);
  if (!c || splits > 1 || !alternate_keys_possible(p, *c)) return false;
  const int override_value = fused_alternate_override();
  if (override_value >= 0) return override_value == 1;
  const int32_t packed = fused::packed_heads(*c, p.q_heads / p.kv_heads);
  const int64_t pairs = device.compute_units / c->cluster;
  if (query_tiles(p, c->block_m, packed) > pairs) return false;
  // Each pair then takes one 128-row tile: the longest walk (L, in key tiles) sets the time.
  // With alternate_keys a pair's two warpgroups walk a 64-row tile's keys in turn, so its
  // longest takes L64 / 2 steps, but the work W (key-tile steps of 128 rows) now spreads over
  // every pair and runs at ~0.8 of whole tiles' rate (H200: E4B 4K forced 0.80x, 26B chunk of
  // 512 on 8K 0.84x). It pays when the walks are uneven (causal, few tokens), not when they
  // are long and alike (a chunk on a long prefix: 64 walks of 128 tiles on 66 pairs).
  const int64_t tokens128 = c->block_m / packed, tokens64 = 64 / packed;
  int64_t longest = 0, longest64 = 0, work = 0;
  auto walk = [&](const SequenceMask& m, int64_t t0, int64_t t1) -> int64_t {
    const KeyRange r = visible_key_range(m, t0, t1);
    return r.last > r.first ? (r.last - 1) / c->block_n - r.first / c->block_n + 1 : 0;
  };
  for (int32_t b = 0; b < p.batch; ++b) {
    const SequenceMask m = sequence_mask(p, b);
    for (int64_t t0 = 0; t0 < m.suffix_length; t0 += tokens128) {
      const int64_t t1 = std::min<int64_t>(m.suffix_length, t0 + tokens128);
      const int64_t steps = walk(m, t0, t1);
      longest = std::max(longest, steps);
      work += steps * (p.q_heads / packed);
      longest64 = std::max({longest64, walk(m, t0, std::min(t1, t0 + tokens64)), walk(m, t0 + tokens64, t1)});
    }
  }
  const double spread = double(work) / double(pairs);
  return std::max(0.5 * double(longest64), spread) < 0.8 * std::max(double(longest), spread);
}

std::string fused_prefill_summary(const AttentionProblem& p) {
  const fused::TileConfig* c = fused::tile_config(p.head_dim);
  if (!c) return "";
  const int32_t packed = fused::packed_heads(*c, p.q_heads / p.kv_heads);
  std::ostringstream s;
  s << "fused Hopper kernel (TMA + wgmma), " << c->block_m << "x" << c->block_n << " tiles, "
    << c->stages << " K/V stages, " << packed << " query head(s) per tile";
  if (c->cluster > 1) s << ", head_dim split over a " << c->cluster << "-CTA cluster";
  return s.str();
}

}  // namespace wideattn::detail

#include "core/backend.h"
#include "core/error.h"

namespace wideattn::detail {

void BackendImpl::prefill_fused(const AttentionProblem&, const Plan&) {
  throw_error(StatusCode::unsupported, "attention: this backend has no fused prefill kernel");
}

void BackendImpl::gather_kv_rows(const GatherKvArguments&) {
  throw_error(StatusCode::unsupported, "attention: this backend cannot gather paged KV rows");
}

}  // namespace wideattn::detail
