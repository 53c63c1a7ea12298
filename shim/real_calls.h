// The real libc functions behind the names libupcache.so interposes.
//
// Every wrapper in shim/ that ends in "the real call" goes through real::NAME,
// never through the plain libc name: inside libupcache.so the plain name is the
// shim itself.
//
// Resolution: dlsym(RTLD_NEXT, name), eagerly from the library constructor
// (real::resolve_all) and lazily on first use, because wrappers can run
// before the constructor (other libraries' constructors read files).
// dlsym may call malloc/calloc (dlerror buffers), and an allocator or another
// interposer may read or open files from there: while this thread is inside
// dlsym, the calls that are plain system calls are issued with the raw system
// call instead (same return value and errno, minus cancellation).
// Calls that are no system call (fork, exec*, posix_spawn, system, popen,
// fclose, freopen) fail with ENOSYS if they cannot be resolved.
//
// Thread safety: resolution races are benign (every thread stores the same
// pointer). Async-signal-safe once resolved.
#pragma once

#include <dirent.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>

namespace upcache::shim::real {

// Resolves every function now. Called from the library constructor.
void resolve_all();

ssize_t read(int fd, void* buf, size_t n);
ssize_t sendmsg(int fd, const struct msghdr* msg, int flags);
int sendmmsg(int fd, struct mmsghdr* vec, unsigned int vlen, int flags);
ssize_t pread64(int fd, void* buf, size_t n, off_t off);
ssize_t readv(int fd, const iovec* iov, int cnt);
ssize_t preadv64(int fd, const iovec* iov, int cnt, off_t off);
ssize_t preadv64v2(int fd, const iovec* iov, int cnt, off_t off, int flags);

ssize_t write(int fd, const void* buf, size_t n);
ssize_t pwrite64(int fd, const void* buf, size_t n, off_t off);
ssize_t writev(int fd, const iovec* iov, int cnt);
ssize_t pwritev64(int fd, const iovec* iov, int cnt, off_t off);
ssize_t pwritev64v2(int fd, const iovec* iov, int cnt, off_t off, int flags);

int open64(const char* path, int flags, mode_t mode);
int openat64(int dirfd, const char* path, int flags, mode_t mode);
int open64_2(const char* path, int flags);                // __open64_2 (fortified)
int openat64_2(int dirfd, const char* path, int flags);   // __openat64_2 (fortified)
int creat64(const char* path, mode_t mode);
int close(int fd);
int close_range(unsigned first, unsigned last, int flags);
off_t lseek64(int fd, off_t off, int whence);
int dup(int fd);
int dup2(int fd, int fd2);
int dup3(int fd, int fd2, int flags);
int fcntl64(int fd, int cmd, void* arg);
int ftruncate64(int fd, off_t len);
int truncate64(const char* path, off_t len);
int fallocate64(int fd, int mode, off_t off, off_t len);
int posix_fadvise64(int fd, off_t off, off_t len, int advice);  // returns the error number
ssize_t readahead(int fd, off_t off, size_t count);
ssize_t sendfile64(int out, int in, off_t* off, size_t count);
ssize_t copy_file_range(int in, loff_t* off_in, int out, loff_t* off_out, size_t len, unsigned flags);
ssize_t splice(int in, loff_t* off_in, int out, loff_t* off_out, size_t len, unsigned flags);

// Memory mappings: always the raw system call (glibc's wrappers add nothing
// the kernel does not check, and allocators call these from inside dlsym).
void* mmap64(void* addr, size_t len, int prot, int flags, int fd, off_t off);
int munmap(void* addr, size_t len);
void* mremap(void* old, size_t old_len, size_t new_len, int flags, void* new_addr);
int mprotect(void* addr, size_t len, int prot);

// daemon(3), login_tty(3), forkpty(3): glibc puts other files on
// descriptors 0-2 with its internal dup2, which no wrapper sees.
int daemon(int nochdir, int noclose);
int login_tty(int fd);
pid_t forkpty(int* amaster, char* name, const void* termp, const void* winp);

int fclose(FILE* stream);
FILE* freopen64(const char* path, const char* mode, FILE* stream);

pid_t fork();
int execve(const char* path, char* const argv[], char* const envp[]);
int execv(const char* path, char* const argv[]);
int execvp(const char* file, char* const argv[]);
int execvpe(const char* file, char* const argv[], char* const envp[]);
int fexecve(int fd, char* const argv[], char* const envp[]);
int execveat(int dirfd, const char* path, char* const argv[], char* const envp[], int flags);
int posix_spawn(pid_t* pid, const char* path, const posix_spawn_file_actions_t* actions,
                const posix_spawnattr_t* attr, char* const argv[], char* const envp[]);
int posix_spawnp(pid_t* pid, const char* file, const posix_spawn_file_actions_t* actions,
                 const posix_spawnattr_t* attr, char* const argv[], char* const envp[]);
int system(const char* command);
FILE* popen(const char* command, const char* type);
// libc's _exit (exit_group if unresolved).
[[noreturn]] void exit_now(int status);

}  // namespace upcache::shim::real
