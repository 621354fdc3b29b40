// Command-line flags: a declared list of flags per command, strict parsing of values, and one
// exception type for every usage mistake (main turns it into a message and exit code 2).
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace wideattn::cli {

// A mistake in the command line: main prints the message and exits with code 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct FlagSpec {
  const char* name;      // without the leading "--"
  const char* argument;  // placeholder of the value ("N", "PATH"), or nullptr for a switch
  const char* help;
};

class Args {
 public:
  // Parses argv[first, argc) against `flags`. Accepts "--name value" and "--name=value".
  // Throws UsageError for an unknown flag, a missing value or a value given to a switch.
  Args(int argc, char** argv, int first, const std::vector<FlagSpec>& flags);

  bool has(const std::string& name) const;
  bool get_switch(const std::string& name) const { return has(name); }
  std::string get_string(const std::string& name, const std::string& fallback) const;
  // Whole-string integer in [minimum, maximum]; UsageError otherwise.
  int64_t get_int(const std::string& name, int64_t fallback, int64_t minimum, int64_t maximum) const;
  // Whole-string finite number in [minimum, maximum].
  double get_double(const std::string& name, double fallback, double minimum, double maximum) const;
  // Comma-separated list of words (e.g. --suite cpu).
  std::vector<std::string> get_list(const std::string& name) const;

 private:
  const std::string& value(const std::string& name) const;
  std::map<std::string, std::string> values_;
};

// "  --name ARG   help" lines for a command's usage text.
std::string format_flags(const std::vector<FlagSpec>& flags);

// The whole command line, quoted where needed, for records.
std::string join_command_line(int argc, char** argv);

}  // namespace wideattn::cli
