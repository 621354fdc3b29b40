// The fused forward attention kernel for Hopper (sm_90a), head_dim 64-256, f16/bf16.
//
// One CTA per SM (persistent), 3 warpgroups:
// - warpgroup 0, warp 0: the producer. Brings Q (once per tile) and the K/V tiles into a
//   shared-memory ring with TMA, completing on mbarriers; 56 registers per thread (kProducerRegisters).
// - warpgroups 1-2: consumers, 64 query rows each (a 128-row tile), 224 registers per thread.
//   S = Q K^T on wgmma from shared memory, online softmax in registers (log2 domain), P converted
//   in registers and fed to the P V wgmma as its A operand.
// Rows of a tile are (token, head) pairs: the `packed` query heads of one KV group share every
// K/V tile (GQA packing). Key tiles that the mask hides for every row of the tile are neither
// loaded nor computed (causal, windows, a ring cache's dead or out-of-window slots); only tiles
// that cross a row's visible interval pay for the predicate (ring caches and trees: key_visible's,
// ring_tree_mask.cuh). Tiles are walked from the last key tile down, so the diagonal (masked)
// tile comes first.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cute/arch/mma_sm90.hpp>
#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cute/tensor.hpp>
#include <cutlass/numeric_types.h>

#include <algorithm>
#include <atomic>
#include <string>

#include "core/error.h"
#include "cuda/fused/async_copy.cuh"
#include "cuda/fused/cluster.cuh"
#include "cuda/fused/fused_params.h"
#include "cuda/fused/ring_tree_mask.cuh"
#include "cuda/fused/tile_schedule.cuh"
#include "cuda/fused/tile_config.h"

namespace wideattn::fused {

template <int kHeadDim, class Element>
struct KernelTraits {
  static constexpr TileConfig kConfig = *tile_config(kHeadDim);
  static constexpr int kBlockM = kConfig.block_m;
  static constexpr int kBlockN = kConfig.block_n;
  static constexpr int kStages = kConfig.stages;
  static constexpr int kCluster = kConfig.cluster;          // CTAs per tile, splitting head_dim
  static constexpr int kFullHeadDim = kHeadDim;             // of the tensors
  static constexpr int kHeadDimension = kConfig.cta_head_dim();  // this CTA's columns
  static constexpr int kChunks = kHeadDimension / 64;  // 128-byte swizzled column chunks (TMA boxes)
  static constexpr int kThreads = 384;
  static constexpr int kConsumerThreads = 256;
  static constexpr int kConsumerWarps = 8;  // arrivals that release a K/V stage or the Q buffer
  using ElementType = Element;
  // setmaxnreg budgets. The launch gives each thread 64K / 384 registers in steps of 8 (168);
  // the producer warpgroup hands back what the consumers then take, so 128 x producer + 256 x
  // consumer <= 384 x 168. A consumer's setmaxnreg.inc waits until the registers are free: a
  // budget past the pool hangs the kernel (a ring/tree variant with 64 + 224 did).
#ifndef WIDEATTN_FUSED_PRODUCER_REGISTERS
#define WIDEATTN_FUSED_PRODUCER_REGISTERS 56
#endif
  static constexpr uint32_t kLaunchRegisters = 65536 / kThreads / 8 * 8;
  static constexpr uint32_t kProducerRegisters = WIDEATTN_FUSED_PRODUCER_REGISTERS;
  static constexpr uint32_t kConsumerRegisters = (kLaunchRegisters * kThreads - 128 * kProducerRegisters) / 256 / 8 * 8;
  static_assert(kBlockM == 128, "two consumer warpgroups of 64 rows");
  static_assert(kHeadDimension % 64 == 0 && kBlockN % 16 == 0);
  static_assert(kCluster == 1 || kCluster == 2, "a CTA or a pair");

  using BM = cute::Int<kBlockM>;
  using BN = cute::Int<kBlockN>;
  using D = cute::Int<kHeadDimension>;
  using S = cute::Int<kStages>;
  using SmemAtom = cute::GMMA::Layout_K_SW128_Atom<Element>;  // 8 rows x 64 columns, 128B swizzle
  using LayoutQ = decltype(cute::tile_to_shape(SmemAtom{}, cute::Shape<BM, D>{}));
  using LayoutKV = decltype(cute::tile_to_shape(SmemAtom{}, cute::Shape<BN, D, S>{}));
  // V^T as the P V product's B operand (N = head_dim contiguous: MN-major), same bytes as V.
  using LayoutVt = decltype(cute::composition(
      LayoutKV{}, cute::make_layout(cute::Shape<D, BN, S>{},
                                    cute::Stride<BN, cute::_1, cute::Int<kBlockN * kHeadDimension>>{})));
  using MmaQK = decltype(cute::make_tiled_mma(
      cute::GMMA::ss_op_selector<Element, Element, float, cute::Shape<cute::_64, BN, D>>()));
  using MmaPV = decltype(cute::make_tiled_mma(
      cute::GMMA::rs_op_selector<Element, Element, float, cute::Shape<cute::_64, D, BN>,
                                 cute::GMMA::Major::K, cute::GMMA::Major::MN>()));

  // The output's staging area: its own where the row asks for it (kOutColumns of a warpgroup's
  // 64 rows at a time, the widest power-of-two share of the CTA's columns that fits beside Q
  // and the rings), so the Q buffer is free once the item's last Q K^T completes and the next
  // item's Q loads under this item's last P V and epilogue. Otherwise O is staged in the Q
  // buffer (0 columns).
  static constexpr int kRingBytes = (kBlockM + 2 * kStages * kBlockN) * kHeadDimension * int(sizeof(Element)) +
                                    (kCluster > 1 ? kBlockM * kBlockN * 4 : 0);
  static constexpr int kOutColumnsFor(int columns) {
    return columns < 64 ? 0
           : kRingBytes + 2 * 64 * columns * int(sizeof(Element)) + 2048 <= 232448 ? columns
                                                                                 : kOutColumnsFor(columns / 2);
  }
  static constexpr int kOutColumns = kConfig.out_stage ? kOutColumnsFor(kHeadDimension) : 0;
  static_assert(!kConfig.out_stage || kOutColumns > 0, "no room for the output's own staging area");
  static constexpr bool kOutStaged = kOutColumns > 0;
  static constexpr int kOutPasses = kOutStaged ? kHeadDimension / kOutColumns : 1;

  struct Shared {
    alignas(1024) Element q[cute::cosize_v<LayoutQ>];  // also the output's staging area without o
    alignas(1024) Element k[cute::cosize_v<LayoutKV>];
    alignas(1024) Element v[cute::cosize_v<LayoutKV>];
    // [warpgroup][64-column chunk][row][128 bytes], 128B-swizzled as Q (kOutStaged only).
    alignas(1024) Element o[kOutStaged ? 2 * 64 * kOutColumns : 1];
    Barrier q_full, q_empty;
    Barrier k_full[kStages], k_empty[kStages];
    Barrier v_full[kStages], v_empty[kStages];
    Barrier v_loaded[kStages];  // the producer's own, for tiles whose tail rows it clears
    // A pair only: the peer's partial scores for each consumer warpgroup, [warpgroup][16-byte
    // group][thread], stored by the peer (st.async, counted on exchange_full); peer_free
    // collects the peer's arrivals once it has read what this CTA stored into it.
    alignas(128) float4 exchange[kCluster > 1 ? kBlockM * kBlockN / 4 : 1];
    Barrier exchange_full[2], peer_free[2];
    // A pair with alternate_keys: each warpgroup's row maxima and sums for the other, one slot
    // a quad ({max, max, sum, sum} of its two rows); the outputs go through the Q buffer.
    float4 merge_stats[kCluster > 1 ? 2 : 1][32];
    // The ring/tree variant's producer keeps its item's hole here, not in registers: at 56
    // registers it spilled (d512), and 64 would leave the consumers 216 (they spilled); a slot
    // a lane spilled too (its address takes a register).
    int32_t producer_hole[2];
  };
  static constexpr int kSharedBytes = int(sizeof(Shared)) + 1024;  // + alignment slack
  static constexpr uint32_t kKVBytes = kBlockN * kHeadDimension * sizeof(Element);
  static constexpr uint32_t kExchangeBytes = 64 * kBlockN * sizeof(float);  // one warpgroup's scores
  static_assert(kSharedBytes <= 232448, "over the 227 KB of shared memory an sm_90 block may have");
};

// 2^x on the special-function unit (flush-to-zero: no denormal fix-up around it).
__device__ __forceinline__ float exp2_fast(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// logits (already scaled) -> softcap * tanh(x / softcap), through exp2 (exact to float rounding
// where tanh.approx would cost ~1e-3 relative).
// `twice_log2e_over_cap` = 2 log2(e) / cap, computed once per call.
__device__ __forceinline__ float soft_cap(float x, float cap, float twice_log2e_over_cap) {
  const float e = exp2_fast(x * twice_log2e_over_cap);
  return cap * (1.0f - __fdividef(2.0f, e + 1.0f));
}

// ---- producer ----------------------------------------------------------------------------------
// The first of this CTA's columns of Q, K, V and O (a pair splits head_dim in halves).
template <class Traits>
__device__ __forceinline__ int32_t cta_first_column() {
  if constexpr (Traits::kCluster > 1) return int32_t(cluster_rank()) * Traits::kHeadDimension;
  return 0;
}

// Work items are numbered for `worker` of `workers` (a CTA, or a pair of CTAs splitting d).
template <class Traits, bool kRingOrTree>
__device__ void produce(const FusedParams& p, typename Traits::Shared& sh, int32_t worker, int32_t workers) {
  constexpr int kBlockN = Traits::kBlockN, kStages = Traits::kStages, kChunks = Traits::kChunks;
  const int lane = threadIdx.x % 32;
  const int32_t column_base = cta_first_column<Traits>();
  uint32_t stage = 0, phase = 0, q_empty_parity = 1, loaded_parity = 0;

  // Key tile n of K or V, all this CTA's column chunks, into `buffer` (the stage's), completing
  // on `barrier` (lane 0, the only issuing thread). Paged: each box of box_rows rows from its own
  // page.
  auto load_tile = [&](const CUtensorMap* map, typename Traits::ElementType* buffer, Barrier* barrier, const Tile& t,
                       int32_t kv_head, int32_t n) {
    if (!p.block_table) {
      for (int c = 0; c < kChunks; ++c) {
        tma_load(buffer + c * kBlockN * 64, map, barrier, column_base + c * 64, n * kBlockN, kv_head, t.b);
      }
      return;
    }
    // One page a box: its entry read once, then its rows of every column chunk.
    const int32_t row_mask = (1 << p.page_shift) - 1;
    for (int32_t key = n * kBlockN; key < (n + 1) * kBlockN; key += p.box_rows) {
      const int32_t page =
          key < t.kv_length ? __ldg(p.block_table + t.b * p.block_table_stride + (key >> p.page_shift)) : -1;
      for (int c = 0; c < kChunks; ++c) {
        tma_load(buffer + (c * kBlockN + key - n * kBlockN) * 64, map, barrier, column_base + c * 64,
                 key & row_mask, kv_head, page);
      }
    }
  };
  auto load_k = [&](const Tile& t, int32_t kv_head, int32_t n) {
    sh.k_empty[stage].wait(phase ^ 1);
    if (lane == 0) {
      sh.k_full[stage].arrive_expect_bytes(Traits::kKVBytes);
      load_tile(&p.k_map, sh.k + stage * kChunks * kBlockN * 64, &sh.k_full[stage], t, kv_head, n);
    }
  };
  auto load_v = [&](const Tile& t, int32_t kv_head, int32_t n) {
    sh.v_empty[stage].wait(phase ^ 1);
    const int32_t valid = t.kv_length - n * kBlockN;  // rows past kv_length hold stale cache
    Barrier* target = valid >= kBlockN ? &sh.v_full[stage] : &sh.v_loaded[stage];
    if (lane == 0) {
      target->arrive_expect_bytes(Traits::kKVBytes);
      load_tile(&p.v_map, sh.v + stage * kChunks * kBlockN * 64, target, t, kv_head, n);
    }
    if (valid < kBlockN) {
      // P is 0 there, but 0 x NaN is NaN: clear those V rows before the consumers see the tile.
      sh.v_loaded[stage].wait((loaded_parity >> stage) & 1);
      loaded_parity ^= 1u << stage;
      const int rows = kBlockN - valid;
      for (int i = lane; i < kChunks * rows * 8; i += 32) {  // 16-byte pieces of 128-byte rows
        const int c = i / (rows * 8), r = valid + (i / 8) % rows, piece = i % 8;
        uint4* row = reinterpret_cast<uint4*>(sh.v + ((stage * kChunks + c) * kBlockN + r) * 64);
        row[piece] = make_uint4(0, 0, 0, 0);
      }
      fence_async_shared();
      __syncwarp();
      if (lane == 0) sh.v_full[stage].arrive();
    }
  };

  // The walk's next key tile (next_key_tile), the hole read back from shared memory.
  volatile int32_t* hole = sh.producer_hole;
  auto next_tile = [&](int32_t n) {
    if constexpr (kRingOrTree) {
      if (n == hole[1]) return hole[0] - 1;
    }
    return n - 1;
  };
  for (int32_t round = 0, index = tile_of_round(0, worker, workers); index < p.total_tiles;
       index = tile_of_round(++round, worker, workers)) {
    const Tile t = decode_tile<kBlockN, kRingOrTree>(p, index);
    const int32_t kv_head = t.tile_head * p.packed / p.group;
    if constexpr (kRingOrTree) {
      __syncwarp();  // every lane has left the previous item's walk
      if (lane == 0) {
        hole[0] = t.hole_begin;
        hole[1] = t.hole_end;
      }
      __syncwarp();  // and every lane sees the new hole
    }
    int32_t n = t.key_end - 1;
    // The first K tile goes out before Q waits for the previous tile's epilogue.
    if (n >= t.key_begin) load_k(t, kv_head, n);
    sh.q_empty.wait(q_empty_parity);
    q_empty_parity ^= 1;
    if (lane == 0) {
      // 128 rows, or 64 with alternate_keys (the box's tokens x packed heads).
      sh.q_full.arrive_expect_bytes(uint32_t(p.tokens_per_tile * p.packed) * Traits::kHeadDimension *
                                    uint32_t(sizeof(typename Traits::ElementType)));
      for (int c = 0; c < kChunks; ++c) {
        tma_load(sh.q + c * Traits::kBlockM * 64, &p.q_map, &sh.q_full, column_base + c * 64, 0,
                 t.query_start + t.token_begin, t.tile_head);
      }
    }
    for (; n >= t.key_begin; n = next_tile(n)) {
      if (n != t.key_end - 1) load_k(t, kv_head, n);
      load_v(t, kv_head, n);
      if (++stage == kStages) {
        stage = 0;
        phase ^= 1;
      }
    }
  }
}

// ---- consumers ---------------------------------------------------------------------------------
// The NaN policy's slow path (consume): this thread's elements of tile row `row` (its
// accumulator elements i with (i / 2) % 2 == r, at columns column + 8 (i / 4) + i % 2), again
// from global memory: every key of the item's walk the row sees, with the kernel's
// probabilities (scores against the item's final maximum, rounded to the P operand's type), keys
// of probability 0 left out (key_visible's semantics: an interval for the plain masks,
// ring_tree_key_visible in the ring/tree variant). Slow (a head_dim dot product per key and
// thread), rare.
template <class Traits, bool kRingOrTree, class Accumulator>
__device__ __forceinline__ void recompute_values(const FusedParams& p, int32_t item, Accumulator& acc, int r, int row,
                                                 int column, float row_max) {
  using Element = typename Traits::ElementType;
  constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;
  constexpr int kBlockN = Traits::kBlockN;
  // The item decoded again: its fields, held across the key loop for this rare path, spilled
  // the pair's consumers.
  const Tile t = decode_tile<kBlockN, kRingOrTree>(p, item);
  const int32_t token = t.token_begin + (row >> p.packed_shift);
  CUTE_UNROLL
  for (int i = 2 * r; i < cute::size(acc); i += 4) acc(i) = acc(i + 1) = 0.0f;
  if (token >= t.token_end || row_max == -INFINITY) return;  // a padding row, or one that sees no key
  const int32_t first_key = row_first_key(p, t.prefix + token);
  const int32_t last_key = row_last_key(p, t.prefix + token, t.kv_length);
  const int32_t head = t.tile_head * p.packed + (row & (p.packed - 1));
  const int32_t kv_head = head / p.group;
  const Element* q = static_cast<const Element*>(p.q_rows) + int64_t{t.query_start + token} * p.q_token_stride +
                     int64_t{head} * p.q_head_stride;
  const int64_t qpos = kRingOrTree ? ring_tree_query_position(p, t, token) : 0;
  const bool capped = p.softcap > 0.0f;
  const float cap_factor = capped ? 2.0f * kLog2e / p.softcap : 0.0f;
  auto widen = [](uint32_t word, int half) {
    return static_cast<float>(Element::bitcast(static_cast<uint16_t>(word >> (16 * half))));
  };
  for (int32_t n = t.key_end - 1; n >= t.key_begin; n = next_key_tile<kRingOrTree>(t, n)) {
#pragma unroll 1
    for (int32_t key = n * kBlockN; key < (n + 1) * kBlockN; ++key) {
      bool visible;
      if constexpr (kRingOrTree) {
        visible = ring_tree_key_visible(p, t, token, qpos, key);
      } else {
        visible = key >= first_key && key <= last_key;
      }
      if (!visible) continue;
      const int64_t page = detail::page_of(p.pages, t.b, key);
      const Element* k = static_cast<const Element*>(p.k_pool.base) + detail::row_offset(p.k_pool, p.pages, page, key, kv_head);
      float raw = 0.0f;
#pragma unroll 1
      for (int c = 0; c < Traits::kFullHeadDim; c += 8) {
        const uint4 qw = *reinterpret_cast<const uint4*>(q + c);
        const uint4 kw = *reinterpret_cast<const uint4*>(k + c);
        const uint32_t qs[4] = {qw.x, qw.y, qw.z, qw.w}, ks[4] = {kw.x, kw.y, kw.z, kw.w};
        CUTE_UNROLL
        for (int e = 0; e < 8; ++e) raw = fmaf(widen(qs[e / 2], e % 2), widen(ks[e / 2], e % 2), raw);
      }
      const float score = capped ? soft_cap(raw * p.scale_log2 * kLn2, p.softcap, cap_factor) * kLog2e : raw * p.scale_log2;
      const float probability = static_cast<float>(static_cast<Element>(exp2f(score - row_max)));
      if (probability == 0.0f) continue;  // select, not multiply: a hidden or vanished key adds nothing
      const Element* v = static_cast<const Element*>(p.v_pool.base) +
                         detail::row_offset(p.v_pool, p.pages, page, key, kv_head) + column;
      CUTE_UNROLL
      for (int i = 2 * r; i < cute::size(acc); i += 4) {
        const uint32_t pair = *reinterpret_cast<const uint32_t*>(v + 8 * (i / 4));
        acc(i) = fmaf(probability, widen(pair, 0), acc(i));
        acc(i + 1) = fmaf(probability, widen(pair, 1), acc(i + 1));
      }
    }
  }
}

// Issues C (+)= A B on one warpgroup without waiting: A from registers when kRegisterA, else
// shared-memory descriptors. Complete with warpgroup_wait<N>() and fence C (and A) after it.
template <bool kRegisterA, class Mma, class TA, class TB, class TC>
__device__ __forceinline__ void warpgroup_gemm_issue(Mma& mma, TA& a, const TB& b, TC& c, bool accumulate) {
  using namespace cute;
  if constexpr (kRegisterA) warpgroup_fence_operand(a);
  warpgroup_fence_operand(c);
  warpgroup_arrive();
  mma.accumulate_ = accumulate ? GMMA::ScaleOut::One : GMMA::ScaleOut::Zero;
  CUTE_UNROLL
  for (int k = 0; k < size<2>(a); ++k) {
    cute::gemm(mma, a(_, _, k), b(_, _, k), c);
    mma.accumulate_ = GMMA::ScaleOut::One;
  }
  warpgroup_commit_batch();
}

// `p` as a value the compiler cannot trace to its origin (nor hoist what is computed from it).
template <class T>
__device__ __forceinline__ T* opaque_pointer(T* p) {
  asm volatile("" : "+l"(p));
  return p;
}

// Two f32 values as one register of two 16-bit values (one conversion instruction).
template <class Element>
__device__ __forceinline__ uint32_t pack_pair(float lo, float hi) {
  if constexpr (std::is_same_v<Element, cutlass::bfloat16_t>) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  } else {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
}

// A row's output scale and natural-log LSE from its maximum (log2 units, -inf: no key seen) and
// sum, with the sink (an extra logit with no value) when `sinks` is given.
__device__ __forceinline__ void normalisation(float row_max, float sum, const float* sinks, int32_t head,
                                              float& out_scale, float& lse) {
  constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;
  if (sinks) {
    const float sink = sinks[head];
    const float sink2 = sink * kLog2e;
    const float top = fmaxf(row_max, sink2);
    const float keep = exp2f(row_max - top);
    const float total = sum * keep + exp2f(sink2 - top);
    out_scale = keep / total;
    lse = row_max == -INFINITY ? sink : (top + __log2f(total)) * kLn2;
  } else {
    out_scale = sum > 0.0f ? 1.0f / sum : 0.0f;
    lse = sum > 0.0f ? (row_max + __log2f(sum)) * kLn2 : -INFINITY;
  }
}

// Whether this thread's elements of accumulator row r (those i with (i / 2) % 2 == r) hold inf
// or NaN: x * 0 is NaN exactly then, and NaN survives the sum.
template <class Accumulator>
__device__ __forceinline__ bool row_not_finite(const Accumulator& acc, int r) {
  float poison[2] = {0.0f, 0.0f};
  CUTE_UNROLL
  for (int i = 2 * r; i < cute::size(acc); i += 4) {
    poison[0] = fmaf(acc(i), 0.0f, poison[0]);
    poison[1] = fmaf(acc(i + 1), 0.0f, poison[1]);
  }
  return poison[0] + poison[1] != 0.0f;
}

template <class Traits, bool kRingOrTree, bool kAlternate>
__device__ void consume(const FusedParams& p, typename Traits::Shared& sh, int warpgroup, int32_t worker_arg,
                        int32_t workers_arg) {
  using namespace cute;
  using Element = typename Traits::ElementType;
  constexpr int kBlockN = Traits::kBlockN, kStages = Traits::kStages, kHeadDim = Traits::kHeadDimension;
  constexpr int kCluster = Traits::kCluster;
  const uint32_t rank = kCluster > 1 ? cluster_rank() : 0;
  // The alternate kernel reads its pair's place in the grid again where it needs it (special
  // registers), rather than holding two registers across its key loops: it spilled there.
  auto worker_now = [&] {
    if constexpr (kAlternate) return int32_t(cluster_index());
    else return worker_arg;
  };
  auto workers_now = [&] {
    if constexpr (kAlternate) return int32_t(cluster_count());
    else return workers_arg;
  };
  const int32_t column_base = cta_first_column<Traits>();
  constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;
  const int thread = threadIdx.x % 128;
  // alternate_keys (a pair, plain masks): both warpgroups hold the tile's 64 rows and take turns
  // over its key tiles (warpgroup w the walk's tiles w, w + 2, ...), so a call with fewer
  // 128-row tiles than pairs still fills them and halves its longest walk; the two states merge
  // at the item's end. A K/V stage then has one reader warpgroup, whose warps arrive twice.
  // A kernel of its own (a template parameter): a runtime switch cost the pair's consumers
  // 56-112 bytes of spills. It walks one tile at a time (below) and releases Q after the item.
  static_assert(!kAlternate || (Traits::kCluster > 1 && !kRingOrTree && !Traits::kOutStaged),
                "alternate_keys: the pair's plain-mask kernel only");
  const int row_base = kAlternate ? 0 : warpgroup * 64;  // the warpgroup's first row of the tile

  typename Traits::MmaQK mma_qk;
  typename Traits::MmaPV mma_pv;
  auto thr_qk = mma_qk.get_thread_slice(thread);
  auto thr_pv = mma_pv.get_thread_slice(thread);
  // The Q K^T operands' shared-memory descriptors (one 64-bit word per k step and stage). The
  // compiler hoists them out of every loop and holds them in registers the whole kernel: fine
  // at 128 columns a CTA (made at use there, one H200 A/B had d=128 16K 14% slower by median,
  // though 16K medians are noisy; the hoisted form is kept where it fits), but with the
  // overlapping schedule at 256 columns (16 k steps of Q and of each K stage) the output
  // accumulators spilled (1168 bytes). There they are made at use from a base the compiler
  // cannot see through.
  constexpr bool kDescriptorsAtUse = Traits::kConfig.overlap && kHeadDim >= 256;
  auto smem_base = [](auto* pointer) {
    if constexpr (kDescriptorsAtUse) return opaque_pointer(pointer);
    else return pointer;
  };
  auto q_descriptors = [&] {
    Tensor sQ = make_tensor(make_smem_ptr(smem_base(sh.q)), typename Traits::LayoutQ{});
    return thr_qk.partition_fragment_A(local_tile(sQ, Shape<_64, Int<kHeadDim>>{}, make_coord(kAlternate ? 0 : warpgroup, _0{})));
  };
  auto k_descriptors = [&](uint32_t k_stage) {
    Tensor sK = make_tensor(make_smem_ptr(smem_base(sh.k)), typename Traits::LayoutKV{});
    return thr_qk.partition_fragment_B(sK)(_, _, _, k_stage);
  };
  Tensor sVt = make_tensor(make_smem_ptr(sh.v), typename Traits::LayoutVt{});
  Tensor tOrV = thr_pv.partition_fragment_B(sVt);
  Tensor tSrS = partition_fragment_C(mma_qk, Shape<_64, Int<kBlockN>>{});
  Tensor tOrO = partition_fragment_C(mma_pv, Shape<_64, Int<kHeadDim>>{});
  Tensor tOrP = make_tensor<Element>(partition_shape_A(mma_pv, Shape<_64, Int<kBlockN>>{}));
  Tensor tScS = thr_qk.partition_C(make_identity_tensor(Shape<_64, Int<kBlockN>>{}));
  Tensor tOcO = thr_pv.partition_C(make_identity_tensor(Shape<_64, Int<kHeadDim>>{}));
  static_assert(size(tSrS) == size(tOrP), "P reuses the score fragment's order");
  // Accumulator element i of a 64xN wgmma tile: column 8*(i/4) + (i%2) + 2*(lane%4),
  // row (i/2)%2 * 8 + lane/4 + 16*warp: two rows per thread, quads share a row.
  const int row0 = get<0>(tScS(0));  // this thread's rows: row0 and row0 + 8
  // One arrival per warp frees a buffer (256 thread arrivals on one mbarrier would serialise).
  auto release = [&](Barrier& barrier) {
    __syncwarp();
    if (threadIdx.x % 32 == 0) barrier.arrive();
  };
  auto release_stage = [&](Barrier& barrier) {  // a K or V stage: counted for both warpgroups
    __syncwarp();
    if (threadIdx.x % 32 == 0) {
      if constexpr (kAlternate) barrier.arrive_twice(); else barrier.arrive();
    }
  };
  // With its own output staging area, the Q buffer is free once the item's last Q K^T (key
  // tile `key_begin`, walked last) has completed: the producer loads the next item's Q then.
  auto q_read = [&](int32_t n, int32_t key_begin) {
    if constexpr (Traits::kOutStaged) {
      if (n == key_begin) release(sh.q_empty);
    }
  };

  // Ping-pong: each warpgroup issues its products only in its turn (hardware barriers 3 and 4),
  // then hands the turn over; warpgroup 0 starts.
  constexpr bool kPingpong = Traits::kConfig.pingpong;
  auto take_turn = [&] {
    if constexpr (kPingpong) named_barrier_sync(3 + warpgroup, 256);
  };
  auto pass_turn = [&] {
    if constexpr (kPingpong) named_barrier_arrive(3 + (1 - warpgroup), 256);
  };
  if (kPingpong && warpgroup == 1) named_barrier_arrive(3, 256);

  uint32_t stage = 0, phase = 0, q_parity = 0, exchange_parity = 0;
  for (int32_t round = 0, index = tile_of_round(0, worker_now(), workers_now()); index < p.total_tiles;
       index = tile_of_round(++round, worker_now(), workers_now())) {
    Tile t = decode_tile<kBlockN, kRingOrTree>(p, index);
    int32_t first_key[2], last_key[2], head[2];
    bool row_valid[2];
    // The rows' fields the item's end needs (the alternate kernel makes them there, from the
    // item decoded again: kept across the walk, they spilled its consumers).
    auto row_fields = [&] {
      for (int r = 0; r < 2; ++r) {
        const int row = row_base + row0 + 8 * r;
        row_valid[r] = t.token_begin + (row >> p.packed_shift) < t.token_end;
        head[r] = t.tile_head * p.packed + (row & (p.packed - 1));
      }
    };
    for (int r = 0; r < 2; ++r) {
      const int row = row_base + row0 + 8 * r;
      const int32_t token = t.token_begin + (row >> p.packed_shift);
      const int32_t qpos = t.prefix + min(token, t.token_end - 1);
      first_key[r] = row_first_key(p, qpos);
      last_key[r] = row_last_key(p, qpos, t.kv_length);
    }
    if constexpr (!kAlternate) row_fields();
    float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};
    Tensor tOrP32 = recast<uint32_t>(tOrP);

    // Scores of key tile n (in tSrS) -> probabilities in place, running max and sum updated;
    // returns whether the output accumulated so far must be scaled down, by `factor`. Lazy
    // rescaling: while no row of the warp's maximum grows by more than kRescaleSlack (log2
    // units), the rows keep their old maximum, so probabilities reach at most 2^kRescaleSlack
    // (exact in bf16/f16 P and in the f32 sums) and the warp skips the 128 multiplies of its
    // output (the same maximum serves out, LSE and split states, so the result is consistent).
    // The decision is warp-uniform and a function of the scores alone: both CTAs of a pair,
    // with bit-identical scores, decide alike.
    // The soft-cap and the mask are each one whole loop behind one uniform test per tile
    // (tested per element, they became a branch per score pair and a mask predicate on every
    // tile: 16% of the consumer warps' stall samples in Nsight Compute).
    const bool capped = p.softcap > 0.0f;
    // Without a soft-cap the scores stay raw and the scale folds into exp2's argument
    // (one FFMA per score); scale > 0, so the raw maximum is the scaled one's.
    const float multiplier = capped ? 1.0f : p.scale_log2;
    const float scale_natural = p.scale_log2 * kLn2;
    const float cap_factor = capped ? 2.0f * kLog2e / p.softcap : 0.0f;
    constexpr float kRescaleSlack = 8.0f;
    auto softmax_step = [&](int32_t n, float(&factor)[2]) -> bool {
      const int32_t key0 = n * kBlockN;
      if (capped) {
        CUTE_UNROLL
        for (int i = 0; i < size(tSrS); ++i) {
          tSrS(i) = soft_cap(tSrS(i) * scale_natural, p.softcap, cap_factor) * kLog2e;
        }
      }
      if constexpr (kRingOrTree) {
        int32_t shift;
        if (ring_tree_tile_free<kBlockN>(p, t, key0)) {
          // every row sees every key: no predicate
        } else if (ring_tree_interval_tile<kBlockN>(p, t, key0, shift)) {  // a row's keys: one interval
          int32_t lo[2], hi[2];
          CUTE_UNROLL
          for (int r = 0; r < 2; ++r) {
            const int row = row_base + row0 + 8 * r;
            const int32_t token = min(t.token_begin + (row >> p.packed_shift), t.token_end - 1);
            ring_tree_row_interval(p, t, key0, shift, token, lo[r], hi[r]);
          }
          CUTE_UNROLL
          for (int i = 0; i < size(tSrS); ++i) {
            const int32_t key = key0 + get<1>(tScS(i));
            const int r = (i >> 1) & 1;
            if (key < lo[r] || key > hi[r]) tSrS(i) = -INFINITY;
          }
        } else {
          // key_visible, key by key: first a bit per (row, column) in a rolled loop (few live
          // registers next to the scores and the output), then one select per score.
          // Element i's column index c = 2 (i / 4) + i % 2, at key 8 (c / 2) + c % 2 + 2 (lane % 4).
          constexpr int kColumns = kBlockN / 4;
          static_assert(kColumns <= 32, "a 32-bit mask per row");
          uint32_t visible[2] = {0, 0};
          for (int r = 0; r < 2; ++r) {
            const int row = row_base + row0 + 8 * r;
            const int32_t token = min(t.token_begin + (row >> p.packed_shift), t.token_end - 1);
            const int64_t qpos = ring_tree_query_position(p, t, token);
#pragma unroll 1
            for (int c = 0; c < kColumns; ++c) {
              const int32_t key = key0 + 8 * (c / 2) + c % 2 + 2 * (thread % 4);
              if (ring_tree_key_visible(p, t, token, qpos, key)) visible[r] |= 1u << c;
            }
          }
          CUTE_UNROLL
          for (int i = 0; i < size(tSrS); ++i) {
            if (!((visible[(i >> 1) & 1] >> (2 * (i / 4) + i % 2)) & 1)) tSrS(i) = -INFINITY;
          }
        }
      } else if (key0 < t.free_first || key0 + kBlockN - 1 > t.free_last) {  // a boundary tile
        CUTE_UNROLL
        for (int i = 0; i < size(tSrS); ++i) {
          const int32_t key = key0 + get<1>(tScS(i));
          const int r = (i >> 1) & 1;
          if (key < first_key[r] || key > last_key[r]) tSrS(i) = -INFINITY;
        }
      }
      float tile_max[2] = {-INFINITY, -INFINITY};
      CUTE_UNROLL
      for (int i = 0; i < size(tSrS); ++i) tile_max[(i >> 1) & 1] = fmaxf(tile_max[(i >> 1) & 1], tSrS(i));
      float use_max[2], new_max[2];
      bool keep = true;  // every row's old maximum still within kRescaleSlack of its new one
      CUTE_UNROLL
      for (int r = 0; r < 2; ++r) {
        tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffff, tile_max[r], 1));
        tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffff, tile_max[r], 2));
        new_max[r] = fmaxf(row_max[r], tile_max[r] * multiplier);
        keep = keep && new_max[r] - row_max[r] <= kRescaleSlack;  // false for -inf - -inf (NaN)
      }
      keep = __all_sync(0xffffffff, keep);
      CUTE_UNROLL
      for (int r = 0; r < 2; ++r) {
        if (keep) {
          use_max[r] = row_max[r];
          factor[r] = 1.0f;
        } else {
          use_max[r] = new_max[r] == -INFINITY ? 0.0f : new_max[r];  // a row that has seen no key yet
          factor[r] = exp2_fast(row_max[r] - use_max[r]);
          row_max[r] = new_max[r];
          row_sum[r] *= factor[r];
        }
      }
      CUTE_UNROLL
      for (int i = 0; i < size(tSrS); ++i) {
        const int r = (i >> 1) & 1;
        const float prob = exp2_fast(fmaf(tSrS(i), multiplier, -use_max[r]));
        row_sum[r] += prob;
        tSrS(i) = prob;
      }
      return !keep;
    };
    auto convert_probabilities = [&] {
      CUTE_UNROLL
      for (int i = 0; i < size(tOrP32); ++i) tOrP32(i) = pack_pair<Element>(tSrS(2 * i), tSrS(2 * i + 1));
    };

    auto advance = [&](uint32_t& ring_stage, uint32_t& ring_phase) {
      if (++ring_stage == kStages) {
        ring_stage = 0;
        ring_phase ^= 1;
      }
    };
    // This warpgroup's walk: every key tile, or with alternate_keys every other one, the ring
    // position stepping over the other warpgroup's tiles.
    auto next_tile = [&](int32_t n) {
      if constexpr (kAlternate) return n - 2;
      else return next_key_tile<kRingOrTree>(t, n);
    };
    auto advance_walk = [&](uint32_t& ring_stage, uint32_t& ring_phase) {
      advance(ring_stage, ring_phase);
      if constexpr (kAlternate) advance(ring_stage, ring_phase);
    };
    if (kAlternate && warpgroup == 1) advance(stage, phase);
    auto rescale_output = [&](const float (&factor)[2]) {
      CUTE_UNROLL
      for (int i = 0; i < size(tOrO); ++i) tOrO(i) *= factor[(i >> 1) & 1];
    };
    auto zero_output = [&] {
      CUTE_UNROLL
      for (int i = 0; i < size(tOrO); ++i) tOrO(i) = 0.0f;
    };
    // S = Q K^T of the K tile in `k_stage`, waited for; the K buffer is released.
    auto scores = [&](uint32_t k_stage, uint32_t k_phase) {
      sh.k_full[k_stage].wait(k_phase);
      take_turn();
      auto q = q_descriptors();
      warpgroup_gemm_issue<false>(mma_qk, q, k_descriptors(k_stage), tSrS, false);
      pass_turn();
      warpgroup_wait<0>();
      warpgroup_fence_operand(tSrS);
      release_stage(sh.k_empty[k_stage]);
    };
    // O (+)= P V of the V tile in `v_stage`, waited for; the V buffer is released.
    auto values = [&](uint32_t v_stage, uint32_t v_phase, bool accumulate) {
      sh.v_full[v_stage].wait(v_phase);
      take_turn();
      warpgroup_gemm_issue<true>(mma_pv, tOrP, tOrV(_, _, _, v_stage), tOrO, accumulate);
      pass_turn();
      warpgroup_wait<0>();
      warpgroup_fence_operand(tOrO);
      warpgroup_fence_operand(tOrP);
      release_stage(sh.v_empty[v_stage]);
    };

    // A pair: S = this CTA's partial Q K^T (its half of d) + the peer's. Each thread sends its
    // scores to the same thread of the twin warpgroup and adds the twin's; S0 + S1 is
    // commutative, so both CTAs hold bit-identical scores, probabilities, maxima and sums.
    auto exchange_scores = [&] {
      if constexpr (kCluster > 1) {
        constexpr int kGroups = int(size(tSrS)) / 4;
        const uint32_t peer = rank ^ 1;
        float4* mine = sh.exchange + warpgroup * (64 * kBlockN / 4);
        if (thread == 0) sh.exchange_full[warpgroup].arrive_expect_bytes(Traits::kExchangeBytes);
        sh.peer_free[warpgroup].wait(exchange_parity ^ 1);  // the twin read our last scores
        const uint32_t target = peer_address(mine, peer), target_full = peer_address(&sh.exchange_full[warpgroup], peer);
        CUTE_UNROLL
        for (int g = 0; g < kGroups; ++g) {
          store_to_peer(target + uint32_t(g * 128 + thread) * 16,
                        make_float4(tSrS(4 * g), tSrS(4 * g + 1), tSrS(4 * g + 2), tSrS(4 * g + 3)), target_full);
        }
        sh.exchange_full[warpgroup].wait(exchange_parity);  // the twin's scores are here
        CUTE_UNROLL
        for (int g = 0; g < kGroups; ++g) {
          const float4 other = mine[g * 128 + thread];
          tSrS(4 * g) += other.x;
          tSrS(4 * g + 1) += other.y;
          tSrS(4 * g + 2) += other.z;
          tSrS(4 * g + 3) += other.w;
        }
        __syncwarp();
        if (threadIdx.x % 32 == 0) arrive_at_peer(peer_address(&sh.peer_free[warpgroup], peer));
        exchange_parity ^= 1;
      }
    };

    // The first P V of an item ignores the output's old values, but the wgmma's operands say it
    // reads them: zeroed here, they are dead between items instead of live across every one.
    zero_output();
    sh.q_full.wait(q_parity);
    q_parity ^= 1;
    if constexpr (!Traits::kConfig.overlap || kAlternate) {
      // One tile at a time (Q K^T, softmax, P V); the other warpgroup's products fill the
      // tensor cores meanwhile. The alternate kernel too: each warpgroup there owns one stage
      // of the ring, and the overlap (P V of a tile under the next one's Q K^T) would hold its
      // V stage until then, exposing every V load (measured 0.5x of whole tiles per key tile).
      bool accumulate = false;
      for (int32_t n = t.key_end - 1 - (kAlternate ? warpgroup : 0); n >= t.key_begin; n = next_tile(n)) {
        scores(stage, phase);
        q_read(n, t.key_begin);
        exchange_scores();
        float factor[2];
        const bool rescale = softmax_step(n, factor);
        if (accumulate && rescale) rescale_output(factor);
        convert_probabilities();
        values(stage, phase, accumulate);
        accumulate = true;
        advance_walk(stage, phase);
      }
      if (!accumulate) zero_output();  // no key tile at all
    } else {
      // The first (diagonal) tile alone; then each step keeps Q K^T of tile n in flight with
      // P V of tile n + 1, and the softmax of tile n runs while P V does.
      int32_t n = t.key_end - 1;
      if (n >= t.key_begin) {
        scores(stage, phase);
        q_read(n, t.key_begin);
        exchange_scores();
        float factor[2];
        softmax_step(n, factor);
        convert_probabilities();
        uint32_t v_stage = stage, v_phase = phase;
        advance(stage, phase);
        bool accumulate = false;
        for (n = next_key_tile<kRingOrTree>(t, n); n >= t.key_begin; n = next_key_tile<kRingOrTree>(t, n)) {
          sh.k_full[stage].wait(phase);
          sh.v_full[v_stage].wait(v_phase);
          take_turn();
          auto q = q_descriptors();
          warpgroup_gemm_issue<false>(mma_qk, q, k_descriptors(stage), tSrS, false);
          warpgroup_gemm_issue<true>(mma_pv, tOrP, tOrV(_, _, _, v_stage), tOrO, accumulate);
          pass_turn();
          warpgroup_wait<1>();  // Q K^T done; P V may still run
          warpgroup_fence_operand(tSrS);
          release_stage(sh.k_empty[stage]);
          q_read(n, t.key_begin);
          exchange_scores();  // a pair: the round trip to the peer runs under P V
          const bool rescale = softmax_step(n, factor);
          warpgroup_wait<0>();
          warpgroup_fence_operand(tOrO);
          warpgroup_fence_operand(tOrP);
          release_stage(sh.v_empty[v_stage]);
          if (rescale) rescale_output(factor);
          convert_probabilities();
          accumulate = true;
          v_stage = stage;
          v_phase = phase;
          advance(stage, phase);
        }
        values(v_stage, v_phase, accumulate);
      } else {
        zero_output();  // no key tile at all
      }
    }

    if (Traits::kOutStaged && t.key_end <= t.key_begin) release(sh.q_empty);  // no Q K^T at all
    if constexpr (kAlternate) {
      int32_t opaque_round = round;
      asm volatile("" : "+r"(opaque_round));
      t = decode_tile<kBlockN, kRingOrTree>(p, tile_of_round(opaque_round, worker_now(), workers_now()));
      row_fields();
      if ((max(0, t.key_end - t.key_begin) + warpgroup) & 1) {
        // Each warpgroup stepped two tiles at a time: one past the walk's end when the walk's
        // length and the warpgroup's first tile differ in parity. Back one.
        if (stage == 0) {
          stage = kStages - 1;
          phase ^= 1;
        } else {
          --stage;
        }
      }
    }

    float row_total[2];
    CUTE_UNROLL
    for (int r = 0; r < 2; ++r) {  // the quad's partial sums
      row_total[r] = row_sum[r] + __shfl_xor_sync(0xffffffff, row_sum[r], 1);
      row_total[r] += __shfl_xor_sync(0xffffffff, row_total[r], 2);
    }
    if constexpr (kAlternate) {
      // The item's end with alternate_keys, the same code for both warpgroups (a warpgroup that
      // finished alone, or merged the other's output in its registers, spilled the consumers):
      // each learns the other's row maxima and sums, scales its own output by its share of the
      // normalised result (2^(m_w - m) / total, sinks counted there), and the two shares are
      // added as they leave: per half of the columns, both store theirs (f32) into the Q buffer
      // (free once both walks are done; 32 KB each), then all 256 threads add, convert and
      // store rows. A row that came out non-finite is computed again key by key by the thread
      // that holds it, after the stores, and written over them (the late recompute).
      constexpr int kHalfElements = int(size(tOrO)) / 2;  // a thread's elements per 128 columns
      static_assert(2 * 64 * 128 * 4 == int(sizeof(sh.q)), "two warpgroups' f32 halves fill the Q buffer");
      const uint32_t my_area = shared_address(opaque_pointer(sh.q)) + warpgroup * (64 * 512);
      if (thread % 4 == 0) {  // a quad's rows share their maxima and sums
        sh.merge_stats[warpgroup][thread / 4] = make_float4(row_max[0], row_max[1], row_total[0], row_total[1]);
      }
      named_barrier_sync(5, 256);  // both walks done (Q is free), both states posted
      const float4 theirs = sh.merge_stats[1 - warpgroup][thread / 4];
      const float their_max[2] = {theirs.x, theirs.y}, their_total[2] = {theirs.z, theirs.w};
      float share[2], out_scale[2], item_max[2];
      bool poisoned[2];
      CUTE_UNROLL
      for (int r = 0; r < 2; ++r) {
        const float m = fmaxf(row_max[r], their_max[r]);
        const float mine = row_max[r] == -INFINITY ? 0.0f : exp2f(row_max[r] - m);
        const float other = their_max[r] == -INFINITY ? 0.0f : exp2f(their_max[r] - m);
        float lse;
        normalisation(m, row_total[r] * mine + their_total[r] * other, p.sinks, head[r], out_scale[r], lse);
        share[r] = mine * out_scale[r];
        item_max[r] = m;
        if (p.lse && thread % 4 == 0 && rank == 0 && warpgroup == 0 && row_valid[r]) {
          const int64_t token = t.query_start + t.token_begin + ((row0 + 8 * r) >> p.packed_shift);
          p.lse[token * p.lse_token_stride + int64_t{head[r]} * p.lse_head_stride] = lse;
        }
        poisoned[r] = row_not_finite(tOrO, r);
      }
      // f32 row r, column c of a warpgroup's half: 512-byte rows, 16-byte units XOR-swizzled by
      // row % 8 (the 8 rows of a store instruction land on 8 different units).
      auto half_address = [](uint32_t area, int row, int column) {
        return area + uint32_t(row * 512 + (((column >> 2) ^ (row & 7)) << 4) + (column & 3) * 4);
      };
      const int col0 = get<1>(tOcO(0));
      Element* out = static_cast<Element*>(p.out) + int64_t{t.query_start} * p.out_token_stride + column_base;
      // Row r again, every key of the item's walk, into tOrO (dead by then); the row a
      // compile-time constant (a runtime one moved the accumulator to local memory).
      auto recompute_row = [&](auto row_constant) {
        constexpr int r = decltype(row_constant)::value;
        int32_t opaque_round = round;
        asm volatile("" : "+r"(opaque_round));
        recompute_values<Traits, kRingOrTree>(p, tile_of_round(opaque_round, worker_now(), workers_now()), tOrO, r,
                                              row0 + 8 * r, column_base + col0, item_max[r]);
      };
      CUTE_UNROLL
      for (int half = 0; half < 2; ++half) {
        CUTE_UNROLL
        for (int i = half * kHalfElements; i < (half + 1) * kHalfElements; i += 2) {
          const int r = (i >> 1) & 1;
          store_shared_pair(half_address(my_area, row0 + 8 * r, 8 * (i / 4 - half * kHalfElements / 4) + col0),
                            tOrO(i) * share[r], tOrO(i + 1) * share[r]);
        }
        named_barrier_sync(5, 256);  // both shares of this half stored
        const uint32_t area0 = shared_address(opaque_pointer(sh.q));
#pragma unroll 1
        for (int piece = warpgroup * 128 + thread; piece < 64 * 16; piece += 256) {  // 8 columns of a row
          const int row = piece / 16, column = (piece % 16) * 8;
          const int32_t token = t.token_begin + (row >> p.packed_shift);
          if (token >= t.token_end) continue;
          const int32_t h = t.tile_head * p.packed + (row & (p.packed - 1));
          const float4 a0 = load_shared_f4(half_address(area0, row, column));
          const float4 a1 = load_shared_f4(half_address(area0, row, column + 4));
          const float4 b0 = load_shared_f4(half_address(area0 + 64 * 512, row, column));
          const float4 b1 = load_shared_f4(half_address(area0 + 64 * 512, row, column + 4));
          const uint32_t words[4] = {pack_pair<Element>(a0.x + b0.x, a0.y + b0.y), pack_pair<Element>(a0.z + b0.z, a0.w + b0.w),
                                     pack_pair<Element>(a1.x + b1.x, a1.y + b1.y), pack_pair<Element>(a1.z + b1.z, a1.w + b1.w)};
          Element* destination =
              out + int64_t{token} * p.out_token_stride + int64_t{h} * p.out_head_stride + half * 128 + column;
          if (p.out_aligned16) {
            *reinterpret_cast<uint4*>(destination) = make_uint4(words[0], words[1], words[2], words[3]);
          } else {
            CUTE_UNROLL
            for (int e = 0; e < 8; ++e) {
              destination[e] = Element::bitcast(static_cast<uint16_t>(words[e / 2] >> (16 * (e % 2))));
            }
          }
        }
        named_barrier_sync(5, 256);  // this half read: its area may be stored over
      }
      CUTE_UNROLL
      for (int r = 0; r < 2; ++r) {
        if (!poisoned[r] || !row_valid[r]) continue;
        // The whole row again (every key of the walk) into this thread's elements, over what the
        // two shares wrote (the barrier above ordered those stores before these).
        if (r == 0) recompute_row(cute::Int<0>{}); else recompute_row(cute::Int<1>{});
        const int row = row0 + 8 * r;
        Element* destination = out + int64_t{t.token_begin + (row >> p.packed_shift)} * p.out_token_stride +
                               int64_t{head[r]} * p.out_head_stride + col0;
        CUTE_UNROLL
        for (int i = 2 * r; i < size(tOrO); i += 4) {
          destination[8 * (i / 4)] = static_cast<Element>(tOrO(i) * out_scale[r]);
          destination[8 * (i / 4) + 1] = static_cast<Element>(tOrO(i + 1) * out_scale[r]);
        }
      }
      fence_async_shared();  // our reads of the Q buffer before the producer's next TMA write
      release(sh.q_empty);
      continue;
    }

    // The NaN policy (docs/reliability.md, "Non-finite values"): a key the mask hides has
    // probability exactly 0, but P V multiplies by it inside wgmma, and 0 x inf or NaN is NaN.
    // Such a product can only leave inf or NaN in the output (NaN survives every sum), so a
    // thread whose elements of a row are all finite is done; else it computes them again, key by
    // key from global memory, leaving out the keys of probability 0. The item's maximum and sum
    // stay (they come from the scores, which V does not touch), so a pair's two halves and a
    // split's parts stay consistent. Only caches holding inf or NaN get here.
    // The pair's ring/tree variant has no registers for that here (it spilled): it recomputes
    // late, once the rows' elements are stored (staging area or partial state) and the output
    // registers are dead, and stores them again (kLateRecompute).
    constexpr bool kLateRecompute = kRingOrTree && Traits::kCluster > 1;
    bool poisoned[2];
    CUTE_UNROLL
    for (int r = 0; r < 2; ++r) {
      poisoned[r] = row_not_finite(tOrO, r);
      if (kLateRecompute || !poisoned[r]) continue;
      int32_t opaque_round = round;  // so that the item's first decode is not kept for this
      asm volatile("" : "+r"(opaque_round));
      recompute_values<Traits, kRingOrTree>(p, tile_of_round(opaque_round, worker_now(), workers_now()), tOrO, r,
                                            row_base + row0 + 8 * r, column_base + get<1>(tOcO(0)), row_max[r]);
    }
    // The late recompute of row r (kLateRecompute): its elements again into tOrO, whose values
    // are dead by then.
    // The row comes as a compile-time constant: with a runtime one (a lambda not inlined at
    // both of its calls) the accumulator's indices went dynamic and it moved to local memory.
    auto recompute_late = [&](auto row_constant) {
      constexpr int r = decltype(row_constant)::value;
      int32_t opaque_round = round;
      asm volatile("" : "+r"(opaque_round));
      recompute_values<Traits, kRingOrTree>(p, tile_of_round(opaque_round, worker_now(), workers_now()), tOrO, r,
                                            row_base + row0 + 8 * r, column_base + get<1>(tOcO(0)), row_max[r]);
    };

    if (p.splits > 1) {
      // A part of the tile's keys: its partial state for the merge (decode_merge.cu), which
      // applies the sinks and writes out and LSE. f32 pairs straight from the accumulators.
      const int col0 = get<1>(tOcO(0));
      CUTE_UNROLL
      for (int r = 0; r < 2; ++r) {
        if (!row_valid[r]) continue;
        const int row = row_base + row0 + 8 * r;
        const int64_t token = t.query_start + t.token_begin + (row >> p.packed_shift);
        const int64_t state = (token * p.q_heads + head[r]) * p.splits + t.split;
        float* partial = p.partial_out + state * Traits::kFullHeadDim + column_base + col0;
        CUTE_UNROLL
        for (int i = 2 * r; i < size(tOrO); i += 4) {  // elements of row r: (i / 2) % 2 == r
          *reinterpret_cast<float2*>(partial + 8 * (i / 4)) = make_float2(tOrO(i), tOrO(i + 1));
        }
        if (kLateRecompute && poisoned[r]) {
          if (r == 0) recompute_late(cute::Int<0>{}); else recompute_late(cute::Int<1>{});
          CUTE_UNROLL
          for (int i = 2 * r; i < size(tOrO); i += 4) {
            *reinterpret_cast<float2*>(partial + 8 * (i / 4)) = make_float2(tOrO(i), tOrO(i + 1));
          }
        }
        if (thread % 4 == 0 && rank == 0) {  // the twin holds the same state
          p.partial_max[state] = row_max[r] == -INFINITY ? -INFINITY : row_max[r] * kLn2;
          p.partial_sum[state] = row_total[r];
        }
      }
      if (!Traits::kOutStaged) release(sh.q_empty);  // Q's last reader, this warpgroup's Q K^T, has completed
      continue;
    }

    // Normalise, with the sink (an extra logit with no value).
    float out_scale[2], lse[2];
    CUTE_UNROLL
    for (int r = 0; r < 2; ++r) normalisation(row_max[r], row_total[r], p.sinks, head[r], out_scale[r], lse[r]);
    if (p.lse && (thread % 4) == 0 && rank == 0) {
      for (int r = 0; r < 2; ++r) {
        if (!row_valid[r]) continue;
        const int row = row_base + row0 + 8 * r;
        const int64_t token = t.query_start + t.token_begin + (row >> p.packed_shift);
        p.lse[token * p.lse_token_stride + int64_t{head[r]} * p.lse_head_stride] = lse[r];
      }
    }

    // Epilogue: O -> a staging area, then 16-byte pieces to global memory. The area is the
    // output's own (kOutColumns a pass) or, without room for one, this warpgroup's rows of the Q
    // buffer (its last reader was our own Q K^T). Both are TMA's 128B-swizzled layout: 64-column
    // chunks of rows x 128 bytes, 16-byte unit u of row r stored at unit u ^ (r % 8).
    // Element i of the O fragment: row row0 + 8 * ((i / 2) % 2), column 8 * (i / 4) + col0 + i % 2.
    constexpr int kPassColumns = Traits::kOutStaged ? Traits::kOutColumns : kHeadDim;
    constexpr int kPassChunks = kPassColumns / 64;
    constexpr int kChunkBytes = (Traits::kOutStaged ? 64 : Traits::kBlockM) * 128;  // between chunks
    constexpr int kPieces = kPassColumns / 8;  // 16-byte pieces of a row, per pass
    static_assert(128 % kPieces == 0, "a thread copies one piece column of every 128 / kPieces-th row");
    constexpr int kRowStep = 128 / kPieces;    // rows between a thread's pieces
    // Shared addresses, not pointers: through a pointer the compiler cannot trace to the shared
    // window, every access here was a generic one (Nsight Compute: the copy loop held 9% of the
    // sliding layer's warp samples, with an integer division per piece for row / packed).
    const uint32_t area = Traits::kOutStaged ? shared_address(sh.o) + warpgroup * (kPassChunks * 64 * 128)
                                             : shared_address(sh.q) + warpgroup * (64 * 128);
    const int col0 = get<1>(tOcO(0));
    const int swizzle = row0 % 8;  // same for both rows (8 apart)
    const int piece = thread % kPieces;
    Element* out = static_cast<Element*>(p.out) + int64_t{t.query_start} * p.out_token_stride + column_base + piece * 8;
    CUTE_UNROLL
    for (int pass = 0; pass < Traits::kOutPasses; ++pass) {
      // The area's previous readers (the last pass, the last item) are done. Without an output
      // area (the Q buffer's rows) the Q barriers order them already, through the producer's
      // next Q load; this barrier makes that order one that racecheck sees too (it reported the
      // previous item's reads against these writes when a CTA ran several items at 512).
      named_barrier_sync(1 + warpgroup, 128);
      CUTE_UNROLL
      for (int i = 0; i < size(tOrO); i += 2) {
        const int r = (i >> 1) & 1, group = i / 4;  // 8-column group
        const int chunk = group / 8, unit = group % 8;
        if (chunk / kPassChunks != pass) continue;  // resolved at compile time
        const Element lo = static_cast<Element>(tOrO(i) * out_scale[r]);
        const Element hi = static_cast<Element>(tOrO(i + 1) * out_scale[r]);
        store_shared(area + (chunk % kPassChunks) * kChunkBytes + (row0 + 8 * r) * 128 + col0 * 2 + ((unit ^ swizzle) << 4),
                     uint32_t{lo.raw()} | (uint32_t{hi.raw()} << 16));
      }
      if constexpr (kLateRecompute) {
        static_assert(Traits::kOutPasses == 1, "the late recompute stores one pass");
        CUTE_UNROLL
        for (int r = 0; r < 2; ++r) {
          if (!poisoned[r]) continue;
          if (r == 0) recompute_late(cute::Int<0>{}); else recompute_late(cute::Int<1>{});
          CUTE_UNROLL
          for (int i = 2 * r; i < size(tOrO); i += 4) {  // row r's elements, stored over
            const int group = i / 4, chunk = group / 8, unit = group % 8;
            const Element lo = static_cast<Element>(tOrO(i) * out_scale[r]);
            const Element hi = static_cast<Element>(tOrO(i + 1) * out_scale[r]);
            store_shared(area + chunk * kChunkBytes + (row0 + 8 * r) * 128 + col0 * 2 + ((unit ^ swizzle) << 4),
                         uint32_t{lo.raw()} | (uint32_t{hi.raw()} << 16));
          }
        }
      }
      named_barrier_sync(1 + warpgroup, 128);
      const uint32_t piece_offset = (piece / 8) * kChunkBytes;
      // The alignment test outside the loop (uniform for the call), not once per piece.
      auto copy_out = [&](auto aligned16) {
#pragma unroll 4
        for (int local_row = thread / kPieces; local_row < 64; local_row += kRowStep) {
          const int row = row_base + local_row;
          const int32_t token = t.token_begin + (row >> p.packed_shift);
          if (token >= t.token_end) continue;
          const int32_t h = t.tile_head * p.packed + (row & (p.packed - 1));
          const uint4 value =
              load_shared_16(area + piece_offset + local_row * 128 + (((piece % 8) ^ (local_row % 8)) << 4));
          Element* destination =
              out + int64_t{token} * p.out_token_stride + int64_t{h} * p.out_head_stride + pass * kPassColumns;
          if constexpr (decltype(aligned16)::value) {
            *reinterpret_cast<uint4*>(destination) = value;
          } else {
            const uint32_t words[4] = {value.x, value.y, value.z, value.w};
            CUTE_UNROLL
            for (int e = 0; e < 8; ++e) {
              destination[e] = Element::bitcast(static_cast<uint16_t>(words[e / 2] >> (16 * (e % 2))));
            }
          }
        }
      };
      if (p.out_aligned16) {
        copy_out(std::true_type{});
      } else {
        copy_out(std::false_type{});
      }
    }
    if constexpr (!Traits::kOutStaged) {
      fence_async_shared();  // our reads of the Q buffer before the producer's next TMA write
      release(sh.q_empty);
    }
  }
}

// kRingOrTree: the variant for ring caches and speculative trees (a walk with a hole, and
// key_visible's predicate on boundary tiles); a template parameter so that the plain masks'
// kernel keeps its registers (the runtime test spilled its accumulators).
template <int kHeadDim, class Element, bool kRingOrTree, bool kAlternate>
__global__ void __launch_bounds__(384, 1) fused_prefill_kernel(const __grid_constant__ FusedParams p) {
  using Traits = KernelTraits<kHeadDim, Element>;
  using Shared = typename Traits::Shared;
  extern __shared__ char shared_raw[];
  Shared& sh = *reinterpret_cast<Shared*>((reinterpret_cast<uintptr_t>(shared_raw) + 1023) & ~uintptr_t{1023});
  const int warpgroup = threadIdx.x / 128;
  if (threadIdx.x == 0) {
    prefetch_tensor_map(&p.q_map);
    prefetch_tensor_map(&p.k_map);
    prefetch_tensor_map(&p.v_map);
    sh.q_full.init(1);
    sh.q_empty.init(Traits::kConsumerWarps);
    for (int s = 0; s < Traits::kStages; ++s) {
      sh.k_full[s].init(1);
      sh.k_empty[s].init(Traits::kConsumerWarps);
      sh.v_full[s].init(1);
      sh.v_empty[s].init(Traits::kConsumerWarps);
      sh.v_loaded[s].init(1);
    }
    for (int w = 0; w < 2; ++w) {
      sh.exchange_full[w].init(1);   // this CTA's expect, then the peer's stored bytes
      sh.peer_free[w].init(4);       // one arrival per warp of the peer's twin warpgroup
    }
    fence_barrier_init();
  }
  // A pair numbers its work by cluster; its barriers must be initialised before the peer's
  // first remote use.
  int32_t worker = blockIdx.x, workers = gridDim.x;
  if constexpr (Traits::kCluster > 1) {
    cluster_sync();
    worker = int32_t(cluster_index());
    workers = int32_t(cluster_count());
  } else {
    __syncthreads();
  }
  if (warpgroup == 0) {
    registers_decrease<Traits::kProducerRegisters>();
    if (threadIdx.x < 32) produce<Traits, kRingOrTree>(p, sh, worker, workers);
  } else {
    registers_increase<Traits::kConsumerRegisters>();
    consume<Traits, kRingOrTree, kAlternate>(p, sh, warpgroup - 1, worker, workers);
  }
  // No CTA of a pair leaves while its peer may still store into or arrive on its shared memory.
  if constexpr (Traits::kCluster > 1) cluster_sync();
}

template <int kHeadDim, class Element, bool kRingOrTree, bool kAlternate>
void launch_typed(const FusedParams& params, int32_t work_items, int32_t compute_units, cudaStream_t stream) {
  using Traits = KernelTraits<kHeadDim, Element>;
  auto kernel = fused_prefill_kernel<kHeadDim, Element, kRingOrTree, kAlternate>;
  // The shared-memory opt-in is a per-device attribute: set once on each device used; a pair's
  // kernel also records how many pairs fit on the device at once.
  static std::atomic<uint64_t> configured_devices{0};
  static std::atomic<int32_t> resident_pairs[64] = {};
  int device = 0;
  cudaGetDevice(&device);
  const uint64_t bit = uint64_t{1} << (device & 63);
  auto fail = [](const char* what, cudaError_t status) {
    cudaGetLastError();
    detail::throw_error(StatusCode::internal, std::string("fused prefill: ") + what + " failed: " + cudaGetErrorString(status));
  };
  cudaLaunchConfig_t config = {};
  cudaLaunchAttribute cluster_attribute = {};
  config.blockDim = dim3(Traits::kThreads);
  config.dynamicSmemBytes = Traits::kSharedBytes;
  config.stream = stream;
  if constexpr (Traits::kCluster > 1) {
    cluster_attribute.id = cudaLaunchAttributeClusterDimension;
    cluster_attribute.val.clusterDim.x = Traits::kCluster;
    cluster_attribute.val.clusterDim.y = 1;
    cluster_attribute.val.clusterDim.z = 1;
    config.attrs = &cluster_attribute;
    config.numAttrs = 1;
  }
  if (!(configured_devices.load(std::memory_order_acquire) & bit)) {
    const cudaError_t status =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Traits::kSharedBytes);
    if (status != cudaSuccess) fail("cudaFuncSetAttribute", status);
    if constexpr (Traits::kCluster > 1) {
      // Pairs must sit in one GPC: fewer than SMs / 2 of them may fit at once.
      int pairs = 0;
      config.gridDim = dim3(Traits::kCluster * std::max(1, compute_units / Traits::kCluster));
      const cudaError_t occupancy = cudaOccupancyMaxActiveClusters(&pairs, kernel, &config);
      if (occupancy != cudaSuccess) fail("cudaOccupancyMaxActiveClusters", occupancy);
      resident_pairs[device & 63].store(std::max(1, pairs), std::memory_order_relaxed);
    }
    if (device < 64) configured_devices.fetch_or(bit, std::memory_order_acq_rel);
  }
  int32_t workers = std::max(1, compute_units);
  if constexpr (Traits::kCluster > 1) workers = resident_pairs[device & 63].load(std::memory_order_relaxed);
  workers = std::max(1, std::min(work_items, workers));
  config.gridDim = dim3(Traits::kCluster * workers);
  const cudaError_t status = cudaLaunchKernelEx(&config, kernel, params);
  if (status != cudaSuccess) fail("launch", status);
}

// Launches the kernel of `kHeadDim` for bf16 or f16: persistent, one CTA (or pair of CTAs) per
// SM (pair of SMs) up to `work_items`. Instantiated once per row of kTileConfigs, one
// translation unit each (fused_d64.cu, ...), so they compile in parallel.
template <int kHeadDim>
void launch_fused_kernel(const FusedParams& params, bool bf16, int32_t work_items, int32_t compute_units,
                         cudaStream_t stream) {
  const bool ring_or_tree = params.ring_length > 0 || params.tree_start != nullptr;
  auto typed = [&](auto element) {
    using Element = decltype(element);
    if (ring_or_tree) {
      launch_typed<kHeadDim, Element, true, false>(params, work_items, compute_units, stream);
    } else if (params.alternate_keys) {
      if constexpr (tile_config(kHeadDim)->cluster > 1) {
        launch_typed<kHeadDim, Element, false, true>(params, work_items, compute_units, stream);
      } else {
        detail::throw_error(StatusCode::internal, "fused prefill: alternate_keys without a pair");
      }
    } else {
      launch_typed<kHeadDim, Element, false, false>(params, work_items, compute_units, stream);
    }
  };
  if (bf16) typed(cutlass::bfloat16_t{});
  else typed(cutlass::half_t{});
}

}  // namespace wideattn::fused
