// Built instead of src/cuda/ when the CUDA backend is off.
#include "core/backend_registry.h"
#include "core/error.h"
#include "wideattn/context_parallel.h"

namespace wideattn::detail {

std::unique_ptr<BackendImpl> make_cuda_backend(int, void*) {
  throw_error(StatusCode::backend_unavailable,
              "Context::create: backend = cuda, but this build of wideattn has no CUDA backend "
              "(configure with nvcc on PATH or -DWIDEATTN_CUDA=ON)");
}

bool cuda_backend_available(std::string* reason) {
  if (reason) *reason = "this build has no CUDA backend";
  return false;
}

}  // namespace wideattn::detail

namespace wideattn {

Status nccl_unique_id(NcclUniqueId*) {
  return Status(StatusCode::backend_unavailable, "nccl_unique_id: this build of wideattn has no CUDA backend");
}

Status nccl_comm_destroy(void*) {
  return Status(StatusCode::backend_unavailable, "nccl_comm_destroy: this build of wideattn has no CUDA backend");
}

}  // namespace wideattn
