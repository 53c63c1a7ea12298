// upcache's own messages: one line each, to stderr or to the UPCACHE_LOG file.
//
// UPCACHE_LOG=file appends to `file` (opened O_WRONLY|O_CREAT|O_APPEND|
// O_CLOEXEC, mode 0666 minus the umask) instead of standard error; under
// AT_SECURE Config::from_env ignores it. UPCACHE_LOG_LEVEL: 0 silent, 1
// problems (the default), 2 decisions, 3 debug; a message of level L is
// written when L <= the configured level.
//
// The file's descriptor is one of the shim's invisible descriptors (DESIGN,
// contract point 7): it is moved to the top of the program's descriptor range
// and owns_fd() makes close/dup/fcntl/close_range treat it as a descriptor the
// program never had (shim/interpose_open.cc).
//
// Every line goes out with one write(2) (a raw system call) from a stack
// buffer: no allocation, no stdio, no lock. Async-signal-safe after init();
// before init() messages go to stderr at level 1.
#pragma once

#include <cstddef>
#include <cstdint>

namespace upcache::shim::log {

// Opens `path` (null or empty: stderr) and sets the level. Called once from
// the library constructor. Returns false (messages then go to stderr) if
// the file cannot be opened.
bool init(const char* path, int level);

// The configured level and whether a message of `level` is written.
int level();
inline bool enabled(int lvl) { return lvl <= level(); }

// Is `fd` the log file's descriptor (the shim's own)?
bool owns_fd(int fd);
// The program dup2()s onto the log's descriptor: moves the log to another
// high number (a duplicate; `fd` stays open, no longer the log's, for the
// program's dup2 to replace). Returns 0 or -errno.
int relocate(int fd);

// One line builder on the stack: append text and numbers, then emit().
// Lines longer than the buffer are cut.
class Line {
 public:
  Line& s(const char* text);
  Line& dec(int64_t v);
  Line& udec(uint64_t v);
  Line& hex(uint64_t v);  // 0x...
  // Writes the line (with a newline) in one write(2), whatever the level.
  void emit();

 private:
  char buf_[512];
  size_t n_ = 0;
};

// Writes one line "a b c d" (the parts concatenated) if `lvl` is enabled.
void line(int lvl, const char* a, const char* b = nullptr, const char* c = nullptr,
          const char* d = nullptr);

}  // namespace upcache::shim::log
