// Descriptors: the open family, close, dup, fcntl, close_range, and the stdio
// calls that close a descriptor behind the program's back (fclose, freopen).
//
// Every descriptor returned by a wrapper gets its slot in the fd table set
// (a description if the cache serves the file, kPassthrough if not), which
// also overwrites whatever a descriptor closed unseen (by libc internally,
// or by a raw system call) left there. The cache decides, with
// Cache::attach, whether a file is served.
//
// Descriptors opened before the constructor ran, inherited at start-up, or
// made by calls the shim does not wrap (pipe, socket, stdio's own fopen...)
// have no slot until their first wrapped call adopts them (shim/adopt.h).
//
// The cache's own descriptors are invisible: close, dup*, fcntl on them fail
// with EBADF as on a descriptor the program never had, and close_range
// steps around them.
#include <dirent.h>
#include <sched.h>
#include <linux/close_range.h>
#include <stdarg.h>
#include <stdio.h>
#include <pty.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <utmp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/cache.h"
#include "core/sys.h"
#include "shim/coherence.h"
#include "shim/interpose.h"
#include "shim/kernel_offset.h"
#include "shim/log.h"
#include "shim/real_calls.h"
#include "shim/splice_from_cache.h"

namespace upcache::shim {

// The shim's own descriptors: the cache's (core) and the UPCACHE_LOG file.
inline bool owns_fd_any(int fd) { return g_cache->owns_fd(fd) || log::owns_fd(fd) || splice_owns_fd(fd); }

namespace {

bool needs_mode(int flags) { return (flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE; }

// Registers a descriptor a wrapper just opened.
void after_open(int fd, const char* path, int flags) {
  if (fd < 0 || !g_ready.load(std::memory_order_acquire)) return;
  Scope scope;
  ErrnoKeeper keep;
  const int access = flags & O_ACCMODE;
  if (t_depth > 1 || (flags & (O_PATH | O_DIRECT)) != 0 ||
      (access != O_RDONLY && access != O_RDWR)) {
    // Not served: nested (the cache may be busy on this thread), a path-only
    // descriptor, direct I/O asked for by the program, or not readable:
    // write-only, or access mode 3 (neither read nor write, for ioctls),
    // whose reads the kernel fails with EBADF.
    g_fds.set(fd, t_depth > 1 ? FdTable::kNone : FdTable::kPassthrough);
    if ((flags & O_TRUNC) != 0 && t_depth == 1) invalidate_fd_everywhere(fd, 0, 0);
    return;
  }
  FileRef* file = g_cache->attach(fd, path, flags);
  if (file == nullptr) {
    g_fds.set(fd, FdTable::kPassthrough);
    return;
  }
  if ((flags & O_TRUNC) != 0) invalidate_fd_everywhere(fd, 0, 0);
  Description* d = description_new(file, g_cache->new_ra_state(), flags);
  if (d == nullptr) {
    g_cache->release(file);
    g_fds.set(fd, FdTable::kPassthrough);
    return;
  }
  g_fds.set(fd, reinterpret_cast<uintptr_t>(d));
}

bool owned(int fd) { return g_ready.load(std::memory_order_acquire) && owns_fd_any(fd); }

template <typename T>
T ebadf() {
  errno = EBADF;
  return static_cast<T>(-1);
}

// dup, dup2, dup3, F_DUPFD*: the new descriptor shares the old one's slot.
template <typename Call>
int duplicate(int fd, Call call) {
  if (!g_ready.load(std::memory_order_acquire)) return call();
  if (owns_fd_any(fd)) return ebadf<int>();
  Scope scope;
  uintptr_t seen = FdTable::kNone;
  Description* d = g_fds.acquire(fd, &seen);  // before the call: fd may be closed meanwhile
  int nfd = call();
  ErrnoKeeper keep;
  if (nfd >= 0 && nfd != fd) {
    g_fds.set(nfd, d != nullptr ? reinterpret_cast<uintptr_t>(d) : seen);
  } else if (d != nullptr) {
    d->unref();
  }
  return nfd;
}

// Empties the slot of a descriptor about to be closed (before the real close:
// the kernel cannot give the number to another thread's open until then).
void forget(int fd) {
  Scope scope;
  ErrnoKeeper keep;
  uintptr_t old = g_fds.take(fd);
  if (FdTable::is_description(old)) FdTable::as_description(old)->unref();
}

// The descriptor stays open but leaves the shim's hands (freopen): the
// kernel's offset must be exact first.
void forget_keep_open(int fd) {
  Scope scope;
  ErrnoKeeper keep;
  uintptr_t old = g_fds.take(fd);
  if (!FdTable::is_description(old)) return;
  Description* d = FdTable::as_description(old);
  if (t_depth == 1) {
    PosLockGuard lock(d);
    if (!d->shared.load()) sync_kernel_offset(fd, d);
  }
  d->unref();
}

// Lists the cache's descriptors in [first, last] into out (ascending, at
// most `max`), by reading /proc/self/fd; falls back to probing every number
// up to the table's capacity. Returns the count, or -1 if there were more.
int owned_in_range(unsigned first, unsigned last, int* out, int max) {
  int n = 0;
  int dir = sys::openat(AT_FDCWD, "/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    alignas(8) char buf[4096];
    for (;;) {
      long got = sys::raw(SYS_getdents64, dir, reinterpret_cast<long>(buf), sizeof buf);
      if (got <= 0) break;
      for (long pos = 0; pos < got;) {
        auto* e = reinterpret_cast<struct dirent64*>(buf + pos);
        pos += e->d_reclen;
        unsigned v = 0;
        const char* s = e->d_name;
        if (*s < '0' || *s > '9') continue;
        while (*s >= '0' && *s <= '9') v = v * 10 + static_cast<unsigned>(*s++ - '0');
        if (static_cast<int>(v) == dir || v < first || v > last) continue;
        if (!owns_fd_any(static_cast<int>(v))) continue;
        if (n == max) {
          sys::close(dir);
          return -1;
        }
        int i = n++;
        while (i > 0 && out[i - 1] > static_cast<int>(v)) {
          out[i] = out[i - 1];
          --i;
        }
        out[i] = static_cast<int>(v);
      }
    }
    sys::close(dir);
    return n;
  }
  unsigned cap = static_cast<unsigned>(g_fds.capacity());
  for (unsigned v = first; v <= last && v < cap; ++v) {
    if (!owns_fd_any(static_cast<int>(v))) continue;
    if (n == max) return -1;
    out[n++] = static_cast<int>(v);
  }
  return n;
}

int do_close_range(unsigned first, unsigned last, int flags) {
  if (!g_ready.load(std::memory_order_acquire) || (flags & CLOSE_RANGE_CLOEXEC) != 0 || first > last) {
    // Close-on-exec only: the cache's descriptors are close-on-exec already.
    return real::close_range(first, last, flags);
  }
  Scope scope;
  constexpr int kMaxOwned = 256;
  int own[kMaxOwned];
  int n = owned_in_range(first, last, own, kMaxOwned);
  g_fds.take_range(first, last, [](uintptr_t old) {
    if (FdTable::is_description(old)) FdTable::as_description(old)->unref();
  });
  if (n < 0) {
    // More of the cache's descriptors than expected: close one by one.
    unsigned cap = static_cast<unsigned>(g_fds.capacity());
    for (unsigned v = first; v <= last && v < cap; ++v) {
      if (!owns_fd_any(static_cast<int>(v))) real::close(static_cast<int>(v));
    }
    return 0;
  }
  // Close the stretches between the cache's descriptors.
  int result = 0;
  unsigned lo = first;
  for (int i = 0; i < n; ++i) {
    unsigned o = static_cast<unsigned>(own[i]);
    if (o > lo) {
      int r = real::close_range(lo, o - 1, flags);
      if (r < 0 && result == 0) result = r;
    }
    if (o == ~0u) return result;
    lo = o + 1;
  }
  if (lo <= last) {
    int r = real::close_range(lo, last, flags);
    if (r < 0 && result == 0) result = r;
  }
  return result;
}

}  // namespace
}  // namespace upcache::shim

using namespace upcache::shim;

#define UPCACHE_MODE_ARG(flags)                       \
  mode_t mode = 0;                                    \
  if (needs_mode(flags)) {                            \
    va_list ap;                                       \
    va_start(ap, flags);                              \
    mode = static_cast<mode_t>(va_arg(ap, unsigned)); \
    va_end(ap);                                       \
  }

UPCACHE_EXPORT int open(const char* path, int flags, ...) {
  UPCACHE_MODE_ARG(flags)
  int fd = real::open64(path, flags, mode);
  after_open(fd, path, flags);
  return fd;
}
UPCACHE_EXPORT int open64(const char* path, int flags, ...) {
  UPCACHE_MODE_ARG(flags)
  int fd = real::open64(path, flags, mode);
  after_open(fd, path, flags);
  return fd;
}
UPCACHE_EXPORT int openat(int dirfd, const char* path, int flags, ...) {
  UPCACHE_MODE_ARG(flags)
  int fd = real::openat64(dirfd, path, flags, mode);
  after_open(fd, path, flags);
  return fd;
}
UPCACHE_EXPORT int openat64(int dirfd, const char* path, int flags, ...) {
  UPCACHE_MODE_ARG(flags)
  int fd = real::openat64(dirfd, path, flags, mode);
  after_open(fd, path, flags);
  return fd;
}
UPCACHE_EXPORT int __open_2(const char* path, int flags) {
  int fd = real::open64_2(path, flags);
  after_open(fd, path, flags);
  return fd;
}
UPCACHE_EXPORT int __open64_2(const char* path, int flags) {
  int fd = real::open64_2(path, flags);
  after_open(fd, path, flags);
  return fd;
}
UPCACHE_EXPORT int __openat_2(int dirfd, const char* path, int flags) {
  int fd = real::openat64_2(dirfd, path, flags);
  after_open(fd, path, flags);
  return fd;
}
UPCACHE_EXPORT int __openat64_2(int dirfd, const char* path, int flags) {
  int fd = real::openat64_2(dirfd, path, flags);
  after_open(fd, path, flags);
  return fd;
}
UPCACHE_EXPORT int creat(const char* path, mode_t mode) {
  int fd = real::creat64(path, mode);
  after_open(fd, path, O_CREAT | O_WRONLY | O_TRUNC);
  return fd;
}
UPCACHE_EXPORT int creat64(const char* path, mode_t mode) {
  int fd = real::creat64(path, mode);
  after_open(fd, path, O_CREAT | O_WRONLY | O_TRUNC);
  return fd;
}

UPCACHE_EXPORT int close(int fd) {
  if (g_ready.load(std::memory_order_acquire)) {
    if (owns_fd_any(fd)) return ebadf<int>();
    forget(fd);
  }
  return real::close(fd);
}

UPCACHE_EXPORT int close_range(unsigned first, unsigned last, int flags) noexcept {
  return do_close_range(first, last, flags);
}

UPCACHE_EXPORT void closefrom(int lowfd) noexcept {
  if (lowfd < 0) lowfd = 0;
  if (do_close_range(static_cast<unsigned>(lowfd), ~0u, 0) == 0) return;
  // close_range refused (old kernel): one by one up to the table's size.
  int cap = g_fds.capacity();
  for (int fd = lowfd; fd < cap; ++fd) {
    if (!owned(fd)) {
      if (g_ready.load(std::memory_order_acquire)) forget(fd);
      real::close(fd);
    }
  }
}

UPCACHE_EXPORT int dup(int fd) noexcept {
  return duplicate(fd, [&] { return real::dup(fd); });
}
// dup2/dup3 onto one of the shim's own descriptor numbers (the program may
// name any number; ours are invisible to it): ours moves away first (core's
// backend, the log, the splice pipes each know how to re-point their users
// safely), then the program's call runs as without upcache. If that call
// fails, the number is closed, as the program believed it was.
template <typename Call>
int duplicate_onto(int fd, int fd2, Call call) {
  if (owned(fd2) && !owned(fd)) {
    if (!active()) {
      // Nested (a signal handler inside the shim): moving ours could wait
      // for this very thread. Refuse rather than hand over our file.
      errno = EBUSY;
      return -1;
    }
    int rc = -EBUSY;
    {
      Scope scope;
      ErrnoKeeper keep;
      for (int attempt = 0; attempt < 1000 && owns_fd_any(fd2); ++attempt) {
        if (g_cache->owns_fd(fd2)) rc = g_cache->relocate_fd(fd2);
        else if (log::owns_fd(fd2)) rc = log::relocate(fd2);
        else if (splice_owns_fd(fd2)) rc = splice_relocate_fd(fd2);
        if (rc == 0 || rc != -EBUSY) break;
        sched_yield();  // a file being closed: its descriptor is about to go
      }
      if (owns_fd_any(fd2)) {
        keep.set(rc == 0 ? EBUSY : static_cast<int>(-rc));
        return -1;
      }
    }
    int r = duplicate(fd, call);
    if (r < 0) {
      ErrnoKeeper keep;
      if (rc == 0) real::close(fd2);  // our old duplicate, had the program's call not replaced it
    }
    return r;
  }
  return duplicate(fd, call);
}

UPCACHE_EXPORT int dup2(int fd, int fd2) noexcept {
  return duplicate_onto(fd, fd2, [&] { return real::dup2(fd, fd2); });
}
UPCACHE_EXPORT int dup3(int fd, int fd2, int flags) noexcept {
  return duplicate_onto(fd, fd2, [&] { return real::dup3(fd, fd2, flags); });
}

// The program holds a lock it asked for: the cache may check files it
// serves on the strength of locks (Cache::synchronized).
static void lock_taken() {
  if (!g_ready.load(std::memory_order_acquire) || t_depth > 0) return;
  Scope scope;
  ErrnoKeeper keep;
  g_cache->synchronized();
}

static int do_fcntl(int fd, int cmd, void* arg) {
  if (!g_ready.load(std::memory_order_acquire)) return real::fcntl64(fd, cmd, arg);
  if (owns_fd_any(fd)) return ebadf<int>();
  switch (cmd) {
    case F_DUPFD:
    case F_DUPFD_CLOEXEC:
      return duplicate(fd, [&] { return real::fcntl64(fd, cmd, arg); });
    case F_SETFL: {
      int r = real::fcntl64(fd, cmd, arg);
      if (r < 0) return r;
      Scope scope;
      DescRef d(fd);
      if (d) {
        ErrnoKeeper keep;
        int now = upcache::sys::fcntl(fd, F_GETFL);
        if (now >= 0) {
          if ((now & O_DIRECT) != 0) {
            // From now on the kernel serves reads: make its offset exact.
            PosLockGuard lock(d.get());
            if (!d->shared.load()) sync_kernel_offset(fd, d.get());
          }
          d->status_flags.store(now, std::memory_order_relaxed);
        }
      }
      return r;
    }
    case F_SETLK:
    case F_SETLKW:
    case F_OFD_SETLK:
    case F_OFD_SETLKW: {
      int r = real::fcntl64(fd, cmd, arg);
      if (r == 0 && static_cast<const struct flock*>(arg)->l_type != F_UNLCK) lock_taken();
      return r;
    }
    default:
      return real::fcntl64(fd, cmd, arg);
  }
}

// flock(2) is a system call glibc wraps without a cancellation point.
UPCACHE_EXPORT int flock(int fd, int op) noexcept {
  if (g_ready.load(std::memory_order_acquire) && owns_fd_any(fd)) return ebadf<int>();
  long r = upcache::sys::raw(SYS_flock, fd, op);
  if (r < 0) return fail<int>(r);
  if ((op & (LOCK_SH | LOCK_EX)) != 0) lock_taken();
  return 0;
}

UPCACHE_EXPORT int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  return do_fcntl(fd, cmd, arg);
}
UPCACHE_EXPORT int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  return do_fcntl(fd, cmd, arg);
}

// daemon, login_tty, forkpty (child side) put other files on 0, 1 and 2
// with glibc's internal dup2: whatever the shim knew of those numbers is
// forgotten (a descriptor inherited at start-up and adopted there would
// otherwise go on being served from its old file); they are adopted again
// at their next call.
static void forget_standard_descriptors() {
  if (!g_ready.load(std::memory_order_acquire)) return;
  for (int fd = 0; fd <= 2; ++fd) forget(fd);
}

UPCACHE_EXPORT int daemon(int nochdir, int noclose) noexcept {
  int r = real::daemon(nochdir, noclose);
  if (r == 0 && !noclose) forget_standard_descriptors();
  return r;
}
UPCACHE_EXPORT int login_tty(int fd) noexcept {
  int r = real::login_tty(fd);
  if (r == 0) forget_standard_descriptors();
  return r;
}
UPCACHE_EXPORT pid_t forkpty(int* amaster, char* name, const struct termios* termp,
                             const struct winsize* winp) noexcept {
  pid_t r = real::forkpty(amaster, name, termp, winp);
  if (r == 0) forget_standard_descriptors();
  return r;
}

UPCACHE_EXPORT int fclose(FILE* stream) {
  if (g_ready.load(std::memory_order_acquire) && stream != nullptr) {
    int fd = fileno(stream);
    if (fd >= 0) forget(fd);
  }
  return real::fclose(stream);
}

UPCACHE_EXPORT FILE* freopen(const char* path, const char* mode, FILE* stream) {
  if (g_ready.load(std::memory_order_acquire) && stream != nullptr) {
    int fd = fileno(stream);
    if (fd >= 0) forget_keep_open(fd);
  }
  return real::freopen64(path, mode, stream);
}
UPCACHE_EXPORT FILE* freopen64(const char* path, const char* mode, FILE* stream) {
  return freopen(path, mode, stream);
}
