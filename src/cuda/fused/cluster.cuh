// Thread-block cluster primitives of the fused kernels (sm_90a): the CTA's rank and its
// cluster's place in the grid, cluster-wide barriers, and the two ways a CTA reaches its peer's
// shared memory: asynchronous stores that complete on the peer's mbarrier (st.async), and
// arrivals on the peer's mbarriers. Thin wrappers over the PTX instructions.
#pragma once

#include <cstdint>

#include "cuda/fused/async_copy.cuh"

namespace wideattn::fused {

__device__ __forceinline__ uint32_t cluster_rank() {
  uint32_t rank;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
  return rank;
}
__device__ __forceinline__ uint32_t cluster_index() {
  uint32_t index;
  asm volatile("mov.u32 %0, %%clusterid.x;" : "=r"(index));
  return index;
}
__device__ __forceinline__ uint32_t cluster_count() {
  uint32_t count;
  asm volatile("mov.u32 %0, %%nclusterid.x;" : "=r"(count));
  return count;
}

// Every thread of every CTA of the cluster: what each did to shared memory before is visible
// to all after (also orders mbarrier initialisation before the peer's remote use).
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}

// The shared::cluster address of `pointer`'s counterpart in the CTA of rank `rank`.
__device__ __forceinline__ uint32_t peer_address(const void* pointer, uint32_t rank) {
  uint32_t address;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(address) : "r"(shared_address(pointer)), "r"(rank));
  return address;
}

// 16 bytes into the peer's shared memory at `address`, counted (complete_tx) on the peer's
// mbarrier at `barrier` (both shared::cluster addresses from peer_address).
__device__ __forceinline__ void store_to_peer(uint32_t address, float4 value, uint32_t barrier) {
  asm volatile(
      "st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.f32 [%0], {%1, %2, %3, %4}, [%5];" ::"r"(address),
      "f"(value.x), "f"(value.y), "f"(value.z), "f"(value.w), "r"(barrier)
      : "memory");
}

// One arrival on the peer's mbarrier; this thread's earlier shared-memory reads are ordered
// before it at cluster scope (the peer may then overwrite what was read).
__device__ __forceinline__ void arrive_at_peer(uint32_t barrier) {
  asm volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];" ::"r"(barrier) : "memory");
}

// Waits for phase `parity` of a local mbarrier that the peer arrives on (acquire at cluster
// scope, pairing with arrive_at_peer).
__device__ __forceinline__ void wait_for_peer(Barrier& barrier, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n"
      "}\n" ::"r"(shared_address(&barrier.word)),
      "r"(parity)
      : "memory");
}

}  // namespace wideattn::fused
