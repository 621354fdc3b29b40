// The tensor-core decode kernel (f16/bf16, sm_80+): one CTA per (sequence, KV head, 1-2 row
// blocks of 16 query rows, KV split). Layout and tile sizes: decode_config.h.
//
// Per K/V tile of 32 keys, each warp group (one row block) computes S = Q K^T (mma m16n8k16)
// split one of two ways (decode_config.h, qk_split_by_head_dim):
//   by key (head_dim <= 256)
//     S                warp w: keys 8w..8w+7 over the whole head_dim, Q from shared memory
//     mask, soft-cap   only in tiles that touch a masked key (CtaWork::unmasked_end)
//     row max          quad shuffles, then the 4 warps' maxima through shared memory
//     P = exp2(S - m)  rounded to the MMA type, exchanged through shared memory
//   by head_dim (512)
//     S_w              warp w: all 32 keys over its quarter of the head_dim, that quarter of Q
//                      in registers since tile 0
//     S = sum of S_w   through shared memory; every warp adds the four in the same order, so
//                      every warp holds the same S, maxima and P, bit for bit
//     mask, soft-cap, row max (quad shuffles), P: in registers; P's accumulator layout is the
//                      A operand of P V as it stands
// then O = O * alpha + P V, warp w: output columns [w D/4, (w+1) D/4), f32 accumulators,
// while the next stages-1 tiles are in flight (cp.async). Three CTA barriers a tile by key,
// two by head_dim. splits == 1 writes the normalised output and LSE; otherwise the
// unnormalised partial state for decode_merge.
//
// An fp8 (e4m3) cache streams its bytes through the same stages (half the size, so one stage
// deeper at head_dim 256 and 512); at the top of each tile the CTA widens the tile into one f16
// K/V buffer in the layout above, and the rest runs unchanged with f16 MMAs (e4m3 is exact in
// f16, P gains precision; bf16 queries are converted to f16 once, scaled by a power of two that
// keeps the CTA's largest finite entry in f16's range). The K scale and that power of two join
// the logit scale, the V scale the output.
#pragma once

#include <cuda_fp8.h>

#include <type_traits>

#include "core/error.h"
#include "cuda/kernels/decode_common.cuh"
#include "cuda/kernels/decode_grid_merge.cuh"
#include "cuda/kernels/decode_recompute.cuh"
#include "cuda/kernels/decode_trace.h"
#include "cuda/primitives/check.h"
#include "cuda/primitives/dynamic_smem.h"
#include "cuda/primitives/launch.h"

namespace wideattn::cuda::decode {

// One CTA's split (or its whole range when splits == 1); returns early when the CTA has no rows.
// KeySets: warp groups per row block (key_sets_for; 2 only when split by head_dim, with one row
// block a CTA): set k scores keys [16k, 16k + 16) of every tile with its own running state, and
// the sets' states merge after the last tile.
template <typename T, int D, bool Fp8, int KeySets>
__device__ __forceinline__ void decode_mma_cta(const DecodeParams& p) {
  using Tc = std::conditional_t<Fp8, __half, T>;  // the MMAs' operand type
  using S = Storage<Tc>;
  using KvT = std::conditional_t<Fp8, uint8_t, T>;  // a cache element as stored
  constexpr MmaShape kShape = mma_shape(D, sizeof(KvT));
  constexpr int kChunks = D / 8;  // 16-byte chunks per 16-bit Q/K/V row
  constexpr int kRowBytes = D * 2;
  constexpr int kKvRowBytes = D * static_cast<int>(sizeof(KvT));  // a cache row in a stage
  constexpr int kKvChunks = kKvRowBytes / 16;
  constexpr int kKvPerChunk = 16 / static_cast<int>(sizeof(KvT));
  constexpr int kColsPerWarp = D / kWarpsPerGroup;
  constexpr int kNTiles = kColsPerWarp / 8;  // m16n8 output tiles per warp
  constexpr bool kByHeadDim = qk_split_by_head_dim(D);
  constexpr int kPRowBytes = kKeysPerTile * 2;
  constexpr int kQuarterChunks = kChunks / kWarpsPerGroup;  // a warp's 16-byte chunks of a row
  constexpr int kQSteps = kQuarterChunks / 2;               // its k16 steps of Q K^T
  // n8 score tiles a warp holds: its key set's share of the tile's 4 (by head_dim), or its own
  // (by key); and the k16 steps of P V they make.
  constexpr int kKeyTiles = kByHeadDim ? kKeysPerTile / 8 / KeySets : 1;
  constexpr int kPSteps = kByHeadDim ? kKeyTiles / 2 : kKeysPerTile / 16;
  static_assert(KeySets == 1 || (kByHeadDim && KeySets == 2 && kMaxGroups == 2), "decode: key sets");
  static_assert(kChunks % 8 == 0 && kNTiles % 2 == 0 && (!kByHeadDim || kQuarterChunks % 4 == 0),
                "decode_mma_kernel: head_dim");

  extern __shared__ __align__(128) unsigned char smem[];
  // Launched as a programmatic dependent on sm_90: wait for the kernel before it (which may
  // write Q, K, V or read the outputs). With the merge kernel to follow, let it be scheduled now
  // (it waits for us). Otherwise the next kernel is scheduled when this grid ends: letting the
  // next call's split pass in early made back-to-back d=128 calls 8% slower on an H100.
  wait_for_previous_grid();
  if (p.splits > 1 && !p.merge_barriers) allow_next_grid();
  WIDEATTN_TRACE(p, 4 * int64_t{blockIdx.x});
#ifdef WIDEATTN_DECODE_TRACE
  if (p.trace && threadIdx.x == 0) p.trace[kTraceSmBase + blockIdx.x] = trace_sm();
#endif
  CtaWork w;
  if (!cta_work(p, p.groups * kRowsPerBlock, w)) return;

  const int tid = threadIdx.x;
  const int warp_groups = p.groups * KeySets;  // KeySets 2: one row block
  const int threads = warp_groups * kThreadsPerGroup;
  const int warp = tid / 32, lane = tid % 32;
  const int warp_group = warp / kWarpsPerGroup, wq = warp % kWarpsPerGroup;
  const int row_block = KeySets == 1 ? warp_group : 0;
  const int key_set = KeySets == 1 ? 0 : warp_group;
  const int g = lane / 4, qd = lane % 4;  // MMA fragment row and column pair

  // Shared memory: Q [groups][16][D] (by head_dim: each row block's region holds its partial
  // scores, one 4 KB part a key set, once its warps hold Q) | K/V stages [stages][K 32 x D | V 32 x D] | (fp8: the
  // widened tile [K 32 x D | V 32 x D]) | by key: exchange [groups][row max 4 x 16 f32 |
  // P 16 x 32], by head_dim: scratch words | (paged: block-table entries [stages][32]).
  // Rows of Q and of 16-bit K and V are 16-byte chunks XOR-swizzled by row % 8 (fp8 stages are
  // not: only the widening reads them, row by row); P rows (4 chunks) by (row / 2) % 4.
  unsigned char* s_q = smem;
  unsigned char* s_kv = s_q + p.groups * kShape.q_bytes;
  unsigned char* s_wide = s_kv + p.stages * kShape.stage_bytes;
  unsigned char* s_x = s_wide + kShape.convert_bytes + row_block * kShape.exchange_bytes;
  float* s_max = reinterpret_cast<float*>(s_x);  // [4 warps][16 rows]
  const uint32_t p_base = smem_address(s_x + kWarpsPerGroup * kRowsPerBlock * sizeof(float));
  const uint32_t q_base = smem_address(s_q + row_block * kShape.q_bytes);
  // Partial scores [warp][score tile][lane] of float4, one accumulator fragment a lane: the
  // stores and loads of a warp touch 512 consecutive bytes (conflict-free).
  float4* s_scores = reinterpret_cast<float4*>(s_q + row_block * kShape.q_bytes) +
                     key_set * (kWarpsPerGroup * kKeyTiles * 32);
  const uint32_t kv_base = smem_address(s_kv);

  // ---- Q: [groups * 16 rows, D] -> shared (cp.async, zeros for padding rows); it joins the
  // first K/V tile's commit group ----
  {
    const T* q = static_cast<const T*>(p.q);
    for (int idx = tid; idx < p.groups * kRowsPerBlock * kChunks; idx += threads) {
      const int r = idx / kChunks, c = idx % kChunks;
      const int32_t row = w.row0 + r;
      const T* src = q;
      if (row < w.rows) {
        const RowTarget t = row_target(w, p.gqa, row);
        src = q + t.token * p.q_token_stride + t.head * p.q_head_stride + c * 8;
      }
      cp_async_16(smem_address(s_q + r * kRowBytes + ((c ^ (r & 7)) * 16)), src, row < w.rows);
    }
  }

  // ---- K/V tiles: each thread copies one 16-byte column chunk of every row_step-th key ----
  const int copy_chunk = tid % kKvChunks;
  const int copy_row0 = tid / kKvChunks;
  const int copy_row_step = threads / kKvChunks;
  const int num_tiles =
      static_cast<int>((w.key_end - w.key_begin + kKeysPerTile - 1) / kKeysPerTile);
  // Paged caches: the block-table entries of tile t (entry i: the i-th page the tile touches)
  // sit in ring slot t % stages of shared memory. One thread per page loads each entry, with
  // cp.async in the commit group of the tile loaded stages - 1 tiles before t, so it is
  // complete (that group was waited for) when tile t's copies are issued: one 4-byte load per
  // page per CTA, off the copies' critical path, and no register held across the loop. A slot
  // is rewritten (for tile t + 2 stages - 2, at iteration t) only after the barrier that ends
  // its last reads (tile t + stages - 2's copies, iteration t - 1).
  const bool paged = p.pages.block_table != nullptr;
  int32_t* s_pages = reinterpret_cast<int32_t*>(s_wide + kShape.convert_bytes + p.groups * kShape.exchange_bytes +
                                                kShape.scratch_bytes);  // [stages][32]
  // Entries of `tile` into its slot: cp.async (uncommitted), or `now` with plain loads.
  auto fetch_pages = [&](int tile, bool now) {
    if (tile >= num_tiles || tid >= kKeysPerTile) return;
    const int64_t key0 = w.key_begin + int64_t{tile} * kKeysPerTile;
    const int64_t last_page = (min(w.key_end, key0 + kKeysPerTile) - 1) >> p.pages.page_shift;
    const int64_t entry = (key0 >> p.pages.page_shift) + tid;
    if (entry > last_page) return;
    const int32_t* src = p.pages.block_table + w.seq * p.pages.table_stride + entry;
    int32_t* dst = s_pages + (tile % p.stages) * kKeysPerTile + tid;
    if (now) {
      *dst = __ldg(src);
    } else {
      asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem_address(dst)), "l"(src));
    }
  };
  // Where row r's copy_chunk lands in a stage: swizzled 16-bit rows, plain fp8 rows.
  auto stage_offset = [&](int r) -> uint32_t {
    return Fp8 ? r * kKvRowBytes + copy_chunk * 16 : r * kRowBytes + ((copy_chunk ^ (r & 7)) * 16);
  };
  auto load_tile = [&](int tile, int stage) {
    const int64_t key0 = w.key_begin + int64_t{tile} * kKeysPerTile;
    const uint32_t k_dst = kv_base + stage * kShape.stage_bytes;
    const uint32_t v_dst = k_dst + kKeysPerTile * kKvRowBytes;
    if (paged) {
      // Base pointers from the parameters here, not held across the loop (registers are
      // scarce at head_dim 64 and 256).
      const KvT* k_pool = static_cast<const KvT*>(p.k.base) + w.kv_head * p.k.head_stride;
      const KvT* v_pool = static_cast<const KvT*>(p.v.base) + w.kv_head * p.v.head_stride;
      const int32_t* pages = s_pages + (tile % p.stages) * kKeysPerTile;
      if constexpr (D <= 64) {  // one or two rows a thread, and no registers to spare
        const int64_t first_page = key0 >> p.pages.page_shift;
        for (int r = copy_row0; r < kKeysPerTile; r += copy_row_step) {
          const int64_t key = key0 + r;
          const bool in_range = key < w.key_end;
          const int64_t page = in_range ? pages[(key >> p.pages.page_shift) - first_page] : 0;
          const bool valid = in_range && page >= 0 && page < p.num_pages;  // else zeros
          const int64_t slot = key & p.pages.page_mask;
          const uint32_t offset = stage_offset(r);
          cp_async_16(k_dst + offset, valid ? k_pool + page * p.k.page_stride + slot * p.k.token_stride + copy_chunk * kKvPerChunk : k_pool, valid);
          cp_async_16(v_dst + offset, valid ? v_pool + page * p.v.page_stride + slot * p.v.token_stride + copy_chunk * kKvPerChunk : v_pool, valid);
        }
        return;
      }
      if constexpr (KeySets == 2) {
        // A whole tile that starts on a multiple of 32 keys, over pages of 16 rows or more, lies
        // on at most two pages: rows [0, first_rows) on the first, the rest on the next. Each
        // thread's rows are compile-time steps apart, so a row picks one of two base pointers.
        constexpr int kStep = kThreadsPerGroup * kMaxGroups / kKvChunks;
        const int page_rows = 1 << p.pages.page_shift;
        if (key0 + kKeysPerTile <= w.key_end && (key0 & (kKeysPerTile - 1)) == 0 && page_rows >= 16) {
          const int in_page = static_cast<int>(key0 & p.pages.page_mask);
          const int first_rows = min(kKeysPerTile, page_rows - in_page);
          const int64_t page_a = pages[0], page_b = first_rows < kKeysPerTile ? pages[1] : page_a;
          const bool valid_a = page_a >= 0 && page_a < p.num_pages;
          const bool valid_b = page_b >= 0 && page_b < p.num_pages;
          // Row r at base + r * token_stride, on either page (b's base is first_rows rows back).
          const int64_t chunk_offset = copy_chunk * kKvPerChunk;
          const KvT* k_a = k_pool + page_a * p.k.page_stride + in_page * p.k.token_stride + chunk_offset;
          const KvT* v_a = v_pool + page_a * p.v.page_stride + in_page * p.v.token_stride + chunk_offset;
          const KvT* k_b = k_pool + page_b * p.k.page_stride - first_rows * p.k.token_stride + chunk_offset;
          const KvT* v_b = v_pool + page_b * p.v.page_stride - first_rows * p.v.token_stride + chunk_offset;
#pragma unroll
          for (int i = 0; i < kKeysPerTile / kStep; ++i) {
            const int r = copy_row0 + i * kStep;
            const bool on_b = r >= first_rows;
            const bool valid = on_b ? valid_b : valid_a;
            const uint32_t offset = stage_offset(r);
            cp_async_16(k_dst + offset, valid ? (on_b ? k_b : k_a) + r * p.k.token_stride : k_pool, valid);
            cp_async_16(v_dst + offset, valid ? (on_b ? v_b : v_a) + r * p.v.token_stride : v_pool, valid);
          }
          return;
        }
      }
      // A row on the page of the thread's previous row is one step of pointers further; only
      // a row that starts a new page reads the block table, and the loop counts in 32 bits
      // (pages hold at most 4096 rows). A shared load and two 64-bit products per row made
      // paged decode 0.64x contiguous at 16- and 64-token pages.
      const int page_shift = p.pages.page_shift;
      const int page_rows = 1 << page_shift;
      const int rows_valid = static_cast<int>(min(int64_t{kKeysPerTile}, w.key_end - key0));  // may be <= 0
      const int64_t k_step = copy_row_step * p.k.token_stride;
      const int64_t v_step = copy_row_step * p.v.token_stride;
      int slot = static_cast<int>((key0 + copy_row0) & p.pages.page_mask);
      int entry = static_cast<int>(((key0 + copy_row0) >> page_shift) - (key0 >> page_shift));
      const KvT* k_src = k_pool;
      const KvT* v_src = v_pool;
      bool page_valid = false;
      for (int r = copy_row0; r < kKeysPerTile; r += copy_row_step) {
        if (r == copy_row0 || slot >= page_rows) {  // the first row, or a row on a new page
          entry += slot >> page_shift;
          slot &= page_rows - 1;
          // Entries past the tile's last page were not fetched: such rows are not copied.
          const int64_t page = r < rows_valid ? pages[entry] : 0;
          // A page index outside the pools reads zeros instead of faulting (the host cannot
          // check a device block table).
          page_valid = page >= 0 && page < p.num_pages;
          k_src = k_pool + page * p.k.page_stride + slot * p.k.token_stride + copy_chunk * kKvPerChunk;
          v_src = v_pool + page * p.v.page_stride + slot * p.v.token_stride + copy_chunk * kKvPerChunk;
        }
        const bool valid = r < rows_valid && page_valid;
        const uint32_t offset = stage_offset(r);
        cp_async_16(k_dst + offset, valid ? k_src : k_pool, valid);
        cp_async_16(v_dst + offset, valid ? v_src : v_pool, valid);
        slot += copy_row_step;
        k_src += k_step;
        v_src += v_step;
      }
      return;
    }
    // Contiguous: the sequence's rows of this KV head, one stride apart.
    const KvT* k_head = static_cast<const KvT*>(p.k.base) + w.seq * p.k.page_stride + w.kv_head * p.k.head_stride;
    const KvT* v_head = static_cast<const KvT*>(p.v.base) + w.seq * p.v.page_stride + w.kv_head * p.v.head_stride;
    const KvT* k_src = k_head + (key0 + copy_row0) * p.k.token_stride + copy_chunk * kKvPerChunk;
    const KvT* v_src = v_head + (key0 + copy_row0) * p.v.token_stride + copy_chunk * kKvPerChunk;
    if constexpr (KeySets == 2) {
      // 256 threads: a thread's rows are compile-time steps apart, and a whole tile (all but a
      // range's last) needs no per-row test: ~8 instructions a row instead of ~23 (the copies
      // are a large share of what a warp issues a tile).
      constexpr int kStep = kThreadsPerGroup * kMaxGroups / kKvChunks;
      static_assert(kKeysPerTile % kStep == 0, "decode: copy rows");
      if (key0 + kKeysPerTile <= w.key_end) {
#pragma unroll
        for (int i = 0; i < kKeysPerTile / kStep; ++i) {
          const uint32_t offset = stage_offset(copy_row0 + i * kStep);
          cp_async_16(k_dst + offset, k_src + i * (kStep * p.k.token_stride), true);
          cp_async_16(v_dst + offset, v_src + i * (kStep * p.v.token_stride), true);
        }
        return;
      }
    }
    const int64_t k_step = copy_row_step * p.k.token_stride;
    const int64_t v_step = copy_row_step * p.v.token_stride;
    for (int r = copy_row0; r < kKeysPerTile; r += copy_row_step) {
      const bool valid = key0 + r < w.key_end;
      const uint32_t offset = stage_offset(r);
      cp_async_16(k_dst + offset, valid ? k_src : k_head, valid);
      cp_async_16(v_dst + offset, valid ? v_src : v_head, valid);
      k_src += k_step;
      v_src += v_step;
    }
  };

  // fp8: the tile in `stage` widened into the 16-bit buffer (same rows, swizzled as above); each
  // thread takes 16-byte chunks (16 codes) in row order, so the stage reads are conflict-free.
  // With one warp per scheduler at head_dim 512 nothing hides a load's latency but the
  // thread's own independent work: each pass loads kBatch chunks before it widens any (the
  // compiler cannot move a load above the previous chunk's stores, which may alias).
  auto widen_tile = [&](int stage) {
    const unsigned char* src = s_kv + stage * kShape.stage_bytes;
    constexpr int kTileChunks = 2 * kKeysPerTile * kKvChunks;  // K then V
    constexpr int kBatch = D >= 256 ? 4 : 1;  // head_dim 64/128 have no registers to spare
    static_assert(kTileChunks % (kBatch * kThreadsPerGroup * kMaxGroups) == 0, "decode: widening passes");
    for (int base = tid; base < kTileChunks; base += kBatch * threads) {
      uint4 codes[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) codes[u] = *reinterpret_cast<const uint4*>(src + (base + u * threads) * 16);
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int idx = base + u * threads;
        const int r = (idx / kKvChunks) % kKeysPerTile;
        const int c = idx % kKvChunks;
        uint4 a, b;
        widen_fp8x4(codes[u].x, a.x, a.y);
        widen_fp8x4(codes[u].y, a.z, a.w);
        widen_fp8x4(codes[u].z, b.x, b.y);
        widen_fp8x4(codes[u].w, b.z, b.w);
        unsigned char* row = s_wide + (idx / (kKeysPerTile * kKvChunks)) * (kKeysPerTile * kRowBytes) + r * kRowBytes;
        *reinterpret_cast<uint4*>(row + ((2 * c) ^ (r & 7)) * 16) = a;
        *reinterpret_cast<uint4*>(row + ((2 * c + 1) ^ (r & 7)) * 16) = b;
      }
    }
  };

  // fp8, split by head_dim: the warps of quarter wq (one a warp group) read only that quarter of the
  // widened K and V, so they widen only it, and meet on hardware barrier 1 + wq instead of a
  // CTA barrier. Rows are K's 32 then V's 32 in the stage and in the widened buffer alike.
  auto widen_quarter = [&](int stage) {
    constexpr int kQuarterKvChunks = kKvChunks / kWarpsPerGroup;
    constexpr int kQuarterTileChunks = 2 * kKeysPerTile * kQuarterKvChunks;
    constexpr int kBatch = 4;
    static_assert(!kByHeadDim || kQuarterTileChunks % (kBatch * 32 * kMaxGroups) == 0, "decode: quarter widening passes");
    const unsigned char* src = s_kv + stage * kShape.stage_bytes;
    const int team = 32 * warp_groups;
    for (int base = warp_group * 32 + lane; base < kQuarterTileChunks; base += kBatch * team) {
      uint4 codes[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int j = base + u * team;
        codes[u] = *reinterpret_cast<const uint4*>(src + (j / kQuarterKvChunks) * kKvRowBytes +
                                                   (wq * kQuarterKvChunks + j % kQuarterKvChunks) * 16);
      }
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int j = base + u * team;
        const int r = j / kQuarterKvChunks;  // K rows 0-31, then V rows
        const int c = wq * kQuarterKvChunks + j % kQuarterKvChunks;
        uint4 a, b;
        widen_fp8x4(codes[u].x, a.x, a.y);
        widen_fp8x4(codes[u].y, a.z, a.w);
        widen_fp8x4(codes[u].z, b.x, b.y);
        widen_fp8x4(codes[u].w, b.z, b.w);
        unsigned char* row = s_wide + r * kRowBytes;
        *reinterpret_cast<uint4*>(row + ((2 * c) ^ (r & 7)) * 16) = a;
        *reinterpret_cast<uint4*>(row + ((2 * c + 1) ^ (r & 7)) * 16) = b;
      }
    }
    named_barrier_sync(1 + wq, team);
  };

  // fp8 with bf16 queries: Q (landed with tile 0) rewritten in place as f16 x 2^-q_shift, where
  // 2^q_shift brings the CTA's largest finite |q| under 2^15 (0 for any ordinary query); inf
  // and NaN stay what they are. Returns q_shift. `q_max` is a word of shared memory holding 0.
  auto convert_q_to_f16 = [&](unsigned int* q_max) -> int {
    const int q_chunks = p.groups * kRowsPerBlock * kChunks;
    float local = 0.0f;
    for (int idx = tid; idx < q_chunks; idx += threads) {
      const uint4 v = *reinterpret_cast<const uint4*>(s_q + idx * 16);
      const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&words[j]));
        if (isfinite(f.x)) local = fmaxf(local, fabsf(f.x));
        if (isfinite(f.y)) local = fmaxf(local, fabsf(f.y));
      }
    }
    atomicMax(q_max, __float_as_uint(local));  // non-negative floats order as their bits
    __syncthreads();
    int exponent = 0;
    frexpf(__uint_as_float(*q_max), &exponent);  // max < 2^exponent
    const int shift = exponent > 15 ? exponent - 15 : 0;
    const float down = ldexpf(1.0f, -shift);
    for (int idx = tid; idx < q_chunks; idx += threads) {
      uint4 v = *reinterpret_cast<const uint4*>(s_q + idx * 16);
      uint32_t* words = reinterpret_cast<uint32_t*>(&v);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&words[j]));
        const __half2 h = __floats2half2_rn(f.x * down, f.y * down);
        words[j] = *reinterpret_cast<const uint32_t*>(&h);
      }
      *reinterpret_cast<uint4*>(s_q + idx * 16) = v;
    }
    return shift;  // the barrier after the first widening publishes the converted Q
  };

  if (paged) {  // the prologue's tiles' entries, before their copies (Q stays in flight)
    for (int s = 0; s < p.stages - 1; ++s) fetch_pages(s, true);
    __syncthreads();
  }
  for (int s = 0; s < p.stages - 1; ++s) {
    if (s < num_tiles) load_tile(s, s);
    if (paged) {
      __syncthreads();  // slot (s - 1) % stages is read by all before it is rewritten below
      fetch_pages(s + p.stages - 1, false);
    }
    cp_async_commit();
  }

  // ldmatrix lane roles. A operands (Q, P): matrices (rows 0-7 | 8-15) x (k 0-7 | 8-15).
  const int a_row = (lane & 7) + ((lane >> 3) & 1) * 8;
  const int a_chunk = lane >> 4;
  // K (B of S = Q K^T, non-transposed): 8 keys of a score tile (by key: this warp's), and
  // consecutive k chunks (by head_dim: of this warp's quarter).
  const int k_row = (kByHeadDim ? 0 : wq * 8) + (lane & 7);
  const int k_chunk =
      (kByHeadDim ? wq * kQuarterChunks : 0) + (lane >> 3);
  // V (B of O = P V, transposed): keys (0-7 | 8-15) x two adjacent 8-column tiles.
  const int v_row = a_row;
  const int v_chunk = wq * (kColsPerWarp / 8) + (lane >> 4);

  const float inv_softcap = p.softcap > 0.0f ? 1.0f / p.softcap : 0.0f;
  // fp8: a stored K stands for K * k_scale, so the logits scale by it too.
  float qk_scale = Fp8 ? p.scale * fp8_scale(p.k_scale, p.scales_per_head, w.kv_head) : p.scale;
  // fp8 with bf16 queries: the largest |q| meets in the scratch word (by key: group 0's exchange
  // words, free until tile 0's first row maxima, written after the barrier that follows the
  // widening).
  unsigned int* q_max = reinterpret_cast<unsigned int*>(s_wide + kShape.convert_bytes);
  if constexpr (Fp8 && std::is_same_v<T, __nv_bfloat16>) {
    if (tid == 0) *q_max = 0u;  // before the loop's first barrier
  }
  float acc[kNTiles][4];
#pragma unroll
  for (int n = 0; n < kNTiles; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
  float m_run[2] = {neg_inf(), neg_inf()};  // rows g and g + 8, log2 units
  float l_run[2] = {0.0f, 0.0f};
  uint32_t q_frag[kByHeadDim ? kQSteps : 1][4];  // by head_dim: this warp's quarter of Q

  int stage = 0;
  for (int tile = 0; tile < num_tiles; ++tile) {
    cp_async_wait_dynamic(p.stages - 2);
    __syncthreads();  // tile visible to all; everyone is done with the stage refilled below
    if (tile == 0) WIDEATTN_TRACE(p, 4 * int64_t{blockIdx.x} + 1);
    {
      const int next = tile + p.stages - 1;
      if (next < num_tiles) load_tile(next, stage == 0 ? p.stages - 1 : stage - 1);
      if (paged) fetch_pages(next + p.stages - 1, false);
      cp_async_commit();
    }
    uint32_t k_tile = kv_base + stage * kShape.stage_bytes;
    if constexpr (Fp8 && std::is_same_v<T, __nv_bfloat16>) {
      if (tile == 0) qk_scale = ldexpf(qk_scale, convert_q_to_f16(q_max));
    }
    if constexpr (Fp8) {
      if constexpr (kByHeadDim) {
        // The converted Q (bf16 queries) must reach every warp before tile 0's Q fragments.
        if (std::is_same_v<T, __nv_bfloat16> && tile == 0) __syncthreads();
        widen_quarter(stage);  // ends on its quarter's barrier
      } else {
        widen_tile(stage);
        __syncthreads();  // widened tile visible (the barrier above ordered the last reads of it)
      }
      k_tile = smem_address(s_wide);
    }
    const uint32_t v_tile = k_tile + kKeysPerTile * kRowBytes;

    // Scores of this warp's score tiles (score tile n: keys 8n .. 8n + 7 of the tile, or the
    // warp's own 8 by key): s[n][0..1] row g, keys 8n + 2qd, +1; s[n][2..3] row g + 8.
    float s[kKeyTiles][4];
#pragma unroll
    for (int n = 0; n < kKeyTiles; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
    if constexpr (kByHeadDim) {
      if (tile == 0) {
        // Q has landed (and, with an fp8 cache and bf16 queries, been converted; the barrier
        // before the widening published it). The group's Q region then holds partial scores:
        // every warp must have its quarter before any warp overwrites Q.
#pragma unroll
        for (int ks = 0; ks < kQSteps; ++ks) {
          const int chunk = wq * kQuarterChunks + 2 * ks + a_chunk;
          ldmatrix_x4(q_frag[ks], q_base + a_row * kRowBytes + ((chunk ^ (a_row & 7)) * 16));
        }
        __syncthreads();
      }
#pragma unroll
      for (int kc = 0; kc < kQuarterChunks; kc += 4) {
#pragma unroll
        for (int n = 0; n < kKeyTiles; ++n) {
          uint32_t kb[4];
          const int key = (key_set * kKeyTiles + n) * 8 + k_row;
          ldmatrix_x4(kb, k_tile + key * kRowBytes + (((kc + k_chunk) ^ (key & 7)) * 16));
          S::mma(s[n], q_frag[kc / 2], kb[0], kb[1]);
          S::mma(s[n], q_frag[kc / 2 + 1], kb[2], kb[3]);
        }
      }
      // S = S_0 + S_1 + S_2 + S_3 in that order in every warp (the same bits everywhere). The
      // barrier at the top of the next tile ends these reads before the region is rewritten.
#pragma unroll
      for (int n = 0; n < kKeyTiles; ++n) {
        s_scores[(wq * kKeyTiles + n) * 32 + lane] = make_float4(s[n][0], s[n][1], s[n][2], s[n][3]);
      }
      __syncthreads();
#pragma unroll
      for (int n = 0; n < kKeyTiles; ++n) {
        float4 total = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
        for (int x = 0; x < kWarpsPerGroup; ++x) {
          // The warp's own part from its registers (the same bits it stored).
          const float4 part = x == wq ? make_float4(s[n][0], s[n][1], s[n][2], s[n][3])
                                      : s_scores[(x * kKeyTiles + n) * 32 + lane];
          total = x == 0 ? part : make_float4(total.x + part.x, total.y + part.y,
                                              total.z + part.z, total.w + part.w);
        }
        s[n][0] = total.x;
        s[n][1] = total.y;
        s[n][2] = total.z;
        s[n][3] = total.w;
      }
    } else {
      // Keys 8 wq .. 8 wq + 7 over the whole head_dim. Two accumulators (even and odd k steps)
      // halve the dependent MMA chain.
      float s_odd[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
      for (int kc = 0; kc < kChunks; kc += 4) {
        uint32_t kb[4], qa[4];
        ldmatrix_x4(kb, k_tile + k_row * kRowBytes + (((kc + k_chunk) ^ (k_row & 7)) * 16));
        ldmatrix_x4(qa, q_base + a_row * kRowBytes + (((kc + a_chunk) ^ (a_row & 7)) * 16));
        S::mma(s[0], qa, kb[0], kb[1]);
        ldmatrix_x4(qa, q_base + a_row * kRowBytes + (((kc + 2 + a_chunk) ^ (a_row & 7)) * 16));
        S::mma(s_odd, qa, kb[2], kb[3]);
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) s[0][j] += s_odd[j];
    }

    // Logits (log2 units), the soft-cap's branch taken once for all of the warp's scores.
    if (p.softcap > 0.0f) {
#pragma unroll
      for (int n = 0; n < kKeyTiles; ++n) {
#pragma unroll
        for (int j = 0; j < 4; ++j) s[n][j] = logit_log2(s[n][j], qk_scale, p.softcap, inv_softcap);
      }
    } else {
#pragma unroll
      for (int n = 0; n < kKeyTiles; ++n) {
#pragma unroll
        for (int j = 0; j < 4; ++j) s[n][j] = logit_log2(s[n][j], qk_scale, 0.0f, 0.0f);
      }
    }
    const int64_t key0 = w.key_begin + int64_t{tile} * kKeysPerTile;
    if (key0 + kKeysPerTile > w.unmasked_end) {
      // The mask predicate once per score in a loop (one copy of it in the code), as bits.
      const int64_t warp_key0 = key0 + (kByHeadDim ? key_set * kKeyTiles * 8 : wq * 8) + qd * 2;
      uint32_t hidden = 0;
#pragma unroll 1
      for (int i = 0; i < kKeyTiles * 4; ++i) {
        const int32_t row = w.row0 + row_block * kRowsPerBlock + g + ((i >> 1) & 1) * 8;
        const int64_t key = warp_key0 + (i >> 2) * 8 + (i & 1);
        if (!visible(w, p.gqa, row, key)) hidden |= 1u << i;
      }
#pragma unroll
      for (int n = 0; n < kKeyTiles; ++n) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          if ((hidden >> (n * 4 + j)) & 1u) s[n][j] = neg_inf();
        }
      }
    }

    // Row maxima of the tile: the thread's keys of each row, then over the quad (by key: then
    // over the group's 4 warps through shared memory).
    float mx[2] = {neg_inf(), neg_inf()};
#pragma unroll
    for (int n = 0; n < kKeyTiles; ++n) {
      mx[0] = fmaxf(mx[0], fmaxf(s[n][0], s[n][1]));
      mx[1] = fmaxf(mx[1], fmaxf(s[n][2], s[n][3]));
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
    }
    if constexpr (!kByHeadDim) {
      if (qd == 0) {
        s_max[wq * kRowsPerBlock + g] = mx[0];
        s_max[wq * kRowsPerBlock + g + 8] = mx[1];
      }
      __syncthreads();
#pragma unroll
      for (int h = 0; h < 2; ++h) {
#pragma unroll
        for (int x = 0; x < kWarpsPerGroup; ++x) mx[h] = fmaxf(mx[h], s_max[x * kRowsPerBlock + g + h * 8]);
      }
    }
    float alpha[2], base[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float m = fmaxf(m_run[h], mx[h]);
      base[h] = m == neg_inf() ? 0.0f : m;  // a row with no key yet: exp2(-inf - 0) = 0
      alpha[h] = exp2f(m_run[h] - base[h]);
      m_run[h] = m;
    }

    // P in the MMA type as the A operands of P V's 16-key steps (the key set's): score tiles
    // 2ks and 2ks + 1 of step ks as they stand (by head_dim), or through shared memory (by key).
    uint32_t pa[kPSteps][4];
    if constexpr (kByHeadDim) {
#pragma unroll
      for (int ks = 0; ks < kPSteps; ++ks) {
        pa[ks][0] = S::pack(exp2f(s[2 * ks][0] - base[0]), exp2f(s[2 * ks][1] - base[0]));
        pa[ks][1] = S::pack(exp2f(s[2 * ks][2] - base[1]), exp2f(s[2 * ks][3] - base[1]));
        pa[ks][2] = S::pack(exp2f(s[2 * ks + 1][0] - base[0]), exp2f(s[2 * ks + 1][1] - base[0]));
        pa[ks][3] = S::pack(exp2f(s[2 * ks + 1][2] - base[1]), exp2f(s[2 * ks + 1][3] - base[1]));
      }
    } else {
      // Row g (and g + 8), keys 8 wq + 2 qd, +1 -> chunk wq of the row.
      const uint32_t chunk = (wq ^ ((g >> 1) & 3)) * 16 + qd * 4;
      const uint32_t p0 = S::pack(exp2f(s[0][0] - base[0]), exp2f(s[0][1] - base[0]));
      const uint32_t p1 = S::pack(exp2f(s[0][2] - base[1]), exp2f(s[0][3] - base[1]));
      asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(p_base + g * kPRowBytes + chunk), "r"(p0));
      asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(p_base + (g + 8) * kPRowBytes + chunk),
                   "r"(p1));
      __syncthreads();
#pragma unroll
      for (int ks = 0; ks < kPSteps; ++ks) {
        const int pc = 2 * ks + a_chunk;
        ldmatrix_x4(pa[ks], p_base + a_row * kPRowBytes + ((pc ^ ((a_row >> 1) & 3)) * 16));
      }
    }

#pragma unroll
    for (int n = 0; n < kNTiles; ++n) {
      acc[n][0] *= alpha[0];
      acc[n][1] *= alpha[0];
      acc[n][2] *= alpha[1];
      acc[n][3] *= alpha[1];
    }
    // O += P V over the tile's two 16-key steps; the row sums come from the rounded P.
    float sum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int ks = 0; ks < kPSteps; ++ks) {
      const float2 f0 = S::unpack(pa[ks][0]), f1 = S::unpack(pa[ks][1]);
      const float2 f2 = S::unpack(pa[ks][2]), f3 = S::unpack(pa[ks][3]);
      sum[0] += (f0.x + f0.y) + (f2.x + f2.y);
      sum[1] += (f1.x + f1.y) + (f3.x + f3.y);
      const int vr = (key_set * kPSteps + ks) * 16 + v_row;
      const uint32_t v_row_address = v_tile + vr * kRowBytes;
#pragma unroll
      for (int np = 0; np < kNTiles / 2; ++np) {
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, v_row_address + (((v_chunk + 2 * np) ^ (vr & 7)) * 16));
        S::mma(acc[2 * np], pa[ks], vb[0], vb[1]);
        S::mma(acc[2 * np + 1], pa[ks], vb[2], vb[3]);
      }
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      sum[h] += __shfl_xor_sync(0xffffffffu, sum[h], 1);
      sum[h] += __shfl_xor_sync(0xffffffffu, sum[h], 2);
      l_run[h] = l_run[h] * alpha[h] + sum[h];
    }
    stage = stage + 1 == p.stages ? 0 : stage + 1;
  }

  cp_async_wait<0>();  // nothing in flight at exit (Q alone when the range is empty)
  WIDEATTN_TRACE(p, 4 * int64_t{blockIdx.x} + 2);

  if constexpr (KeySets == 2) {
    // Set 1 hands its running state to set 0 through the idle K/V stages (the same thread of
    // the twin warp holds the same rows and columns: [warp][float4][lane], conflict-free);
    // set 0 merges it into its own, in that order, and writes the results.
    __syncthreads();  // every copy has landed; every warp is past its last tile
    float4* hand = reinterpret_cast<float4*>(s_kv) + wq * (kNTiles + 1) * 32 + lane;
    if (key_set == 1) {
#pragma unroll
      for (int n = 0; n < kNTiles; ++n) hand[n * 32] = make_float4(acc[n][0], acc[n][1], acc[n][2], acc[n][3]);
      hand[kNTiles * 32] = make_float4(m_run[0], m_run[1], l_run[0], l_run[1]);
    }
    __syncthreads();
    if (key_set == 1) return;
    const float4 state = hand[kNTiles * 32];
    const float other_m[2] = {state.x, state.y}, other_l[2] = {state.z, state.w};
    float mine[2], other[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float m = fmaxf(m_run[h], other_m[h]);
      const float base = m == neg_inf() ? 0.0f : m;  // neither set saw a key
      mine[h] = exp2f(m_run[h] - base);
      other[h] = exp2f(other_m[h] - base);
      l_run[h] = l_run[h] * mine[h] + other_l[h] * other[h];
      m_run[h] = m;
    }
#pragma unroll
    for (int n = 0; n < kNTiles; ++n) {
      const float4 o = hand[n * 32];
      acc[n][0] = acc[n][0] * mine[0] + o.x * other[0];
      acc[n][1] = acc[n][1] * mine[0] + o.y * other[0];
      acc[n][2] = acc[n][2] * mine[1] + o.z * other[1];
      acc[n][3] = acc[n][3] * mine[1] + o.w * other[1];
    }
  }

  // ---- epilogue: rows g and g + 8 of this warp group, columns of this warp ----
  const int col0 = wq * kColsPerWarp + qd * 2;
  // The NaN policy: a hidden key's probability is exactly 0, but P V multiplies by it inside
  // mma, and 0 x inf or NaN is NaN. Such a product can only leave inf or NaN in acc (NaN
  // survives every sum), so a thread whose elements of a row are all finite is done; else,
  // after the stores below (when acc is dead: the slow path costs the streaming loop no
  // registers), it computes them again key by key and stores them over (recompute_row_output),
  // against the row's final maximum and sum (they come from the scores, which V does not
  // touch). Only caches holding inf or NaN get there.
  bool poisoned[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float poison = 0.0f;  // x * 0 is NaN exactly when x is inf or NaN
#pragma unroll
    for (int n = 0; n < kNTiles; ++n) poison = fmaf(acc[n][2 * h], 0.0f, fmaf(acc[n][2 * h + 1], 0.0f, poison));
    poisoned[h] = poison != 0.0f;
  }
  // fp8: a stored V stands for V * v_scale; the partial states scale alike (the merge is linear).
  const float v_scale = Fp8 ? fp8_scale(p.v_scale, p.scales_per_head, w.kv_head) : 1.0f;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int32_t row = w.row0 + row_block * kRowsPerBlock + g + h * 8;
    if (row < w.rows) {
      const RowTarget t = row_target(w, p.gqa, row);
      if (p.splits == 1) {
        float factor, lse;
        final_scaling(m_run[h], l_run[h], p.sinks, t.head, factor, lse);
        factor *= v_scale;
        T* o = static_cast<T*>(p.out) + t.token * p.out_token_stride + t.head * p.out_head_stride +
               col0;
#pragma unroll
        for (int n = 0; n < kNTiles; ++n) {
          Storage<T>::store2(o + n * 8, acc[n][2 * h] * factor, acc[n][2 * h + 1] * factor);
        }
        if (p.lse && wq == 0 && qd == 0) {
          p.lse[t.token * p.lse_token_stride + t.head * p.lse_head_stride] = lse;
        }
      } else {
        const int64_t partial = (t.token * p.q_heads + t.head) * p.splits + w.split;
        float* o = p.partial_out + partial * D + col0;
#pragma unroll
        for (int n = 0; n < kNTiles; ++n) {
          *reinterpret_cast<float2*>(o + n * 8) = make_float2(acc[n][2 * h] * v_scale, acc[n][2 * h + 1] * v_scale);
        }
        if (wq == 0 && qd == 0) {
          p.partial_max[partial] = m_run[h] == neg_inf() ? neg_inf() : m_run[h] * kLn2;
          p.partial_sum[partial] = l_run[h];
        }
      }
    }
  }
  // One copy of the slow path for both rows: a rolled loop whose row state comes by selects (an
  // index into m_run or l_run would move those arrays to the stack).
#pragma unroll 1
  for (int h = 0; h < 2; ++h) {
    const bool first = h == 0;
    if (!(first ? poisoned[0] : poisoned[1])) continue;
    recompute_row_output<T, D, Fp8, kNTiles>(p, w, w.row0 + row_block * kRowsPerBlock + g + h * 8, col0,
                                             first ? m_run[0] : m_run[1], first ? l_run[0] : l_run[1], v_scale);
  }
  WIDEATTN_TRACE(p, 4 * int64_t{blockIdx.x} + 3);
}

// The in-grid merge is built where the kernel's register cap leaves room for its eight splits
// in flight a thread (at head_dim 64, 64 registers, it spilled; that size runs many CTAs an SM).
constexpr bool grid_merge_built(int d) { return d >= 128; }

template <typename T, int D, bool Fp8, int KeySets>
__global__ void __launch_bounds__(kThreadsPerGroup* kMaxGroups,
                                  wideattn::detail::cuda_decode_items_per_sm(D))
    decode_mma_kernel(const __grid_constant__ DecodeParams p) {
  decode_mma_cta<T, D, Fp8, KeySets>(p);
  if constexpr (grid_merge_built(D)) {
    if (p.merge_barriers) {
      extern __shared__ __align__(128) unsigned char smem[];
      merge_in_grid<T>(p, smem);
    }
  }
}

template <int D>
bool launch_decode_mma(const DecodeParams& p, DType dtype, dim3 grid, std::size_t smem,
                       bool programmatic, cudaStream_t stream) {
  const dim3 block(p.groups * p.key_sets * kThreadsPerGroup);
  bool merged = false;
  auto launch = [&](auto kernel) {
    allow_dynamic_smem(kernel, smem, "decode_mma_kernel: dynamic shared memory");
    // The in-grid merge needs every CTA resident at once (decode_grid_merge.cuh): a grid the
    // idle GPU holds, and a cooperative launch that the driver accepts.
    if (grid_merge_built(D) && p.merge_barriers && static_cast<int64_t>(grid.x) <= resident_ctas(kernel, static_cast<int>(block.x), smem,
                                                                              "decode_mma_kernel: occupancy")) {
      merged = try_launch_resident(kernel, grid, block, smem, stream, programmatic, p);
      if (merged) return;
    }
    if (p.merge_barriers) {
      DecodeParams plain = p;
      plain.merge_barriers = nullptr;
      launch_kernel("launch of decode_mma_kernel", kernel, grid, block, smem, stream, programmatic,
                    plain);
      return;
    }
    launch_kernel("launch of decode_mma_kernel", kernel, grid, block, smem, stream, programmatic,
                  p);
  };
  // Key sets are built where the split by head_dim is (key_sets_for).
  auto launch_typed = [&](auto type, auto fp8) {
    using T = decltype(type);
    constexpr bool kFp8 = decltype(fp8)::value;
    if constexpr (qk_split_by_head_dim(D)) {
      if (p.key_sets == 2) return launch(decode_mma_kernel<T, D, kFp8, 2>);
    }
    launch(decode_mma_kernel<T, D, kFp8, 1>);
  };
  switch (dtype) {
    case DType::f16:
      if (p.kv_fp8) launch_typed(__half{}, std::true_type{});
      else launch_typed(__half{}, std::false_type{});
      break;
    case DType::bf16:
      if (p.kv_fp8) launch_typed(__nv_bfloat16{}, std::true_type{});
      else launch_typed(__nv_bfloat16{}, std::false_type{});
      break;
    default:
      wideattn::detail::throw_invalid("run_decode", "dtype", to_string(dtype),
                                      "f16 or bf16 for the tensor-core decode kernel");
  }
  return merged;
}

}  // namespace wideattn::cuda::decode
