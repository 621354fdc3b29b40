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

// One arrival on the peer's mbarrier, with the instruction's default (CTA-scope release)
// semantics, as CUTLASS's ClusterBarrier::arrive. Callers arrive only after consuming what they
// read (the values are in registers and used), so the peer's later stores cannot overtake the
// reads. A .release.cluster arrive compiled to a memory barrier that waited for this thread's
// outstanding st.async stores: 7% of the stall samples and the round trip on the critical
// path (Nsight Compute, head_dim 512).
__device__ __forceinline__ void arrive_at_peer(uint32_t barrier) {
  asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];" ::"r"(barrier) : "memory");
}

}  // namespace wideattn::fused
