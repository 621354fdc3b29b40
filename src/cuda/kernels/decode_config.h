// Tile constants of the CUDA decode kernels (single_pass and two_pass), shared by the kernels
// and their launcher. Each row is checked here against the tuning table dispatch uses.
//
// Tensor-core kernel (f16/bf16), one CTA per (sequence, KV head, pair of row blocks, KV split):
//   - a row block is 16 query rows (token, head-in-group) = one m16 MMA tile; a CTA stacks
//     `groups` (1 or 2) row blocks, one warp group of 4 warps each, that share every K/V tile;
//   - K/V stream through `stages` shared-memory buffers of 32 keys (cp.async, 16-byte chunks,
//     XOR-swizzled so that ldmatrix is conflict-free);
//   - S = Q K^T, split one of two ways (qk_split_by_head_dim):
//     by key: warp w scores keys 8w..8w+7 over the whole head_dim, Q read from shared memory;
//       the group exchanges row maxima and the 16-bit probabilities P through shared memory;
//     by head_dim: warp w scores all 32 keys over its quarter of the head_dim, that quarter of
//       Q held in registers; the 4 partial score blocks meet in shared memory and every warp
//       sums them in the same order, so each holds the whole S, and softmax and P stay in
//       registers;
//   - O += P V: warp w owns output columns [w * head_dim / 4, (w + 1) * head_dim / 4).
// SIMT kernel (f32 storage, or 16-bit tensors whose rows are not 16-byte aligned): one CTA of
// 128 threads per (sequence, KV head, row block, split), 8 threads per row, 16-key tiles.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/tuning.h"

namespace wideattn::cuda::decode {

inline constexpr int kRowsPerBlock = 16;  // query rows of one row block (MMA m)
inline constexpr int kKeysPerTile =  // keys per K/V tile (dispatch's split granularity)
    static_cast<int>(wideattn::detail::kCudaDecodeKeysPerTile);
inline constexpr int kWarpsPerGroup = 4;  // warps that share one row block
inline constexpr int kThreadsPerGroup = 32 * kWarpsPerGroup;
inline constexpr int kMaxGroups = 2;  // row blocks per CTA
inline constexpr int kMinStages = 2;
inline constexpr int kMaxStages = 4;

static_assert(kKeysPerTile == 8 * kWarpsPerGroup, "decode: each warp scores 8 keys of a tile");

inline constexpr int kSimtThreads = 128;
inline constexpr int kSimtKeysPerTile = 16;
inline constexpr int kSimtThreadsPerRow = kSimtThreads / kRowsPerBlock;

// H100/A100 shared memory: per SM, the largest opt-in block, and what each resident CTA costs.
inline constexpr std::size_t kSharedPerSm = 228 * 1024;
inline constexpr std::size_t kSharedPerBlockMax = 227 * 1024;
inline constexpr std::size_t kSharedReservedPerCta = 1024;

// How a warp group splits S = Q K^T. By head_dim: no Q traffic in shared memory (a third of it
// at head_dim 512, where the kernel is compute-bound) and two CTA barriers a tile instead of
// three, for a quarter of Q in registers (head_dim / 16) and the whole S in each warp; the
// register caps of the occupancy table leave no room for them below 512 (head_dim 128 spills).
constexpr bool qk_split_by_head_dim(int head_dim) { return head_dim >= 512; }

// Warp groups that share one row block, each taking half of every tile's keys with its own
// running state (merged once at the end): split by head_dim, when a CTA holds one row block
// (two row blocks already fill the CTA's 256 threads). Twice the warps to hide each other's
// latency, and half the copies a thread issues, on the same K/V tiles and shared memory.
constexpr int key_sets_for(int head_dim, int groups) {
  return qk_split_by_head_dim(head_dim) && groups == 1 ? 2 : 1;
}

// One row block's partial scores (split by head_dim): 4 warps x 16 rows x 32 keys, f32 (with
// two key sets, each set's 16 keys).
inline constexpr std::size_t kScoreExchangeBytes =
    std::size_t(kWarpsPerGroup) * kRowsPerBlock * kKeysPerTile * 4;

// Shared memory of the tensor-core kernel at one head_dim (16-bit queries; a 16-bit or an fp8
// cache).
struct MmaShape {
  int head_dim;
  // One row block's Q (16 x head_dim, 16-bit); split by head_dim, its partial scores once its
  // warps hold Q in registers, so the larger of the two.
  std::size_t q_bytes;
  // Split by key: one row block's row maxima (4 warps x 16 f32) and P (16 x 32, 16-bit).
  std::size_t exchange_bytes;
  std::size_t stage_bytes;    // one K tile and one V tile as stored: 2 x 32 x head_dim elements
  std::size_t convert_bytes;  // fp8 cache: the current K and V tiles widened to 16 bits
  // Words for the CTA's largest |q| (fp8 cache, bf16 queries); by key they sit in the exchange.
  std::size_t scratch_bytes;

  // `paged`: plus the block-table entries of the tiles in flight, one int per key of a tile per
  // stage (the most a tile of 1-token pages touches).
  constexpr std::size_t bytes(int groups, int stages, bool paged = false) const {
    return groups * (q_bytes + exchange_bytes) + stages * stage_bytes + convert_bytes + scratch_bytes +
           (paged ? std::size_t(stages) * kKeysPerTile * 4 : 0);
  }
  // Shared memory one CTA may use so that the tuning table's CTAs per SM stay resident.
  constexpr std::size_t budget() const {
    const std::size_t per_cta =
        kSharedPerSm / wideattn::detail::cuda_decode_items_per_sm(head_dim) - kSharedReservedPerCta;
    return per_cta < kSharedPerBlockMax ? per_cta : kSharedPerBlockMax;
  }
  // The deepest pipeline that fits the budget (0 if not even kMinStages fits).
  constexpr int stages(int groups, bool paged = false) const {
    for (int s = kMaxStages; s >= kMinStages; --s) {
      if (bytes(groups, s, paged) <= budget()) return s;
    }
    return 0;
  }
};

// `kv_bytes`: bytes per cache element, 2 (f16/bf16) or 1 (fp8 e4m3).
constexpr MmaShape mma_shape(int head_dim, int kv_bytes = 2) {
  const std::size_t q_tile = std::size_t(kRowsPerBlock) * head_dim * 2;
  const bool by_dim = qk_split_by_head_dim(head_dim);
  return MmaShape{head_dim, by_dim && q_tile < kScoreExchangeBytes ? kScoreExchangeBytes : q_tile,
                  by_dim ? 0
                         : std::size_t(kWarpsPerGroup) * kRowsPerBlock * 4 +
                               std::size_t(kRowsPerBlock) * kKeysPerTile * 2,
                  std::size_t(2) * kKeysPerTile * head_dim * kv_bytes,
                  kv_bytes == 1 ? std::size_t(2) * kKeysPerTile * head_dim * 2 : 0,
                  std::size_t(by_dim ? 16 : 0)};
}

// Shared memory of the SIMT kernel: the tile's K and V row offsets (int64), then Q, K (rows
// padded by one word), V, P, all f32.
constexpr std::size_t simt_bytes(int head_dim) {
  return std::size_t(2) * kSimtKeysPerTile * 8 +
         (std::size_t(kRowsPerBlock) * head_dim + std::size_t(kSimtKeysPerTile) * (head_dim + 1) +
          std::size_t(kSimtKeysPerTile) * head_dim +
          std::size_t(kRowsPerBlock) * kSimtKeysPerTile) *
         4;
}

// Every head_dim: both stackings fit with at least two stages in the tuning table's occupancy.
#define WIDEATTN_DECODE_CHECK_HEAD_DIM(D)                                                          \
  static_assert(mma_shape(D).stages(1) >= kMinStages, "decode: 1 row block does not fit");         \
  static_assert(mma_shape(D).stages(kMaxGroups) >= kMinStages, "decode: 2 row blocks do not fit"); \
  static_assert((D) % 64 == 0, "decode: head_dim must be a multiple of 64 (8 swizzled chunks)");   \
  static_assert(simt_bytes(D) <= kSharedPerBlockMax, "decode: SIMT tiles do not fit")
WIDEATTN_DECODE_CHECK_HEAD_DIM(64);
WIDEATTN_DECODE_CHECK_HEAD_DIM(128);
WIDEATTN_DECODE_CHECK_HEAD_DIM(256);
WIDEATTN_DECODE_CHECK_HEAD_DIM(512);
#undef WIDEATTN_DECODE_CHECK_HEAD_DIM
// The pipelines this table yields (what the kernel's resource report should show).
static_assert(mma_shape(512).stages(1) == 3 && mma_shape(512).stages(2) == 3);
static_assert(mma_shape(256).stages(1) == 3 && mma_shape(256).stages(2) == 2);
static_assert(mma_shape(128).stages(1) == 4 && mma_shape(128).stages(2) == 4);
// Paged caches keep the same pipelines.
static_assert(mma_shape(512).stages(1, true) == 3 && mma_shape(512).stages(2, true) == 3);
static_assert(mma_shape(256).stages(1, true) == 3 && mma_shape(256).stages(2, true) == 2);
static_assert(mma_shape(128).stages(1, true) == 4 && mma_shape(128).stages(2, true) == 4);
// An fp8 cache halves the stages, so they go one deeper at head_dim 512 and 256.
static_assert(mma_shape(512, 1).stages(1) == 4 && mma_shape(512, 1).stages(2, true) == 4);
static_assert(mma_shape(256, 1).stages(1) == 4 && mma_shape(128, 1).stages(2, true) == 4);

}  // namespace wideattn::cuda::decode
