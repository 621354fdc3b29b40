// The mask predicate (src/core/mask.h) on hand-worked cases, against the oracle's own
// predicate on random specs, and the conservative key range the chunked kernels rely on.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "core/mask.h"
#include "reference/components_reference.h"
#include "test_support.h"

namespace wideattn::test {
namespace {

// Row t of the result shows which cache rows query t sees: '1' visible, '.' hidden.
std::vector<std::string> visibility(const SequenceMask& m) {
  std::vector<std::string> rows;
  for (int64_t t = 0; t < m.suffix_length; ++t) {
    std::string row;
    for (int64_t i = 0; i < m.prefix_length + m.suffix_length; ++i) {
      row += detail::key_visible(m, t, i) ? '1' : '.';
    }
    rows.push_back(row);
  }
  return rows;
}

SequenceMask make_mask(int64_t prefix, int64_t suffix, bool causal = true) {
  SequenceMask m;
  m.prefix_length = prefix;
  m.suffix_length = suffix;
  m.spec.causal = causal;
  return m;
}

using Rows = std::vector<std::string>;

TEST(MaskPredicate, CausalSeesPrefixAndEarlierSuffix) {
  const SequenceMask m = make_mask(3, 3);
  EXPECT_EQ(visibility(m), (Rows{"1111..", "11111.", "111111"}));
}

TEST(MaskPredicate, BidirectionalSeesEverything) {
  const SequenceMask m = make_mask(2, 3, /*causal=*/false);
  EXPECT_EQ(visibility(m), (Rows{"11111", "11111", "11111"}));
}

TEST(MaskPredicate, CausalWindowKeepsTheLastWKeys) {
  SequenceMask m = make_mask(4, 3);
  m.spec.window = 3;  // 0 <= qpos - kpos < 3, qpos = 4 + t
  EXPECT_EQ(visibility(m), (Rows{"..111..", "...111.", "....111"}));
}

TEST(MaskPredicate, BidirectionalWindowKeepsHalfEachSide) {
  SequenceMask m = make_mask(3, 3, /*causal=*/false);
  m.spec.window = 4;  // |qpos - kpos| <= 2, qpos = 3 + t
  const Rows expected{".11111", "..1111", "...111"};
  EXPECT_EQ(visibility(m), expected);
  m.spec.window = 5;  // an odd window rounds its half down
  EXPECT_EQ(visibility(m), expected);
}

TEST(MaskPredicate, RingHidesSlotsOutsideItsLiveRange) {
  SequenceMask m = make_mask(6, 2);
  m.spec.ring_length = 3;
  m.spec.ring_offset = 4;  // slot i holds logical position (i + 2) % 6; live: logical 0, 1, 2
  EXPECT_EQ(visibility(m), (Rows{"1...111.", "1...1111"}));
}

TEST(MaskPredicate, RingWithWindowUsesLogicalPositions) {
  SequenceMask m = make_mask(6, 2);
  m.spec.ring_length = 3;
  m.spec.ring_offset = 4;
  m.spec.window = 5;  // qpos 6: logical 2 only (slot 0); qpos 7: no ring slot
  EXPECT_EQ(visibility(m), (Rows{"1.....1.", "......11"}));
}

// Root 0 with children 1 (child 2) and 3 (child 4), in DFS order.
struct Trie {
  std::vector<int32_t> start{0, 1, 2, 3, 4};
  std::vector<int32_t> end{4, 2, 2, 4, 4};
  std::vector<int32_t> height{0, 1, 2, 1, 2};
  void attach(SequenceMask& m) const {
    m.spec.tree_start = start.data();
    m.spec.tree_end = end.data();
    m.spec.tree_height = height.data();
  }
};

TEST(MaskPredicate, TreeSeesAncestorsAndSelf) {
  const Trie trie;
  for (bool causal : {true, false}) {  // the tree decides suffix visibility either way
    SequenceMask m = make_mask(2, 5, causal);
    trie.attach(m);
    EXPECT_EQ(visibility(m), (Rows{"111....", "1111...", "11111..", "111..1.", "111..11"}))
        << "causal " << causal;
  }
}

TEST(MaskPredicate, TreeWindowUsesHeights) {
  const Trie trie;
  SequenceMask m = make_mask(2, 5);
  trie.attach(m);
  m.spec.window = 2;  // qpos = 2 + height[t], suffix kpos = 2 + height[j]
  EXPECT_EQ(visibility(m), (Rows{".11....", "..11...", "...11..", "..1..1.", ".....11"}));
}

TEST(MaskPredicate, SequenceMaskOffsetsTreeArraysAndLengths) {
  const std::vector<int32_t> offsets{0, 2, 5}, kv{4, 6};
  const std::vector<int32_t> start{0, 1, 0, 1, 2}, end{1, 1, 2, 2, 2}, height{0, 1, 0, 1, 2};
  AttentionProblem p;
  p.batch = 2;
  p.query_offsets = offsets.data();
  p.kv_lengths = kv.data();
  p.mask.tree_start = start.data();
  p.mask.tree_end = end.data();
  p.mask.tree_height = height.data();
  const SequenceMask m = detail::sequence_mask(p, 1);
  EXPECT_EQ(m.prefix_length, 3);
  EXPECT_EQ(m.suffix_length, 3);
  EXPECT_EQ(m.spec.tree_start, start.data() + 2);
  EXPECT_EQ(m.spec.tree_end, end.data() + 2);
  EXPECT_EQ(m.spec.tree_height, height.data() + 2);
  EXPECT_EQ(visibility(m), (Rows{"1111..", "11111.", "111111"}));  // a chain
}

// A random mask: any of window, ring, tree on a short sequence.
struct RandomMask {
  SequenceMask m;
  std::vector<int32_t> start, end, height;
};
RandomMask random_mask(std::mt19937_64& rng) {
  RandomMask r;
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  r.m.prefix_length = uniform(0, 12);
  r.m.suffix_length = uniform(1, 9);
  r.m.spec.causal = uniform(0, 1) == 1;
  if (uniform(0, 1)) r.m.spec.window = uniform(1, 10);
  if (r.m.prefix_length > 0 && uniform(0, 1)) {
    r.m.spec.ring_length = uniform(1, static_cast<int>(r.m.prefix_length) + 2);
    r.m.spec.ring_offset = uniform(0, static_cast<int>(r.m.prefix_length) - 1);
  }
  if (uniform(0, 2) == 0) {
    // Parents on the path to the previous node: a DFS order.
    std::vector<int32_t> path, parent(r.m.suffix_length, -1);
    for (int32_t j = 0; j < r.m.suffix_length; ++j) {
      r.start.push_back(j);
      r.end.push_back(j);
      r.height.push_back(0);
      if (j > 0) {
        path.resize(uniform(1, static_cast<int>(path.size())));
        parent[j] = path.back();
        r.height[j] = r.height[parent[j]] + 1;
      }
      path.push_back(j);
    }
    for (int32_t j = r.m.suffix_length - 1; j > 0; --j) {
      r.end[parent[j]] = std::max(r.end[parent[j]], r.end[j]);
    }
    r.m.spec.tree_start = r.start.data();
    r.m.spec.tree_end = r.end.data();
    r.m.spec.tree_height = r.height.data();
  }
  return r;
}

std::string describe(const SequenceMask& m) {
  return "prefix " + std::to_string(m.prefix_length) + " suffix " + std::to_string(m.suffix_length) +
         (m.spec.causal ? " causal" : " bidirectional") + " window " + std::to_string(m.spec.window) +
         " ring " + std::to_string(m.spec.ring_length) + "@" + std::to_string(m.spec.ring_offset) +
         (m.spec.tree_start ? " tree" : "");
}

TEST(MaskPredicate, AgreesWithTheOraclesPredicate) {
  SCOPED_TRACE(seed_note());
  std::mt19937_64 rng = test_rng();
  for (int trial = 0; trial < 2000; ++trial) {
    RandomMask r = random_mask(rng);
    // The vectors moved with `r`; point the spec at their storage again.
    if (r.m.spec.tree_start) {
      r.m.spec.tree_start = r.start.data();
      r.m.spec.tree_end = r.end.data();
      r.m.spec.tree_height = r.height.data();
    }
    for (int64_t t = 0; t < r.m.suffix_length; ++t) {
      for (int64_t i = 0; i < r.m.prefix_length + r.m.suffix_length; ++i) {
        ASSERT_EQ(detail::key_visible(r.m, t, i),
                  reference::key_visible(r.m.spec, r.m.prefix_length, r.m.suffix_length, t, i))
            << describe(r.m) << ", query " << t << ", key " << i;
      }
    }
  }
}

TEST(MaskPredicate, VisibleKeyRangeHoldsEveryVisibleKey) {
  SCOPED_TRACE(seed_note());
  std::mt19937_64 rng = test_rng();
  for (int trial = 0; trial < 2000; ++trial) {
    RandomMask r = random_mask(rng);
    if (r.m.spec.tree_start) {
      r.m.spec.tree_start = r.start.data();
      r.m.spec.tree_end = r.end.data();
      r.m.spec.tree_height = r.height.data();
    }
    const int64_t t0 = std::uniform_int_distribution<int64_t>(0, r.m.suffix_length - 1)(rng);
    const int64_t t1 = std::uniform_int_distribution<int64_t>(t0 + 1, r.m.suffix_length)(rng);
    const detail::KeyRange range = detail::visible_key_range(r.m, t0, t1);
    ASSERT_LE(0, range.first);
    ASSERT_LE(range.first, range.last);
    ASSERT_LE(range.last, r.m.prefix_length + r.m.suffix_length);
    for (int64_t t = t0; t < t1; ++t) {
      for (int64_t i = 0; i < r.m.prefix_length + r.m.suffix_length; ++i) {
        if (detail::key_visible(r.m, t, i)) {
          ASSERT_TRUE(range.first <= i && i < range.last)
              << describe(r.m) << ", queries [" << t0 << ", " << t1 << "): key " << i
              << " visible to query " << t << " but outside [" << range.first << ", " << range.last << ")";
        }
      }
    }
  }
}

// Without a tree or a ring, one query sees exactly one interval of keys, and visible_key_range
// for that single query is it: the CUDA prefill's softmax masks by comparing against it.
TEST(MaskPredicate, VisibleKeyRangeOfOneQueryIsExactWithoutTreeOrRing) {
  SCOPED_TRACE(seed_note());
  std::mt19937_64 rng = test_rng();
  int checked = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    const RandomMask r = random_mask(rng);
    if (r.m.spec.tree_start || r.m.spec.ring_length > 0) continue;
    ++checked;
    for (int64_t t = 0; t < r.m.suffix_length; ++t) {
      const detail::KeyRange range = detail::visible_key_range(r.m, t, t + 1);
      for (int64_t i = 0; i < r.m.prefix_length + r.m.suffix_length; ++i) {
        ASSERT_EQ(detail::key_visible(r.m, t, i), range.first <= i && i < range.last)
            << describe(r.m) << ", query " << t << ", key " << i << ", range [" << range.first
            << ", " << range.last << ")";
      }
    }
  }
  EXPECT_GT(checked, 500) << "too few masks without tree or ring were drawn";
}

}  // namespace
}  // namespace wideattn::test
