// The fused Hopper prefill kernels' tile table: one row per head_dim built. The kernels
// (fused_kernel.cuh) take their tile shapes from it and dispatch (src/core/dispatch.cpp) asks it
// which problems the fused path serves, so the two cannot disagree. Plain C++: no CUDA needed.
#pragma once

#include <cstdint>

namespace wideattn::fused {

struct TileConfig {
  int32_t head_dim;
  int32_t block_m;  // query rows per CTA tile: 2 consumer warpgroups x 64 rows
  int32_t block_n;  // keys per K/V tile
  int32_t stages;   // K/V tiles in flight (shared-memory ring)
  bool overlap;     // a warpgroup's Q K^T of the next tile runs during its softmax and P V
                    // (costs the next tile's score registers; at 256 the output tile takes 128)
  bool pingpong;    // the two consumer warpgroups take turns issuing their products, so one's
                    // softmax runs while the other's matrix products do
  int32_t cluster;  // CTAs per tile, splitting head_dim: 2 runs each CTA of a pair as the
                    // head_dim / 2 kernel, the pair exchanging partial scores (Q K^T over its
                    // half of d) through distributed shared memory
  bool out_stage;   // the output is staged in its own shared memory (else in the Q buffer), so
                    // the next item's Q loads under this item's last P V and epilogue
  constexpr int32_t cta_head_dim() const { return head_dim / cluster; }
};

// Shared memory per CTA: Q (block_m x d / cluster) plus the K and V rings (stages x block_n x
// d / cluster each), 16-bit elements, plus, in a pair, the peer's partial scores (block_m x
// block_n f32), plus the output's staging area where it has its own, plus barriers. The
// H100/H200 limit is 227 KB per block. Measured on an H200 (2026-12-02/03, docs/design.md):
// overlap at 256 against none, 4K +1.2%, 16K -3.0%, so off; the output's own staging area,
// sliding layers +3.3-3.5% at 256, d128 4K +0.7% but 16K -1.0% (by minimum), so at 256 only;
// ping-pong at 512 with the overlap, 4K and 16K equal, so off.
inline constexpr TileConfig kTileConfigs[] = {
    {64, 128, 128, 2, true, true, 1, false},   // Q 16 KB + K/V 2 x 2 x 16 KB =  80 KB
    {128, 128, 128, 2, true, true, 1, false},  // Q 32 KB + K/V 2 x 2 x 32 KB = 160 KB
    {256, 128, 64, 2, false, true, 1, true},   // Q 64 KB + K/V 2 x 2 x 32 KB + O 2 x 16 KB = 224 KB
    {512, 128, 64, 2, true, false, 2, false},  // per CTA: the 256 row + 32 KB of partial scores = 224 KB
};

// The row of `head_dim`, or null when no fused kernel is built for it.
constexpr const TileConfig* tile_config(int32_t head_dim) {
  for (const TileConfig& c : kTileConfigs) {
    if (c.head_dim == head_dim) return &c;
  }
  return nullptr;
}


// Sequences one launch carries in its parameters (the per-sequence metadata travels by value,
// so a call needs no upload and a captured graph replays it as is).
inline constexpr int32_t kMaxSequences = 512;

// KV splits at most (fused_prefill_splits): enough to fill 132 SMs from 17 tiles.
inline constexpr int32_t kMaxSplits = 8;

// Query heads of one KV group that share a tile (GQA packing): the group when it divides
// block_m, else 1 (each head its own tiles; K/V are then read once per query head).
constexpr int32_t packed_heads(const TileConfig& c, int32_t group) {
  return (group > 0 && c.block_m % group == 0) ? group : 1;
}

}  // namespace wideattn::fused
