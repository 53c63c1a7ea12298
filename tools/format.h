// Text formatting shared by the subcommands of the `upcache` tool: human
// units, aligned tables, JSON strings.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace upcache::tool {

// 0B, 512B, 4.00K, 64.0K, 512K, 1.00M ... (binary units: K = 1024).
std::string human_bytes(double bytes);
// 12,345,678
std::string grouped(uint64_t n);
// "99.9%" (one decimal), or "-" when den == 0.
std::string percent(uint64_t num, uint64_t den);
// 0.25s, 12.3s, 5m02s, 2h03m, 3d04h
std::string duration(double seconds);
// A JSON string literal, quotes included. Bytes that are not valid UTF-8 are
// written as \u00XX so the output is always valid JSON.
std::string json_string(const std::string& s);

// Columns of text, right-aligned except the columns marked left; the last
// column is never padded.
class Table {
 public:
  explicit Table(std::vector<std::string> header, std::vector<bool> left = {});
  void row(std::vector<std::string> cells);
  std::string render(const std::string& indent = "") const;
  bool empty() const { return rows_.empty(); }

 private:
  std::vector<std::string> header_;
  std::vector<bool> left_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace upcache::tool
