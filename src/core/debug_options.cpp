#include "core/debug_options.h"

#include <cstdlib>
#include <cstring>

namespace wideattn::detail {

bool poison_workspace() {
  static const bool enabled = [] {
    const char* value = std::getenv("WIDEATTN_POISON_WORKSPACE");
    return value && *value && std::strcmp(value, "0") != 0;
  }();
  return enabled;
}

bool mark_library_outputs() {
  static const bool enabled = [] {
    const char* value = std::getenv("WIDEATTN_SANITIZER_NVTX");
    return value && *value && std::strcmp(value, "0") != 0;
  }();
  return enabled;
}

}  // namespace wideattn::detail
