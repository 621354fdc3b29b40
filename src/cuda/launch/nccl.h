// NCCL, loaded at run time (include/wideattn/context_parallel.h): the few entry points context
// parallelism uses, declared here with NCCL's stable C ABI, so that building wideattn needs no
// NCCL and a process uses the library it already has (PyTorch's, an engine's).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace wideattn::cuda {

inline constexpr std::size_t kNcclUniqueIdBytes = 128;

// Each throws detail::Error: backend_unavailable when no NCCL can be loaded, internal with
// NCCL's message when a call fails.
void nccl_unique_id(char* id);  // kNcclUniqueIdBytes
void* nccl_comm_init_rank(int world_size, const char* id, int rank);  // on the current device
void nccl_comm_destroy(void* comm);
// recv [world_size][bytes] <- every rank's send [bytes], on `stream`.
void nccl_all_gather(void* comm, const void* send, void* recv, std::size_t bytes, cudaStream_t stream);

}  // namespace wideattn::cuda
