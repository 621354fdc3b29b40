// decode_wgmma_gate: the gate for a wgmma decode kernel at head_dim 512 (issue 10's fp8 target,
// issue 12's speculative steps; docs/design.md, "CUDA decode": the mma.sync kernel is
// compute-bound at 512, 90-100% of its time with no DRAM traffic at all).
//
// Decode has few query rows per KV head (the GQA group times the new tokens: 8-64), too few for
// wgmma's M = 64. Swapping the operands puts the keys on M: S^T = K Q^T (M = 64 keys, N = the
// rows, K = head_dim) and O^T = V^T P^T (M = head_dim, N = the rows, K = keys), so every
// instruction does useful work and a thread's output is 4N / 2 registers (512 x N over a
// warpgroup), not the 64 x 512 tile of the prefill kernel.
//
// Shape of this gate (one CTA per (sequence, KV head), the whole KV length; 31B: 32/4 heads):
// - a producer thread brings Q once and the K/V of each 64-key tile as 8 chunks of 64 keys x 128
//   columns (16 KB bf16) by TMA into a ring of 11-12 chunks (176-192 KB): a tile need not fit whole;
// - two consumer warpgroups take alternate tiles, each with its own running max, sum and O^T
//   (merged at the end): QK over the tile's 4 K chunks, the max over the tile's keys through
//   shared memory (one warpgroup barrier), P^T stored as the P V product's B operand (a second
//   barrier), O^T += V^T P^T over the 4 V chunks.
// It checks O and the LSE against an f64 reference on sampled (sequence, head) pairs and times
// the kernel against the device-to-device copy bandwidth measured in the same run.
//
// fp8 (e4m3) caches, --fp8: the ring holds e4m3 chunks (8 KB); the consumer warpgroup that will
// use a chunk widens it into a 16-bit staging chunk (f16: e4m3 is exact there, one cvt per two
// codes) before its products, Q converted to f16 once. This is the simple way (widening through
// shared memory); its cost against the bandwidth it saves is what the gate measures.
//
// Build: the CMake target decode_wgmma_gate. Run: build/bench/decode_wgmma_gate
//   [--fp8 | --fp8-registers] [--batch B] [--kv K] [--tokens T] [--q-heads H] [--kv-heads G]
//   [--ring R] [--compute-only]
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cute/arch/mma_sm90.hpp>
#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cute/tensor.hpp>
#include <cutlass/numeric_types.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda/fused/async_copy.cuh"
#include "cuda/kernels/decode_wgmma.cuh"
#include "cuda/primitives/ldmatrix.cuh"
#include "cuda_check.h"
#include "wideattn/convert.h"

namespace gate {

using namespace wideattn::fused;
using wideattn::cuda::ldmatrix_x4;
using wideattn::cuda::ldmatrix_x4_trans;
// The library kernel's pieces (the gate's registers mode became decode_wgmma.cuh).
namespace lib = wideattn::cuda::decode::wgmma;
using lib::exp2_fast;
using lib::output_column;
using lib::physical_column;


constexpr int kHeadDim = 512;
constexpr int kKeys = 64;          // keys per tile (wgmma M)
constexpr int kChunkColumns = 128;  // columns per ring chunk
constexpr int kChunksPerOperand = kHeadDim / kChunkColumns;  // 4 for K, 4 for V
constexpr int kThreads = 384;       // two consumer warpgroups and a producer warpgroup (one thread issues)

struct Params {
  int32_t batch, tokens, q_heads, kv_heads, kv_length;
  int32_t ring;          // ring chunks in use (9 .. kRingMax)
  bool compute_only;     // no K/V bytes move: the producer only completes the barriers
  float scale_log2;
  CUtensorMap q_map, k_map, v_map;
  const __nv_bfloat16* q;  // [batch * tokens][q_heads][512] (fp8: read directly, widened to f16)
  __nv_bfloat16* out;  // [batch * tokens][q_heads][512]
  float* lse;          // [batch * tokens][q_heads]
};

// kMode: 0 a 16-bit (bf16) cache, both products from shared memory; 1 fp8, widened through a
// shared-memory staging chunk; 2 fp8, widened in registers (A operands from registers).
template <int N, int kMode>
struct Traits {
  static constexpr bool kFp8 = kMode != 0;
  using E = std::conditional_t<kFp8, cutlass::half_t, cutlass::bfloat16_t>;  // the products' type
  using Atom = cute::GMMA::Layout_K_SW128_Atom<E>;
  using Chunk = decltype(cute::tile_to_shape(Atom{}, cute::Shape<cute::_64, cute::Int<kChunkColumns>>{}));
  // V^T of a chunk as the A operand of O^T = V^T P^T (M = columns, contiguous: MN-major).
  using ChunkT = decltype(cute::composition(
      Chunk{}, cute::make_layout(cute::Shape<cute::Int<kChunkColumns>, cute::_64>{},
                                 cute::Stride<cute::_64, cute::_1>{})));
  using LayoutQ = decltype(cute::tile_to_shape(Atom{}, cute::Shape<cute::Int<N>, cute::Int<kHeadDim>>{}));
  using LayoutP = decltype(cute::tile_to_shape(Atom{}, cute::Shape<cute::Int<N>, cute::_64>{}));
  using MmaQKShared = decltype(cute::make_tiled_mma(
      cute::GMMA::ss_op_selector<E, E, float, cute::Shape<cute::_64, cute::Int<N>, cute::Int<kChunkColumns>>>()));
  using MmaPVShared = decltype(cute::make_tiled_mma(
      cute::GMMA::ss_op_selector<E, E, float, cute::Shape<cute::_64, cute::Int<N>, cute::_64>,
                                 cute::GMMA::Major::MN, cute::GMMA::Major::K>()));
  using MmaQKRegisters = decltype(cute::make_tiled_mma(
      cute::GMMA::rs_op_selector<E, E, float, cute::Shape<cute::_64, cute::Int<N>, cute::Int<kChunkColumns>>>()));
  using MmaPVRegisters = decltype(cute::make_tiled_mma(
      cute::GMMA::rs_op_selector<E, E, float, cute::Shape<cute::_64, cute::Int<N>, cute::_64>>()));
  using MmaQK = std::conditional_t<kMode == 2, MmaQKRegisters, MmaQKShared>;
  using MmaPV = std::conditional_t<kMode == 2, MmaPVRegisters, MmaPVShared>;
  static constexpr int kChunkElements = kKeys * kChunkColumns;
  // chunks the ring can hold (227 KB in all); a launch uses Params::ring of them
  static constexpr int kRingMax = !kFp8 ? (N > 8 ? 11 : 12) : kMode == 1 ? 16 : N > 8 ? 19 : 24;
  static constexpr int kRingChunkBytes = kChunkElements * (kFp8 ? 1 : 2);
  struct Shared {
    alignas(1024) uint8_t ring[kRingMax][kRingChunkBytes];
    alignas(1024) E q[N * kHeadDim];
    alignas(1024) E p[2][N * kKeys];
    // fp8: each warpgroup's widened chunk (one at a time)
    alignas(1024) E wide[kMode == 1 ? 2 : 1][kMode == 1 ? kChunkElements : 8];
    float red[2][4][N];        // [warpgroup][warp][row]: the tile's per-warp maxima
    float final_ml[2][2][N];   // [warpgroup][max, sum][row]
    Barrier q_full;
    Barrier full[kRingMax], empty[kRingMax];
  };
  static constexpr int kSharedBytes = int(sizeof(Shared)) + 1024;
  static_assert(kSharedBytes <= 232448);
};

// 16 e4m3 codes (a uint4) -> 16 f16 values (two uint4), exact.
__device__ __forceinline__ void widen16(uint4 codes, uint4& lo, uint4& hi) {
  auto cvt = lib::widen2;
  lo.x = cvt(codes.x);
  lo.y = cvt(codes.x >> 16);
  lo.z = cvt(codes.y);
  lo.w = cvt(codes.y >> 16);
  hi.x = cvt(codes.z);
  hi.y = cvt(codes.z >> 16);
  hi.z = cvt(codes.w);
  hi.w = cvt(codes.w >> 16);
}

template <int N, int kMode>
__global__ void __launch_bounds__(kThreads, 1) gate_kernel(const __grid_constant__ Params p) {
  using namespace cute;
  using T = Traits<N, kMode>;
  constexpr bool kFp8 = kMode != 0, kRegisters = kMode == 2;
  using E = typename T::E;
  const int kRing = p.ring;
  extern __shared__ uint8_t raw[];
  auto& sh = *reinterpret_cast<typename T::Shared*>((reinterpret_cast<uintptr_t>(raw) + 1023) & ~uintptr_t{1023});
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int b = blockIdx.x / p.kv_heads, h = blockIdx.x % p.kv_heads;
  const int group = p.q_heads / p.kv_heads;  // rows n = token * group + g
  const int tiles = (p.kv_length + kKeys - 1) / kKeys;
  const int prefix = p.kv_length - p.tokens;
  if (threadIdx.x == 0) {
    sh.q_full.init(1);
    for (int i = 0; i < kRing; ++i) {
      sh.full[i].init(1);
      sh.empty[i].init(4);  // one arrival per warp of the consuming warpgroup
    }
  }
  fence_barrier_init();
  __syncthreads();

  if (warp >= 8) {  // ---- producer: its registers go to the consumers (setmaxnreg)
    registers_decrease<40>();
    if (warp != 8 || lane != 0) return;
    if constexpr (!kFp8) {
      sh.q_full.arrive_expect_bytes(N * kHeadDim * 2);
      for (int c = 0; c < kHeadDim / 64; ++c) {
        tma_load(sh.q + c * N * 64, &p.q_map, &sh.q_full, c * 64, h * group, b * p.tokens, 0);
      }
    }
    for (int t = 0; t < tiles; ++t) {
      for (int j = 0; j < 2 * kChunksPerOperand; ++j) {
        const int c = 8 * t + j, stage = c % kRing, phase = (c / kRing) & 1;
        sh.empty[stage].wait(phase ^ 1);
        if (p.compute_only) {
          sh.full[stage].arrive();
          continue;
        }
        sh.full[stage].arrive_expect_bytes(T::kRingChunkBytes);
        const CUtensorMap* map = j < kChunksPerOperand ? &p.k_map : &p.v_map;
        const int column = (j % kChunksPerOperand) * kChunkColumns;
        if constexpr (kFp8) {  // one 128-byte-wide box (SW128 on 1-byte elements)
          tma_load(sh.ring[stage], map, &sh.full[stage], column, t * kKeys, h, b);
        } else {
          for (int half = 0; half < 2; ++half) {
            tma_load(sh.ring[stage] + half * kKeys * 64 * 2, map, &sh.full[stage], column + 64 * half, t * kKeys, h, b);
          }
        }
      }
    }
    return;
  }

  // ---- consumers
  registers_increase<232>();
  const int wg = warp / 4, thread = threadIdx.x % 128;
  if constexpr (kFp8) {
    // Q -> f16 into the SW128 layout, by both warpgroups (row n = token * group + g).
    Tensor sQ = make_tensor(make_smem_ptr(sh.q), typename T::LayoutQ{});
    for (int i = threadIdx.x; i < N * kHeadDim; i += 256) {
      const int n = i / kHeadDim, l = i % kHeadDim, token = n / group, g = n % group;
      const int d = kRegisters ? physical_column(l) : l;
      const float value = token < p.tokens
          ? __bfloat162float(p.q[(int64_t(b) * p.tokens + token) * p.q_heads * kHeadDim + (h * group + g) * kHeadDim + d])
          : 0.0f;
      sQ(n, l) = E(value);
    }
    fence_async_shared();
  }
  typename T::MmaQK mma_qk;
  typename T::MmaPV mma_pv;
  auto thr_qk = mma_qk.get_thread_slice(thread);
  auto thr_pv = mma_pv.get_thread_slice(thread);
  Tensor sQ = make_tensor(make_smem_ptr(sh.q), typename T::LayoutQ{});
  Tensor sP = make_tensor(make_smem_ptr(sh.p[wg]), typename T::LayoutP{});
  Tensor tSrS = partition_fragment_C(mma_qk, Shape<_64, Int<N>>{});
  using OFragment = decltype(partition_fragment_C(mma_pv, Shape<Int<kChunkColumns>, Int<N>>{}));
  OFragment tOrO[kChunksPerOperand];
  CUTE_UNROLL
  for (int j = 0; j < kChunksPerOperand; ++j) clear(tOrO[j]);
  Tensor tScS = thr_qk.partition_C(make_identity_tensor(Shape<_64, Int<N>>{}));
  constexpr int kColumns = N / 4;  // distinct rows n a thread holds: 2 per 8-column group
  // element i of an m64nN accumulator: key row 16 warp + lane / 4 + 8 ((i / 2) % 2),
  // column 8 (i / 4) + 2 (lane % 4) + i % 2; its column slot 2 (i / 4) + i % 2.
  auto slot = [](int i) { return 2 * (i / 4) + i % 2; };
  float m_run[kColumns], l_run[kColumns];
  CUTE_UNROLL
  for (int k = 0; k < kColumns; ++k) {
    m_run[k] = -INFINITY;
    l_run[k] = 0.0f;
  }
  if constexpr (!kFp8) sh.q_full.wait(0);
  else named_barrier_sync(3, 256);

  // Chunk c's data. The stage's previous chunk (c - kRing) may belong to the other warpgroup
  // and, were its load still in flight, the full barrier would show that older phase with the
  // other parity: wait first for that chunk's release (its load has landed then).
  auto await_chunk = [&](int c) {
    const int stage = c % kRing;
    if (c >= kRing) sh.empty[stage].wait(((c / kRing) & 1) ^ 1);
    sh.full[stage].wait((c / kRing) & 1);
  };

  // fp8: widen ring chunk `stage` into this warpgroup's staging chunk (same swizzled layout:
  // TMA wrote the e4m3 chunk as 64 rows of 128 bytes with the 128-byte swizzle, i.e. 16-byte
  // piece q of row r at piece q ^ (r % 8); the f16 chunk is two 64-column halves of 64 rows of
  // 128 bytes each, swizzled alike).
  auto widen_chunk = [&](int stage) {
    const uint4* src = reinterpret_cast<const uint4*>(sh.ring[stage]);
    uint4* dst = reinterpret_cast<uint4*>(sh.wide[wg]);
    for (int i = thread; i < kKeys * 8; i += 128) {
      const int r = i / 8, piece = i % 8;          // logical 16 codes: columns 16 piece .. +16
      const uint4 codes = src[r * 8 + (piece ^ (r % 8))];
      uint4 lo, hi;
      widen16(codes, lo, hi);
      // f16 columns 16 piece .. +8 and +8 .. +16: half = piece / 4, 16-byte pieces 2 (piece % 4), +1
      const int half = piece / 4, q0 = 2 * (piece % 4);
      dst[half * kKeys * 8 + r * 8 + (q0 ^ (r % 8))] = lo;
      dst[half * kKeys * 8 + r * 8 + ((q0 + 1) ^ (r % 8))] = hi;
    }
    fence_async_shared();
    named_barrier_sync(1 + wg, 128);
  };
  // Modes 0-1: chunk c as a shared-memory operand, once it has landed: the ring's chunk, or
  // (fp8) this warpgroup's staging chunk widened from it, the ring's released.
  auto shared_operand = [&](int c) -> E* {
    const int stage = c % kRing;
    await_chunk(c);
    if constexpr (kFp8) {
      widen_chunk(stage);
      __syncwarp();
      if (lane == 0) sh.empty[stage].arrive();
      return sh.wide[wg];
    }
    return reinterpret_cast<E*>(sh.ring[stage]);
  };

  const int warp_in_group = warp % 4;
  // Mode 2: A fragments of two chunks in flight (the products of one run while the next is widened).
  using AFragmentQK = decltype(make_tensor<E>(partition_shape_A(mma_qk, Shape<_64, Int<kChunkColumns>>{})));
  using AFragmentPV = decltype(make_tensor<E>(partition_shape_A(mma_pv, Shape<Int<kChunkColumns>, _64>{})));
  for (int t = wg; t < tiles; t += 2) {
    // S^T = K Q^T over the tile's 4 K chunks.
    if constexpr (kRegisters) {
      AFragmentQK a[2];
      CUTE_UNROLL
      for (int j = 0; j < kChunksPerOperand; ++j) {
        const int c = 8 * t + j, stage = c % kRing;
        await_chunk(c);
        if (j >= 2) warpgroup_wait<1>();  // chunk j - 2's products have read a[j % 2]
        lib::widen_k_chunk(recast<uint32_t>(a[j % 2]), shared_address(sh.ring[stage]), lane, warp_in_group);
        __syncwarp();
        if (lane == 0) sh.empty[stage].arrive();
        Tensor tSrQ = thr_qk.partition_fragment_B(local_tile(sQ, Shape<Int<N>, Int<kChunkColumns>>{}, make_coord(_0{}, j)));
        warpgroup_fence_operand(a[j % 2]);
        warpgroup_fence_operand(tSrS);
        warpgroup_arrive();
        mma_qk.accumulate_ = j == 0 ? GMMA::ScaleOut::Zero : GMMA::ScaleOut::One;
        CUTE_UNROLL
        for (int k = 0; k < size<2>(a[j % 2]); ++k) {
          cute::gemm(mma_qk, a[j % 2](_, _, k), tSrQ(_, _, k), tSrS);
          mma_qk.accumulate_ = GMMA::ScaleOut::One;
        }
        warpgroup_commit_batch();
        warpgroup_fence_operand(a[j % 2]);
      }
    } else {
    CUTE_UNROLL
    for (int j = 0; j < kChunksPerOperand; ++j) {
      Tensor sK = make_tensor(make_smem_ptr(shared_operand(8 * t + j)), typename T::Chunk{});
      Tensor tSrK = thr_qk.partition_fragment_A(sK);
      Tensor tSrQ = thr_qk.partition_fragment_B(local_tile(sQ, Shape<Int<N>, Int<kChunkColumns>>{}, make_coord(_0{}, j)));
      warpgroup_fence_operand(tSrS);
      warpgroup_arrive();
      mma_qk.accumulate_ = j == 0 ? GMMA::ScaleOut::Zero : GMMA::ScaleOut::One;
      CUTE_UNROLL
      for (int k = 0; k < size<2>(tSrK); ++k) {
        cute::gemm(mma_qk, tSrK(_, _, k), tSrQ(_, _, k), tSrS);
        mma_qk.accumulate_ = GMMA::ScaleOut::One;
      }
      warpgroup_commit_batch();
      if constexpr (kFp8) {
        warpgroup_wait<0>();  // the staging chunk is reused by the next chunk
        named_barrier_sync(1 + wg, 128);
      }
    }
    }
    warpgroup_wait<0>();
    warpgroup_fence_operand(tSrS);
    if constexpr (!kFp8) {
      __syncwarp();
      if (lane == 0) {
        for (int j = 0; j < kChunksPerOperand; ++j) sh.empty[(8 * t + j) % kRing].arrive();
      }
    }
    // Mask (keys past the length; the new tokens causal among themselves), tile maxima.
    float tile_max[kColumns];
    CUTE_UNROLL
    for (int k = 0; k < kColumns; ++k) tile_max[k] = -INFINITY;
    CUTE_UNROLL
    for (int i = 0; i < size(tSrS); ++i) {
      const int key = t * kKeys + get<0>(tScS(i)), n = get<1>(tScS(i));
      const int token = n / group;
      if (key >= p.kv_length || key > prefix + token || token >= p.tokens) tSrS(i) = -INFINITY;
      tile_max[slot(i)] = fmaxf(tile_max[slot(i)], tSrS(i));
    }
    CUTE_UNROLL
    for (int k = 0; k < kColumns; ++k) {
      tile_max[k] = fmaxf(tile_max[k], __shfl_xor_sync(0xffffffff, tile_max[k], 4));
      tile_max[k] = fmaxf(tile_max[k], __shfl_xor_sync(0xffffffff, tile_max[k], 8));
      tile_max[k] = fmaxf(tile_max[k], __shfl_xor_sync(0xffffffff, tile_max[k], 16));
    }
    if (lane < 4) {
      CUTE_UNROLL
      for (int k = 0; k < kColumns; ++k) sh.red[wg][warp % 4][8 * (k / 2) + 2 * lane + k % 2] = tile_max[k];
    }
    named_barrier_sync(1 + wg, 128);
    float alpha[kColumns], use_max[kColumns];
    CUTE_UNROLL
    for (int k = 0; k < kColumns; ++k) {
      const int n = 8 * (k / 2) + 2 * (lane % 4) + k % 2;
      float m = fmaxf(fmaxf(sh.red[wg][0][n], sh.red[wg][1][n]), fmaxf(sh.red[wg][2][n], sh.red[wg][3][n]));
      const float new_max = fmaxf(m_run[k], m * p.scale_log2);
      use_max[k] = new_max == -INFINITY ? 0.0f : new_max;
      alpha[k] = exp2_fast(m_run[k] - use_max[k]);
      m_run[k] = new_max;
      l_run[k] *= alpha[k];
    }
    CUTE_UNROLL
    for (int i = 0; i < size(tSrS); ++i) {
      const float prob = exp2_fast(fmaf(tSrS(i), p.scale_log2, -use_max[slot(i)]));
      const E rounded = E(prob);
      l_run[slot(i)] += float(rounded);
      sP(get<1>(tScS(i)), get<0>(tScS(i))) = rounded;
    }
    CUTE_UNROLL
    for (int j = 0; j < kChunksPerOperand; ++j) {
      CUTE_UNROLL
      for (int i = 0; i < size(tOrO[j]); ++i) tOrO[j](i) *= alpha[slot(i % (N / 2))];  // i >= N / 2: rows 64-127 of the chunk
    }
    fence_async_shared();
    named_barrier_sync(1 + wg, 128);
    // O^T += V^T P^T over the tile's 4 V chunks.
    Tensor tOrP = thr_pv.partition_fragment_B(sP);
    if constexpr (kRegisters) {
      AFragmentPV a[2];
      CUTE_UNROLL
      for (int j = 0; j < kChunksPerOperand; ++j) {
        const int c = 8 * t + kChunksPerOperand + j, stage = c % kRing;
        await_chunk(c);
        if (j >= 2) warpgroup_wait<1>();
        lib::widen_v_chunk(recast<uint32_t>(a[j % 2]), shared_address(sh.ring[stage]), lane, warp_in_group, kKeys);
        __syncwarp();
        if (lane == 0) sh.empty[stage].arrive();
        warpgroup_fence_operand(a[j % 2]);
        warpgroup_fence_operand(tOrO[j]);
        warpgroup_arrive();
        mma_pv.accumulate_ = GMMA::ScaleOut::One;
        CUTE_UNROLL
        for (int k = 0; k < size<2>(a[j % 2]); ++k) cute::gemm(mma_pv, a[j % 2](_, _, k), tOrP(_, _, k), tOrO[j]);
        warpgroup_commit_batch();
        warpgroup_fence_operand(a[j % 2]);
      }
    } else {
    CUTE_UNROLL
    for (int j = 0; j < kChunksPerOperand; ++j) {
      Tensor sVt = make_tensor(make_smem_ptr(shared_operand(8 * t + kChunksPerOperand + j)), typename T::ChunkT{});
      Tensor tOrV = thr_pv.partition_fragment_A(sVt);
      warpgroup_fence_operand(tOrO[j]);
      warpgroup_arrive();
      mma_pv.accumulate_ = GMMA::ScaleOut::One;
      CUTE_UNROLL
      for (int k = 0; k < size<2>(tOrV); ++k) cute::gemm(mma_pv, tOrV(_, _, k), tOrP(_, _, k), tOrO[j]);
      warpgroup_commit_batch();
      if constexpr (kFp8) {
        warpgroup_wait<0>();
        warpgroup_fence_operand(tOrO[j]);
        named_barrier_sync(1 + wg, 128);
      }
    }
    }
    warpgroup_wait<0>();
    CUTE_UNROLL
    for (int j = 0; j < kChunksPerOperand; ++j) warpgroup_fence_operand(tOrO[j]);
    if constexpr (!kFp8) {
      __syncwarp();
      if (lane == 0) {
        for (int j = 0; j < kChunksPerOperand; ++j) sh.empty[(8 * t + kChunksPerOperand + j) % kRing].arrive();
      }
    }
  }

  // ---- merge the two warpgroups' states, write O and the LSE.
  CUTE_UNROLL
  for (int k = 0; k < kColumns; ++k) {
    l_run[k] += __shfl_xor_sync(0xffffffff, l_run[k], 4);
    l_run[k] += __shfl_xor_sync(0xffffffff, l_run[k], 8);
    l_run[k] += __shfl_xor_sync(0xffffffff, l_run[k], 16);
  }
  if (lane < 4) {
    CUTE_UNROLL
    for (int k = 0; k < kColumns; ++k) sh.red[wg][warp % 4][8 * (k / 2) + 2 * lane + k % 2] = l_run[k];
  }
  named_barrier_sync(3, 256);  // every tile of both warpgroups consumed: the ring is free
  float* o_other = reinterpret_cast<float*>(sh.ring);  // warpgroup 1's O^T, [j][i][thread]
  constexpr int kFragment = decltype(size(tOrO[0]))::value;
  if (wg == 1) {
    CUTE_UNROLL
    for (int j = 0; j < kChunksPerOperand; ++j) {
      CUTE_UNROLL
      for (int i = 0; i < kFragment; ++i) o_other[(j * kFragment + i) * 128 + thread] = tOrO[j](i);
    }
    if (warp == 4 && lane < 4) {
      CUTE_UNROLL
      for (int k = 0; k < kColumns; ++k) sh.final_ml[1][0][8 * (k / 2) + 2 * lane + k % 2] = m_run[k];
    }
  }
  named_barrier_sync(3, 256);
  if (wg == 1) return;
  float scale0[kColumns], scale1[kColumns], inverse[kColumns], lse[kColumns];
  CUTE_UNROLL
  for (int k = 0; k < kColumns; ++k) {
    const int n = 8 * (k / 2) + 2 * (lane % 4) + k % 2;
    const float l0 = sh.red[0][0][n] + sh.red[0][1][n] + sh.red[0][2][n] + sh.red[0][3][n];
    const float l1 = sh.red[1][0][n] + sh.red[1][1][n] + sh.red[1][2][n] + sh.red[1][3][n];
    const float m0 = m_run[k], m1 = sh.final_ml[1][0][n];
    const float m = fmaxf(m0, m1), use = m == -INFINITY ? 0.0f : m;
    scale0[k] = exp2f(m0 - use);
    scale1[k] = exp2f(m1 - use);
    const float l = l0 * scale0[k] + l1 * scale1[k];
    inverse[k] = l > 0.0f ? 1.0f / l : 0.0f;
    lse[k] = l > 0.0f ? (use + log2f(l)) * 0.6931471805599453f : -INFINITY;
  }
  Tensor tOcO = thr_pv.partition_C(make_identity_tensor(Shape<Int<kChunkColumns>, Int<N>>{}));
  CUTE_UNROLL
  for (int j = 0; j < kChunksPerOperand; ++j) {
    CUTE_UNROLL
    for (int i = 0; i < kFragment; ++i) {
      const int k = slot(i % (N / 2));
      const float value =
          (tOrO[j](i) * scale0[k] + o_other[(j * kFragment + i) * 128 + thread] * scale1[k]) * inverse[k];
      const int row = get<0>(tOcO(i)), n = get<1>(tOcO(i));
      const int d = j * kChunkColumns + (kRegisters ? output_column(row) : row);
      const int token = n / group, g = n % group;
      if (token < p.tokens) {
        p.out[(int64_t(b) * p.tokens + token) * p.q_heads * kHeadDim + (h * group + g) * kHeadDim + d] =
            __float2bfloat16(value);
      }
    }
  }
  if (warp == 0 && lane < 4) {
    CUTE_UNROLL
    for (int k = 0; k < kColumns; ++k) {
      const int n = 8 * (k / 2) + 2 * lane + k % 2;
      const int token = n / group, g = n % group;
      if (token < p.tokens) p.lse[(int64_t(b) * p.tokens + token) * p.q_heads + h * group + g] = lse[k];
    }
  }
}

}  // namespace gate

namespace {

using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

CUtensorMap encode(const void* base, CUtensorMapDataType type, int element_bytes, const int64_t dims[4],
                   const int64_t strides[3], const uint32_t box[4]) {
  static EncodeTiled encode_tiled = [] {
    void* pointer = nullptr;
    cudaDriverEntryPointQueryResult found;
    CK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &pointer, 12000, cudaEnableDefault, &found));
    return reinterpret_cast<EncodeTiled>(pointer);
  }();
  CUtensorMap map;
  cuuint64_t size[4], stride[3];
  cuuint32_t box_size[4], element_stride[4] = {1, 1, 1, 1};
  for (int i = 0; i < 4; ++i) {
    size[i] = dims[i];
    box_size[i] = box[i];
  }
  for (int i = 0; i < 3; ++i) stride[i] = strides[i] * element_bytes;
  const CUresult r = encode_tiled(&map, type, 4, const_cast<void*>(base), size, stride, box_size, element_stride,
                                  CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                  CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    std::fprintf(stderr, "cuTensorMapEncodeTiled failed: %d\n", int(r));
    std::exit(2);
  }
  return map;
}


struct Problem {
  int batch = 32, kv_length = 4096, tokens = 1, q_heads = 32, kv_heads = 4;
  int mode = 0;  // 0 bf16, 1 fp8 widened through shared memory, 2 fp8 widened in registers
  int ring = 0;  // 0: the most that fits
  bool compute_only = false;
};

template <int N, int kMode>
int run(const Problem& pr) {
  using T = gate::Traits<N, kMode>;
  constexpr bool kFp8 = kMode != 0;
  const int group = pr.q_heads / pr.kv_heads;
  if (N != pr.tokens * group) {
    std::fprintf(stderr, "rows %d x %d != N %d\n", pr.tokens, group, N);
    return 2;
  }
  const int64_t q_count = int64_t(pr.batch) * pr.tokens * pr.q_heads * gate::kHeadDim;
  const int64_t kv_count = int64_t(pr.batch) * pr.kv_length * pr.kv_heads * gate::kHeadDim;
  const int element_bytes = kFp8 ? 1 : 2;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<__nv_bfloat16> q(q_count);
  std::vector<float> qf(q_count), kf(kv_count), vf(kv_count);
  for (int64_t i = 0; i < q_count; ++i) {
    q[i] = __float2bfloat16(uniform(rng) * 0.2f);  // logits of a few units: a peaked, realistic softmax
    qf[i] = __bfloat162float(q[i]);
  }
  std::vector<uint8_t> k_bytes(kv_count * element_bytes), v_bytes(kv_count * element_bytes);
  for (int which = 0; which < 2; ++which) {
    std::vector<uint8_t>& bytes = which ? v_bytes : k_bytes;
    std::vector<float>& values = which ? vf : kf;
    for (int64_t i = 0; i < kv_count; ++i) {
      if constexpr (kFp8) {
        uint8_t code;
        do code = uint8_t(rng() & 0xff) & 0xbf;  // |x| < 2 (exponent <= 7), never NaN
        while ((code & 0x7f) == 0x7f);
        bytes[i] = code;
        values[i] = wideattn::fp8_e4m3_to_float(code);
      } else {
        const __nv_bfloat16 x = __float2bfloat16(uniform(rng));
        std::memcpy(&bytes[2 * i], &x, 2);
        values[i] = __bfloat162float(x);
      }
    }
  }
  __nv_bfloat16 *dq, *dout;
  uint8_t *dk, *dv;
  float* dlse;
  const int64_t rows = int64_t(pr.batch) * pr.tokens * pr.q_heads;
  CK(cudaMalloc(&dq, q_count * 2));
  CK(cudaMalloc(&dk, kv_count * element_bytes));
  CK(cudaMalloc(&dv, kv_count * element_bytes));
  CK(cudaMalloc(&dout, q_count * 2));
  CK(cudaMalloc(&dlse, rows * 4));
  CK(cudaMemcpy(dq, q.data(), q_count * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dk, k_bytes.data(), kv_count * element_bytes, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dv, v_bytes.data(), kv_count * element_bytes, cudaMemcpyHostToDevice));
  CK(cudaMemset(dout, 0xff, q_count * 2));
  gate::Params p{};
  p.batch = pr.batch;
  p.tokens = pr.tokens;
  p.q_heads = pr.q_heads;
  p.kv_heads = pr.kv_heads;
  p.kv_length = pr.kv_length;
  p.ring = pr.ring > 0 ? std::min(pr.ring, T::kRingMax) : T::kRingMax;
  p.compute_only = pr.compute_only;
  if (p.ring < 9) {
    std::fprintf(stderr, "--ring must be at least 9\n");
    return 2;
  }
  const float scale = 1.0f / std::sqrt(float(gate::kHeadDim)) * 4.0f;
  p.scale_log2 = scale * 1.4426950408889634f;
  p.q = dq;
  p.out = dout;
  p.lse = dlse;
  {
    const int64_t dims[4] = {gate::kHeadDim, pr.q_heads, int64_t(pr.batch) * pr.tokens, 1};
    const int64_t strides[3] = {gate::kHeadDim, int64_t(pr.q_heads) * gate::kHeadDim, q_count};
    const uint32_t box[4] = {64, uint32_t(group), uint32_t(pr.tokens), 1};
    p.q_map = encode(dq, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, dims, strides, box);
  }
  {
    const int64_t dims[4] = {gate::kHeadDim, pr.kv_length, pr.kv_heads, pr.batch};
    const int64_t strides[3] = {int64_t(pr.kv_heads) * gate::kHeadDim, gate::kHeadDim,
                                int64_t(pr.kv_length) * pr.kv_heads * gate::kHeadDim};
    const uint32_t box[4] = {uint32_t(kFp8 ? 128 : 64), uint32_t(gate::kKeys), 1, 1};
    const CUtensorMapDataType type = kFp8 ? CU_TENSOR_MAP_DATA_TYPE_UINT8 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
    p.k_map = encode(dk, type, element_bytes, dims, strides, box);
    p.v_map = encode(dv, type, element_bytes, dims, strides, box);
  }
  auto kernel = gate::gate_kernel<N, kMode>;
  CK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, T::kSharedBytes));
  const int grid = pr.batch * pr.kv_heads;
  auto launch = [&] { kernel<<<grid, gate::kThreads, T::kSharedBytes>>>(p); };
  launch();
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());

  // Check sampled (sequence, KV head) pairs against f64.
  std::vector<__nv_bfloat16> out(q_count);
  std::vector<float> lse(rows);
  CK(cudaMemcpy(out.data(), dout, q_count * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(lse.data(), dlse, rows * 4, cudaMemcpyDeviceToHost));
  double worst = 0.0, worst_lse = 0.0;
  int checked = 0;
  const int prefix = pr.kv_length - pr.tokens;
  for (int unit = 0; unit < grid; unit += std::max(1, grid / 12)) {
    const int b = unit / pr.kv_heads, h = unit % pr.kv_heads;
    for (int token = 0; token < pr.tokens; ++token) {
      for (int g = 0; g < group; ++g) {
        const int64_t row = (int64_t(b) * pr.tokens + token) * pr.q_heads + h * group + g;
        const float* qr = &qf[row * gate::kHeadDim];
        const int visible = prefix + token + 1;
        std::vector<double> s(visible);
        double m = -INFINITY;
        for (int key = 0; key < visible; ++key) {
          const int64_t kr = ((int64_t(b) * pr.kv_length + key) * pr.kv_heads + h) * gate::kHeadDim;
          double dot = 0.0;
          for (int d = 0; d < gate::kHeadDim; ++d) dot += double(qr[d]) * kf[kr + d];
          s[key] = dot * scale;
          m = std::max(m, s[key]);
        }
        double l = 0.0;
        std::vector<double> o(gate::kHeadDim, 0.0);
        for (int key = 0; key < visible; ++key) {
          const double w = std::exp(s[key] - m);
          l += w;
          const int64_t vr = ((int64_t(b) * pr.kv_length + key) * pr.kv_heads + h) * gate::kHeadDim;
          for (int d = 0; d < gate::kHeadDim; ++d) o[d] += w * vf[vr + d];
        }
        double norm = 0.0, error = 0.0;
        for (int d = 0; d < gate::kHeadDim; ++d) {
          const double expected = o[d] / l, got = __bfloat162float(out[row * gate::kHeadDim + d]);
          norm = std::max(norm, std::fabs(expected));
          error = std::max(error, std::fabs(got - expected));
        }
        worst = std::max(worst, error / norm);
        worst_lse = std::max(worst_lse, std::fabs(double(lse[row]) - (m + std::log(l))));
        ++checked;
      }
    }
  }
  const bool ok = pr.compute_only || (worst < 2e-2 && worst_lse < 2e-3);
  std::printf("check: %d rows, worst relative error %.3e, worst LSE error %.3e: %s\n", checked, worst, worst_lse,
              pr.compute_only ? "not checked (compute only)" : ok ? "ok" : "FAILED");

  // Timing: the kernel, and the copy ceiling in the same run (event times of `repeats` calls, sorted).
  cudaEvent_t start, stop;
  CK(cudaEventCreate(&start));
  CK(cudaEventCreate(&stop));
  auto sorted_times = [&](auto&& work, int repeats) {
    std::vector<float> times;
    for (int i = 0; i < repeats; ++i) {
      CK(cudaEventRecord(start));
      work();
      CK(cudaEventRecord(stop));
      CK(cudaEventSynchronize(stop));
      float ms;
      CK(cudaEventElapsedTime(&ms, start, stop));
      times.push_back(ms);
    }
    std::sort(times.begin(), times.end());
    return times;
  };
  const std::vector<float> times = sorted_times(launch, 30);
  const double kernel_us = times[times.size() / 2] * 1e3;
  const size_t copy_bytes = size_t(1) << 30;
  void *a, *c;
  CK(cudaMalloc(&a, copy_bytes));
  CK(cudaMalloc(&c, copy_bytes));
  const std::vector<float> copies =
      sorted_times([&] { CK(cudaMemcpyAsync(c, a, copy_bytes, cudaMemcpyDeviceToDevice)); }, 10);
  const double copy_gbs = 2.0 * copy_bytes / (copies[0] * 1e-3) / 1e9;  // read + write, best
  const double bytes = 2.0 * kv_count * element_bytes + 2.0 * q_count * 2;
  const double gbs = bytes / (kernel_us * 1e-6) / 1e9;
  std::printf("%s%s, ring %d: b%d x %d tokens x KV %d, %d/%d heads (N = %d): %.1f us median, %.0f GB/s = %.1f%% of copy (%.0f GB/s)\n",
              kMode == 0 ? "bf16" : kMode == 1 ? "fp8 (widened in shared memory)" : "fp8 (widened in registers)",
              pr.compute_only ? " COMPUTE ONLY (no K/V bytes moved; % of copy as if they had)" : "", p.ring, pr.batch, pr.tokens, pr.kv_length, pr.q_heads, pr.kv_heads, N, kernel_us, gbs,
              100.0 * gbs / copy_gbs, copy_gbs);
  CK(cudaEventDestroy(start));
  CK(cudaEventDestroy(stop));
  CK(cudaFree(a));
  CK(cudaFree(c));
  CK(cudaFree(dq));
  CK(cudaFree(dk));
  CK(cudaFree(dv));
  CK(cudaFree(dout));
  CK(cudaFree(dlse));
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Problem pr;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::atoi(argv[++i]) : 0; };
    if (a == "--fp8") pr.mode = 1;
    else if (a == "--fp8-registers") pr.mode = 2;
    else if (a == "--batch") pr.batch = next();
    else if (a == "--ring") pr.ring = next();
    else if (a == "--compute-only") pr.compute_only = true;
    else if (a == "--kv") pr.kv_length = next();
    else if (a == "--tokens") pr.tokens = next();
    else if (a == "--q-heads") pr.q_heads = next();
    else if (a == "--kv-heads") pr.kv_heads = next();
    else {
      std::fprintf(stderr, "unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  if (pr.kv_length % gate::kKeys != 0) {
    std::fprintf(stderr, "--kv must be a multiple of 64 in this gate\n");
    return 2;
  }
  const int n = pr.tokens * pr.q_heads / pr.kv_heads;
  if (n == 8) return pr.mode == 0 ? run<8, 0>(pr) : pr.mode == 1 ? run<8, 1>(pr) : run<8, 2>(pr);
  if (n == 32) return pr.mode == 0 ? run<32, 0>(pr) : pr.mode == 1 ? run<32, 1>(pr) : run<32, 2>(pr);
  std::fprintf(stderr, "rows per KV head (tokens x group) must be 8 or 32 in this gate, got %d\n", n);
  return 2;
}
