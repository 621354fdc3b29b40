// The subcommands. Each parses its own flags from argv[2..] and returns the exit code;
// usage mistakes throw UsageError and library failures LibraryError (main reports them).
#pragma once

namespace wideattn::cli {

int run_command(int argc, char** argv);    // one attention scenario on random data
int bench_command(int argc, char** argv);  // a suite of problems, ceilings, a JSON record
int info_command(int argc, char** argv);   // backends, devices, kernels, the default plan

}  // namespace wideattn::cli
