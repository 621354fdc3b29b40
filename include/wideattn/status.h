// Every public entry point returns a Status; nothing in the library aborts the process.
#pragma once

#include <string>
#include <utility>

namespace wideattn {

enum class StatusCode : int {
  ok = 0,
  invalid_argument = 1,     // an argument is out of range; the message names it, its value, the expectation
  unsupported = 2,          // valid, but this backend or build does not implement it
  out_of_memory = 3,        // a workspace or scratch allocation failed
  backend_unavailable = 4,  // e.g. CUDA requested on a machine without a GPU or without CUDA support
  internal = 5,             // a library call (CUDA, cuBLASLt) failed
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status success() { return Status(); }

  bool ok() const { return code_ == StatusCode::ok; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::ok;
  std::string message_;
};

const char* to_string(StatusCode code);

}  // namespace wideattn
