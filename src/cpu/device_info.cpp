// What dispatch needs to know about this host: model name, threads, cache and memory sizes.
#include <omp.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "cpu/cpu_components.h"

namespace wideattn::detail::cpu {
namespace {

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon == std::string::npos) break;
      const auto start = line.find_first_not_of(" \t", colon + 1);
      return start == std::string::npos ? std::string("CPU") : line.substr(start);
    }
  }
  return "CPU";
}

// Size of the largest cache level of cpu0 from sysfs ("32768K"), 0 when unreadable.
int64_t last_level_cache_bytes() {
  int64_t best = 0;
  for (int index = 0; index < 8; ++index) {
    std::ifstream in("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/size");
    std::string text;
    if (!(in >> text) || text.empty()) continue;
    int64_t value = 0;
    std::size_t i = 0;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) value = value * 10 + (text[i] - '0');
    if (i < text.size() && (text[i] == 'K' || text[i] == 'k')) value <<= 10;
    if (i < text.size() && (text[i] == 'M' || text[i] == 'm')) value <<= 20;
    if (value > best) best = value;
  }
  return best;
}

}  // namespace

DeviceInfo query_device_info() {
  DeviceInfo info;
  info.backend = Backend::cpu;
  info.name = cpu_model_name();
  info.compute_units = omp_get_max_threads();
  info.l2_bytes = last_level_cache_bytes();
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0) info.memory_bytes = static_cast<int64_t>(pages) * page_size;
  return info;
}

}  // namespace wideattn::detail::cpu
