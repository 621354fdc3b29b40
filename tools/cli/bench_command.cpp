// wideattn bench: measures the ceilings (matrix rate, memory bandwidth), then sweeps a suite of
// problems, each timed as in `run` (median after warm-up, rotating KV copies), and writes a
// JSON record with every problem's kernel, time, rates and share of the ceilings.
#include <algorithm>
#include <ctime>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>

#include "backend_choice.h"
#include "bench_suites.h"
#include "ceilings.h"
#include "commands.h"
#include "format.h"
#include "json_writer.h"
#include "measure.h"
#include "workload.h"

namespace wideattn::cli {
namespace {

std::vector<FlagSpec> bench_flags() {
  std::vector<FlagSpec> flags = {
      {"suite", "NAME", "cpu, gpu or fused (default: gpu on the cuda backend, cpu otherwise)"},
      {"filter", "TEXT", "only problems whose name contains TEXT (TEXT|TEXT2: any of them; TEXT$: ends with TEXT)"},
      {"list", nullptr, "print the suite's problems and exit"},
      {"json", "PATH", "write the record to PATH"},
      {"dtype", "T", "storage dtype of every problem (default bf16)"},
      {"kernel", "K", "force a kernel for every problem (default auto)"},
      {"kv-splits", "N", "fix the KV splits of every problem (default 0: each plan chooses)"},
      {"call", "MODE", "how decode problems are called: attention (default), planned (a plan from "
                       "bounds, metadata on the device) or graph (planned calls replayed from "
                       "captured CUDA graphs)"},
      {"repeat", "N", "timed calls per problem (default 5 on the CPU, 30 on CUDA)"},
      {"warmup", "N", "untimed calls first (default 1 on the CPU, 5 on CUDA)"},
      {"check-rows", "N", "oracle rows checked per problem (default 4; 0: no check)"},
      {"no-ceilings", nullptr, "skip the ceiling measurements"},
      {"seed", "N", "random data seed (default 1)"},
      {"help", nullptr, "this text"},
  };
  const std::vector<FlagSpec> backend = backend_flags();
  flags.insert(flags.end(), backend.begin(), backend.end());
  return flags;
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

struct Row {
  ProblemSpec spec;
  Measurement m;
  int32_t copies = 1;
};

bool compute_bound(const ProblemSpec& spec) { return spec.suffix > 8; }

// " (planned)" or " (graph)" after the kernel when the calls were not plain attention().
std::string call_note(const Measurement& m) {
  return m.call == CallMode::attention ? "" : std::string(" (") + to_string(m.call) + ")";
}

// The 1-minute load average (Linux), or -1: a shared machine's CPU figures need it as context.
double load_average() {
  std::ifstream file("/proc/loadavg");
  double load = -1;
  if (!(file >> load)) return -1;
  return load;
}

}  // namespace

int bench_command(int argc, char** argv) {
  const std::vector<FlagSpec> flags = bench_flags();
  const Args args(argc, argv, 2, flags);
  if (args.has("help")) {
    std::cout << "usage: wideattn bench [flags]\n\n"
                 "Measures the ceilings, then each problem of a suite; a progress line per problem\n"
                 "on stderr, a table on stdout, and a JSON record with --json.\n"
                 "Prefill rates count visible (causal) pairs: 4 * heads * pairs * head_dim / time;\n"
                 "decode GB/s = bytes of Q, K, V read + O written / time. Problems report the\n"
                 "median of their timed calls; ceilings the best of their passes.\n\nflags:\n"
              << format_flags(flags);
    return 0;
  }
  const Backend backend = choose_backend(args);
  const bool cuda = backend == Backend::cuda;
  const std::string suite_name = args.get_string("suite", cuda ? "gpu" : "cpu");
  std::vector<ProblemSpec> suite = bench_suite(suite_name);
  const std::string filter = args.get_string("filter", "");
  if (!filter.empty()) {
    // TEXT|TEXT2|...: a problem whose name contains any of them; TEXT$: ends with TEXT.
    std::vector<std::string> alternatives;
    for (std::size_t begin = 0;;) {
      const std::size_t bar = filter.find('|', begin);
      alternatives.push_back(filter.substr(begin, bar == std::string::npos ? std::string::npos : bar - begin));
      if (bar == std::string::npos) break;
      begin = bar + 1;
    }
    std::vector<ProblemSpec> kept;
    for (const ProblemSpec& s : suite) {
      for (const std::string& text : alternatives) {
        const bool at_end = text.size() > 1 && text.back() == '$';
        const std::string body = at_end ? text.substr(0, text.size() - 1) : text;
        const bool match = at_end ? s.name.size() >= body.size() &&
                                        s.name.compare(s.name.size() - body.size(), body.size(), body) == 0
                                  : !text.empty() && s.name.find(text) != std::string::npos;
        if (match) {
          kept.push_back(s);
          break;
        }
      }
    }
    if (kept.empty()) throw UsageError("--filter '" + filter + "' matches no problem of suite " + suite_name);
    suite = kept;
  }
  if (args.has("dtype")) {
    const DType dtype = parse_dtype(args.get_string("dtype", "bf16"));
    for (ProblemSpec& s : suite) s.dtype = dtype;
  }
  if (args.has("kv-splits")) {
    const int32_t splits = static_cast<int32_t>(args.get_int("kv-splits", 0, 0, kMaxKvSplits));
    for (ProblemSpec& s : suite) s.kv_splits = splits;
  }
  if (args.has("list")) {
    for (const ProblemSpec& s : suite) std::cout << s.name << ": " << describe(s) << "\n";
    return 0;
  }
  MeasureOptions measure;
  measure.forced = parse_kernel(args.get_string("kernel", "auto"));
  measure.call = parse_call_mode(args.get_string("call", "attention"));
  if (measure.call == CallMode::graph && !cuda) throw UsageError("--call graph needs --backend cuda");
  measure.repeat = static_cast<int32_t>(args.get_int("repeat", cuda ? 30 : 5, 1, 100000));
  measure.warmup = static_cast<int32_t>(args.get_int("warmup", cuda ? 5 : 1, 0, 100000));
  measure.sample_tokens = static_cast<int32_t>(args.get_int("check-rows", 4, 0, 1024));
  measure.all_heads_of_last = false;
  const uint64_t seed = static_cast<uint64_t>(args.get_int("seed", 1, 0, std::numeric_limits<int64_t>::max()));
  const std::string json_path = args.get_string("json", "");

  std::unique_ptr<Context> context = open_context(args, backend);
  const DeviceInfo& device = context->device();
  const double load_at_start = load_average();
  std::cerr << "bench " << suite_name << " on " << describe_device(device) << " (load average "
            << format_fixed(load_at_start, 2) << ")\n";

  MatmulCeiling matmul_ceiling;
  BandwidthCeiling bandwidth_ceiling;
  const bool ceilings = !args.has("no-ceilings");
  if (ceilings) {
    std::cerr << "ceiling: matmul ..." << std::flush;
    matmul_ceiling = measure_matmul_ceiling(*context, 0, 10);
    std::cerr << " " << matmul_ceiling.n << "^3 " << to_string(matmul_ceiling.dtype) << ": "
              << format_flops(matmul_ceiling.flops_per_second) << "\n";
    std::cerr << "ceiling: bandwidth ..." << std::flush;
    bandwidth_ceiling = measure_bandwidth_ceiling(*context, cuda ? 20 : 10);
    std::cerr << " " << bandwidth_ceiling.method << " of " << format_bytes(bandwidth_ceiling.bytes) << ": "
              << format_bandwidth(bandwidth_ceiling.bytes_per_second) << "\n";
  }
  auto pct_flops = [&](double f) { return ceilings ? 100.0 * f / matmul_ceiling.flops_per_second : 0.0; };
  auto pct_bytes = [&](double b) { return ceilings ? 100.0 * b / bandwidth_ceiling.bytes_per_second : 0.0; };

  std::vector<Row> rows;
  for (std::size_t i = 0; i < suite.size(); ++i) {
    const ProblemSpec& spec = suite[i];
    std::cerr << "[" << i + 1 << "/" << suite.size() << "] " << spec.name << ": " << std::flush;
    WorkloadOptions options;
    options.seed = seed + i;
    Workload workload(*context, spec, options);
    Row row;
    row.spec = spec;
    row.copies = workload.kv_copies();
    row.m = measure_phase(*context, *workload.phases().front(), measure);
    const double s = row.m.median_seconds;
    std::cerr << to_string(row.m.plan.kernel) << " x" << row.m.plan.num_splits << ", "
              << format_seconds(s) << ", " << format_flops(row.m.cost.flops / s) << " ("
              << format_fixed(pct_flops(row.m.cost.flops / s), 1) << "%), "
              << format_bandwidth(row.m.cost.bytes / s) << " (" << format_fixed(pct_bytes(row.m.cost.bytes / s), 1)
              << "%), err " << format_scientific(row.m.accuracy.relative_error) << "\n";
    rows.push_back(row);
  }

  // Table on stdout.
  std::cout << "\n" << describe_device(device) << "\n";
  if (ceilings) {
    std::cout << "ceilings: matmul " << matmul_ceiling.n << "^3 " << to_string(matmul_ceiling.dtype) << " "
              << format_flops(matmul_ceiling.flops_per_second) << "; " << bandwidth_ceiling.method << " "
              << format_bandwidth(bandwidth_ceiling.bytes_per_second) << "\n";
  }
  std::cout << "| problem | kernel | median | rate | % of ceiling | best (min) | host per call | rel err |\n"
               "|---|---|---|---|---|---|---|---|\n";
  for (const Row& r : rows) {
    const double s = r.m.median_seconds;
    const bool compute = compute_bound(r.spec);
    const double best = *std::min_element(r.m.seconds.begin(), r.m.seconds.end());
    // Without --no-ceilings' measurements there is no ratio to print: "-", not 0%.
    auto percent = [&](double seconds) {
      if (!ceilings) return std::string("-");
      return format_fixed(compute ? pct_flops(r.m.cost.flops / seconds) : pct_bytes(r.m.cost.bytes / seconds), 1) +
             "%";
    };
    std::cout << "| " << r.spec.name << " | " << to_string(r.m.plan.kernel) << " x" << r.m.plan.num_splits
              << call_note(r.m) << " | " << format_seconds(s) << " | "
              << (compute ? format_flops(r.m.cost.flops / s) : format_bandwidth(r.m.cost.bytes / s)) << " | "
              << percent(s) << " " << (compute ? "matmul" : "bandwidth") << " | " << format_seconds(best) << " ("
              << percent(best) << ") | " << format_seconds(r.m.host.back_to_back) << " | "
              << format_scientific(r.m.accuracy.relative_error) << " |\n";
  }

  if (!json_path.empty()) {
    JsonWriter j;
    j.begin_object();
    j.value("tool", "wideattn bench");
    j.value("suite", suite_name);
    j.value("date", utc_now());
    j.value("command", join_command_line(argc, argv));
    j.begin_object("device")
        .value("backend", to_string(device.backend))
        .value("name", device.name)
        .value("compute_units", device.compute_units)
        .value("compute_capability", device.compute_capability)
        .value("l2_bytes", device.l2_bytes)
        .value("memory_bytes", device.memory_bytes)
        .end_object();
    j.value("load_average_1min_at_start", load_at_start).value("load_average_1min_at_end", load_average());
    j.value("timing", cuda ? "CUDA events around each call, each call issued while the stream is "
                           "held (no host gaps), median after warm-up, rotating KV copies > 2x L2; "
                           "host_s_per_call: median issue time of calls made back to back "
                           "(host_s_per_call_after_idle: each right after a wait for an idle stream)"
                           : "steady clock, median after warm-up, rotating KV copies > 2x last-level cache");
    if (ceilings) {
      j.begin_object("ceilings");
      j.begin_object("matmul")
          .value("n", matmul_ceiling.n)
          .value("dtype", to_string(matmul_ceiling.dtype))
          .value("best_s", matmul_ceiling.seconds)
          .value("gflops", matmul_ceiling.flops_per_second * 1e-9)
          .value("tflops", matmul_ceiling.flops_per_second * 1e-12)
          .end_object();
      j.begin_object("bandwidth")
          .value("method", bandwidth_ceiling.method)
          .value("bytes", bandwidth_ceiling.bytes)
          .value("threads", bandwidth_ceiling.threads)
          .value("best_s", bandwidth_ceiling.seconds)
          .value("gbps", bandwidth_ceiling.bytes_per_second * 1e-9)
          .end_object();
      j.end_object();
    }
    j.value("repeat", measure.repeat).value("warmup", measure.warmup);
    j.begin_array("problems");
    for (const Row& r : rows) {
      const double s = r.m.median_seconds;
      j.begin_object()
          .value("name", r.spec.name)
          .value("batch", r.spec.batch)
          .value("q_heads", r.spec.q_heads)
          .value("kv_heads", r.spec.kv_heads)
          .value("head_dim", r.spec.head_dim)
          .value("dtype", to_string(r.spec.dtype))
          .value("prefix", r.spec.prefix)
          .value("suffix", r.spec.suffix)
          .value("kv_length", r.spec.kv_length())
          .value("causal", r.spec.causal)
          .value("scale", static_cast<double>(r.spec.scale))
          .value("bound", compute_bound(r.spec) ? "compute" : "memory")
          .value("call", to_string(r.m.call))
          .value("kernel", to_string(r.m.plan.kernel))
          .value("num_splits", r.m.plan.num_splits)
          .value("query_rows_per_chunk", r.m.plan.query_rows_per_chunk)
          .value("reason", r.m.plan.reason)
          .value("kv_copies", r.copies)
          .value("median_s", s)
          .value("min_s", *std::min_element(r.m.seconds.begin(), r.m.seconds.end()))
          .value("host_s_per_call", r.m.host.back_to_back)
          .value("host_s_per_call_after_idle", r.m.host.after_idle)
          .value("visible_pairs", r.m.cost.visible_pairs)
          .value("flops", r.m.cost.flops)
          .value("bytes", r.m.cost.bytes)
          .value("gflops", r.m.cost.flops / s * 1e-9)
          .value("tflops", r.m.cost.flops / s * 1e-12)
          .value("gbps", r.m.cost.bytes / s * 1e-9);
      if (ceilings) {
        j.value("pct_of_matmul", pct_flops(r.m.cost.flops / s)).value("pct_of_bandwidth", pct_bytes(r.m.cost.bytes / s));
      }
      j.value("rel_error", r.m.accuracy.relative_error).value("error_rows", r.m.accuracy.rows);
      j.begin_array("samples_s");
      for (double t : r.m.seconds) j.value("", t);
      j.end_array();
      j.end_object();
    }
    j.end_array();
    j.end_object();
    j.save(json_path);
    std::cerr << "wrote " << json_path << "\n";
  }
  return 0;
}

}  // namespace wideattn::cli
