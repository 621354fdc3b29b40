// Human-readable numbers for the CLI's reports.
#pragma once

#include <string>

namespace wideattn::cli {

std::string format_seconds(double seconds);        // "12.3 us", "4.56 ms", "1.23 s"
std::string format_flops(double flops_per_second);  // "123.4 GFLOP/s" or "456.7 TFLOP/s"
std::string format_bandwidth(double bytes_per_second);  // "12.3 GB/s" (10^9 bytes)
std::string format_bytes(double bytes);            // "8.00 MiB", "1.50 GiB"
std::string format_fixed(double value, int decimals);
std::string format_scientific(double value);       // "2.1e-03"

}  // namespace wideattn::cli
