#include "shim/log.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include <atomic>
#include <cstring>

#include "core/decimal.h"
#include "core/sys.h"

namespace upcache::shim::log {
namespace {

std::atomic<int> g_fd{2};
std::atomic<int> g_own_fd{-1};  // the UPCACHE_LOG descriptor, when there is one
std::atomic<int> g_level{1};
std::atomic<int> g_writers{0};  // emit() calls between loading g_fd and their write

void write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    long w = sys::raw(SYS_write, fd, reinterpret_cast<long>(p), static_cast<long>(n));
    if (w == -EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// Moves `fd` to the highest free number below the soft descriptor limit
// (close-on-exec) so it never takes a number the program would get.
int move_high(int fd) {
  rlimit rl{};
  long top = 1024;
  if (sys::raw(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, reinterpret_cast<long>(&rl)) == 0 &&
      rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > 16) {
    top = static_cast<long>(rl.rlim_cur < (1u << 20) ? rl.rlim_cur : (1u << 20));
  }
  for (long want = top - 1; want >= top - 64 && want > fd; --want) {
    long nfd = sys::raw(SYS_fcntl, fd, F_DUPFD_CLOEXEC, want);
    if (nfd >= 0) {
      sys::raw(SYS_close, fd);
      return static_cast<int>(nfd);
    }
  }
  return fd;  // could not move it: keep it where it is (still close-on-exec)
}

// A duplicate of `fd` at another free high number (close-on-exec); `fd`
// stays open. Returns it or -errno.
int move_high_dup(int fd) {
  rlimit rl{};
  long top = 1024;
  if (sys::raw(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, reinterpret_cast<long>(&rl)) == 0 &&
      rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > 16) {
    top = static_cast<long>(rl.rlim_cur < (1u << 20) ? rl.rlim_cur : (1u << 20));
  }
  for (long want = top - 1; want >= top - 128 && want > 2; --want) {
    long nfd = sys::raw(SYS_fcntl, fd, F_DUPFD_CLOEXEC, want);
    if (nfd >= 0 && nfd != fd) return static_cast<int>(nfd);
    if (nfd >= 0) sys::raw(SYS_close, nfd);
  }
  return -EMFILE;
}

}  // namespace

bool init(const char* path, int lvl) {
  g_level.store(lvl, std::memory_order_relaxed);
  if (path == nullptr || path[0] == '\0') return true;
  long fd = sys::raw(SYS_openat, AT_FDCWD, reinterpret_cast<long>(path),
                     O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
  if (fd < 0) {
    line(1, "upcache: cannot open UPCACHE_LOG file ", path, "; logging to standard error");
    return false;
  }
  int high = move_high(static_cast<int>(fd));
  g_own_fd.store(high, std::memory_order_release);
  g_fd.store(high, std::memory_order_release);
  return true;
}

int level() { return g_level.load(std::memory_order_relaxed); }

bool owns_fd(int fd) { return fd >= 0 && fd == g_own_fd.load(std::memory_order_acquire); }

Line& Line::s(const char* text) {
  if (text == nullptr) text = "(null)";
  while (*text != '\0' && n_ < sizeof buf_ - 1) buf_[n_++] = *text++;
  return *this;
}

Line& Line::udec(uint64_t v) {
  char digits[24];
  format_decimal(digits, v);
  return s(digits);
}

Line& Line::dec(int64_t v) {
  if (v < 0) {
    s("-");
    return udec(static_cast<uint64_t>(0) - static_cast<uint64_t>(v));
  }
  return udec(static_cast<uint64_t>(v));
}

Line& Line::hex(uint64_t v) {
  char tmp[16];
  int i = 0;
  do {
    tmp[i++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v != 0);
  s("0x");
  while (i > 0 && n_ < sizeof buf_ - 1) buf_[n_++] = tmp[--i];
  return *this;
}

void Line::emit() {
  buf_[n_++] = '\n';  // n_ <= sizeof buf_ - 1 before this
  g_writers.fetch_add(1, std::memory_order_acq_rel);
  write_all(g_fd.load(std::memory_order_acquire), buf_, n_);
  g_writers.fetch_sub(1, std::memory_order_acq_rel);
  n_ = 0;
}

int relocate(int fd) {
  if (!owns_fd(fd)) return -EBADF;
  int moved = move_high_dup(fd);
  if (moved < 0) return moved;
  g_fd.store(moved, std::memory_order_release);
  g_own_fd.store(moved, std::memory_order_release);
  // Writers that loaded the old number finish before it changes hands
  // (bounded: a writer interrupted on this very thread never finishes).
  for (int i = 0; i < 100000 && g_writers.load(std::memory_order_acquire) != 0; ++i) sys::raw(SYS_sched_yield);
  return 0;
}

void line(int lvl, const char* a, const char* b, const char* c, const char* d) {
  if (!enabled(lvl)) return;
  Line l;
  l.s(a);
  if (b != nullptr) l.s(b);
  if (c != nullptr) l.s(c);
  if (d != nullptr) l.s(d);
  l.emit();
}

}  // namespace upcache::shim::log
