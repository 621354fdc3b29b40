#include "captured_calls.h"

#include <string>
#include <vector>

#include "check.h"

#ifdef WIDEATTN_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda_check.h"
#endif

namespace wideattn::cli {

#ifdef WIDEATTN_WITH_CUDA
struct CapturedCalls::State {
  Context* context = nullptr;
  void* previous_stream = nullptr;
  cudaStream_t stream = nullptr;
  std::vector<cudaGraph_t> graphs;
  std::vector<cudaGraphExec_t> execs;

  ~State() {
    if (stream) cudaStreamSynchronize(stream);
    for (cudaGraphExec_t exec : execs) cudaGraphExecDestroy(exec);
    for (cudaGraph_t graph : graphs) cudaGraphDestroy(graph);
    if (context) context->set_stream(previous_stream);
    if (stream) cudaStreamDestroy(stream);
  }
};

CapturedCalls::CapturedCalls(Context& context, std::size_t count,
                             const std::function<void(std::size_t)>& call)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  if (context.backend() != Backend::cuda) {
    throw LibraryError(StatusCode::unsupported, "CUDA graphs need the cuda backend");
  }
  check_cuda(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  s.context = &context;
  s.previous_stream = context.stream();
  context.set_stream(s.stream);
  for (std::size_t i = 0; i < count; ++i) call(i);
  check_cuda(cudaStreamSynchronize(s.stream), "cudaStreamSynchronize");
  for (std::size_t i = 0; i < count; ++i) {
    check_cuda(cudaStreamBeginCapture(s.stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    cudaGraph_t graph = nullptr;
    try {
      call(i);
    } catch (...) {
      cudaStreamEndCapture(s.stream, &graph);  // leave the stream usable
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    check_cuda(cudaStreamEndCapture(s.stream, &graph), "cudaStreamEndCapture");
    s.graphs.push_back(graph);
    cudaGraphExec_t exec = nullptr;
    check_cuda(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
    s.execs.push_back(exec);
  }
}

CapturedCalls::~CapturedCalls() = default;

void CapturedCalls::launch(std::size_t i) {
  check_cuda(cudaGraphLaunch(state_->execs[i], state_->stream), "cudaGraphLaunch");
}

#else  // no CUDA backend in this build

struct CapturedCalls::State {};

CapturedCalls::CapturedCalls(Context&, std::size_t, const std::function<void(std::size_t)>&) {
  throw LibraryError(StatusCode::unsupported, "CUDA graphs need a build with the CUDA backend");
}

CapturedCalls::~CapturedCalls() = default;

void CapturedCalls::launch(std::size_t) {}

#endif

}  // namespace wideattn::cli
