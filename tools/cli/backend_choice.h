// --backend cpu|cuda|auto and --device: which Context a command runs on.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "wideattn/context.h"

namespace wideattn::cli {

// The flags every command that runs work accepts.
std::vector<FlagSpec> backend_flags();

// auto: cuda when backend_available(cuda), else cpu. Throws UsageError when cuda is asked for
// explicitly and is not available (the message says why).
Backend choose_backend(const Args& args);

// Creates the context (device index from --device); throws LibraryError on failure.
std::unique_ptr<Context> open_context(const Args& args, Backend backend);

// "cpu: AMD EPYC (2 threads, 32 MiB last-level cache, 23 GiB)".
std::string describe_device(const DeviceInfo& device);

}  // namespace wideattn::cli
