// A small C program for the shim tests, built with _FORTIFY_SOURCE so its
// read()/pread() calls bind to __read_chk/__pread_chk/__pread64_chk. It prints
// every result (return value, errno, a hash of the bytes, the offset after),
// so shim_test.py can compare a plain run with a preloaded one.
//
// usage: reader FILE
//        reader --read-once FILE   (one read(); the crash-diagnostics test)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <sys/uio.h>
#include <unistd.h>

static uint64_t hash(const unsigned char* p, ssize_t n) {
  uint64_t h = 1469598103934665603ull;
  for (ssize_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

static void show(const char* what, ssize_t r, int err, const unsigned char* buf, int fd) {
  off_t pos = fd >= 0 ? lseek(fd, 0, SEEK_CUR) : -1;
  printf("%-28s ret=%zd errno=%d hash=%016llx pos=%lld\n", what, r, r < 0 ? err : 0,
         (unsigned long long)(r > 0 ? hash(buf, r) : 0), (long long)pos);
}

// Signal handler that reads the cached file with pread (async-signal-safe)
// while the main thread may be inside the shim.
static int g_fd = -1;
static volatile sig_atomic_t g_signal_reads = 0, g_signal_bad = 0;
static unsigned char g_expect[4096];
static void on_alarm(int sig) {
  (void)sig;
  int saved = errno;
  unsigned char b[4096];
  ssize_t r = pread(g_fd, b, sizeof b, 0);
  if (r != (ssize_t)sizeof b || memcmp(b, g_expect, sizeof b) != 0) g_signal_bad++;
  g_signal_reads++;
  errno = saved;
}

struct thread_arg {
  int fd;
  uint64_t sum;   // sum over chunks of (offset stamp) — each chunk once
  long chunks;
  size_t size;    // bytes per read()
};
static void* reader_thread(void* p) {
  struct thread_arg* a = p;
  unsigned char b[4096];
  for (;;) {
    ssize_t r = read(a->fd, b, a->size);
    if (r <= 0) break;
    a->sum += hash(b, r);
    a->chunks++;
  }
  return NULL;
}

// Bad buffers and SIGSEGV handlers (DESIGN contract points 1 and 6).
static volatile sig_atomic_t g_segv_caught = 0, g_segv_addr_ok = 0;
static void* g_prot_page;
static long g_pagesz;
static void on_segv(int sig, siginfo_t* info, void* uc) {
  (void)uc;
  g_segv_caught++;
  if (sig == SIGSEGV && (char*)info->si_addr - (char*)g_prot_page == 5) g_segv_addr_ok++;
  mprotect(g_prot_page, g_pagesz, PROT_READ | PROT_WRITE);
}
static void on_plain(int sig) { (void)sig; }

static void show_disposition(const char* what, int sig) {
  struct sigaction old;
  memset(&old, 0, sizeof old);
  int r = sigaction(sig, NULL, &old);
  uint64_t mask;
  memcpy(&mask, &old.sa_mask, sizeof mask);
  const char* h = old.sa_handler == SIG_DFL ? "SIG_DFL"
                  : old.sa_handler == SIG_IGN ? "SIG_IGN"
                  : (old.sa_flags & SA_SIGINFO) ? ((void*)old.sa_sigaction == (void*)on_segv ? "on_segv" : "other")
                  : old.sa_handler == on_plain ? "on_plain" : "other";
  printf("%-36s ret=%d handler=%s flags=%08x mask=%016llx restorer=%s\n", what, r, h,
         (unsigned)old.sa_flags, (unsigned long long)mask, old.sa_restorer ? "set" : "null");
}

// A child that faults: how it ends (the same signal plain and preloaded).
static void child_fault(const char* what, void (*prep)(void)) {
  pid_t pid = fork();
  if (pid == 0) {
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);  // no core file left behind
    if (prep) prep();
    volatile uintptr_t addr = 16;
    *(volatile int*)addr = 1;
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  printf("%-36s signaled=%d sig=%d\n", what, WIFSIGNALED(st), WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}
static void ignore_segv(void) { signal(SIGSEGV, SIG_IGN); }

static void bad_buffers(const char* path) {
  g_pagesz = sysconf(_SC_PAGESIZE);
  volatile size_t n100 = 100;
  int fd = open(path, O_RDONLY);
  unsigned char ref[3 * 65536];
  ssize_t rr = pread(fd, ref, sizeof ref, 0);
  ssize_t r;
  errno = 0;
  r = read(fd, (void*)16, n100);
  show("read into (void*)16", r, errno, NULL, fd);
  r = pread(fd, (void*)16, n100, 5000);
  show("pread into (void*)16", r, errno, NULL, fd);
  // Three pages, the last PROT_NONE.
  unsigned char* m = mmap(NULL, 3 * g_pagesz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  mprotect(m + 2 * g_pagesz, g_pagesz, PROT_NONE);
  r = read(fd, m + 2 * g_pagesz, n100);
  show("read into PROT_NONE", r, errno, NULL, fd);
  // Good then bad: the kernel returns the good part's count. upcache copies
  // whole cache pages: when the bad part starts after whole cache pages, it
  // returns those (fewer bytes than the kernel). So only print whether the
  // count is > 0 and the bytes it returned are the file's.
  off_t at = lseek(fd, 0, SEEK_CUR);
  r = read(fd, m, 3 * g_pagesz);
  printf("%-36s count>0=%d bytes ok=%d offset advanced by count=%d\n", "read good+PROT_NONE", r > 0,
         r > 0 && at + r <= rr && memcmp(m, ref + at, r) == 0, lseek(fd, 0, SEEK_CUR) == at + (r > 0 ? r : 0));
  r = pread(fd, m + g_pagesz - 100, 200, 0);
  printf("%-36s count>0=%d bytes ok=%d\n", "pread 100 good+100 PROT_NONE", r > 0,
         r > 0 && memcmp(m + g_pagesz - 100, ref, r) == 0);
  struct iovec bad[2] = {{m, 10}, {(void*)16, 10}};
  r = readv(fd, bad, 2);
  printf("%-36s ret>0=%d errno=%d\n", "readv good+bad", r > 0, r < 0 ? errno : 0);
  close(fd);

  // The program's own SIGSEGV handler sees its fault, plain and preloaded.
  show_disposition("SIGSEGV at start", SIGSEGV);
  show_disposition("SIGBUS at start", SIGBUS);
  g_prot_page = m + 2 * g_pagesz;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGUSR1);
  sigaddset(&sa.sa_mask, SIGKILL);
  struct sigaction prev;
  memset(&prev, 0, sizeof prev);
  sigaction(SIGSEGV, &sa, &prev);
  printf("%-36s handler=%s\n", "previous from set", prev.sa_handler == SIG_DFL ? "SIG_DFL" : "other");
  show_disposition("SIGSEGV after sigaction", SIGSEGV);
  ((volatile unsigned char*)g_prot_page)[5] = 42;
  printf("%-36s caught=%d addr ok=%d value=%d\n", "write to PROT_NONE", (int)g_segv_caught,
         (int)g_segv_addr_ok, ((unsigned char*)g_prot_page)[5]);
  // A read into a bad buffer is still EFAULT with the program's handler in place.
  fd = open(path, O_RDONLY);
  mprotect(g_prot_page, g_pagesz, PROT_NONE);
  r = read(fd, g_prot_page, n100);
  show("read into PROT_NONE (handler set)", r, errno, NULL, fd);
  printf("%-36s caught=%d\n", "handler not called by the read", (int)g_segv_caught);
  close(fd);
  // The same on the hit paths: 64-byte reads of cached bytes (served by the
  // description's cursor, an inline copy), then one into the bad page: EFAULT,
  // the offset unmoved, and the next read goes on from there.
  fd = open(path, O_RDONLY);
  unsigned char small[64];
  for (int i = 0; i < 4; ++i) r = read(fd, small, sizeof small);
  r = read(fd, g_prot_page, sizeof small);
  show("64-byte hit into PROT_NONE", r, errno, NULL, fd);
  printf("%-36s caught=%d\n", "handler not called by the hit", (int)g_segv_caught);
  r = read(fd, small, sizeof small);
  show("64-byte hit after it", r, errno, small, fd);
  close(fd);
  // SA_RESETHAND, SA_NODEFER, an unknown flag bit.
  sa.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_NODEFER | 0x400;
  sigaction(SIGSEGV, &sa, NULL);
  show_disposition("SIGSEGV resethand|nodefer|0x400", SIGSEGV);
  ((volatile unsigned char*)g_prot_page)[7] = 1;
  printf("%-36s caught=%d\n", "second fault", (int)g_segv_caught);
  show_disposition("SIGSEGV after one-shot", SIGSEGV);
  // signal(), sysv_signal(), sigset(), SIG_IGN and a raise() on it.
  sighandler_t o = signal(SIGBUS, on_plain);
  printf("%-36s old=%s\n", "signal(SIGBUS)", o == SIG_DFL ? "SIG_DFL" : "other");
  show_disposition("SIGBUS after signal", SIGBUS);
  o = sysv_signal(SIGBUS, on_plain);
  printf("%-36s old=%s\n", "sysv_signal(SIGBUS)", o == on_plain ? "on_plain" : "other");
  show_disposition("SIGBUS after sysv_signal", SIGBUS);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  o = sigset(SIGBUS, SIG_DFL);
#pragma GCC diagnostic pop
  printf("%-36s old=%s\n", "sigset(SIGBUS, SIG_DFL)", o == on_plain ? "on_plain" : "other");
  show_disposition("SIGBUS after sigset", SIGBUS);
  signal(SIGSEGV, SIG_IGN);
  raise(SIGSEGV);
  show_disposition("SIGSEGV ignored, raised", SIGSEGV);
  signal(SIGSEGV, SIG_DFL);
  child_fault("child fault, SIG_DFL", NULL);
  child_fault("child fault, SIG_IGN", ignore_segv);
  munmap(m, 3 * g_pagesz);
}

int main(int argc, char** argv) {
  if (argc == 3 && strcmp(argv[1], "--read-once") == 0) {
    char b[100];
    int fd = open(argv[2], O_RDONLY);
    ssize_t r = read(fd, b, sizeof b);
    printf("read %zd\n", r);
    return 0;
  }
  if (argc != 2) return 2;
  const char* path = argv[1];
  unsigned char buf[65536];
  // Sizes the compiler cannot see: the fortified inlines then call
  // __read_chk / __pread64_chk instead of read / pread.
  volatile int cnt_neg = -1, cnt_big = 1025;
  volatile size_t n100 = 100, n4096 = 4096, n10 = 10, nbuf = sizeof buf, n1000 = 1000;
  setvbuf(stdout, NULL, _IOLBF, 0);

  int fd = open(path, O_RDONLY);
  if (fd < 0) return 3;
  ssize_t r;
  errno = 1234;
  r = read(fd, buf, n100);
  printf("errno kept after success: %d\n", errno);
  show("read 100", r, errno, buf, fd);
  r = read(fd, buf, 0);
  show("read 0", r, errno, buf, fd);
  r = pread(fd, buf, n4096, 10000);
  show("pread 4096@10000", r, errno, buf, fd);
  r = pread(fd, buf, n10, -1);
  show("pread negative offset", r, errno, buf, fd);
  r = read(fd, (void*)-4096L, 10);
  show("read bad buffer", r, errno, buf, fd);
  // (Unmapped and PROT_NONE buffers inside user space: bad_buffers() below.)
  struct iovec iov[3] = {{buf, 10}, {buf + 100, 0}, {buf + 200, 5000}};
  r = readv(fd, iov, 3);
  show("readv 3", r, errno, buf + 200, fd);
  r = readv(fd, iov, cnt_neg);
  show("readv iovcnt -1", r, errno, buf, fd);
  r = readv(fd, iov, cnt_big);
  show("readv iovcnt 1025", r, errno, buf, fd);
  r = readv(fd, iov, 0);
  show("readv iovcnt 0", r, errno, buf, fd);
  r = preadv(fd, iov, 3, 123456);
  show("preadv 3@123456", r, errno, buf + 200, fd);
  r = preadv2(fd, iov, 1, -1, 0);
  show("preadv2 at offset -1", r, errno, buf, fd);
  r = preadv2(fd, iov, 1, 0, 0x40000000);
  show("preadv2 unknown flag", r, errno, buf, fd);
  r = preadv2(fd, iov, 1, 0, RWF_HIPRI);
  show("preadv2 RWF_HIPRI", r, errno, buf, fd);
  off_t end = lseek(fd, 0, SEEK_END);
  r = read(fd, buf, n10);
  show("read at end", r, errno, buf, fd);
  r = pread(fd, buf, 100, end - 7);
  show("pread across end", r, errno, buf, fd);
  lseek(fd, 0, SEEK_SET);
  long total = 0;
  uint64_t h = 0;
  while ((r = read(fd, buf, nbuf)) > 0) {
    h ^= hash(buf, r) + (uint64_t)total;
    total += r;
  }
  printf("whole file %ld bytes hash %016llx\n", total, (unsigned long long)h);
  r = read(-1, buf, 1);
  show("read fd -1", r, errno, buf, -1);
  close(fd);
  r = read(fd, buf, 1);
  show("read closed fd", r, errno, buf, -1);

  int wfd = open(path, O_WRONLY);
  r = read(wfd, buf, 10);
  show("read write-only fd", r, errno, buf, -1);
  close(wfd);
  int dfd = open("/", O_RDONLY | O_DIRECTORY);
  r = read(dfd, buf, 10);
  show("read directory", r, errno, buf, -1);
  close(dfd);

  // Signals: a handler preads the cached file while the main thread reads it.
  g_fd = open(path, O_RDONLY);
  if (pread(g_fd, g_expect, sizeof g_expect, 0) != (ssize_t)sizeof g_expect) return 4;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval it = {{0, 200}, {0, 200}};
  setitimer(ITIMER_REAL, &it, NULL);
  long rounds = 0;
  uint64_t hh = 0;
  while (g_signal_reads < 200 && rounds < 20000) {
    lseek(g_fd, 0, SEEK_SET);
    while ((r = read(g_fd, buf, n1000)) > 0) hh += hash(buf, r);
    rounds++;
  }
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  printf("signal handler preads: %s\n", g_signal_bad == 0 ? "all correct" : "WRONG BYTES");
  close(g_fd);

  // Threads: four threads read() one description; every byte exactly once.
  int tfd = open(path, O_RDONLY);
  pthread_t th[4];
  struct thread_arg args[4];
  for (int i = 0; i < 4; ++i) {
    args[i] = (struct thread_arg){tfd, 0, 0, 4096};
    pthread_create(&th[i], NULL, reader_thread, &args[i]);
  }
  uint64_t sum = 0;
  long chunks = 0;
  for (int i = 0; i < 4; ++i) {
    pthread_join(th[i], NULL);
    sum += args[i].sum;
    chunks += args[i].chunks;
  }
  printf("threads: %ld chunks, sum %016llx, offset at end %lld\n", chunks, (unsigned long long)sum,
         (long long)lseek(tfd, 0, SEEK_CUR));
  close(tfd);

  // The same after one thread had the description to itself (its position
  // lock biased to the main thread, which the other threads must revoke),
  // with small reads: every byte exactly once.
  tfd = open(path, O_RDONLY);
  sum = 0;
  chunks = 0;
  for (int i = 0; i < 50; ++i) {
    r = read(tfd, buf, 100);
    if (r <= 0) break;
    sum += hash(buf, r);
    chunks++;
  }
  for (int i = 0; i < 4; ++i) {
    args[i] = (struct thread_arg){tfd, 0, 0, 100};
    pthread_create(&th[i], NULL, reader_thread, &args[i]);
  }
  for (int i = 0; i < 4; ++i) {
    pthread_join(th[i], NULL);
    sum += args[i].sum;
    chunks += args[i].chunks;
  }
  printf("threads after an owner: %ld chunks, sum %016llx, offset at end %lld\n", chunks,
         (unsigned long long)sum, (long long)lseek(tfd, 0, SEEK_CUR));
  close(tfd);

  bad_buffers(path);
  return 0;
}
