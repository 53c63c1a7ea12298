// Processes: fork, vfork, the exec family, posix_spawn, system, popen.
//
// See kernel_offset.h for why: before another process can see an open file
// description (a child created by fork/vfork/posix_spawn/system/popen, or a
// new program image after exec), the kernel's offset of every description is
// made exact; descriptions a child shares are marked shared.
//
// fork is covered by the pthread_atfork handlers (so are forks inside libc,
// e.g. daemon()); the fork wrapper only exists so vfork can call it.
// vfork becomes fork: a vfork child runs on the parent's memory, and its
// dup2/close before exec would edit the parent's descriptor table mirror.
// posix_spawn, system and popen run no atfork handler (glibc uses
// clone(CLONE_VFORK) and only async-signal-safe internals): they sync and mark
// shared here, before the child exists.
#include <alloca.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "shim/interpose.h"
#include "shim/kernel_offset.h"
#include "shim/mappings.h"
#include "shim/real_calls.h"

namespace upcache::shim {
namespace {

void before_exec() {
  if (!g_ready.load(std::memory_order_acquire)) return;
  ErrnoKeeper keep;
  sync_all_offsets(false);
  mappings_before_exec();  // a successful exec ends every mapping
  runtime_before_exec();
}

// exec returned: it failed, this image goes on.
int exec_failed(int r) {
  if (!g_ready.load(std::memory_order_acquire)) return r;
  ErrnoKeeper keep;
  runtime_exec_failed();
  mappings_exec_failed();
  return r;
}

void before_spawn() {
  if (!g_ready.load(std::memory_order_acquire)) return;
  ErrnoKeeper keep;
  sync_all_offsets(true);
}

}  // namespace
}  // namespace upcache::shim

using namespace upcache::shim;

UPCACHE_EXPORT pid_t fork() noexcept { return real::fork(); }
UPCACHE_EXPORT pid_t vfork() noexcept { return real::fork(); }

UPCACHE_EXPORT int execve(const char* path, char* const argv[], char* const envp[]) noexcept {
  before_exec();
  return exec_failed(real::execve(path, argv, envp));
}
UPCACHE_EXPORT int execv(const char* path, char* const argv[]) noexcept {
  before_exec();
  return exec_failed(real::execv(path, argv));
}
UPCACHE_EXPORT int execvp(const char* file, char* const argv[]) noexcept {
  before_exec();
  return exec_failed(real::execvp(file, argv));
}
UPCACHE_EXPORT int execvpe(const char* file, char* const argv[], char* const envp[]) noexcept {
  before_exec();
  return exec_failed(real::execvpe(file, argv, envp));
}
UPCACHE_EXPORT int fexecve(int fd, char* const argv[], char* const envp[]) noexcept {
  before_exec();
  return real::fexecve(fd, argv, envp);
}
UPCACHE_EXPORT int execveat(int dirfd, const char* path, char* const argv[], char* const envp[],
                            int flags) noexcept {
  before_exec();
  return exec_failed(real::execveat(dirfd, path, argv, envp, flags));
}

// execl, execlp, execle: collect the variadic arguments into an argv on the
// stack (no allocation: exec must work from a vfork-like or signal context).
#define UPCACHE_COLLECT_ARGV(arg, argv, ap_after)                 \
  size_t argc = 1;                                                \
  {                                                               \
    va_list count;                                                \
    va_start(count, arg);                                         \
    while (va_arg(count, const char*) != nullptr) ++argc;         \
    va_end(count);                                                \
  }                                                               \
  auto** argv = static_cast<char**>(alloca((argc + 1) * sizeof(char*))); \
  va_list ap_after;                                               \
  va_start(ap_after, arg);                                        \
  argv[0] = const_cast<char*>(arg);                               \
  for (size_t i = 1; i <= argc; ++i) argv[i] = va_arg(ap_after, char*);

UPCACHE_EXPORT int execl(const char* path, const char* arg, ...) noexcept {
  UPCACHE_COLLECT_ARGV(arg, argv, ap)
  va_end(ap);
  before_exec();
  return exec_failed(real::execv(path, argv));
}
UPCACHE_EXPORT int execlp(const char* file, const char* arg, ...) noexcept {
  UPCACHE_COLLECT_ARGV(arg, argv, ap)
  va_end(ap);
  before_exec();
  return exec_failed(real::execvp(file, argv));
}
UPCACHE_EXPORT int execle(const char* path, const char* arg, ...) noexcept {
  UPCACHE_COLLECT_ARGV(arg, argv, ap)
  char* const* envp = va_arg(ap, char* const*);
  va_end(ap);
  before_exec();
  return exec_failed(real::execve(path, argv, envp));
}

// _exit and _Exit skip destructors: mark the statistics segment finished
// (exited, name removed unless kept) first.
UPCACHE_EXPORT void _exit(int status) {
  if (g_ready.load(std::memory_order_acquire)) runtime_exit();
  real::exit_now(status);
}
UPCACHE_EXPORT void _Exit(int status) {
  if (g_ready.load(std::memory_order_acquire)) runtime_exit();
  real::exit_now(status);
}

UPCACHE_EXPORT int posix_spawn(pid_t* pid, const char* path, const posix_spawn_file_actions_t* actions,
                               const posix_spawnattr_t* attr, char* const argv[],
                               char* const envp[]) {
  before_spawn();
  return real::posix_spawn(pid, path, actions, attr, argv, envp);
}
UPCACHE_EXPORT int posix_spawnp(pid_t* pid, const char* file, const posix_spawn_file_actions_t* actions,
                                const posix_spawnattr_t* attr, char* const argv[],
                                char* const envp[]) {
  before_spawn();
  return real::posix_spawnp(pid, file, actions, attr, argv, envp);
}
UPCACHE_EXPORT int system(const char* command) {
  if (command != nullptr) before_spawn();
  return real::system(command);
}
UPCACHE_EXPORT FILE* popen(const char* command, const char* type) {
  before_spawn();
  return real::popen(command, type);
}
