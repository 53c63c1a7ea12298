#include "shim/real_calls.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/syscall.h>

#include <atomic>
#include <cerrno>

#include "core/sys.h"

namespace upcache::shim::real {
namespace {

// Set while this thread is inside dlsym: a call that lands back here then
// takes the raw system call instead of recursing into dlsym.
thread_local bool t_resolving __attribute__((tls_model("initial-exec"))) = false;

void* lookup(std::atomic<void*>& slot, const char* name) {
  void* p = slot.load(std::memory_order_acquire);
  if (__builtin_expect(p != nullptr, 1)) return p;
  if (t_resolving) return nullptr;
  t_resolving = true;
  p = dlsym(RTLD_NEXT, name);
  t_resolving = false;
  if (p != nullptr) slot.store(p, std::memory_order_release);
  return p;
}

// Converts a raw system call result to the libc convention.
long libc_ret(long r) {
  if (r < 0 && r > -4096) {
    errno = static_cast<int>(-r);
    return -1;
  }
  return r;
}

template <typename T>
T enosys(T value) {
  errno = ENOSYS;
  return value;
}

long lo(off_t off) { return static_cast<long>(static_cast<uint64_t>(off)); }

}  // namespace

#define UPCACHE_SLOT(name) std::atomic<void*> g_##name{nullptr};
#define UPCACHE_FN(name, type) reinterpret_cast<type>(lookup(g_##name, #name))

// The calls a program passes through most (a pipe, a socket): once resolved,
// one load and a tail jump, with no stack frame (issue 5: read() on a pipe
// at most 5% slower under the shim); resolving, or the raw system call while
// dlsym cannot be used, out of line.
#define UPCACHE_PASSTHROUGH(ret, name, params, args, raw)                     \
  __attribute__((noinline, cold)) static ret name##_unresolved params {       \
    if (auto f = UPCACHE_FN(name, ret(*) params)) return f args;              \
    return raw;                                                               \
  }                                                                           \
  ret name params {                                                           \
    if (void* p = g_##name.load(std::memory_order_acquire); __builtin_expect(p != nullptr, 1)) \
      return reinterpret_cast<ret(*) params>(p) args;                         \
    return name##_unresolved args;                                            \
  }

#define UPCACHE_REAL_NAMES(X)                                                                   \
  X(read) X(pread64) X(readv) X(preadv64) X(preadv64v2) X(write) X(pwrite64) X(writev)           \
  X(pwritev64) X(pwritev64v2) X(open64) X(openat64) X(__open64_2) X(__openat64_2) X(creat64)     \
  X(close) X(close_range) X(lseek64) X(dup) X(dup2) X(dup3) X(fcntl64) X(ftruncate64)            \
  X(truncate64) X(fclose) X(freopen64) X(fork) X(execve) X(execv) X(execvp) X(execvpe)           \
  X(fexecve) X(execveat) X(posix_spawn) X(posix_spawnp) X(system) X(popen) X(_exit)     \
  X(fallocate64) X(posix_fadvise64) X(readahead) X(sendfile64) X(copy_file_range) X(splice)     \
  X(sendmsg) X(sendmmsg) X(daemon) X(login_tty) X(forkpty)

UPCACHE_REAL_NAMES(UPCACHE_SLOT)

void resolve_all() {
#define UPCACHE_RESOLVE(name) lookup(g_##name, #name);
  UPCACHE_REAL_NAMES(UPCACHE_RESOLVE)
#undef UPCACHE_RESOLVE
}

ssize_t sendmsg(int fd, const struct msghdr* msg, int flags) {
  if (auto f = UPCACHE_FN(sendmsg, ssize_t (*)(int, const struct msghdr*, int))) return f(fd, msg, flags);
  return libc_ret(sys::raw(SYS_sendmsg, fd, reinterpret_cast<long>(msg), flags));
}
int sendmmsg(int fd, struct mmsghdr* vec, unsigned int vlen, int flags) {
  if (auto f = UPCACHE_FN(sendmmsg, int (*)(int, struct mmsghdr*, unsigned int, int))) return f(fd, vec, vlen, flags);
  return static_cast<int>(libc_ret(sys::raw(SYS_sendmmsg, fd, reinterpret_cast<long>(vec), vlen, flags)));
}

UPCACHE_PASSTHROUGH(ssize_t, read, (int fd, void* buf, size_t n), (fd, buf, n),
                    libc_ret(sys::raw(SYS_read, fd, reinterpret_cast<long>(buf), static_cast<long>(n))))
UPCACHE_PASSTHROUGH(ssize_t, pread64, (int fd, void* buf, size_t n, off_t off), (fd, buf, n, off),
                    libc_ret(sys::raw(SYS_pread64, fd, reinterpret_cast<long>(buf), static_cast<long>(n), off)))
UPCACHE_PASSTHROUGH(ssize_t, readv, (int fd, const iovec* iov, int cnt), (fd, iov, cnt),
                    libc_ret(sys::raw(SYS_readv, fd, reinterpret_cast<long>(iov), cnt)))
ssize_t preadv64(int fd, const iovec* iov, int cnt, off_t off) {
  if (auto f = UPCACHE_FN(preadv64, ssize_t (*)(int, const iovec*, int, off_t)))
    return f(fd, iov, cnt, off);
  return libc_ret(sys::raw(SYS_preadv, fd, reinterpret_cast<long>(iov), cnt, lo(off), 0));
}
ssize_t preadv64v2(int fd, const iovec* iov, int cnt, off_t off, int flags) {
  if (auto f = UPCACHE_FN(preadv64v2, ssize_t (*)(int, const iovec*, int, off_t, int)))
    return f(fd, iov, cnt, off, flags);
  return libc_ret(sys::raw(SYS_preadv2, fd, reinterpret_cast<long>(iov), cnt, lo(off), 0, flags));
}

UPCACHE_PASSTHROUGH(ssize_t, write, (int fd, const void* buf, size_t n), (fd, buf, n),
                    libc_ret(sys::raw(SYS_write, fd, reinterpret_cast<long>(buf), static_cast<long>(n))))
ssize_t pwrite64(int fd, const void* buf, size_t n, off_t off) {
  if (auto f = UPCACHE_FN(pwrite64, ssize_t (*)(int, const void*, size_t, off_t)))
    return f(fd, buf, n, off);
  return libc_ret(sys::raw(SYS_pwrite64, fd, reinterpret_cast<long>(buf), static_cast<long>(n), off));
}
ssize_t writev(int fd, const iovec* iov, int cnt) {
  if (auto f = UPCACHE_FN(writev, ssize_t (*)(int, const iovec*, int))) return f(fd, iov, cnt);
  return libc_ret(sys::raw(SYS_writev, fd, reinterpret_cast<long>(iov), cnt));
}
ssize_t pwritev64(int fd, const iovec* iov, int cnt, off_t off) {
  if (auto f = UPCACHE_FN(pwritev64, ssize_t (*)(int, const iovec*, int, off_t)))
    return f(fd, iov, cnt, off);
  return libc_ret(sys::raw(SYS_pwritev, fd, reinterpret_cast<long>(iov), cnt, lo(off), 0));
}
ssize_t pwritev64v2(int fd, const iovec* iov, int cnt, off_t off, int flags) {
  if (auto f = UPCACHE_FN(pwritev64v2, ssize_t (*)(int, const iovec*, int, off_t, int)))
    return f(fd, iov, cnt, off, flags);
  return libc_ret(sys::raw(SYS_pwritev2, fd, reinterpret_cast<long>(iov), cnt, lo(off), 0, flags));
}

int open64(const char* path, int flags, mode_t mode) {
  if (auto f = UPCACHE_FN(open64, int (*)(const char*, int, ...))) return f(path, flags, mode);
  return static_cast<int>(
      libc_ret(sys::raw(SYS_openat, AT_FDCWD, reinterpret_cast<long>(path), flags, mode)));
}
int openat64(int dirfd, const char* path, int flags, mode_t mode) {
  if (auto f = UPCACHE_FN(openat64, int (*)(int, const char*, int, ...)))
    return f(dirfd, path, flags, mode);
  return static_cast<int>(
      libc_ret(sys::raw(SYS_openat, dirfd, reinterpret_cast<long>(path), flags, mode)));
}
int open64_2(const char* path, int flags) {
  if (auto f = UPCACHE_FN(__open64_2, int (*)(const char*, int))) return f(path, flags);
  return open64(path, flags, 0);
}
int openat64_2(int dirfd, const char* path, int flags) {
  if (auto f = UPCACHE_FN(__openat64_2, int (*)(int, const char*, int))) return f(dirfd, path, flags);
  return openat64(dirfd, path, flags, 0);
}
int creat64(const char* path, mode_t mode) {
  if (auto f = UPCACHE_FN(creat64, int (*)(const char*, mode_t))) return f(path, mode);
  return open64(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}
int close(int fd) {
  if (auto f = UPCACHE_FN(close, int (*)(int))) return f(fd);
  return static_cast<int>(libc_ret(sys::raw(SYS_close, fd)));
}
int close_range(unsigned first, unsigned last, int flags) {
  if (auto f = UPCACHE_FN(close_range, int (*)(unsigned, unsigned, int))) return f(first, last, flags);
  return static_cast<int>(libc_ret(sys::raw(SYS_close_range, first, last, flags)));
}
off_t lseek64(int fd, off_t off, int whence) {
  if (auto f = UPCACHE_FN(lseek64, off_t (*)(int, off_t, int))) return f(fd, off, whence);
  return libc_ret(sys::raw(SYS_lseek, fd, off, whence));
}
int dup(int fd) {
  if (auto f = UPCACHE_FN(dup, int (*)(int))) return f(fd);
  return static_cast<int>(libc_ret(sys::raw(SYS_dup, fd)));
}
int dup2(int fd, int fd2) {
  if (auto f = UPCACHE_FN(dup2, int (*)(int, int))) return f(fd, fd2);
  return static_cast<int>(libc_ret(sys::raw(SYS_dup2, fd, fd2)));
}
int dup3(int fd, int fd2, int flags) {
  if (auto f = UPCACHE_FN(dup3, int (*)(int, int, int))) return f(fd, fd2, flags);
  return static_cast<int>(libc_ret(sys::raw(SYS_dup3, fd, fd2, flags)));
}
int fcntl64(int fd, int cmd, void* arg) {
  if (auto f = UPCACHE_FN(fcntl64, int (*)(int, int, ...))) return f(fd, cmd, arg);
  return static_cast<int>(libc_ret(sys::raw(SYS_fcntl, fd, cmd, reinterpret_cast<long>(arg))));
}
int ftruncate64(int fd, off_t len) {
  if (auto f = UPCACHE_FN(ftruncate64, int (*)(int, off_t))) return f(fd, len);
  return static_cast<int>(libc_ret(sys::raw(SYS_ftruncate, fd, len)));
}
int fallocate64(int fd, int mode, off_t off, off_t len) {
  if (auto f = UPCACHE_FN(fallocate64, int (*)(int, int, off_t, off_t))) return f(fd, mode, off, len);
  return static_cast<int>(libc_ret(sys::raw(SYS_fallocate, fd, mode, off, len)));
}
int posix_fadvise64(int fd, off_t off, off_t len, int advice) {
  if (auto f = UPCACHE_FN(posix_fadvise64, int (*)(int, off_t, off_t, int))) return f(fd, off, len, advice);
  return static_cast<int>(-sys::raw(SYS_fadvise64, fd, off, len, advice));
}
ssize_t readahead(int fd, off_t off, size_t count) {
  if (auto f = UPCACHE_FN(readahead, ssize_t (*)(int, off_t, size_t))) return f(fd, off, count);
  return libc_ret(sys::raw(SYS_readahead, fd, off, static_cast<long>(count)));
}
ssize_t sendfile64(int out, int in, off_t* off, size_t count) {
  if (auto f = UPCACHE_FN(sendfile64, ssize_t (*)(int, int, off_t*, size_t))) return f(out, in, off, count);
  return libc_ret(sys::raw(SYS_sendfile, out, in, reinterpret_cast<long>(off), static_cast<long>(count)));
}
ssize_t copy_file_range(int in, loff_t* off_in, int out, loff_t* off_out, size_t len, unsigned flags) {
  if (auto f = UPCACHE_FN(copy_file_range, ssize_t (*)(int, loff_t*, int, loff_t*, size_t, unsigned)))
    return f(in, off_in, out, off_out, len, flags);
  return libc_ret(sys::raw(SYS_copy_file_range, in, reinterpret_cast<long>(off_in), out,
                           reinterpret_cast<long>(off_out), static_cast<long>(len), flags));
}
ssize_t splice(int in, loff_t* off_in, int out, loff_t* off_out, size_t len, unsigned flags) {
  if (auto f = UPCACHE_FN(splice, ssize_t (*)(int, loff_t*, int, loff_t*, size_t, unsigned)))
    return f(in, off_in, out, off_out, len, flags);
  return libc_ret(sys::raw(SYS_splice, in, reinterpret_cast<long>(off_in), out,
                           reinterpret_cast<long>(off_out), static_cast<long>(len), flags));
}
int truncate64(const char* path, off_t len) {
  if (auto f = UPCACHE_FN(truncate64, int (*)(const char*, off_t))) return f(path, len);
  return static_cast<int>(libc_ret(sys::raw(SYS_truncate, reinterpret_cast<long>(path), len)));
}

void* mmap64(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  long r = sys::raw(SYS_mmap, reinterpret_cast<long>(addr), static_cast<long>(len), prot, flags, fd, off);
  if (r < 0 && r > -4096) {
    errno = static_cast<int>(-r);
    return reinterpret_cast<void*>(-1);
  }
  return reinterpret_cast<void*>(r);
}
int munmap(void* addr, size_t len) {
  return static_cast<int>(libc_ret(sys::raw(SYS_munmap, reinterpret_cast<long>(addr), static_cast<long>(len))));
}
void* mremap(void* old, size_t old_len, size_t new_len, int flags, void* new_addr) {
  long r = sys::raw(SYS_mremap, reinterpret_cast<long>(old), static_cast<long>(old_len),
                    static_cast<long>(new_len), flags, reinterpret_cast<long>(new_addr));
  if (r < 0 && r > -4096) {
    errno = static_cast<int>(-r);
    return reinterpret_cast<void*>(-1);
  }
  return reinterpret_cast<void*>(r);
}
int mprotect(void* addr, size_t len, int prot) {
  return static_cast<int>(libc_ret(sys::raw(SYS_mprotect, reinterpret_cast<long>(addr), static_cast<long>(len), prot)));
}

int daemon(int nochdir, int noclose) {
  if (auto f = UPCACHE_FN(daemon, int (*)(int, int))) return f(nochdir, noclose);
  return enosys(-1);
}
int login_tty(int fd) {
  if (auto f = UPCACHE_FN(login_tty, int (*)(int))) return f(fd);
  return enosys(-1);
}
pid_t forkpty(int* amaster, char* name, const void* termp, const void* winp) {
  if (auto f = UPCACHE_FN(forkpty, pid_t (*)(int*, char*, const void*, const void*)))
    return f(amaster, name, termp, winp);
  return enosys(-1);
}

int fclose(FILE* stream) {
  if (auto f = UPCACHE_FN(fclose, int (*)(FILE*))) return f(stream);
  return enosys(EOF);
}
FILE* freopen64(const char* path, const char* mode, FILE* stream) {
  if (auto f = UPCACHE_FN(freopen64, FILE* (*)(const char*, const char*, FILE*)))
    return f(path, mode, stream);
  return enosys<FILE*>(nullptr);
}

pid_t fork() {
  if (auto f = UPCACHE_FN(fork, pid_t (*)())) return f();
  return enosys(-1);
}
int execve(const char* path, char* const argv[], char* const envp[]) {
  if (auto f = UPCACHE_FN(execve, int (*)(const char*, char* const*, char* const*)))
    return f(path, argv, envp);
  return static_cast<int>(libc_ret(sys::raw(SYS_execve, reinterpret_cast<long>(path),
                                            reinterpret_cast<long>(argv),
                                            reinterpret_cast<long>(envp))));
}
int execv(const char* path, char* const argv[]) {
  if (auto f = UPCACHE_FN(execv, int (*)(const char*, char* const*))) return f(path, argv);
  return enosys(-1);
}
int execvp(const char* file, char* const argv[]) {
  if (auto f = UPCACHE_FN(execvp, int (*)(const char*, char* const*))) return f(file, argv);
  return enosys(-1);
}
int execvpe(const char* file, char* const argv[], char* const envp[]) {
  if (auto f = UPCACHE_FN(execvpe, int (*)(const char*, char* const*, char* const*)))
    return f(file, argv, envp);
  return enosys(-1);
}
int fexecve(int fd, char* const argv[], char* const envp[]) {
  if (auto f = UPCACHE_FN(fexecve, int (*)(int, char* const*, char* const*))) return f(fd, argv, envp);
  return enosys(-1);
}
int execveat(int dirfd, const char* path, char* const argv[], char* const envp[], int flags) {
  if (auto f = UPCACHE_FN(execveat, int (*)(int, const char*, char* const*, char* const*, int)))
    return f(dirfd, path, argv, envp, flags);
  return static_cast<int>(libc_ret(sys::raw(SYS_execveat, dirfd, reinterpret_cast<long>(path),
                                            reinterpret_cast<long>(argv),
                                            reinterpret_cast<long>(envp), flags)));
}
using spawn_fn = int (*)(pid_t*, const char*, const posix_spawn_file_actions_t*,
                         const posix_spawnattr_t*, char* const*, char* const*);
int posix_spawn(pid_t* pid, const char* path, const posix_spawn_file_actions_t* actions,
                const posix_spawnattr_t* attr, char* const argv[], char* const envp[]) {
  if (auto f = UPCACHE_FN(posix_spawn, spawn_fn)) return f(pid, path, actions, attr, argv, envp);
  return ENOSYS;
}
int posix_spawnp(pid_t* pid, const char* file, const posix_spawn_file_actions_t* actions,
                 const posix_spawnattr_t* attr, char* const argv[], char* const envp[]) {
  if (auto f = UPCACHE_FN(posix_spawnp, spawn_fn)) return f(pid, file, actions, attr, argv, envp);
  return ENOSYS;
}
int system(const char* command) {
  if (auto f = UPCACHE_FN(system, int (*)(const char*))) return f(command);
  return enosys(-1);
}
FILE* popen(const char* command, const char* type) {
  if (auto f = UPCACHE_FN(popen, FILE* (*)(const char*, const char*))) return f(command, type);
  return enosys<FILE*>(nullptr);
}

void exit_now(int status) {
  if (auto f = UPCACHE_FN(_exit, void (*)(int))) f(status);
  for (;;) sys::raw(SYS_exit_group, status);
}

}  // namespace upcache::shim::real
