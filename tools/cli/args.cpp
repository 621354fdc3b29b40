#include "args.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace wideattn::cli {

Args::Args(int argc, char** argv, int first, const std::vector<FlagSpec>& flags) {
  for (int i = first; i < argc; ++i) {
    std::string word = argv[i];
    if (word.rfind("--", 0) != 0 || word.size() == 2) {
      throw UsageError("unexpected argument '" + word + "' (flags start with --)");
    }
    std::string name = word.substr(2);
    std::string inline_value;
    bool has_inline = false;
    const std::size_t eq = name.find('=');
    if (eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_inline = true;
    }
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& f : flags) {
      if (name == f.name) spec = &f;
    }
    if (!spec) throw UsageError("unknown flag --" + name);
    if (values_.count(name)) throw UsageError("flag --" + name + " given twice");
    if (!spec->argument) {
      if (has_inline) throw UsageError("flag --" + name + " takes no value");
      values_[name] = "";
      continue;
    }
    if (has_inline) {
      values_[name] = inline_value;
    } else {
      if (i + 1 >= argc) throw UsageError("flag --" + name + " needs a value (" + spec->argument + ")");
      values_[name] = argv[++i];
    }
  }
}

bool Args::has(const std::string& name) const { return values_.count(name) != 0; }

const std::string& Args::value(const std::string& name) const { return values_.at(name); }

std::string Args::get_string(const std::string& name, const std::string& fallback) const {
  if (!has(name)) return fallback;
  if (value(name).empty()) throw UsageError("flag --" + name + " needs a non-empty value");
  return value(name);
}

int64_t Args::get_int(const std::string& name, int64_t fallback, int64_t minimum,
                      int64_t maximum) const {
  if (!has(name)) return fallback;
  const std::string& text = value(name);
  errno = 0;
  char* end = nullptr;
  const long long parsed = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE) {
    throw UsageError("flag --" + name + " = '" + text + "': expected an integer");
  }
  if (parsed < minimum || parsed > maximum) {
    std::ostringstream s;
    s << "flag --" << name << " = " << parsed << ": expected an integer in [" << minimum << ", "
      << maximum << "]";
    throw UsageError(s.str());
  }
  return parsed;
}

double Args::get_double(const std::string& name, double fallback, double minimum,
                        double maximum) const {
  if (!has(name)) return fallback;
  const std::string& text = value(name);
  errno = 0;
  char* end = nullptr;
  const double parsed = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(parsed)) {
    throw UsageError("flag --" + name + " = '" + text + "': expected a finite number");
  }
  if (parsed < minimum || parsed > maximum) {
    std::ostringstream s;
    s << "flag --" << name << " = " << parsed << ": expected a number in [" << minimum << ", "
      << maximum << "]";
    throw UsageError(s.str());
  }
  return parsed;
}

std::vector<std::string> Args::get_list(const std::string& name) const {
  std::vector<std::string> items;
  if (!has(name)) return items;
  std::stringstream s(value(name));
  std::string item;
  while (std::getline(s, item, ',')) {
    if (item.empty()) throw UsageError("flag --" + name + ": empty item in '" + value(name) + "'");
    items.push_back(item);
  }
  if (items.empty()) throw UsageError("flag --" + name + " needs a value");
  return items;
}

std::string format_flags(const std::vector<FlagSpec>& flags) {
  std::ostringstream s;
  for (const FlagSpec& f : flags) {
    std::string left = std::string("  --") + f.name;
    if (f.argument) left += std::string(" ") + f.argument;
    s << left;
    for (std::size_t i = left.size(); i < 26; ++i) s << ' ';
    if (left.size() >= 26) s << "\n" << std::string(26, ' ');
    s << f.help << "\n";
  }
  return s.str();
}

std::string join_command_line(int argc, char** argv) {
  std::string line;
  for (int i = 0; i < argc; ++i) {
    std::string word = argv[i];
    const bool plain = !word.empty() && word.find_first_of(" \t\"'\\$`") == std::string::npos;
    if (i) line += ' ';
    if (plain) {
      line += word;
    } else {
      line += '\'';
      for (char c : word) line += c == '\'' ? std::string("'\\''") : std::string(1, c);
      line += '\'';
    }
  }
  return line;
}

}  // namespace wideattn::cli
