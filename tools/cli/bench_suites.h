// The built-in benchmark suites: `cpu` (the CPU performance record) and `gpu` (the problems of
// shared/reference/peers.md at the Gemma 4 shapes and the peers' comparison shapes).
#pragma once

#include <string>
#include <vector>

#include "problem_spec.h"

namespace wideattn::cli {

// Throws UsageError for an unknown suite name.
std::vector<ProblemSpec> bench_suite(const std::string& name);

}  // namespace wideattn::cli
