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

int decode_row_blocks_override() {
  static const int value = [] {
    const char* text = std::getenv("WIDEATTN_TUNE_DECODE_ROW_BLOCKS");
    const int n = text ? std::atoi(text) : 0;
    return n == 1 || n == 2 ? n : 0;
  }();
  return value;
}

int decode_key_sets_override() {
  static const int value = [] {
    const char* text = std::getenv("WIDEATTN_TUNE_DECODE_KEY_SETS");
    const int n = text ? std::atoi(text) : 0;
    return n == 1 || n == 2 ? n : 0;
  }();
  return value;
}

}  // namespace wideattn::detail
