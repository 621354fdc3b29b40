#include "cuda/launch/nccl.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#include "core/error.h"
#include "wideattn/context_parallel.h"

namespace wideattn::cuda {
namespace {

// NCCL's C ABI (nccl.h), the part used here.
using NcclResult = int;  // ncclResult_t: 0 = ncclSuccess
constexpr int kNcclUint8 = 1;  // ncclDataType_t ncclUint8
struct NcclUniqueId {
  char internal[kNcclUniqueIdBytes];
};

struct Nccl {
  NcclResult (*get_unique_id)(NcclUniqueId*) = nullptr;
  NcclResult (*comm_init_rank)(void**, int, NcclUniqueId, int) = nullptr;
  NcclResult (*comm_destroy)(void*) = nullptr;
  NcclResult (*all_gather)(const void*, void*, std::size_t, int, void*, cudaStream_t) = nullptr;
  const char* (*error_string)(NcclResult) = nullptr;
  std::string failure;  // why it could not be loaded
};

// The process's NCCL if it has one loaded, else $WIDEATTN_NCCL_LIBRARY or libnccl.so.2.
const Nccl& nccl() {
  static const Nccl loaded = [] {
    Nccl n;
    void* handle = RTLD_DEFAULT;
    if (!dlsym(handle, "ncclAllGather")) {
      const char* path = std::getenv("WIDEATTN_NCCL_LIBRARY");
      const std::string name = path && *path ? path : "libnccl.so.2";
      handle = dlopen(name.c_str(), RTLD_NOW | RTLD_GLOBAL);
      if (!handle) {
        const char* why = dlerror();
        n.failure = "could not load NCCL (" + name + "): " + (why ? why : "unknown error") +
                    "; set WIDEATTN_NCCL_LIBRARY to libnccl.so.2's path";
        return n;
      }
    }
    auto find = [&](auto& function, const char* symbol) {
      function = reinterpret_cast<std::remove_reference_t<decltype(function)>>(dlsym(handle, symbol));
      if (!function && n.failure.empty()) n.failure = std::string("NCCL has no ") + symbol;
    };
    find(n.get_unique_id, "ncclGetUniqueId");
    find(n.comm_init_rank, "ncclCommInitRank");
    find(n.comm_destroy, "ncclCommDestroy");
    find(n.all_gather, "ncclAllGather");
    find(n.error_string, "ncclGetErrorString");
    return n;
  }();
  if (!loaded.failure.empty()) detail::throw_error(StatusCode::backend_unavailable, loaded.failure);
  return loaded;
}

void check(NcclResult result, const char* what) {
  if (result != 0) {
    detail::throw_error(StatusCode::internal, std::string(what) + " failed: " + nccl().error_string(result) +
                                                  " (ncclResult_t " + std::to_string(result) + ")");
  }
}

}  // namespace

void nccl_unique_id(char* id) {
  NcclUniqueId unique;
  check(nccl().get_unique_id(&unique), "ncclGetUniqueId");
  std::memcpy(id, unique.internal, kNcclUniqueIdBytes);
}

void* nccl_comm_init_rank(int world_size, const char* id, int rank) {
  NcclUniqueId unique;
  std::memcpy(unique.internal, id, kNcclUniqueIdBytes);
  void* comm = nullptr;
  check(nccl().comm_init_rank(&comm, world_size, unique, rank), "ncclCommInitRank");
  return comm;
}

void nccl_comm_destroy(void* comm) { check(nccl().comm_destroy(comm), "ncclCommDestroy"); }

void nccl_all_gather(void* comm, const void* send, void* recv, std::size_t bytes, cudaStream_t stream) {
  check(nccl().all_gather(send, recv, bytes, kNcclUint8, comm, stream), "ncclAllGather");
}

}  // namespace wideattn::cuda

namespace wideattn {

Status nccl_unique_id(NcclUniqueId* id) {
  return detail::guarded([&] {
    if (!id) detail::throw_invalid("nccl_unique_id", "id", "null", "a pointer to an NcclUniqueId");
    cuda::nccl_unique_id(id->bytes);
  });
}

Status nccl_comm_destroy(void* comm) {
  return detail::guarded([&] {
    if (comm) cuda::nccl_comm_destroy(comm);
  });
}

}  // namespace wideattn
