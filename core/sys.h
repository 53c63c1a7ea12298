// Raw system calls for core/.
//
// Why: libupcache.so exports read/open/close/... itself, so a libc call made
// from inside the library could land back in the shim. Core therefore talks to
// the kernel only through these wrappers, which issue the system call directly,
// return -errno on failure and leave the caller's errno untouched.
// All are async-signal-safe.
#pragma once

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace upcache::sys {

#if defined(__x86_64__)
inline long raw(long nr, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0, long f = 0) {
  long ret;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;  // -errno on failure, as the kernel returns it
}
#else
inline long raw(long nr, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0, long f = 0) {
  int saved = errno;
  long ret = ::syscall(nr, a, b, c, d, e, f);
  if (ret == -1) ret = -errno;
  errno = saved;
  return ret;
}
#endif

inline int openat(int dirfd, const char* path, int flags, mode_t mode = 0) {
  return static_cast<int>(raw(SYS_openat, dirfd, reinterpret_cast<long>(path), flags, mode));
}
inline int close(int fd) { return static_cast<int>(raw(SYS_close, fd)); }
inline int64_t pread(int fd, void* buf, uint64_t n, int64_t off) {
  return raw(SYS_pread64, fd, reinterpret_cast<long>(buf), static_cast<long>(n), off);
}
inline int64_t read(int fd, void* buf, uint64_t n) {
  return raw(SYS_read, fd, reinterpret_cast<long>(buf), static_cast<long>(n));
}
inline int64_t write(int fd, const void* buf, uint64_t n) {
  return raw(SYS_write, fd, reinterpret_cast<long>(buf), static_cast<long>(n));
}
inline int64_t preadv(int fd, const struct iovec* iov, int cnt, int64_t off) {
  // The kernel takes the offset split in two longs (low, high).
  return raw(SYS_preadv, fd, reinterpret_cast<long>(iov), cnt, static_cast<long>(off), 0);
}
inline int fstat(int fd, struct stat* st) {
  return static_cast<int>(raw(SYS_fstat, fd, reinterpret_cast<long>(st)));
}
inline int fstatfs(int fd, struct statfs* st) {
  return static_cast<int>(raw(SYS_fstatfs, fd, reinterpret_cast<long>(st)));
}
inline int statx(int dirfd, const char* path, int flags, unsigned mask, struct statx* out) {
  return static_cast<int>(
      raw(SYS_statx, dirfd, reinterpret_cast<long>(path), flags, mask, reinterpret_cast<long>(out)));
}
inline int fcntl(int fd, int cmd, long arg = 0) { return static_cast<int>(raw(SYS_fcntl, fd, cmd, arg)); }
inline int64_t lseek(int fd, int64_t off, int whence) { return raw(SYS_lseek, fd, off, whence); }
inline int fadvise(int fd, int64_t off, int64_t len, int advice) {
  return static_cast<int>(raw(SYS_fadvise64, fd, off, len, advice));
}
inline int ioctl(int fd, unsigned long req, void* arg) {
  return static_cast<int>(raw(SYS_ioctl, fd, static_cast<long>(req), reinterpret_cast<long>(arg)));
}
inline int ftruncate(int fd, int64_t length) { return static_cast<int>(raw(SYS_ftruncate, fd, length)); }
inline int fallocate(int fd, int mode, int64_t off, int64_t len) {
  return static_cast<int>(raw(SYS_fallocate, fd, mode, off, len));
}
inline int fchmod(int fd, mode_t mode) { return static_cast<int>(raw(SYS_fchmod, fd, mode)); }
inline int unlinkat(int dirfd, const char* path, int flags) {
  return static_cast<int>(raw(SYS_unlinkat, dirfd, reinterpret_cast<long>(path), flags));
}
// Directory entries as struct linux_dirent64 records; bytes read or -errno.
inline int64_t getdents64(int fd, void* buf, uint64_t n) {
  return raw(SYS_getdents64, fd, reinterpret_cast<long>(buf), static_cast<long>(n));
}
inline int64_t getrandom(void* buf, uint64_t n, unsigned flags) {
  return raw(SYS_getrandom, reinterpret_cast<long>(buf), static_cast<long>(n), flags);
}
// mmap returns the address, or -errno cast to a pointer: test with mmap_failed().
inline void* mmap(void* addr, uint64_t len, int prot, int flags, int fd, int64_t off) {
  return reinterpret_cast<void*>(
      raw(SYS_mmap, reinterpret_cast<long>(addr), static_cast<long>(len), prot, flags, fd, off));
}
inline bool mmap_failed(void* p) { return reinterpret_cast<unsigned long>(p) > -4096ul; }
inline int mmap_errno(void* p) { return static_cast<int>(-reinterpret_cast<long>(p)); }
inline int munmap(void* addr, uint64_t len) {
  return static_cast<int>(raw(SYS_munmap, reinterpret_cast<long>(addr), static_cast<long>(len)));
}
// prlimit64 (pid 0: self); glibc's struct rlimit is the kernel's rlimit64 on 64-bit.
inline int prlimit(int pid, int resource, const struct rlimit* new_limit, struct rlimit* old_limit) {
  return static_cast<int>(raw(SYS_prlimit64, pid, resource, reinterpret_cast<long>(new_limit),
                              reinterpret_cast<long>(old_limit)));
}
inline int eventfd(unsigned initval, int flags) {
  return static_cast<int>(raw(SYS_eventfd2, initval, flags));
}
inline int nanosleep_ns(uint64_t ns) {
  struct timespec ts = {static_cast<time_t>(ns / 1000000000ull), static_cast<long>(ns % 1000000000ull)};
  return static_cast<int>(raw(SYS_nanosleep, reinterpret_cast<long>(&ts), 0));
}
inline void sched_yield() { raw(SYS_sched_yield); }
// A clock in ns. Through the vDSO for the usual clocks (no system call).
inline int64_t clock_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}
inline int prctl(int option, long arg2) { return static_cast<int>(raw(SYS_prctl, option, arg2)); }
inline int getpid() { return static_cast<int>(raw(SYS_getpid)); }
inline int getppid() { return static_cast<int>(raw(SYS_getppid)); }
inline unsigned geteuid() { return static_cast<unsigned>(raw(SYS_geteuid)); }
inline int gettid() { return static_cast<int>(raw(SYS_gettid)); }
// Is process `pid` alive? (kill(pid, 0): ESRCH means gone; EPERM means alive.)
// What /proc/PID/stat says of a process: its state letter and its start time
// (clock ticks after boot). state is 0 when the process does not exist.
struct ProcStat {
  char state = 0;            // of the thread-group leader; 0: no such process
  uint64_t num_threads = 0;  // threads of the process not yet released
  uint64_t start_time = 0;   // clock ticks after boot, 0: unknown
  // Can it still run and finish what it started? A zombie (exited, not yet
  // reaped) cannot, though it still answers kill(pid, 0). But the leader
  // shows as a zombie as soon as the main thread exits (pthread_exit, or the
  // first thread to die of a SIGKILL) while other threads still run or still
  // wait for their I/O: the process is gone only when it is its last thread.
  bool can_run() const {
    if (state == 0 || state == 'X' || state == 'x') return false;
    return state != 'Z' || num_threads > 1;
  }
};
inline ProcStat proc_stat(int pid) {
  ProcStat out;
  char path[32] = "/proc/";
  char digits[12];
  int nd = 0;
  for (unsigned v = static_cast<unsigned>(pid); nd == 0 || v != 0; v /= 10) digits[nd++] = char('0' + v % 10);
  int n = 6;
  while (nd > 0) path[n++] = digits[--nd];
  for (const char* t = "/stat"; *t;) path[n++] = *t++;
  path[n] = 0;
  int fd = openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    // No /proc: only existence can be known, and a zombie looks alive.
    if (fd != -ENOENT && raw(SYS_kill, pid, 0) != -ESRCH) out.state = '?';
    return out;
  }
  char buf[512];
  int64_t got = raw(SYS_read, fd, reinterpret_cast<long>(buf), sizeof(buf) - 1);
  close(fd);
  if (got <= 0) return out;
  buf[got] = 0;
  // The command name may hold spaces and ')': fields start after the last ')'.
  const char* p = nullptr;
  for (int64_t i = got - 1; i >= 0; --i)
    if (buf[i] == ')') { p = buf + i + 1; break; }
  if (p == nullptr || p[0] != ' ' || p[1] == 0) return out;
  out.state = p[1];
  // Field N of proc(5) is the (N-2)th after the ')': num_threads (20) the
  // 18th, starttime (22) the 20th.
  auto number_at = [](const char*& q, int& field, int want) {
    for (; *q && field < want - 1; ++q)
      if (*q == ' ') ++field;
    uint64_t v = 0;
    while (*q >= '0' && *q <= '9') v = v * 10 + uint64_t(*q++ - '0');
    return v;
  };
  int field = 0;
  p += 1;
  out.num_threads = number_at(p, field, 18);
  out.start_time = number_at(p, field, 20);
  return out;
}

// Whether process `pid` can still finish what it started (see can_run). To
// tell a reused pid apart, use an owner word (core/owner.h).
inline bool pid_alive(int pid) { return proc_stat(pid).can_run(); }

}  // namespace upcache::sys
