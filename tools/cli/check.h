// Library failures inside the CLI: a Status that is not ok becomes a LibraryError, which main
// reports (exit 2 when the library says an argument is invalid, 1 otherwise).
#pragma once

#include <stdexcept>
#include <string>

#include "wideattn/status.h"

namespace wideattn::cli {

class LibraryError : public std::runtime_error {
 public:
  LibraryError(StatusCode code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  StatusCode code() const { return code_; }

 private:
  StatusCode code_;
};

// Throws LibraryError("<what>: <status message> (<code>)") when `status` is not ok.
inline void check(const Status& status, const std::string& what) {
  if (status.ok()) return;
  throw LibraryError(status.code(),
                     what + ": " + status.message() + " (" + to_string(status.code()) + ")");
}

}  // namespace wideattn::cli
