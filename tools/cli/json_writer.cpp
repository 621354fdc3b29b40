#include "json_writer.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "args.h"

namespace wideattn::cli {

std::string json_escape(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) {
          char buffer[8];
          std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
          out += buffer;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

void JsonWriter::prefix(const std::string& key) {
  if (!first_.empty()) {
    if (!first_.back()) text_ += ",";
    first_.back() = false;
    text_ += "\n" + std::string(2 * first_.size(), ' ');
  }
  if (!key.empty()) text_ += json_escape(key) + ": ";
}

JsonWriter& JsonWriter::begin_object(const std::string& key) {
  prefix(key);
  text_ += "{";
  first_.push_back(true);
  return *this;
}

JsonWriter& JsonWriter::end_object() {
  const bool empty = first_.back();
  first_.pop_back();
  if (!empty) text_ += "\n" + std::string(2 * first_.size(), ' ');
  text_ += "}";
  if (first_.empty()) text_ += "\n";
  return *this;
}

JsonWriter& JsonWriter::begin_array(const std::string& key) {
  prefix(key);
  text_ += "[";
  first_.push_back(true);
  return *this;
}

JsonWriter& JsonWriter::end_array() {
  const bool empty = first_.back();
  first_.pop_back();
  if (!empty) text_ += "\n" + std::string(2 * first_.size(), ' ');
  text_ += "]";
  return *this;
}

JsonWriter& JsonWriter::value(const std::string& key, const std::string& v) {
  prefix(key);
  text_ += json_escape(v);
  return *this;
}

JsonWriter& JsonWriter::value(const std::string& key, double v) {
  prefix(key);
  if (!std::isfinite(v)) {
    text_ += "null";
  } else {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.10g", v);
    text_ += buffer;
  }
  return *this;
}

JsonWriter& JsonWriter::value(const std::string& key, int64_t v) {
  prefix(key);
  text_ += std::to_string(v);
  return *this;
}

JsonWriter& JsonWriter::value(const std::string& key, bool v) {
  prefix(key);
  text_ += v ? "true" : "false";
  return *this;
}

void JsonWriter::save(const std::string& path) const {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code error;
  if (!parent.empty()) std::filesystem::create_directories(parent, error);
  std::ofstream file(path);
  if (!file) throw UsageError("cannot write --json file '" + path + "'");
  file << text_;
  if (!file) throw UsageError("failed writing --json file '" + path + "'");
}

}  // namespace wideattn::cli
