// The fused kernel's walk over key tiles and its mask predicates (src/cuda/fused/tile_schedule.cuh
// and ring_tree_mask.cuh, host and device code) against core/mask.h's key_visible, on the CPU:
// for random sequences, masks (causal, bidirectional, windows, ring caches, speculative tries
// and trees of random contents), tile sizes and split counts,
// - every key a row sees lies in a key tile its item visits, and the splits of an item visit
//   each tile at most once (a hole or a split that drops a visible tile fails here);
// - a tile that the kernel treats as free (no predicate) is seen whole by every row;
// - on the other tiles the kernel's predicate is the oracle's, key by key, and so is the
//   interval it uses instead where a tile allows one.
// The GPU tests (fused_prefill_test.cpp) then check the kernel's numbers on a subset.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "attention_case.h"
#include "core/mask.h"
#if defined(WIDEATTN_WITH_CUDA)
#include "cuda/fused/ring_tree_mask.cuh"
#include "cuda/fused/tile_schedule.cuh"
#endif

namespace wideattn::test {
namespace {

#if defined(WIDEATTN_WITH_CUDA)

struct Walk {
  int32_t suffix = 1, kv_length = 1, tokens_per_tile = 128, splits = 1;
  bool causal = true;
  int32_t window = 0, ring_length = 0, ring_offset = 0;
  std::vector<int32_t> tree_start, tree_end, tree_height;  // empty: no tree

  std::string describe() const {
    std::ostringstream s;
    s << "suffix " << suffix << ", kv_length " << kv_length << ", " << (causal ? "causal" : "bidirectional")
      << ", window " << window << ", ring " << ring_length << "@" << ring_offset << (tree_start.empty() ? "" : ", tree")
      << ", " << tokens_per_tile << " tokens a tile, " << splits << " splits";
    return s.str();
  }
};

// The launch parameters of `w`'s one sequence, as fused_launch.cu fills them (one query head a
// tile: the walks do not depend on the packing).
std::unique_ptr<fused::FusedParams> params_of(const Walk& w) {
  auto params = std::make_unique<fused::FusedParams>();
  fused::FusedParams& p = *params;
  p.q_heads = p.kv_heads = p.group = p.packed = p.tile_heads = 1;
  p.packed_shift = 0;
  p.tokens_per_tile = w.tokens_per_tile;
  p.causal = w.causal ? 1 : 0;
  p.window = w.window;
  p.ring_length = w.ring_length;
  p.ring_offset = w.ring_offset;
  const bool tree = !w.tree_start.empty();
  p.tree_start = tree ? w.tree_start.data() : nullptr;
  p.tree_end = tree ? w.tree_end.data() : nullptr;
  p.tree_height = tree ? w.tree_height.data() : nullptr;
  const int32_t blocks = (w.suffix + w.tokens_per_tile - 1) / w.tokens_per_tile;
  p.splits = w.splits;
  p.num_sequences = 1;
  p.total_tiles = blocks * w.splits;
  p.batch_index[0] = 0;
  p.query_start[0] = 0;
  p.suffix[0] = w.suffix;
  p.kv_length[0] = w.kv_length;
  p.tile_start[0] = 0;
  p.tile_start[1] = blocks;
  return params;
}

// Checks every item of `w` for key tiles of kBlockN rows; returns the first failure, or "".
template <int kBlockN, bool kRingOrTree>
std::string check_walk(const Walk& w) {
  const std::unique_ptr<fused::FusedParams> params = params_of(w);
  const fused::FusedParams& p = *params;
  const int32_t blocks = p.tile_start[1];

  SequenceMask m;
  m.prefix_length = w.kv_length - w.suffix;
  m.suffix_length = w.suffix;
  m.spec.causal = w.causal;
  m.spec.window = w.window;
  m.spec.ring_length = w.ring_length;
  m.spec.ring_offset = w.ring_offset;
  m.spec.tree_start = p.tree_start;
  m.spec.tree_end = p.tree_end;
  m.spec.tree_height = p.tree_height;

  std::ostringstream failure;
  for (int32_t index = 0; index < blocks; ++index) {
    std::set<int32_t> visited;
    fused::Tile t{};
    for (int32_t split = 0; split < w.splits; ++split) {
      t = fused::decode_tile<kBlockN, kRingOrTree>(p, index * w.splits + split);
      int32_t previous = t.key_end;
      for (int32_t n = t.key_end - 1; n >= t.key_begin; n = fused::next_key_tile<kRingOrTree>(t, n)) {
        if (n >= previous || n < 0 || !visited.insert(n).second) {
          failure << "item " << index << " split " << split << ": key tile " << n << " out of order or twice";
          return failure.str();
        }
        previous = n;
        const int32_t key0 = n * kBlockN;
        bool free;
        if constexpr (kRingOrTree) {
          free = fused::ring_tree_tile_free<kBlockN>(p, t, key0);
        } else {
          free = key0 >= t.free_first && key0 + kBlockN - 1 <= t.free_last;
        }
        for (int32_t token = t.token_begin; token < t.token_end; ++token) {
          const int64_t qpos = fused::ring_tree_query_position(p, t, token);
          for (int32_t key = key0; key < key0 + kBlockN; ++key) {
            const bool oracle = key < w.kv_length && detail::key_visible(m, token, key);
            if (free && !oracle) {
              failure << "item " << index << ": tile " << n << " treated as free, but row " << token
                      << " does not see key " << key;
              return failure.str();
            }
            bool kernel;
            if constexpr (kRingOrTree) {
              kernel = fused::ring_tree_key_visible(p, t, token, qpos, key);
              int32_t shift, lo, hi;
              if (fused::ring_tree_interval_tile<kBlockN>(p, t, key0, shift)) {  // the kernel's faster test
                fused::ring_tree_row_interval(p, t, key0, shift, token, lo, hi);
                if ((key >= lo && key <= hi) != oracle) {
                  failure << "item " << index << ": row " << token << ", key " << key << ": the interval [" << lo
                          << ", " << hi << "] of tile " << n << " disagrees with key_visible (" << oracle << ")";
                  return failure.str();
                }
              }
            } else {
              kernel = key >= fused::row_first_key(p, static_cast<int32_t>(qpos)) &&
                       key <= fused::row_last_key(p, static_cast<int32_t>(qpos), w.kv_length);
            }
            if (!free && kernel != oracle) {
              failure << "item " << index << ": row " << token << ", key " << key << ": the kernel's predicate says "
                      << kernel << ", key_visible " << oracle;
              return failure.str();
            }
          }
        }
      }
    }
    for (int32_t token = t.token_begin; token < t.token_end; ++token) {
      for (int32_t key = 0; key < w.kv_length; ++key) {
        if (detail::key_visible(m, token, key) && !visited.count(key / kBlockN)) {
          failure << "item " << index << ": row " << token << " sees key " << key << ", but no split visits key tile "
                  << key / kBlockN;
          return failure.str();
        }
      }
    }
  }
  return "";
}

Walk random_walk(std::mt19937_64& rng, bool ring_or_tree) {
  auto pick = [&](int32_t lo, int32_t hi) { return std::uniform_int_distribution<int32_t>(lo, hi)(rng); };
  Walk w;
  w.kv_length = pick(1, 700);
  w.suffix = pick(0, 3) == 0 ? w.kv_length : pick(1, w.kv_length);
  const int32_t prefix = w.kv_length - w.suffix;
  w.causal = pick(0, 3) != 0;
  const int32_t window_kind = pick(0, 4);
  w.window = window_kind <= 1 ? 0 : window_kind == 2 ? pick(1, 40) : window_kind == 3 ? pick(1, 800) : 2147483647;
  static const int32_t kTokensPerTile[] = {16, 64, 128};
  w.tokens_per_tile = kTokensPerTile[pick(0, 2)];
  static const int32_t kSplits[] = {1, 1, 2, 3, 8};
  w.splits = kSplits[pick(0, 4)];
  if (!ring_or_tree) return w;
  const bool ring = prefix > 0 && pick(0, 3) != 0;
  if (ring) {
    w.ring_length = pick(0, 4) == 0 ? pick(prefix, prefix + 50) : pick(1, prefix);
    w.ring_offset = pick(0, prefix - 1);
  }
  const int32_t tree_kind = ring ? pick(0, 2) : pick(1, 2);  // without a ring, always a tree
  if (tree_kind == 1) {  // a speculative trie: DFS order, heights from the root
    append_random_trie(rng, w.suffix, &w.tree_start, &w.tree_end, &w.tree_height);
  } else if (tree_kind == 2) {  // any contents: the walk must stay conservative
    for (int32_t j = 0; j < w.suffix; ++j) {
      w.tree_start.push_back(pick(-3, w.suffix + 3));
      w.tree_end.push_back(pick(-3, w.suffix + 3));
      w.tree_height.push_back(pick(0, 1) ? pick(-1000, 1000) : pick(-3, w.suffix + 3));
    }
  }
  return w;
}

template <int kBlockN, bool kRingOrTree>
void check_random_walks(uint64_t seed, int count) {
  std::mt19937_64 rng(seed);
  for (int i = 0; i < count; ++i) {
    const Walk w = random_walk(rng, kRingOrTree);
    const std::string failure = check_walk<kBlockN, kRingOrTree>(w);
    ASSERT_TRUE(failure.empty()) << w.describe() << ": " << failure << " (seed " << seed << ", draw " << i << ")";
  }
}

TEST(FusedWalk, PlainMasksCoverEveryVisibleKey) {
  check_random_walks<64, false>(11, 250);
  check_random_walks<128, false>(12, 250);
}

TEST(FusedWalk, RingCachesAndTreesCoverEveryVisibleKey) {
  check_random_walks<64, true>(21, 400);
  check_random_walks<128, true>(22, 400);
}

// The case the hole is for: a window whose live ring slots wrap around the ring's end. The walk
// visits two runs of tiles and skips the ones between.
TEST(FusedWalk, WrappedRingSkipsTheHole) {
  Walk w;
  w.kv_length = 900;
  w.suffix = 200;  // prefix 700: slots 0..699, then the suffix at rows 700..899
  w.ring_length = 700;
  w.ring_offset = 100;  // slot i holds logical position (i - 100) mod 700
  w.window = 300;
  w.tokens_per_tile = 64;
  ASSERT_EQ((check_walk<64, true>(w)), "");
  const std::unique_ptr<fused::FusedParams> params = params_of(w);
  ASSERT_EQ(params->total_tiles, 4);
  // Item 3 is the first query block (positions 700..763): logical 401..699 live in its window,
  // slots 501..699 and 0..99; tiles 0-1 and 7-11, rows 128..447 (tiles 2..6) skipped.
  const fused::Tile t = fused::decode_tile<64, true>(*params, 3);
  EXPECT_EQ(t.token_begin, 0);
  EXPECT_EQ(t.key_begin, 0);
  EXPECT_EQ(t.key_end, 12);
  EXPECT_EQ(t.hole_begin, 2);
  EXPECT_EQ(t.hole_end, 7);
}

#else

TEST(FusedWalk, NeedsTheCudaBuild) { GTEST_SKIP() << "built without the CUDA backend (the fused kernel's headers)"; }

#endif

}  // namespace
}  // namespace wideattn::test
