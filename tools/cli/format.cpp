#include "format.h"

#include <cmath>
#include <cstdio>

namespace wideattn::cli {

std::string format_fixed(double value, int decimals) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
  return buffer;
}

std::string format_scientific(double value) {
  if (std::isinf(value)) return "inf";
  if (std::isnan(value)) return "nan";
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.1e", value);
  return buffer;
}

std::string format_seconds(double s) {
  if (s < 1e-3) return format_fixed(s * 1e6, 1) + " us";
  if (s < 1.0) return format_fixed(s * 1e3, 3) + " ms";
  return format_fixed(s, 3) + " s";
}

std::string format_flops(double f) {
  if (f >= 1e12) return format_fixed(f * 1e-12, 1) + " TFLOP/s";
  return format_fixed(f * 1e-9, 1) + " GFLOP/s";
}

std::string format_bandwidth(double b) { return format_fixed(b * 1e-9, 1) + " GB/s"; }

std::string format_bytes(double bytes) {
  if (bytes >= 1024.0 * 1024 * 1024) return format_fixed(bytes / (1024.0 * 1024 * 1024), 2) + " GiB";
  if (bytes >= 1024.0 * 1024) return format_fixed(bytes / (1024.0 * 1024), 2) + " MiB";
  if (bytes >= 1024.0) return format_fixed(bytes / 1024.0, 1) + " KiB";
  return format_fixed(bytes, 0) + " B";
}

}  // namespace wideattn::cli
