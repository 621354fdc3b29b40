// The CPU backend: plain host memory, OpenBLAS for matmul, OpenMP for the rest.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "core/backend_registry.h"
#include "core/debug_options.h"
#include "core/workspace_layout.h"
#include "cpu/aligned_buffer.h"
#include "cpu/cpu_components.h"

namespace wideattn::detail {
namespace {

class CpuBackend final : public BackendImpl {
 public:
  CpuBackend() : device_(cpu::query_device_info()) {}

  const DeviceInfo& device() const override { return device_; }

  void* allocate(std::size_t bytes) override {
    // Non-null even for 0 bytes, so that callers can tell success from failure.
    const std::size_t size = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, size == 0 ? 64 : size);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void release(void* pointer) override { std::free(pointer); }
  void copy(void* destination, const void* source, std::size_t bytes, CopyKind) override {
    std::memmove(destination, source, bytes);
  }
  void synchronize() override {}
  void fill_bytes(void* pointer, std::size_t bytes, unsigned char value) override {
    std::memset(pointer, value, bytes);
  }
  void* workspace(std::size_t bytes) override {
    void* scratch = workspace_.reserve(bytes);
    if (poison_workspace()) fill_bytes(scratch, bytes, kPoisonByte);
    return scratch;
  }

  void matmul(const MatmulArguments& args) override { cpu::matmul(args, matmul_scratch_); }
  void softmax(const SoftmaxArguments& args) override { cpu::softmax(args); }
  void scatter_scores(const ScatterScoresArguments& args) override { cpu::scatter_scores(args); }
  void scatter_values(const ScatterValuesArguments& args) override { cpu::scatter_values(args); }
  void recompute_nonfinite_products(const MatmulArguments& pv) override {
    cpu::recompute_nonfinite_products(pv);
  }
  void gather_kv_rows(const GatherKvArguments& args) override { cpu::gather_kv_rows(args); }
  void merge_states(const MergeStatesArguments& args) override { cpu::merge_states(args); }
  void write_kv(const WriteKvArguments& args) override { cpu::write_kv(args); }

  void decode(const AttentionProblem& problem, const Plan& plan) override {
    const std::size_t bytes = decode_workspace_layout(problem, std::max(1, plan.num_splits)).bytes;
    cpu::decode(problem, plan, workspace(bytes), decode_scratch_);
  }

 private:
  DeviceInfo device_;
  AlignedBuffer workspace_;
  cpu::MatmulScratch matmul_scratch_;
  AlignedBuffer decode_scratch_;
};

}  // namespace

std::unique_ptr<BackendImpl> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace wideattn::detail
