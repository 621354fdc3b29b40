// CUDA graphs for `bench --call graph`: each KV copy's call captured once and replayed, as a
// serving engine replays its decode step (captured_calls_cuda.cpp; throws without CUDA).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "wideattn/context.h"

namespace wideattn::cli {

class CapturedCalls {
 public:
  // Sets a new non-blocking stream on `context` (the legacy default stream cannot be captured;
  // the destructor restores the old one), runs call(i) once for each i < count (it sizes the
  // workspace: a capture cannot allocate), then captures call(i) into graph i.
  CapturedCalls(Context& context, std::size_t count, const std::function<void(std::size_t)>& call);
  ~CapturedCalls();
  CapturedCalls(const CapturedCalls&) = delete;
  CapturedCalls& operator=(const CapturedCalls&) = delete;

  void launch(std::size_t i);  // replays graph i on the capture stream

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace wideattn::cli
