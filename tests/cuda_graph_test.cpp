// CUDA graph capture: calls captured on a stream and replayed give the oracle's results (decode,
// split-KV decode, the cuBLASLt prefill pipeline), and what a graph cannot record (growing the
// workspace, uploading a large batch's metadata from host memory) is refused with `unsupported`
// and a message, leaving the capture and the stream usable.
#include "test_support.h"

#ifdef WIDEATTN_WITH_CUDA
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "attention_case.h"
#include "capturable_stream_test.h"

namespace wideattn::test {
namespace {

// Elements spanned by a [tokens, heads, width] tensor with non-negative strides.
int64_t extent(int64_t tokens, int64_t heads, int64_t token_stride, int64_t head_stride,
               int64_t width) {
  return tokens == 0 ? 0 : (tokens - 1) * token_stride + (heads - 1) * head_stride + width;
}

Status cuda_status(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return Status::success();
  return Status(StatusCode::internal, std::string(what) + ": " + cudaGetErrorString(error));
}

// Captures one call of `problem` into a graph and replays it. Before the capture, the same
// call writes into scratch outputs, so the workspace is sized (a capture cannot allocate) and
// whatever the checked outputs hold afterwards was written by the replay.
Status run_in_graph(Context& context, const AttentionProblem& problem, Kernel kernel, Plan* plan) {
  const auto stream = static_cast<cudaStream_t>(context.stream());
  const int64_t tokens = problem.total_tokens();
  const std::size_t out_bytes =
      extent(tokens, problem.q_heads, problem.out_token_stride, problem.out_head_stride,
             problem.head_dim) * dtype_size(problem.dtype) + 1;
  const std::size_t lse_bytes =
      extent(tokens, problem.q_heads, problem.lse_token_stride, problem.lse_head_stride, 1) *
          sizeof(float) + 1;
  DeviceMemory out(context, out_bytes), lse(context, lse_bytes);
  AttentionProblem warm = problem;
  warm.out = out.get();
  warm.lse = problem.lse ? static_cast<float*>(lse.get()) : nullptr;
  Status status = attention(context, warm, kernel, plan);
  if (!status.ok()) return status;

  cudaGraph_t graph = nullptr;
  status = cuda_status(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
                       "cudaStreamBeginCapture");
  if (!status.ok()) return status;
  const Status captured = attention(context, problem, kernel, plan);
  status = cuda_status(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
  if (!captured.ok() || !status.ok()) {
    if (graph) cudaGraphDestroy(graph);
    return captured.ok() ? status : captured;
  }
  cudaGraphExec_t exec = nullptr;
  status = cuda_status(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
  if (status.ok()) status = cuda_status(cudaGraphLaunch(exec, stream), "cudaGraphLaunch");
  if (status.ok()) status = context.synchronize();
  if (exec) cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return status;
}

using CudaGraphTest = CapturableStreamTest;

AttentionCase gemma_31b_decode() {
  AttentionCase c;
  c.head_dim = 512;
  c.dtype = DType::bf16;
  c.q_heads = 32;
  c.kv_heads = 4;
  c.sequences = {{1, 3001}, {1, 77}, {2, 1500}};
  c.sinks = true;
  return c;
}

TEST_F(CudaGraphTest, SinglePassDecodeReplays) {
  check_attention(context(), rng(), gemma_31b_decode(), Kernel::single_pass, nullptr,
                  run_in_graph);
}

TEST_F(CudaGraphTest, SplitKvDecodeReplays) {
  AttentionCase c = gemma_31b_decode();
  c.window = 700;
  check_attention(context(), rng(), c, Kernel::two_pass, nullptr, run_in_graph);
}

// The wgmma decode kernel (an fp8 cache at head_dim 512 on Hopper) takes its TMA maps as launch
// parameters: a captured call replays with them.
TEST_F(CudaGraphTest, WgmmaFp8DecodeReplays) {
  AttentionCase c = gemma_31b_decode();
  c.fp8_kv = true;
  c.page_size = 16;
  c.nan_past_kv_length = true;
  for (const Kernel kernel : {Kernel::single_pass, Kernel::two_pass}) {
    AttentionOutcome outcome;
    check_attention(context(), rng(), c, kernel, &outcome, run_in_graph);
    if (context().device().compute_capability == 90) {
      EXPECT_NE(outcome.plan.reason.find("wgmma kernel"), std::string::npos) << outcome.plan.reason;
    }
  }
}

// Kernel nodes of `graph`.
int kernel_nodes(cudaGraph_t graph) {
  std::size_t count = 0;
  EXPECT_EQ(cudaGraphGetNodes(graph, nullptr, &count), cudaSuccess);
  std::vector<cudaGraphNode_t> nodes(count);
  EXPECT_EQ(cudaGraphGetNodes(graph, nodes.data(), &count), cudaSuccess);
  int kernels = 0;
  for (cudaGraphNode_t node : nodes) {
    cudaGraphNodeType type{};
    EXPECT_EQ(cudaGraphNodeGetType(node, &type), cudaSuccess);
    kernels += type == cudaGraphNodeTypeKernel;
  }
  return kernels;
}

// A batch-1 split-KV decode whose grid the GPU holds at once merges its splits in the grid
// (decode_grid_merge.cuh): one kernel in the captured graph, not two, and the barriers it leaves
// let every replay run again; the oracle checks the last replay's output.
TEST_F(CudaGraphTest, GridMergedDecodeIsOneKernelAndReplays) {
  AttentionCase c = gemma_31b_decode();
  c.q_heads = 8;
  c.kv_heads = 2;
  c.sequences = {{1, 9000}};
  int kernels = -1;
  const AttentionRunner runner = [&](Context& context, const AttentionProblem& problem, Kernel kernel, Plan* plan) {
    AttentionProblem p = problem;
    p.kv_splits = 48;  // 96 CTAs: resident on any Hopper or Ampere part with 96+ SMs
    Status status = attention(context, p, kernel, plan);  // sizes the workspace
    if (!status.ok()) return status;
    const auto stream = static_cast<cudaStream_t>(context.stream());
    cudaGraph_t graph = nullptr;
    EXPECT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    const Status captured = attention(context, p, kernel, plan);
    EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
    if (!captured.ok() || !graph) {
      if (graph) cudaGraphDestroy(graph);
      return captured;
    }
    kernels = kernel_nodes(graph);
    cudaGraphExec_t exec = nullptr;
    status = cuda_status(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
    for (int replay = 0; replay < 3 && status.ok(); ++replay) {
      status = cuda_status(cudaGraphLaunch(exec, stream), "cudaGraphLaunch");
    }
    if (status.ok()) status = context.synchronize();
    if (exec) cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    return status;
  };
  AttentionOutcome outcome;
  check_attention(context(), rng(), c, Kernel::two_pass, &outcome, runner);
  EXPECT_EQ(outcome.plan.num_splits, 48);
  int sms = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), cudaSuccess);
  if (sms >= 96) EXPECT_EQ(kernels, 1) << "the split pass and no merge kernel";
}

TEST_F(CudaGraphTest, UnfusedPrefillReplays) {
  AttentionCase c;
  c.head_dim = 256;
  c.dtype = DType::f16;
  c.q_heads = 8;
  c.kv_heads = 2;
  c.sequences = {{300, 300}, {45, 600}};
  check_attention(context(), rng(), c, Kernel::prefill_unfused, nullptr, run_in_graph);
}

// A decode problem on zero-filled buffers (values do not matter to these checks).
struct ZeroProblem {
  ZeroProblem(Context& context, int32_t batch, int32_t kv_length)
      : offsets(batch + 1), lengths(batch, kv_length) {
    for (int32_t b = 0; b <= batch; ++b) offsets[b] = b;
    p.batch = batch;
    p.q_heads = 8;
    p.kv_heads = 2;
    p.head_dim = 128;
    p.dtype = DType::bf16;
    p.kv.capacity = kv_length;
    p.query_offsets = offsets.data();
    p.kv_lengths = lengths.data();
    set_dense_strides(p);
    const std::size_t es = dtype_size(p.dtype);
    const std::size_t q_bytes = std::size_t(batch) * p.q_heads * p.head_dim * es;
    const std::size_t kv_bytes = std::size_t(batch) * kv_length * p.kv_heads * p.head_dim * es;
    for (std::size_t bytes : {q_bytes, kv_bytes, kv_bytes, q_bytes}) {
      buffers.push_back(std::make_unique<DeviceMemory>(context, bytes));
      EXPECT_EQ(cudaMemset(buffers.back()->get(), 0, bytes), cudaSuccess);
    }
    p.q = buffers[0]->get();
    p.kv.k = buffers[1]->get();
    p.kv.v = buffers[2]->get();
    p.out = buffers[3]->get();
  }
  std::vector<int32_t> offsets, lengths;
  std::vector<std::unique_ptr<DeviceMemory>> buffers;
  AttentionProblem p;
};

// Starts a capture, makes `call`, ends the capture; the call's status.
template <typename Call>
Status call_under_capture(cudaStream_t stream, Call&& call) {
  EXPECT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  const Status status = call();
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess)
      << "the capture must stay valid after a refused call";
  if (graph) cudaGraphDestroy(graph);
  return status;
}

TEST_F(CudaGraphTest, WorkspaceGrowthUnderCaptureIsRefused) {
  ZeroProblem z(context(), 2, 4000);
  const auto stream = static_cast<cudaStream_t>(context().stream());
  // A fresh context has no workspace; two_pass needs one.
  const Status status =
      call_under_capture(stream, [&] { return attention(context(), z.p, Kernel::two_pass); });
  EXPECT_TRUE(has_error(status, StatusCode::unsupported, {"capture", "workspace"}));
  // Outside the capture the same call works, and after it the capture does too.
  WA_EXPECT_OK(attention(context(), z.p, Kernel::two_pass));
  WA_EXPECT_OK(
      call_under_capture(stream, [&] { return attention(context(), z.p, Kernel::two_pass); }));
  WA_EXPECT_OK(context().synchronize());
}

// A graph keeps the workspace address it captured: an eager call that grows the workspace
// afterwards must not free it (the Context retires it), so later replays stay right.
Status replay_after_growth(Context& context, const AttentionProblem& problem, Kernel kernel, Plan* plan) {
  const auto stream = static_cast<cudaStream_t>(context.stream());
  Status status = attention(context, problem, kernel, plan);  // sizes the workspace
  if (!status.ok()) return status;
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  const Status captured = attention(context, problem, kernel, plan);
  EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  if (!captured.ok()) {
    if (graph) cudaGraphDestroy(graph);
    return captured;
  }
  cudaGraphExec_t exec = nullptr;
  EXPECT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  // Grow: a split-KV decode over many more rows needs a much larger workspace.
  ZeroProblem big(context, 96, 8192);
  big.p.kv_splits = 32;
  status = attention(context, big.p, Kernel::two_pass);
  // The outputs are NaN again before the replay, so what the check reads is the replay's (run it
  // under compute-sanitizer memcheck to see a replay that touches freed memory).
  const int64_t tokens = problem.total_tokens();
  const std::size_t out_bytes = extent(tokens, problem.q_heads, problem.out_token_stride,
                                       problem.out_head_stride, problem.head_dim) * dtype_size(problem.dtype);
  if (status.ok() && cudaMemsetAsync(problem.out, 0xff, out_bytes, stream) != cudaSuccess) {
    status = Status(StatusCode::internal, "cudaMemsetAsync");
  }
  if (status.ok()) status = context.synchronize();
  if (status.ok() && cudaGraphLaunch(exec, stream) != cudaSuccess) status = Status(StatusCode::internal, "cudaGraphLaunch");
  if (status.ok()) status = context.synchronize();
  if (exec) cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return status;
}

TEST_F(CudaGraphTest, ReplaysStayRightAfterTheWorkspaceGrows) {
  AttentionCase c = gemma_31b_decode();
  check_attention(context(), rng(), c, Kernel::two_pass, nullptr, replay_after_growth);
}

TEST_F(CudaGraphTest, LargeBatchMetadataUnderCaptureIsRefused) {
  ZeroProblem z(context(), 150, 64);  // 2 x 150 + 1 metadata entries: too many to pass inline
  const auto stream = static_cast<cudaStream_t>(context().stream());
  WA_EXPECT_OK(attention(context(), z.p, Kernel::single_pass));  // sizes the workspace
  const Status status =
      call_under_capture(stream, [&] { return attention(context(), z.p, Kernel::single_pass); });
  EXPECT_TRUE(has_error(status, StatusCode::unsupported, {"batch = 150", "capture"}));
  WA_EXPECT_OK(attention(context(), z.p, Kernel::single_pass));
  WA_EXPECT_OK(context().synchronize());
}

}  // namespace
}  // namespace wideattn::test

#else  // no CUDA backend in this build

TEST(CudaGraphTest, NeedsTheCudaBackend) {
  GTEST_SKIP() << "CUDA backend unavailable: this build has none (CUDA graph tests skipped)";
}

#endif
