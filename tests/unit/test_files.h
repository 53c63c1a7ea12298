// Test helpers: files whose bytes encode their own offsets, so any byte read
// from anywhere can be checked on its own.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace upcache::testing {

// The byte at `offset` of a pattern file with `salt`.
inline uint8_t pattern_byte(uint64_t offset, uint64_t salt) {
  uint64_t word = (offset & ~7ull) ^ (salt * 0x9E3779B97F4A7C15ull);
  return static_cast<uint8_t>(word >> ((offset & 7) * 8));
}

inline void fill_pattern(std::vector<char>& buf, uint64_t offset, uint64_t salt) {
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<char>(pattern_byte(offset + i, salt));
}

// Writes a pattern file of `size` bytes at `path`; returns false on failure.
inline bool write_pattern_file(const std::string& path, uint64_t size, uint64_t salt) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return false;
  std::vector<char> buf(1 << 20);
  for (uint64_t off = 0; off < size;) {
    uint64_t n = size - off < buf.size() ? size - off : buf.size();
    buf.resize(n);
    fill_pattern(buf, off, salt);
    if (::pwrite(fd, buf.data(), n, static_cast<off_t>(off)) != static_cast<ssize_t>(n)) {
      ::close(fd);
      return false;
    }
    off += n;
  }
  ::fsync(fd);
  ::close(fd);
  return true;
}

// A scratch directory on a disk filesystem (the test's working directory is
// inside the build tree, on the same filesystem as the sources), removed by
// the caller.
inline std::string scratch_dir(const char* name) {
  std::string dir = std::string("./scratch-") + name + "-" + std::to_string(getpid());
  std::string cmd = "mkdir -p " + dir;
  if (system(cmd.c_str()) != 0) return "";
  char real[4096];
  return realpath(dir.c_str(), real) ? std::string(real) : dir;
}

inline void remove_dir(const std::string& dir) {
  std::string cmd = "rm -rf '" + dir + "'";
  if (system(cmd.c_str()) != 0) {
  }
}

}  // namespace upcache::testing
