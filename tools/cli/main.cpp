// wideattn: the command-line tool. `run` one scenario, `bench` a suite, `info` about the build.
// Usage mistakes exit with 2, failures with 1; nothing aborts.
#include <exception>
#include <iostream>
#include <new>
#include <string>

#include "args.h"
#include "check.h"
#include "commands.h"

namespace {

void print_usage(std::ostream& out) {
  out << "usage: wideattn <command> [flags]\n\n"
         "commands:\n"
         "  run     one attention scenario on random data (default: Gemma 4 E4B global layer,\n"
         "          2048-token prefill then 16 decode steps), timed and checked against the f64 oracle\n"
         "  bench   a suite of problems (--suite cpu|gpu) with the machine's ceilings; --json PATH\n"
         "  info    backends, devices, kernels and the plan for the default problem\n\n"
         "'wideattn <command> --help' lists a command's flags.\n";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace wideattn::cli;
  if (argc < 2) {
    print_usage(std::cerr);
    return 2;
  }
  const std::string command = argv[1];
  std::string help_hint = " (see 'wideattn " + command + " --help')";
  try {
    if (command == "run") return run_command(argc, argv);
    if (command == "bench") return bench_command(argc, argv);
    if (command == "info") return info_command(argc, argv);
    if (command == "--help" || command == "-h" || command == "help") {
      print_usage(std::cout);
      return 0;
    }
    std::cerr << "wideattn: unknown command '" << command << "'\n\n";
    print_usage(std::cerr);
    return 2;
  } catch (const UsageError& e) {
    std::cerr << "wideattn " << command << ": error: " << e.what() << help_hint << "\n";
    return 2;
  } catch (const LibraryError& e) {
    std::cerr << "wideattn " << command << ": error: " << e.what() << "\n";
    return e.code() == wideattn::StatusCode::invalid_argument ? 2 : 1;
  } catch (const std::bad_alloc&) {
    std::cerr << "wideattn " << command << ": error: out of host memory\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "wideattn " << command << ": error: " << e.what() << "\n";
    return 1;
  } catch (...) {
    std::cerr << "wideattn " << command << ": error: unknown exception\n";
    return 1;
  }
}
