// The CUDA BackendImpl: one device and one stream; device memory, a grow-on-demand workspace,
// and the components (cuBLASLt matmul, softmax / scatter kernels, decode).
//
// Every entry point makes the backend's device current for its duration and restores the
// caller's device after, so one thread may drive several devices through several Contexts.
#include <cuda_runtime.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "core/backend_registry.h"
#include "core/debug_options.h"
#include "core/error.h"
#include "cuda/fused/fused_launch.h"
#include "cuda/kernels/decode.h"
#include "cuda/kernels/gather_kv.h"
#include "cuda/kernels/matrix_fill.h"
#include "cuda/kernels/merge_states.h"
#include "cuda/kernels/nonfinite_products.h"
#include "cuda/kernels/scatter_scores.h"
#include "cuda/kernels/scatter_values.h"
#include "cuda/kernels/softmax.h"
#include "cuda/kernels/write_kv.h"
#include "cuda/launch/cublaslt_matmul.h"
#include "cuda/launch/nccl.h"
#include "cuda/primitives/check.h"

namespace wideattn::cuda {
namespace {

constexpr int32_t kMinComputeCapability = 80;
constexpr std::size_t kWorkspaceGranularity = std::size_t{1} << 20;

// Makes `device` current for a scope; restores the previous device after.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    WIDEATTN_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) {
      WIDEATTN_CUDA_CHECK(cudaSetDevice(device));
      switched_ = true;
    }
  }
  ~DeviceScope() {
    if (switched_) cudaSetDevice(previous_);  // best effort: destructors do not throw
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
  bool switched_ = false;
};

// cudaMalloc that leaves no error behind for later launch checks, and names what it was for.
void* device_malloc(std::size_t bytes, const char* what) {
  void* pointer = nullptr;
  const cudaError_t status = cudaMalloc(&pointer, bytes);
  if (status != cudaSuccess) {
    cudaGetLastError();
    const std::string call = std::string(what) + ": cudaMalloc of " + std::to_string(bytes) + " bytes";
    check_cuda(status, call.c_str(), __FILE__, __LINE__);
  }
  return pointer;
}

// Visible CUDA devices; 0 with `reason` set when there are none or the driver is unusable.
int device_count(std::string* reason) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    if (reason) *reason = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(status);
    return 0;
  }
  if (count == 0 && reason) *reason = "no CUDA device is visible";
  return count;
}

DeviceInfo query_device(int index) {
  cudaDeviceProp properties{};
  WIDEATTN_CUDA_CHECK(cudaGetDeviceProperties(&properties, index));
  DeviceInfo info;
  info.backend = Backend::cuda;
  info.name = properties.name;
  info.compute_units = properties.multiProcessorCount;
  info.compute_capability = properties.major * 10 + properties.minor;
  info.shared_memory_per_block = static_cast<int64_t>(properties.sharedMemPerBlockOptin);
  info.l2_bytes = properties.l2CacheSize;
  info.memory_bytes = static_cast<int64_t>(properties.totalGlobalMem);
  return info;
}

// Why device `index` (current) cannot run this build, or "" when it can.
std::string device_problem(const DeviceInfo& info, int index) {
  if (info.compute_capability < kMinComputeCapability) {
    return "device " + std::to_string(index) + " (" + info.name + ") is sm_" +
           std::to_string(info.compute_capability) + ", the CUDA backend needs sm_" +
           std::to_string(kMinComputeCapability) + " or newer";
  }
  std::string reason;
  if (!kernel_image_available(&reason)) return "device " + std::to_string(index) + ": " + reason;
  return "";
}

class CudaBackend final : public detail::BackendImpl {
 public:
  CudaBackend(int device_index, cudaStream_t stream, DeviceInfo info)
      : device_index_(device_index), info_(std::move(info)), stream_(stream) {
    DeviceScope scope(device_index_);
    matmul_ = std::make_unique<CublasLtMatmul>();
    // The decode's in-grid merge barriers: zeroed once here, left zero by every call.
    const std::size_t barrier_bytes = kMergeBarrierWords * sizeof(unsigned long long);
    merge_barriers_ = static_cast<unsigned long long*>(device_malloc(barrier_bytes, "decode merge barriers"));
    cudaError_t zeroed = cudaMemset(merge_barriers_, 0, barrier_bytes);
    if (zeroed == cudaSuccess) zeroed = cudaStreamSynchronize(nullptr);  // before any stream's call
    if (zeroed != cudaSuccess) {
      cudaFree(merge_barriers_);
      WIDEATTN_CUDA_CHECK(zeroed);
    }
  }

  ~CudaBackend() override {
    // Best effort, no throwing: queued work may still use the buffers freed below.
    int previous = -1;
    cudaGetDevice(&previous);
    cudaSetDevice(device_index_);
    cudaDeviceSynchronize();
    matmul_.reset();
    if (workspace_) cudaFree(workspace_);
    if (merge_barriers_) cudaFree(merge_barriers_);
    for (void* retired : retired_workspaces_) cudaFree(retired);
    cudaGetLastError();
    if (previous >= 0 && previous != device_index_) cudaSetDevice(previous);
  }

  const DeviceInfo& device() const override { return info_; }
  void* stream() const override { return stream_; }
  void set_stream(void* stream) override { stream_ = static_cast<cudaStream_t>(stream); }

  void* allocate(std::size_t bytes) override {
    DeviceScope scope(device_index_);
    return device_malloc(bytes, "Context::allocate");
  }

  void release(void* pointer) override {
    DeviceScope scope(device_index_);
    WIDEATTN_CUDA_CHECK(cudaFree(pointer));
  }

  void copy(void* destination, const void* source, std::size_t bytes, CopyKind kind) override {
    DeviceScope scope(device_index_);
    cudaMemcpyKind cuda_kind = cudaMemcpyDeviceToDevice;
    switch (kind) {
      case CopyKind::host_to_device:
        cuda_kind = cudaMemcpyHostToDevice;
        break;
      case CopyKind::device_to_host:
        cuda_kind = cudaMemcpyDeviceToHost;
        break;
      case CopyKind::device_to_device:
        cuda_kind = cudaMemcpyDeviceToDevice;
        break;
      default:
        detail::throw_invalid("Context::copy", "kind", static_cast<int>(kind),
                              "host_to_device, device_to_host or device_to_device");
    }
    WIDEATTN_CUDA_CHECK(cudaMemcpyAsync(destination, source, bytes, cuda_kind, stream_));
    // The caller reads host memory right after: wait for the copy (and the work before it).
    if (kind == CopyKind::device_to_host) WIDEATTN_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void synchronize() override {
    DeviceScope scope(device_index_);
    WIDEATTN_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void fill_bytes(void* pointer, std::size_t bytes, unsigned char value) override {
    if (bytes == 0) return;
    DeviceScope scope(device_index_);
    WIDEATTN_CUDA_CHECK(cudaMemsetAsync(pointer, value, bytes, stream_));
  }

  void* workspace(std::size_t bytes) override {
    // A graph captured now records this buffer's address: from here on, growing keeps the old
    // buffer alive (until the Context goes) so that a replay never writes freed memory.
    if (!workspace_captured_ && stream_is_capturing(stream_)) workspace_captured_ = true;
    void* scratch = grow_workspace(bytes);
    if (detail::poison_workspace()) fill_bytes(scratch, bytes, detail::kPoisonByte);
    return scratch;
  }

  void matmul(const MatmulArguments& args) override {
    DeviceScope scope(device_index_);
    matmul_->run(args, stream_);
  }

  void softmax(const SoftmaxArguments& args) override {
    DeviceScope scope(device_index_);
    launch_softmax(args, stream_);
  }

  void masked_softmax(const detail::MaskedSoftmaxArguments& args) override {
    DeviceScope scope(device_index_);
    SoftmaxMask mask;
    mask.mask = args.mask;
    mask.first_query = args.first_query;
    mask.first_key = args.first_key;
    mask.softcap = args.softcap;
    mask.logit_scale = args.logit_scale;
    mask.probability_scale = args.probability_scale;
    launch_softmax(args.softmax, stream_, &mask);
  }

  void scatter_scores(const ScatterScoresArguments& args) override {
    DeviceScope scope(device_index_);
    launch_scatter_scores(args, stream_);
  }

  void scatter_values(const ScatterValuesArguments& args) override {
    DeviceScope scope(device_index_);
    launch_scatter_values(args, stream_);
  }

  void recompute_nonfinite_products(const MatmulArguments& pv) override {
    DeviceScope scope(device_index_);
    launch_recompute_nonfinite_products(pv, stream_);
  }

  void gather_kv_rows(const detail::GatherKvArguments& args) override {
    DeviceScope scope(device_index_);
    launch_gather_kv_rows(args, stream_);
  }

  void merge_states(const MergeStatesArguments& args) override {
    DeviceScope scope(device_index_);
    launch_merge_states(args, stream_);
  }

  void all_gather(void* comm, const void* send, void* recv, std::size_t bytes) override {
    DeviceScope scope(device_index_);
    nccl_all_gather(comm, send, recv, bytes, stream_);
  }

  void* nccl_comm_init(int32_t world_size, const char* unique_id, int32_t rank) override {
    DeviceScope scope(device_index_);
    return nccl_comm_init_rank(world_size, unique_id, rank);
  }

  void write_kv(const WriteKvArguments& args) override {
    DeviceScope scope(device_index_);
    launch_write_kv(args, stream_);
  }

  void decode(const AttentionProblem& problem, const Plan& plan) override {
    void* scratch = workspace(plan.workspace_bytes);
    DeviceScope scope(device_index_);
    run_decode(problem, plan, info_, scratch, MergeBarriers{merge_barriers_, kMergeBarrierWords}, stream_);
  }

  void prefill_fused(const AttentionProblem& problem, const Plan& plan) override {
    void* scratch = workspace(plan.workspace_bytes);
    DeviceScope scope(device_index_);
    fused::run_fused_prefill(problem, plan, info_, scratch, stream_);
  }

 private:
  // The workspace, grown to at least `bytes` (not under graph capture).
  void* grow_workspace(std::size_t bytes) {
    if (bytes <= workspace_bytes_) return workspace_;
    DeviceScope scope(device_index_);
    if (stream_is_capturing(stream_)) {
      detail::throw_error(StatusCode::unsupported,
                          "workspace: " + std::to_string(bytes) + " bytes needed (" +
                              std::to_string(workspace_bytes_) +
                              " held) while the stream is being captured into a CUDA graph, "
                              "expected the workspace to be sized before capture: run the same "
                              "call once outside the capture");
    }
    if (workspace_) {
      if (workspace_captured_) {
        // Captured graphs may still address it: retire it rather than free it.
        retired_workspaces_.push_back(workspace_);
      } else {
        // Work queued on the stream may still read the old buffer: let it finish first.
        WIDEATTN_CUDA_CHECK(cudaStreamSynchronize(stream_));
        WIDEATTN_CUDA_CHECK(cudaFree(workspace_));
      }
      workspace_ = nullptr;
      workspace_bytes_ = 0;
    }
    // Grow by at least a quarter so that slowly growing requests do not each synchronise.
    const std::size_t target = std::max(bytes, workspace_bytes_grown_ + workspace_bytes_grown_ / 4);
    const std::size_t size = (target + kWorkspaceGranularity - 1) / kWorkspaceGranularity *
                             kWorkspaceGranularity;
    workspace_ = device_malloc(size, "workspace");
    workspace_bytes_ = size;
    workspace_bytes_grown_ = size;
    return workspace_;
  }

  int device_index_;
  DeviceInfo info_;
  cudaStream_t stream_;
  std::unique_ptr<CublasLtMatmul> matmul_;
  void* workspace_ = nullptr;
  std::size_t workspace_bytes_ = 0;
  unsigned long long* merge_barriers_ = nullptr;  // MergeBarriers (cuda/kernels/decode.h)
  bool workspace_captured_ = false;          // a capture has recorded some workspace address
  std::vector<void*> retired_workspaces_;    // outgrown after a capture; freed with the Context
  std::size_t workspace_bytes_grown_ = 0;  // size of the last allocation (growth baseline)
};

}  // namespace
}  // namespace wideattn::cuda

namespace wideattn::detail {

std::unique_ptr<BackendImpl> make_cuda_backend(int device_index, void* stream) {
  std::string reason;
  const int count = cuda::device_count(&reason);
  if (count == 0) {
    throw_error(StatusCode::backend_unavailable,
                "Context::create: backend = cuda, but no CUDA device can be used (" + reason + ")");
  }
  if (device_index < 0 || device_index >= count) {
    throw_invalid("Context::create", "device_index", device_index,
                  "< " + std::to_string(count) + ", the number of visible CUDA devices");
  }
  cuda::DeviceScope scope(device_index);
  DeviceInfo info = cuda::query_device(device_index);
  const std::string problem = cuda::device_problem(info, device_index);
  if (!problem.empty()) {
    throw_error(StatusCode::backend_unavailable, "Context::create: backend = cuda, but " + problem);
  }
  return std::make_unique<cuda::CudaBackend>(device_index, static_cast<cudaStream_t>(stream),
                                             std::move(info));
}

bool cuda_backend_available(std::string* reason) {
  std::string why;
  if (cuda::device_count(&why) == 0) {
    if (reason) *reason = why;
    return false;
  }
  try {
    cuda::DeviceScope scope(0);
    why = cuda::device_problem(cuda::query_device(0), 0);
  } catch (const Error& e) {
    why = e.what();
  }
  if (reason) *reason = why;
  return why.empty();
}

}  // namespace wideattn::detail
