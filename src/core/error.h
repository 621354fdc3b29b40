// Internal error type. Library code throws detail::Error; every public entry point catches it
// (and std::bad_alloc) and returns a Status, so nothing escapes or aborts.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#include "wideattn/status.h"

namespace wideattn::detail {

class Error : public std::runtime_error {
 public:
  Error(StatusCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  StatusCode code() const { return code_; }

 private:
  StatusCode code_;
};

// Rethrows a failed Status from a public call made inside library code (its message kept).
inline void throw_if_failed(const Status& status) {
  if (!status.ok()) throw Error(status.code(), status.message());
}

// Builds "function: argument = value, expected <expectation>".
template <typename T>
[[noreturn]] void throw_invalid(const char* function, const std::string& argument, const T& value,
                                const std::string& expectation) {
  std::ostringstream s;
  s << function << ": " << argument << " = " << value << ", expected " << expectation;
  throw Error(StatusCode::invalid_argument, s.str());
}

[[noreturn]] inline void throw_error(StatusCode code, const std::string& message) {
  throw Error(code, message);
}

// Runs `body` and turns any exception into a Status.
template <typename Body>
Status guarded(Body&& body) {
  try {
    std::forward<Body>(body)();
    return Status::success();
  } catch (const Error& e) {
    return Status(e.code(), e.what());
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::out_of_memory, "host allocation failed");
  } catch (const std::exception& e) {
    return Status(StatusCode::internal, e.what());
  }
}

}  // namespace wideattn::detail
