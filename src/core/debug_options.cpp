#include "core/debug_options.h"

#include <atomic>
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

namespace {

// A tuning override of 1 or 2 from the environment variable `name` (0 when unset or other).
int one_or_two(const char* name) {
  const char* text = std::getenv(name);
  const int n = text ? std::atoi(text) : 0;
  return n == 1 || n == 2 ? n : 0;
}

}  // namespace

int decode_row_blocks_override() {
  static const int value = one_or_two("WIDEATTN_TUNE_DECODE_ROW_BLOCKS");
  return value;
}

bool decode_wgmma_l2_only() {
  static const bool enabled = [] {
    const char* value = std::getenv("WIDEATTN_TUNE_DECODE_WGMMA_L2");
    return value && *value && std::strcmp(value, "0") != 0;
  }();
  return enabled;
}

int decode_key_sets_override() {
  static const int value = one_or_two("WIDEATTN_TUNE_DECODE_KEY_SETS");
  return value;
}

namespace {

// An on/off override from the environment variable `name`: -1 unset, 0 for "0", 1 otherwise.
int on_off_from_env(const char* name) {
  const char* text = std::getenv(name);
  if (!text || !*text) return -1;
  return std::strcmp(text, "0") == 0 ? 0 : 1;
}

int on_off(int value) { return value < 0 ? -1 : value > 0 ? 1 : 0; }

std::atomic<int>& fused_alternate_value() {
  static std::atomic<int> value{on_off_from_env("WIDEATTN_TUNE_FUSED_ALTERNATE")};
  return value;
}

std::atomic<int>& decode_grid_merge_value() {
  static std::atomic<int> value{on_off_from_env("WIDEATTN_TUNE_DECODE_GRID_MERGE")};
  return value;
}

}  // namespace

int fused_alternate_override() { return fused_alternate_value().load(std::memory_order_relaxed); }

void set_fused_alternate_override(int value) { fused_alternate_value().store(on_off(value), std::memory_order_relaxed); }

int decode_grid_merge_override() { return decode_grid_merge_value().load(std::memory_order_relaxed); }

void set_decode_grid_merge_override(int value) {
  decode_grid_merge_value().store(on_off(value), std::memory_order_relaxed);
}

}  // namespace wideattn::detail
