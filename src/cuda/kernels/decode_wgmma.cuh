// The wgmma decode kernel: head_dim 512 over an fp8 (e4m3) cache, sm_90a (docs/design.md, "The
// wgmma decode kernel"; its gate: bench/decode_wgmma_gate.cu).
//
// The mma.sync kernel (decode_split_kv.cuh) is compute-bound at 512, so an fp8 cache, half the
// bytes, ran no faster than a 16-bit one. Decode has few query rows per KV head (gqa x new
// tokens: 8-32), too few for wgmma's M = 64; with the operands swapped the keys are on M:
//   S^T = K Q^T   (M = 64 keys, N = the rows, K = head_dim)
//   O^T = V^T P^T (M = head_dim, N = the rows, K = 64 keys)
// so every instruction does useful work and a warpgroup's whole 512 x N output is 4N / 2
// registers a thread.
//
// One CTA per (sequence, KV head, KV split), 2-3 consumer warpgroups and a producer warpgroup:
// - the producer's first thread: each 64-key tile of the CTA's range comes as 8 chunks
//   (K then V, 64 keys x 128 columns, 8 KB) by TMA into a ring of kRing chunks, 128-byte
//   swizzled; a paged chunk is one box per page (pages of 16 or 32 rows) or one box of a page;
// - the consumer warpgroups (three at 8 rows, two at 16-32) take tiles in turn, each with its
//   own running max, sum and O^T, merged at the end. A tile: Q K^T over the 4 K chunks (ldmatrix on the e4m3 bytes, widened to f16 in
//   registers with cvt.rn.f16x2.e4m3x2: the A operand from registers, Q's head_dim permuted to
//   match, once), logits (scale, soft-cap), the mask where the tile needs it, the tile's maxima
//   through shared memory, P^T (f16) into shared memory as the B operand, O^T += V^T P^T over
//   the 4 V chunks (ldmatrix.trans of byte pairs: the output rows come out in a permuted column
//   order, undone at the store).
// Queries are converted to f16 once: bf16 ones scaled by a power of two that keeps the CTA's
// largest finite |q| in f16's range (folded into the logit scale). splits == 1 writes the
// normalised output and the LSE (sinks included); otherwise the partial state for decode_merge.
// The NaN policy: a hidden key's 0 x inf or NaN lands in O's accumulators; rows whose results
// are not all finite are computed again key by key after the stores (recompute_row_output).
// V bytes of keys past the range's end are zeroed before the last tile's P V (a cache's unused
// slots hold anything, NaN codes included).
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cute/arch/mma_sm90.hpp>
#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cute/tensor.hpp>
#include <cutlass/numeric_types.h>

#include <type_traits>

#include "cuda/fused/async_copy.cuh"
#include "cuda/kernels/decode_common.cuh"
#include "cuda/kernels/decode_params.h"
#include "cuda/kernels/decode_recompute.cuh"
#include "cuda/primitives/dynamic_smem.h"
#include "cuda/primitives/launch.h"
#include "cuda/primitives/ldmatrix.cuh"

namespace wideattn::cuda::decode::wgmma {

inline constexpr int kHeadDim = 512;
inline constexpr int kKeys = 64;                                // keys per tile (wgmma M of Q K^T)
inline constexpr int kChunkColumns = 128;                       // columns per ring chunk (128 bytes)
inline constexpr int kChunksPerOperand = kHeadDim / kChunkColumns;  // 4 K chunks, then 4 V chunks
inline constexpr int kChunkBytes = kKeys * kChunkColumns;       // e4m3
// Chunks in flight: 1.5 tiles. 20-22 at 8 rows ran 2-4% slower, 20 at 16 rows 1.5% faster
// (H200, docs/design.md); more requests in flight do not stream faster here.
inline constexpr int kRing = 12;
inline constexpr int kAllConsumers = 4;  // hardware barrier of every consumer warpgroup (1-3: each one's)

// N: query rows per CTA (8, 16 or 32), the wgmma N of both products.
template <int N>
struct Traits {
  static constexpr int kHandOver = kHeadDim * N;  // floats of a warpgroup's O^T
  using E = cutlass::half_t;  // the products' type: every e4m3 value is exact in f16
  using Atom = cute::GMMA::Layout_K_SW128_Atom<E>;
  using LayoutQ = decltype(cute::tile_to_shape(Atom{}, cute::Shape<cute::Int<N>, cute::Int<kHeadDim>>{}));
  using LayoutP = decltype(cute::tile_to_shape(Atom{}, cute::Shape<cute::Int<N>, cute::Int<kKeys>>{}));
  using MmaQK = decltype(cute::make_tiled_mma(
      cute::GMMA::rs_op_selector<E, E, float, cute::Shape<cute::_64, cute::Int<N>, cute::Int<kChunkColumns>>>()));
  using MmaPV = decltype(cute::make_tiled_mma(
      cute::GMMA::rs_op_selector<E, E, float, cute::Shape<cute::_64, cute::Int<N>, cute::Int<kKeys>>>()));
  // A fragments of chunks in flight: two (the products of one run while the next is widened),
  // one at 16 and 32 rows (two spill next to the 64 or 128 output registers).
  static constexpr int kFragmentsInFlight = N <= 8 ? 2 : 1;
  // Consumer warpgroups, taking tiles in turn: three at 8 rows (~100 registers each: a third one
  // hides more of each tile's latency), two at 16-32 (their accumulators need ~200). Registers
  // after setmaxnreg: kConsumers x 128 x kConsumerRegisters + 128 x kProducerRegisters <= 64K.
  static constexpr int kConsumers = N <= 8 ? 3 : 2;
  static constexpr int kThreads = 128 * (kConsumers + 1);
  static constexpr int kConsumerRegisters = kConsumers == 3 ? 152 : 232;
  static constexpr int kProducerRegisters = 40;
  static_assert(kConsumers * 128 * kConsumerRegisters + 128 * kProducerRegisters <= 65536, "decode_wgmma: registers");
  struct Shared {
    alignas(1024) uint8_t ring[kRing][kChunkBytes];
    alignas(1024) E q[N * kHeadDim];
    alignas(1024) E p[kConsumers][N * kKeys];  // per warpgroup
    // Warpgroups 1.. hand their O^T to warpgroup 0 here, [warpgroup - 1][chunk][element][thread]
    // (not in the ring: compute-sanitizer's racecheck flagged that reuse at three warpgroups,
    // across the barrier that orders it).
    float hand_over[(kConsumers - 1) * kHandOver];
    float red[kConsumers][4][N];  // [warpgroup][warp][row]: a tile's maxima, then the final sums
    float final_max[kConsumers][N];
    float row_max[N], row_sum[N];     // the merged state of each row (the NaN policy's slow path)
    float weight[kConsumers][N];      // each warpgroup's state's weight in a row's result
    int32_t poisoned[N];
    // The CTA's work, read from here where used: held in registers across the tile loop it
    // tipped the 3-warpgroup build (128 registers a thread) into spilling.
    CtaWork work;
    uint32_t q_max;  // the largest finite |q| of the CTA's rows, as bits
    float qk_scale;  // logit = dot x qk_scale (log2 units without the soft-cap)
    fused::Barrier full[kRing], empty[kRing];
  };
  static constexpr int kSharedBytes = int(sizeof(Shared)) + 1024;  // + alignment of the ring
  static_assert(kSharedBytes <= 227 * 1024, "decode_wgmma: shared memory");
};

// Q K^T's head_dim order: logical column l of a 16-column k step s is physical column
// 16 s + 4 ((l % 8) / 2) + 2 (l % 16 >= 8) + l % 2, so that a thread's A fragment of a key row
// is 4 consecutive codes of it (one ldmatrix word).
__host__ __device__ __forceinline__ int physical_column(int l) {
  const int slot = l % 16;
  return 16 * (l / 16) + 4 * ((slot % 8) / 2) + 2 * (slot >= 8) + slot % 2;
}

// The inverse for a pair: physical columns 2 pp, 2 pp + 1 of a 16-column k step (pp = 0..7) are
// its logical columns 2 (pp / 2 + 4 (pp % 2)), +1, so a pair of a row stays a pair.
__host__ __device__ __forceinline__ int logical_pair(int pp) { return pp / 2 + 4 * (pp % 2); }

// P V's output order: row r of a 128-column chunk's O^T holds column
// 16 (r / 16) + 2 (r % 16) (r % 16 < 8) or 2 (r % 16 - 8) + 1.
__host__ __device__ __forceinline__ int output_column(int r) {
  const int i = r % 16;
  return 16 * (r / 16) + (i < 8 ? 2 * i : 2 * (i - 8) + 1);
}

__device__ __forceinline__ uint32_t widen2(uint32_t two_codes_in_low16) {  // e4m3 x2 -> f16 x2, exact
  uint32_t r;
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(r) : "h"(static_cast<uint16_t>(two_codes_in_low16)));
  return r;
}

__device__ __forceinline__ float exp2_fast(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// The A operand of S^T = K Q^T for one K chunk (64 keys x 128 e4m3 codes, 128-byte swizzled at
// shared address `base`), this thread's 32 registers (`a32`: the f16 fragment as words): ldmatrix
// of the codes gives a thread 4 consecutive codes of a key, its fragment of one k step in Q's
// permuted head_dim order (physical_column), widened exactly.
template <class Words>
__device__ __forceinline__ void widen_k_chunk(Words&& a32, uint32_t base, int lane, int warp_in_group) {
  const int quad = lane / 8, key = 16 * warp_in_group + 8 * (quad % 2) + lane % 8;
#pragma unroll
  for (int pair = 0; pair < kChunkColumns / 32; ++pair) {  // k steps 2 pair, +1: 16-byte pieces
    uint32_t x[4];
    ldmatrix_x4(x, base + key * 128 + (((2 * pair + quad / 2) ^ (key % 8)) << 4));
#pragma unroll
    for (int h2 = 0; h2 < 2; ++h2) {  // x[2 h2]: row r, x[2 h2 + 1]: row r + 8 of k step 2 pair + h2
      const int r = 4 * (2 * pair + h2);
      a32(r + 0) = widen2(x[2 * h2]);
      a32(r + 2) = widen2(x[2 * h2] >> 16);
      a32(r + 1) = widen2(x[2 * h2 + 1]);
      a32(r + 3) = widen2(x[2 * h2 + 1] >> 16);
    }
  }
}

// The A operand of O^T += V^T P^T for one V chunk (64 keys x 128 codes): ldmatrix.trans of code
// pairs and one prmt give the codes of two columns for two keys, so the output rows come out in
// output_column's order. Codes of keys >= valid_keys are zeroed (P is 0 there, 0 x NaN is not).
template <class Words>
__device__ __forceinline__ void widen_v_chunk(Words&& a32, uint32_t base, int lane, int warp_in_group,
                                              int valid_keys) {
  const int quad = lane / 8;
#pragma unroll
  for (int m = 0; m < kChunkColumns / 64; ++m) {
    const int piece = 4 * m + warp_in_group;  // this warp's 16 columns of the m tile
#pragma unroll
    for (int pair = 0; pair < 2; ++pair) {  // k steps 2 pair, 2 pair + 1 (16 keys each)
      const int key = 16 * (2 * pair + quad / 2) + 8 * (quad % 2) + lane % 8;
      uint32_t x[4];
      ldmatrix_x4_trans(x, base + key * 128 + ((piece ^ (key % 8)) << 4));
#pragma unroll
      for (int h2 = 0; h2 < 2; ++h2) {
        // first: rows r, r + 8 (bytes 0-1, 2-3) at keys 2 (lane % 4), +1 of the k step's first
        // 8; second: the same at keys 8 + ...
        const int step = 2 * pair + h2, r = 4 * (m + 2 * step);
        uint32_t first = __byte_perm(x[2 * h2], 0, 0x3120), second = __byte_perm(x[2 * h2 + 1], 0, 0x3120);
        if (valid_keys < kKeys) {
          const int k0 = 16 * step + 2 * (lane % 4);
          auto keep = [&](int key0) {
            return (key0 < valid_keys ? 0x00ff00ffu : 0u) | (key0 + 1 < valid_keys ? 0xff00ff00u : 0u);
          };
          first &= keep(k0);
          second &= keep(k0 + 8);
        }
        a32(r + 0) = widen2(first);
        a32(r + 1) = widen2(first >> 16);
        a32(r + 2) = widen2(second);
        a32(r + 3) = widen2(second >> 16);
      }
    }
  }
}

// The producer: K and V chunks of every tile into the ring, in consumption order.
__device__ __forceinline__ void produce(const DecodeWgmmaParams& params, const CtaWork& w, int64_t tile_base,
                                        int num_tiles, uint8_t (*ring)[kChunkBytes], fused::Barrier* full,
                                        fused::Barrier* empty) {
  const DecodeParams& p = params.decode;
  const bool paged = p.pages.block_table != nullptr;
  const int box_rows = params.box_rows;
  const int boxes = kKeys / box_rows;  // 1, 2 or 4
  const int32_t outside = static_cast<int32_t>(p.num_pages);  // a page coordinate TMA reads as zeros
  // A box's block-table entry (-1 past the range: no entry is read there). Loaded a tile ahead
  // and checked when used, so the load's latency stays off the issue path.
  auto entry = [&](int64_t key) -> int32_t {
    int32_t page = -1;
    if (key < w.key_end) page = __ldg(p.pages.block_table + w.seq * p.pages.table_stride + (key >> p.pages.page_shift));
    return page;
  };
  // Keys past the range and page indices outside the pools (the host cannot check a device
  // block table) read zeros.
  auto coordinate = [&](int32_t page) { return page >= 0 && page < p.num_pages ? page : outside; };
  // (The L2 tuning aid loads the first tile again and again.)
  const int64_t tile_step = params.l2_only ? 0 : kKeys;
  int32_t pages[4] = {0, 0, 0, 0};
  if (paged && num_tiles > 0) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (i < boxes) pages[i] = entry(tile_base + i * box_rows);
    }
  }
  for (int t = 0; t < num_tiles; ++t) {
    const int64_t tile_lo = tile_base + t * tile_step;
    // The next tile's entries, read now and used a tile later (off the issue path).
    int32_t next[4] = {0, 0, 0, 0};
    if (paged && t + 1 < num_tiles) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if (i < boxes) next[i] = entry(tile_lo + tile_step + i * box_rows);
      }
    }
    for (int j = 0; j < 2 * kChunksPerOperand; ++j) {
      const int c = 8 * t + j, stage = c % kRing;
      empty[stage].wait(((c / kRing) & 1) ^ 1);
      full[stage].arrive_expect_bytes(kChunkBytes);
      const CUtensorMap* map = j < kChunksPerOperand ? &params.k_map : &params.v_map;
      const int column = (j % kChunksPerOperand) * kChunkColumns;
      if (!paged) {
        fused::tma_load(ring[stage], map, &full[stage], column, static_cast<int32_t>(tile_lo), w.kv_head, w.seq);
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          if (i >= boxes) break;
          const int32_t row = static_cast<int32_t>((tile_lo + i * box_rows) & p.pages.page_mask);
          fused::tma_load(ring[stage] + i * box_rows * kChunkColumns, map, &full[stage], column, row, w.kv_head,
                          coordinate(pages[i]));
        }
      }
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) pages[i] = next[i];
  }
}

template <typename T, int N>
__global__ void __launch_bounds__(Traits<N>::kThreads, 1) decode_wgmma_kernel(const __grid_constant__ DecodeWgmmaParams params) {
  using namespace cute;
  using Tr = Traits<N>;
  using E = typename Tr::E;
  constexpr int kF = Tr::kFragmentsInFlight;
  constexpr int kConsumers = Tr::kConsumers, kConsumerThreads = 128 * kConsumers;
  const DecodeParams& p = params.decode;
  extern __shared__ uint8_t raw[];
  auto& sh = *reinterpret_cast<typename Tr::Shared*>((reinterpret_cast<uintptr_t>(raw) + 1023) & ~uintptr_t{1023});
  // Launched as a programmatic dependent on sm_90 (as the mma kernel): wait for the kernel
  // before it; with splits, let the merge be scheduled now (it waits for this grid).
  wait_for_previous_grid();
  if (p.splits > 1) allow_next_grid();
  CtaWork work;
  if (!cta_work(p, N, work, kKeys, /*aligned=*/true)) return;
  const int64_t tile_base = work.key_begin - work.key_begin % kKeys;
  const int num_tiles =
      work.key_end > work.key_begin ? static_cast<int>((work.key_end - tile_base + kKeys - 1) / kKeys) : 0;
  const int rows = min(work.rows, N);  // dispatch keeps suffix x gqa <= N
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (threadIdx.x == 0) {
    for (int i = 0; i < kRing; ++i) {
      sh.full[i].init(1);
      sh.empty[i].init(4);  // one arrival per warp of the consuming warpgroup
    }
    sh.q_max = 0u;
    sh.work = work;
  }
  if (threadIdx.x < N) sh.poisoned[threadIdx.x] = 0;
  fused::fence_barrier_init();
  __syncthreads();
  const CtaWork& w = sh.work;

  if (warp >= 4 * kConsumers) {  // ---- producer: its registers go to the consumers
    fused::registers_decrease<Tr::kProducerRegisters>();
    if (warp == 4 * kConsumers && lane == 0) produce(params, work, tile_base, num_tiles, sh.ring, sh.full, sh.empty);
    return;
  }

  // ---- consumers
  fused::registers_increase<Tr::kConsumerRegisters>();
  const int wg = warp / 4, thread = threadIdx.x % 128, warp_in_group = warp % 4;

  // Q -> f16 into the swizzled layout in Q K^T's head_dim order, by every consumer; rows past
  // the sequence's are zeros. Row n: token n / gqa, head kv_head * gqa + n % gqa. 16-byte
  // vectors (run_decode refuses an fp8 cache's query and output rows that are not 16-byte
  // aligned, rows_aligned_16, before it launches this kernel), every load in flight at once: one
  // round trip (an element at a time, it took a quarter of a 32-row call).
  constexpr int kVectorsPerRow = kHeadDim / 8;
  constexpr int kQVectors = (N * kVectorsPerRow + kConsumerThreads - 1) / kConsumerThreads;  // a thread's
  uint4 q_raw[kQVectors];
  CUTE_UNROLL
  for (int u = 0; u < kQVectors; ++u) {
    const int v = threadIdx.x + u * kConsumerThreads, n = v / kVectorsPerRow;
    q_raw[u] = make_uint4(0u, 0u, 0u, 0u);
    if (n < rows) {
      const RowTarget t = row_target(w, p.gqa, n);
      q_raw[u] = *reinterpret_cast<const uint4*>(static_cast<const T*>(p.q) + t.token * p.q_token_stride +
                                                 t.head * p.q_head_stride + 8 * (v % kVectorsPerRow));
    }
  }
  int q_shift = 0;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    float local = 0.0f;
    CUTE_UNROLL
    for (int u = 0; u < kQVectors; ++u) {
      const uint32_t words[4] = {q_raw[u].x, q_raw[u].y, q_raw[u].z, q_raw[u].w};
      CUTE_UNROLL
      for (int e = 0; e < 4; ++e) {
        const float2 x = Storage<T>::unpack(words[e]);
        const float a = fabsf(x.x), b = fabsf(x.y);
        if (isfinite(a)) local = fmaxf(local, a);
        if (isfinite(b)) local = fmaxf(local, b);
      }
    }
    atomicMax(&sh.q_max, __float_as_uint(local));  // non-negative floats order as their bits
    fused::named_barrier_sync(kAllConsumers, kConsumerThreads);
    int exponent = 0;
    frexpf(__uint_as_float(sh.q_max), &exponent);  // max < 2^exponent
    q_shift = exponent > 15 ? exponent - 15 : 0;
  }
  {
    const float down = ldexpf(1.0f, -q_shift);
    Tensor sQ = make_tensor(make_smem_ptr(sh.q), typename Tr::LayoutQ{});
    CUTE_UNROLL
    for (int u = 0; u < kQVectors; ++u) {
      const int v = threadIdx.x + u * kConsumerThreads, n = v / kVectorsPerRow;
      if (n >= N) continue;
      const uint32_t words[4] = {q_raw[u].x, q_raw[u].y, q_raw[u].z, q_raw[u].w};
      CUTE_UNROLL
      for (int e = 0; e < 4; ++e) {  // word e: physical columns 8 (v % kVectorsPerRow) + 2 e, +1
        const int physical = 8 * (v % kVectorsPerRow) + 2 * e;
        const int l = 16 * (physical / 16) + 2 * logical_pair((physical % 16) / 2);
        const float2 x = Storage<T>::unpack(words[e]);
        // Columns l, l + 1 are adjacent in the swizzled row.
        *reinterpret_cast<__half2*>(&sQ(n, l)) = __floats2half2_rn(x.x * down, x.y * down);
      }
    }
    fused::fence_async_shared();  // generic stores before wgmma's reads
    fused::named_barrier_sync(kAllConsumers, kConsumerThreads);
  }
  // Logits in log2 units: dot x scale (x the K scale, x 2^q_shift), or the soft-cap of it. Read
  // from shared memory where used: one register less across the loop kept the 32-row kernel
  // from spilling.
  if (threadIdx.x == 0) sh.qk_scale = ldexpf(p.scale * fp8_scale(p.k_scale, p.scales_per_head, w.kv_head), q_shift);
  fused::named_barrier_sync(kAllConsumers, kConsumerThreads);

  typename Tr::MmaQK mma_qk;
  typename Tr::MmaPV mma_pv;
  auto thr_qk = mma_qk.get_thread_slice(thread);
  auto thr_pv = mma_pv.get_thread_slice(thread);
  Tensor sQ = make_tensor(make_smem_ptr(sh.q), typename Tr::LayoutQ{});
  Tensor sP = make_tensor(make_smem_ptr(sh.p[wg]), typename Tr::LayoutP{});
  Tensor tSrS = partition_fragment_C(mma_qk, Shape<Int<kKeys>, Int<N>>{});
  using OFragment = decltype(partition_fragment_C(mma_pv, Shape<Int<kChunkColumns>, Int<N>>{}));
  OFragment tOrO[kChunksPerOperand];
  CUTE_UNROLL
  for (int j = 0; j < kChunksPerOperand; ++j) clear(tOrO[j]);
  Tensor tScS = thr_qk.partition_C(make_identity_tensor(Shape<Int<kKeys>, Int<N>>{}));
  constexpr int kColumns = N / 4;  // distinct rows n a thread holds: 2 per 8-row group
  // Element i of an m64nN accumulator: M row 16 warp + lane / 4 + 8 ((i / 2) % 2), N column
  // 8 (i / 4) + 2 (lane % 4) + i % 2, which is the thread's column slot 2 (i / 4) + i % 2.
  auto slot = [](int i) { return 2 * (i / 4) + i % 2; };
  auto slot_row = [&](int k) { return 8 * (k / 2) + 2 * (lane % 4) + k % 2; };
  float m_run[kColumns], l_run[kColumns];
  CUTE_UNROLL
  for (int k = 0; k < kColumns; ++k) {
    m_run[k] = neg_inf();
    l_run[k] = 0.0f;
  }

  // Chunk c's data. The stage's previous chunk (c - kRing) may belong to the other warpgroup
  // and, were its load still in flight, the full barrier would show that older phase with the
  // other parity: wait first for that chunk's release (its load has landed then).
  auto await_chunk = [&](int c) {
    const int stage = c % kRing;
    if (c >= kRing) sh.empty[stage].wait(((c / kRing) & 1) ^ 1);
    sh.full[stage].wait((c / kRing) & 1);
  };

  using AFragmentQK = decltype(make_tensor<E>(partition_shape_A(mma_qk, Shape<Int<kKeys>, Int<kChunkColumns>>{})));
  using AFragmentPV = decltype(make_tensor<E>(partition_shape_A(mma_pv, Shape<Int<kChunkColumns>, Int<kKeys>>{})));
  for (int t = wg; t < num_tiles; t += kConsumers) {
    const int64_t tile_lo = tile_base + int64_t{t} * kKeys;
    // S^T = K Q^T over the tile's 4 K chunks.
    {
      AFragmentQK a[kF];
      CUTE_UNROLL
      for (int j = 0; j < kChunksPerOperand; ++j) {
        const int c = 8 * t + j, stage = c % kRing;
        await_chunk(c);
        if (j >= kF) warpgroup_wait<kF - 1>();  // chunk j - kF's products have read a[j % kF]
        widen_k_chunk(recast<uint32_t>(a[j % kF]), fused::shared_address(sh.ring[stage]), lane, warp_in_group);
        __syncwarp();
        if (lane == 0) sh.empty[stage].arrive();
        Tensor tSrQ =
            thr_qk.partition_fragment_B(local_tile(sQ, Shape<Int<N>, Int<kChunkColumns>>{}, make_coord(_0{}, j)));
        warpgroup_fence_operand(a[j % kF]);
        warpgroup_fence_operand(tSrS);
        warpgroup_arrive();
        mma_qk.accumulate_ = j == 0 ? GMMA::ScaleOut::Zero : GMMA::ScaleOut::One;
        CUTE_UNROLL
        for (int k = 0; k < size<2>(a[j % kF]); ++k) {
          cute::gemm(mma_qk, a[j % kF](_, _, k), tSrQ(_, _, k), tSrS);
          mma_qk.accumulate_ = GMMA::ScaleOut::One;
        }
        warpgroup_commit_batch();
        warpgroup_fence_operand(a[j % kF]);
      }
    }
    warpgroup_wait<0>();
    warpgroup_fence_operand(tSrS);
    // Logits; the mask where the tile holds a key some row does not see (or one outside the
    // CTA's range); the tile's maxima.
    const float qk_scale = sh.qk_scale;
    if (p.softcap > 0.0f) {
      const float inv_softcap = 1.0f / p.softcap;  // here, not held across the loop
      CUTE_UNROLL
      for (int i = 0; i < size(tSrS); ++i) tSrS(i) = logit_log2(tSrS(i), qk_scale, p.softcap, inv_softcap);
    } else {
      CUTE_UNROLL
      for (int i = 0; i < size(tSrS); ++i) tSrS(i) = logit_log2(tSrS(i), qk_scale, 0.0f, 0.0f);
    }
    if (tile_lo < w.key_begin || tile_lo + kKeys > w.unmasked_end) {
      // The predicate once per score in a rolled loop (one copy of the mask's code), as bits.
      uint32_t hidden = 0;
#pragma unroll 1
      for (int i = 0; i < size(tSrS); ++i) {
        const int64_t key = tile_lo + get<0>(tScS(i));
        const int n = get<1>(tScS(i));
        if (key < w.key_begin || n >= rows || !visible(w, p.gqa, n, key)) hidden |= 1u << i;
      }
      CUTE_UNROLL
      for (int i = 0; i < size(tSrS); ++i) {
        if ((hidden >> i) & 1u) tSrS(i) = neg_inf();
      }
    }
    float tile_max[kColumns];
    CUTE_UNROLL
    for (int k = 0; k < kColumns; ++k) tile_max[k] = neg_inf();
    CUTE_UNROLL
    for (int i = 0; i < size(tSrS); ++i) tile_max[slot(i)] = fmaxf(tile_max[slot(i)], tSrS(i));
    CUTE_UNROLL
    for (int k = 0; k < kColumns; ++k) {
      tile_max[k] = fmaxf(tile_max[k], __shfl_xor_sync(0xffffffffu, tile_max[k], 4));
      tile_max[k] = fmaxf(tile_max[k], __shfl_xor_sync(0xffffffffu, tile_max[k], 8));
      tile_max[k] = fmaxf(tile_max[k], __shfl_xor_sync(0xffffffffu, tile_max[k], 16));
    }
    if (lane < 4) {
      CUTE_UNROLL
      for (int k = 0; k < kColumns; ++k) sh.red[wg][warp_in_group][slot_row(k)] = tile_max[k];
    }
    fused::named_barrier_sync(1 + wg, 128);
    float alpha[kColumns], use_max[kColumns];
    CUTE_UNROLL
    for (int k = 0; k < kColumns; ++k) {
      const int n = slot_row(k);
      const float m = fmaxf(fmaxf(sh.red[wg][0][n], sh.red[wg][1][n]), fmaxf(sh.red[wg][2][n], sh.red[wg][3][n]));
      const float new_max = fmaxf(m_run[k], m);
      use_max[k] = new_max == neg_inf() ? 0.0f : new_max;  // a row with no key yet: exp2(-inf) = 0
      alpha[k] = exp2_fast(m_run[k] - use_max[k]);
      m_run[k] = new_max;
      l_run[k] *= alpha[k];
    }
    CUTE_UNROLL
    for (int i = 0; i < size(tSrS); ++i) {
      const E rounded = E(exp2_fast(tSrS(i) - use_max[slot(i)]));
      l_run[slot(i)] += float(rounded);  // the sums come from the rounded P
      sP(get<1>(tScS(i)), get<0>(tScS(i))) = rounded;
    }
    CUTE_UNROLL
    for (int j = 0; j < kChunksPerOperand; ++j) {
      CUTE_UNROLL
      for (int i = 0; i < size(tOrO[j]); ++i) tOrO[j](i) *= alpha[slot(i % (N / 2))];  // i >= N / 2: M rows 64-127
    }
    fused::fence_async_shared();
    fused::named_barrier_sync(1 + wg, 128);
    // O^T += V^T P^T over the tile's 4 V chunks. Keys past the range's end (the last tile) have
    // their codes zeroed: P is 0 there, but 0 x NaN would not be.
    const int valid_keys = static_cast<int>(min(int64_t{kKeys}, w.key_end - tile_lo));
    Tensor tOrP = thr_pv.partition_fragment_B(sP);
    {
      AFragmentPV a[kF];
      CUTE_UNROLL
      for (int j = 0; j < kChunksPerOperand; ++j) {
        const int c = 8 * t + kChunksPerOperand + j, stage = c % kRing;
        await_chunk(c);
        if (j >= kF) warpgroup_wait<kF - 1>();
        widen_v_chunk(recast<uint32_t>(a[j % kF]), fused::shared_address(sh.ring[stage]), lane, warp_in_group,
                      valid_keys);
        __syncwarp();
        if (lane == 0) sh.empty[stage].arrive();
        warpgroup_fence_operand(a[j % kF]);
        warpgroup_fence_operand(tOrO[j]);
        warpgroup_arrive();
        mma_pv.accumulate_ = GMMA::ScaleOut::One;
        CUTE_UNROLL
        for (int k = 0; k < size<2>(a[j % kF]); ++k) cute::gemm(mma_pv, a[j % kF](_, _, k), tOrP(_, _, k), tOrO[j]);
        warpgroup_commit_batch();
        warpgroup_fence_operand(a[j % kF]);
      }
    }
    warpgroup_wait<0>();
    CUTE_UNROLL
    for (int j = 0; j < kChunksPerOperand; ++j) warpgroup_fence_operand(tOrO[j]);
  }

  // ---- merge the warpgroups' states; warpgroup 0 writes the results.
  CUTE_UNROLL
  for (int k = 0; k < kColumns; ++k) {
    l_run[k] += __shfl_xor_sync(0xffffffffu, l_run[k], 4);
    l_run[k] += __shfl_xor_sync(0xffffffffu, l_run[k], 8);
    l_run[k] += __shfl_xor_sync(0xffffffffu, l_run[k], 16);
  }
  if (lane < 4) {
    CUTE_UNROLL
    for (int k = 0; k < kColumns; ++k) sh.red[wg][warp_in_group][slot_row(k)] = l_run[k];
  }
  if (warp_in_group == 0 && lane < 4) {
    CUTE_UNROLL
    for (int k = 0; k < kColumns; ++k) sh.final_max[wg][slot_row(k)] = m_run[k];
  }
  fused::named_barrier_sync(kAllConsumers, kConsumerThreads);  // every warpgroup's state is final
  float* o_other = sh.hand_over;
  constexpr int kFragment = decltype(size(tOrO[0]))::value;
  constexpr int kHandOver = Tr::kHandOver;
  static_assert(kHandOver == kChunksPerOperand * kFragment * 128, "decode_wgmma: O^T hand-over");
  if (wg > 0) {
    CUTE_UNROLL
    for (int j = 0; j < kChunksPerOperand; ++j) {
      CUTE_UNROLL
      for (int i = 0; i < kFragment; ++i) o_other[(wg - 1) * kHandOver + (j * kFragment + i) * 128 + thread] = tOrO[j](i);
    }
  }
  fused::named_barrier_sync(kAllConsumers, kConsumerThreads);
  if (wg > 0) return;

  // Each row's state, by one thread a row (rolled: the same code unrolled for every row slot of
  // every thread was two thousand instructions): the warpgroups' weights in the result (with
  // the row's factor), the LSE or the split's max and sum, and the merged state for the slow path.
  const float v_scale = fp8_scale(p.v_scale, p.scales_per_head, w.kv_head);
  if (thread < N) {
    const int n = thread;
    float m = neg_inf();
    CUTE_UNROLL
    for (int g = 0; g < kConsumers; ++g) m = fmaxf(m, sh.final_max[g][n]);
    const float use = m == neg_inf() ? 0.0f : m;
    float l = 0.0f;
    CUTE_UNROLL
    for (int g = 0; g < kConsumers; ++g) {
      l += (sh.red[g][0][n] + sh.red[g][1][n] + sh.red[g][2][n] + sh.red[g][3][n]) * exp2f(sh.final_max[g][n] - use);
    }
    float factor = v_scale;  // partial states: unnormalised
    if (n < rows) {
      const RowTarget target = row_target(w, p.gqa, n);
      if (p.splits == 1) {
        float lse;
        final_scaling(m, l, p.sinks, target.head, factor, lse);
        factor *= v_scale;
        if (p.lse) p.lse[target.token * p.lse_token_stride + target.head * p.lse_head_stride] = lse;
      } else {
        const int64_t partial = (target.token * p.q_heads + target.head) * p.splits + w.split;
        p.partial_max[partial] = m == neg_inf() ? neg_inf() : m * kLn2;
        p.partial_sum[partial] = l;
      }
    }
    sh.row_max[n] = m;
    sh.row_sum[n] = l;
    CUTE_UNROLL
    for (int g = 0; g < kConsumers; ++g) sh.weight[g][n] = exp2f(sh.final_max[g][n] - use) * factor;
  }
  fused::named_barrier_sync(1, 128);
  float weight[kConsumers][kColumns];  // each warpgroup's state's weight in this thread's rows
  CUTE_UNROLL
  for (int k = 0; k < kColumns; ++k) {
    CUTE_UNROLL
    for (int g = 0; g < kConsumers; ++g) weight[g][k] = sh.weight[g][slot_row(k)];
  }
  // The rows' results, combined in place (the weights carry each row's factor), then staged in
  // the hand-over buffer as rows [n][column] and written by a rolled loop: the unrolled stores
  // of every element (their row tests, conversions and addresses) were thousands of
  // instructions run once a CTA, fetched cold (a seventh of a 32-row call waited on them).
  CUTE_UNROLL
  for (int j = 0; j < kChunksPerOperand; ++j) {
    CUTE_UNROLL
    for (int i = 0; i < kFragment; ++i) {
      const int k = slot(i % (N / 2));
      float value = tOrO[j](i) * weight[0][k];
      CUTE_UNROLL
      for (int g = 1; g < kConsumers; ++g) value += o_other[(g - 1) * kHandOver + (j * kFragment + i) * 128 + thread] * weight[g][k];
      tOrO[j](i) = value;
    }
  }
  fused::named_barrier_sync(1, 128);  // every thread has read its hand-over elements
  float* staged = sh.hand_over;       // [N][kHeadDim]: (kConsumers - 1) x kHandOver >= N x kHeadDim floats
  Tensor tOcO = thr_pv.partition_C(make_identity_tensor(Shape<Int<kChunkColumns>, Int<N>>{}));
  CUTE_UNROLL
  for (int j = 0; j < kChunksPerOperand; ++j) {
    CUTE_UNROLL
    for (int i = 0; i < kFragment; ++i) {
      staged[get<1>(tOcO(i)) * kHeadDim + j * kChunkColumns + output_column(get<0>(tOcO(i)))] = tOrO[j](i);
    }
  }
  fused::named_barrier_sync(1, 128);
  // Four columns a thread and step; a row whose values are not all finite is flagged (x * 0 is
  // NaN exactly when x is inf or NaN) for the NaN policy's slow path below.
#pragma unroll 1
  for (int e = 4 * thread; e < rows * kHeadDim; e += 4 * 128) {
    const int n = e / kHeadDim, d = e % kHeadDim;
    const float4 x = *reinterpret_cast<const float4*>(staged + e);
    if (fmaf(x.x, 0.0f, 0.0f) + fmaf(x.y, 0.0f, 0.0f) + fmaf(x.z, 0.0f, 0.0f) + fmaf(x.w, 0.0f, 0.0f) != 0.0f) {
      sh.poisoned[n] = 1;
    }
    const RowTarget target = row_target(w, p.gqa, n);
    if (p.splits == 1) {
      T* out = static_cast<T*>(p.out) + target.token * p.out_token_stride + target.head * p.out_head_stride + d;
      *reinterpret_cast<uint2*>(out) = make_uint2(Storage<T>::pack(x.x, x.y), Storage<T>::pack(x.z, x.w));
    } else {
      const int64_t partial = (target.token * p.q_heads + target.head) * p.splits + w.split;
      *reinterpret_cast<float4*>(p.partial_out + partial * kHeadDim + d) = x;
    }
  }
  fused::named_barrier_sync(1, 128);  // the stores and the flags, before the slow path reads them
  // The NaN policy's slow path: 16 threads a poisoned row, 8 rows at a time, each thread its
  // columns wq * 128 + 2 qd + 8 n, +1 as recompute_row_output lays them out.
#pragma unroll 1
  for (int n0 = 0; n0 < rows; n0 += 8) {
    const int n = n0 + thread / 16;
    if (n < rows && sh.poisoned[n]) {
      const int col0 = ((thread % 16) / 4) * 128 + 2 * (thread % 4);
      recompute_row_output<T, kHeadDim, true, 16>(p, w, n, col0, sh.row_max[n], sh.row_sum[n], v_scale);
    }
  }
}

template <typename T, int N>
void launch_typed(const DecodeWgmmaParams& p, dim3 grid, bool programmatic, cudaStream_t stream) {
  constexpr int kSmem = Traits<N>::kSharedBytes;
  allow_dynamic_smem(decode_wgmma_kernel<T, N>, kSmem, "decode_wgmma_kernel: dynamic shared memory");
  launch_kernel("launch of decode_wgmma_kernel", decode_wgmma_kernel<T, N>, grid, dim3(Traits<N>::kThreads), kSmem, stream,
                programmatic, p);
}

}  // namespace wideattn::cuda::decode::wgmma
