#include "core/huge_shmem.h"

#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/decimal.h"
#include "core/sys.h"

namespace upcache {

namespace {

constexpr uint64_t kHugePage = 2ull << 20;
constexpr uint64_t kHelperStack = 64ull << 10;

// What the helper needs, prepared by the caller (the helper formats nothing:
// it runs on a borrowed stack in our memory and only makes system calls).
struct HelperJob {
  char size[32];        // tmpfs size= option, whole huge pages
  char uid_map[48];     // "<euid> <euid> 1"
  char gid_map[48];     // "<egid> <egid> 1"
  uint64_t bytes;
  int result;           // descriptor, or -errno
};

// The helper's code (down to helper_main) has no sanitizer instrumentation:
// the runtimes do not know the helper, which runs on the caller's
// thread-local storage while the caller waits.
#define UPCACHE_HELPER_CODE __attribute__((no_sanitize("address", "thread", "undefined")))

UPCACHE_HELPER_CODE int write_proc_file(const char* path, const char* text) {
  int fd = sys::openat(AT_FDCWD, path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return fd;
  size_t len = 0;
  while (text[len] != '\0') ++len;  // no libc: a sanitizer intercepts strlen
  long n = sys::write(fd, text, len);
  sys::close(fd);
  return n < 0 ? static_cast<int>(n) : 0;
}

// A private mount namespace: with a user namespace of our own first (any
// user may), or alone when the process already may mount (a container that
// forbids user namespaces to a privileged process).
UPCACHE_HELPER_CODE int enter_private_mount_namespace(const HelperJob& job) {
  if (sys::raw(SYS_unshare, CLONE_NEWUSER | CLONE_NEWNS) == 0) {
    // Files created on the tmpfs belong to our user, which must be mapped
    // in the new user namespace, or creating them fails (EOVERFLOW).
    int err = write_proc_file("/proc/self/setgroups", "deny");
    if (err == 0) err = write_proc_file("/proc/self/uid_map", job.uid_map);
    if (err == 0) err = write_proc_file("/proc/self/gid_map", job.gid_map);
    return err;
  }
  return static_cast<int>(sys::raw(SYS_unshare, CLONE_NEWNS));
}

UPCACHE_HELPER_CODE int set_option(int fs, const char* key, const char* value) {
  return static_cast<int>(sys::raw(SYS_fsconfig, fs, FSCONFIG_SET_STRING, reinterpret_cast<long>(key),
                                   reinterpret_cast<long>(value), 0));
}

UPCACHE_HELPER_CODE int make_huge_tmpfs_file(const HelperJob& job) {
  int err = enter_private_mount_namespace(job);
  if (err < 0) return err;
  int fs = static_cast<int>(sys::raw(SYS_fsopen, reinterpret_cast<long>("tmpfs"), FSOPEN_CLOEXEC));
  if (fs < 0) return fs;
  int mnt = -EINVAL;
  if ((err = set_option(fs, "huge", "always")) == 0 && (err = set_option(fs, "size", job.size)) == 0 &&
      (err = set_option(fs, "mode", "0700")) == 0 &&
      (err = static_cast<int>(sys::raw(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, 0, 0, 0))) == 0) {
    mnt = static_cast<int>(sys::raw(SYS_fsmount, fs, FSMOUNT_CLOEXEC,
                                    MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
    err = mnt < 0 ? mnt : 0;
  }
  sys::close(fs);
  if (err < 0) return err;
  int fd = sys::openat(mnt, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  sys::close(mnt);
  if (fd < 0) return fd;
  if ((err = sys::ftruncate(fd, static_cast<int64_t>(job.bytes))) < 0) {
    sys::close(fd);
    return err;
  }
  return fd;
}

UPCACHE_HELPER_CODE int helper_main(void* arg) {
  auto* job = static_cast<HelperJob*>(arg);
  job->result = make_huge_tmpfs_file(*job);
  return 0;
}

// "<id> <id> 1" (no libc: this also runs in a fork handler).
void format_id_map(char* buf, unsigned id) {
  char* p = format_decimal(buf, id);
  *p++ = ' ';
  p = format_decimal(p, id);
  *p++ = ' ';
  *p++ = '1';
  *p = '\0';
}

// clone(2) sharing our memory and descriptors, the helper on `stack_top`
// (16-byte aligned); the raw system call, so that no sanitizer's clone
// interceptor treats the helper as a thread of its own. Returns the
// helper's id or -errno; the helper calls fn(arg) and exits.
long clone_helper(unsigned long flags, char* stack_top, int (*fn)(void*), void* arg) {
#if defined(__x86_64__)
  auto** sp = reinterpret_cast<void**>(stack_top);
  *--sp = arg;
  *--sp = reinterpret_cast<void*>(fn);
  long ret;
  register long r10 __asm__("r10") = 0;  // child_tid
  register long r8 __asm__("r8") = 0;    // tls
  __asm__ volatile(
      "syscall\n\t"
      "test %%rax, %%rax\n\t"
      "jnz 1f\n\t"
      // The helper, on its own stack: [fn, arg].
      "xor %%ebp, %%ebp\n\t"
      "pop %%rax\n\t"
      "pop %%rdi\n\t"
      "call *%%rax\n\t"
      "mov %%eax, %%edi\n\t"
      "mov %[exit_nr], %%eax\n\t"
      "syscall\n\t"
      "hlt\n\t"
      "1:\n\t"
      : "=a"(ret)
      : "a"(SYS_clone), "D"(flags), "S"(sp), "d"(0), "r"(r10), "r"(r8), [exit_nr] "i"(SYS_exit)
      : "rcx", "r11", "memory");
  return ret;
#else
  int saved = errno;
  int pid = ::clone(fn, stack_top, static_cast<int>(flags), arg);
  long ret = pid < 0 ? -errno : pid;
  errno = saved;
  return ret;
#endif
}

}  // namespace

int huge_shmem_open(uint64_t bytes) {
  if (bytes == 0) return -EINVAL;
  HelperJob job{};
  job.bytes = bytes;
  format_decimal(job.size, (bytes + kHugePage - 1) & ~(kHugePage - 1));
  format_id_map(job.uid_map, static_cast<unsigned>(sys::raw(SYS_geteuid)));
  format_id_map(job.gid_map, static_cast<unsigned>(sys::raw(SYS_getegid)));
  job.result = -ECHILD;

  void* stack = sys::mmap(nullptr, kHelperStack, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (sys::mmap_failed(stack)) return -sys::mmap_errno(stack);
  // Every signal blocked: the helper inherits the mask, so none of the
  // program's handlers can run on the helper's stack. CLONE_VFORK: we go on
  // when it has exited. Exit signal 0: the program gets no SIGCHLD, and only
  // a __WCLONE wait (ours) reaps it.
  const uint64_t all = ~0ull;
  uint64_t old = 0;
  sys::raw(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&all), reinterpret_cast<long>(&old),
           sizeof all);
  long pid = clone_helper(CLONE_VM | CLONE_VFORK | CLONE_FILES, static_cast<char*>(stack) + kHelperStack,
                          &helper_main, &job);
  if (pid > 0) {
    int status = 0;
    while (sys::raw(SYS_wait4, pid, reinterpret_cast<long>(&status), __WCLONE, 0) == -EINTR) {
    }
  }
  sys::raw(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&old), 0, sizeof old);
  sys::munmap(stack, kHelperStack);
  return pid < 0 ? static_cast<int>(pid) : job.result;
}

int64_t huge_shmem_pmd_bytes(const void* addr) {
  int fd = sys::openat(AT_FDCWD, "/proc/self/smaps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fd;
  // Read the whole file (a few hundred KiB at most for our processes).
  static constexpr size_t kMax = 4u << 20;
  char* text = static_cast<char*>(sys::mmap(nullptr, kMax, PROT_READ | PROT_WRITE,
                                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (sys::mmap_failed(text)) {
    sys::close(fd);
    return -ENOMEM;
  }
  size_t len = 0;
  long n;
  while (len < kMax - 1 && (n = sys::read(fd, text + len, kMax - 1 - len)) > 0) len += static_cast<size_t>(n);
  sys::close(fd);
  text[len] = '\0';
  const auto target = reinterpret_cast<uintptr_t>(addr);
  int64_t result = -ENOENT;
  bool inside = false;
  for (char* line = text; *line != '\0';) {
    char* end = strchr(line, '\n');
    if (end != nullptr) *end = '\0';
    unsigned long lo, hi;
    // A mapping's first line: "lo-hi perms offset dev inode [path]".
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, ':') != nullptr) {
      inside = lo <= target && target < hi;
    } else if (inside && strncmp(line, "ShmemPmdMapped:", 15) == 0) {
      result = static_cast<int64_t>(strtoull(line + 15, nullptr, 10)) * 1024;
      break;
    }
    if (end == nullptr) break;
    line = end + 1;
  }
  sys::munmap(text, kMax);
  return result;
}

}  // namespace upcache
