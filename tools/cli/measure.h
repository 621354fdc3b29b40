// Plans, times and checks one Phase: warm-up calls, then `repeat` timed calls rotating over
// the KV copies, then the error of sampled rows against the f64 oracle.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "problem_metrics.h"
#include "timing.h"
#include "workload.h"
#include "wideattn/attention.h"

namespace wideattn::cli {

// How each timed call is made. planned and graph apply to decode phases (suffix <= 8); others
// are timed as plain attention calls (Measurement::call says which).
enum class CallMode {
  attention,  // attention() with host metadata: plans on every call
  planned,    // a plan from bounds made once, attention_planned with the metadata on the device
  graph,      // the planned call captured into a CUDA graph once per KV copy, then replayed
};

CallMode parse_call_mode(const std::string& text);  // UsageError on anything else
const char* to_string(CallMode mode);

struct MeasureOptions {
  CallMode call = CallMode::attention;
  Kernel forced = Kernel::automatic;
  int32_t warmup = 1;
  int32_t repeat = 5;
  int32_t sample_tokens = 8;       // oracle rows: tokens evenly spread, first and last included
  bool all_heads_of_last = true;   // and every head of the last token
};

struct Accuracy {
  int64_t rows = 0;                 // rows compared
  double relative_error = 0;        // max |out - ref| / max |ref| over those rows
  double max_abs_error = 0;
  double lse_max_abs_error = -1;    // -1: not checked
  bool finite = true;               // every compared output finite where the oracle is
};

struct Measurement {
  CallMode call = CallMode::attention;  // how the timed calls were made
  Plan plan;
  std::vector<double> seconds;  // one per timed call (GPU time on CUDA: Timer::time_each)
  double median_seconds = 0;
  Timer::HostCost host;  // the host's time to issue one call
  ProblemCost cost;
  Accuracy accuracy;
};

// plan_attention for the phase's first device problem; throws LibraryError.
Plan plan_phase(Context& context, const Phase& phase, Kernel forced);

Measurement measure_phase(Context& context, Phase& phase, const MeasureOptions& options);

// Compares rows of the phase's current output with reference::attention_row.
Accuracy check_phase(Context& context, const Phase& phase, int32_t sample_tokens,
                     bool all_heads_of_last);

}  // namespace wideattn::cli
