// A small streaming JSON writer (objects, arrays, strings, numbers, booleans), enough for the
// benchmark records. Keys and values are written in call order; the writer tracks commas.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wideattn::cli {

class JsonWriter {
 public:
  JsonWriter& begin_object(const std::string& key = "");
  JsonWriter& end_object();
  JsonWriter& begin_array(const std::string& key = "");
  JsonWriter& end_array();
  JsonWriter& value(const std::string& key, const std::string& v);
  JsonWriter& value(const std::string& key, const char* v) { return value(key, std::string(v)); }
  JsonWriter& value(const std::string& key, double v);  // non-finite -> null
  JsonWriter& value(const std::string& key, int64_t v);
  JsonWriter& value(const std::string& key, int32_t v) { return value(key, int64_t{v}); }
  JsonWriter& value(const std::string& key, bool v);

  const std::string& text() const { return text_; }
  // Writes text() to `path`; throws UsageError when the file cannot be written.
  void save(const std::string& path) const;

 private:
  void prefix(const std::string& key);
  std::string text_;
  std::vector<bool> first_;  // per open container: nothing written in it yet
};

std::string json_escape(const std::string& s);

}  // namespace wideattn::cli
