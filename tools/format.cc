#include "tools/format.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

namespace upcache::tool {

std::string human_bytes(double bytes) {
  static const char* const units[] = {"B", "K", "M", "G", "T", "P", "E"};
  int u = 0;
  while (bytes >= 1024 && u < 6) {
    bytes /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0) snprintf(buf, sizeof buf, "%.0fB", bytes);
  else if (bytes < 9.995) snprintf(buf, sizeof buf, "%.2f%s", bytes, units[u]);
  else if (bytes < 99.95) snprintf(buf, sizeof buf, "%.1f%s", bytes, units[u]);
  else snprintf(buf, sizeof buf, "%.0f%s", bytes, units[u]);
  return buf;
}

std::string grouped(uint64_t n) {
  std::string digits = std::to_string(n), out;
  int count = 0;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    if (count != 0 && count % 3 == 0) out.push_back(',');
    out.push_back(*it);
    ++count;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::string percent(uint64_t num, uint64_t den) {
  if (den == 0) return "-";
  char buf[32];
  double p = 100.0 * static_cast<double>(num) / static_cast<double>(den);
  // Never round a partial ratio up to 100% (or a non-zero one down to 0%).
  if (num < den && p > 99.9) p = 99.9;
  if (num > 0 && p < 0.1) p = 0.1;
  snprintf(buf, sizeof buf, "%.1f%%", p);
  return buf;
}

std::string duration(double s) {
  char buf[32];
  if (s < 0) s = 0;
  if (s < 10) snprintf(buf, sizeof buf, "%.2fs", s);
  else if (s < 60) snprintf(buf, sizeof buf, "%.1fs", s);
  else if (s < 3600) snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  else if (s < 86400) snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, int(s) % 3600 / 60);
  else snprintf(buf, sizeof buf, "%dd%02dh", int(s / 86400), int(s) % 86400 / 3600);
  return buf;
}

namespace {

// Length of the valid UTF-8 sequence at s[i], or 0.
size_t utf8_len(const std::string& s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t n = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  if (n == 3 && c == 0xE0 && b(i + 1) < 0xA0) return 0;  // overlong
  if (n == 3 && c == 0xED && b(i + 1) >= 0xA0) return 0; // surrogates
  if (n == 4 && c == 0xF0 && b(i + 1) < 0x90) return 0;  // overlong
  if (n == 4 && c == 0xF4 && b(i + 1) >= 0x90) return 0; // > U+10FFFF
  return n;
}

}  // namespace

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    char buf[8];
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7f) {
      snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else if (c >= 0x80) {
      size_t n = utf8_len(s, i);
      if (n == 0) {
        snprintf(buf, sizeof buf, "\\u%04x", c);
        out += buf;
      } else {
        out.append(s, i, n);
        i += n;
        continue;
      }
    } else {
      out.push_back(static_cast<char>(c));
    }
    ++i;
  }
  out.push_back('"');
  return out;
}

Table::Table(std::vector<std::string> header, std::vector<bool> left)
    : header_(std::move(header)), left_(std::move(left)) {
  left_.resize(header_.size(), false);
}

void Table::row(std::vector<std::string> cells) {
  cells.resize(header_.size());
  rows_.push_back(std::move(cells));
}

std::string Table::render(const std::string& indent) const {
  std::vector<size_t> width(header_.size());
  for (size_t c = 0; c < header_.size(); ++c) {
    width[c] = header_[c].size();
    for (const auto& r : rows_) width[c] = std::max(width[c], r[c].size());
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string l = indent;
    for (size_t c = 0; c < cells.size(); ++c) {
      if (c) l += "  ";
      bool last = c + 1 == cells.size();
      size_t pad = width[c] - cells[c].size();
      if (left_[c]) {
        l += cells[c];
        if (!last) l.append(pad, ' ');
      } else {
        l.append(pad, ' ');
        l += cells[c];
      }
    }
    while (!l.empty() && l.back() == ' ') l.pop_back();
    out += l;
    out += '\n';
  };
  line(header_);
  for (const auto& r : rows_) line(r);
  return out;
}

}  // namespace upcache::tool
