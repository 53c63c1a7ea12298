// upcache_difftest: the differential tester's driver.
//
// Executes a sequence of calls, one per line, and prints every result: the
// return value, errno, a hash (FNV-1a) of the bytes moved, the file offset
// after the call as the program sees it (libc lseek(fd, 0, SEEK_CUR), which
// the shim interposes) and the file size (fstat). difftest.py runs the same
// sequence plain and under LD_PRELOAD=libupcache.so and compares the output.
//
// usage: upcache_difftest --dir DIR SCRIPT      run a script ("-": stdin)
//        upcache_difftest --dir DIR --random SEED CALLS
//                                               generate and run a random one
//        upcache_difftest --gen SEED CALLS      only print the random script
//
// DIR gets fresh test files at start (f0..f3 regular files of known content,
// empty f4, directory d0). Names in scripts are relative to DIR.
//
// Script language (one call per line, '#' starts a comment). Handles: every
// call that makes a descriptor (open, creat, openat, dup*, fcntl_dupfd, pipe)
// appends it to a handle list; `fdN` is the N-th handle (even after close:
// then the descriptor number is stale, as in a buggy program); a plain
// integer is a raw descriptor number. LEN/OFF accept K and M suffixes, 0x,
// `big` (2^62) and `huge` (2^63, negative as ssize_t), never backed by
// memory: only where the kernel rejects them before touching the buffer. LENS is a comma list of iovec lengths.
//
//   open PATH FLAGS [MODE]         FLAGS: O_RDONLY|O_CREAT|... or a number
//   openat PATH FLAGS | creat PATH
//   close H | dup H | dup2 H NEWFD | dup3 H NEWFD FLAGS
//   fcntl_dupfd H MIN | fcntl_dupfd_cloexec H MIN
//   getfl H | setfl H FLAGS | pipesz H SIZE (F_SETPIPE_SZ; prints F_GETPIPE_SZ)
//   pipe                           two handles (read end, write end), O_NONBLOCK
//                                  (kept by setfl: nothing in a run may block)
//   read H LEN [badbuf|kbuf|nullbuf] | pread H LEN OFF [badbuf|kbuf|nullbuf]
//   readv H LENS [CNT] | preadv H OFF LENS [CNT] | preadv2 H OFF FLAGS LENS [CNT]
//       (preadv2 with RWF_NOWAIT: an EAGAIN or short result is completed by
//       a blocking read of the rest, since what is "cached" differs between
//       the kernel's cache and upcache's; the total must match)
//   write H LEN | pwrite H LEN OFF | writev H LENS | pwritev H OFF LENS
//   pwritev2 H OFF FLAGS LENS
//   lseek H OFF WHENCE             SEEK_SET|SEEK_CUR|SEEK_END|SEEK_DATA|SEEK_HOLE
//   ftruncate H LEN | truncate PATH LEN
//   fallocate H MODE OFF LEN       MODE: 0|FALLOC_FL_KEEP_SIZE|FALLOC_FL_PUNCH_HOLE|...
//   fadvise H OFF LEN ADVICE       POSIX_FADV_* (posix_fadvise's return value)
//   flock H OP                     LOCK_SH|LOCK_EX|LOCK_UN, with LOCK_NB
//   lock H CMD TYPE OFF LEN        fcntl CMD (F_SETLK|F_OFD_SETLK) of TYPE
//                                  (F_RDLCK|F_WRLCK|F_UNLCK) over [OFF, OFF+LEN)
//   readahead H OFF LEN
//   sendfile OUT IN OFF|- COUNT
//   copy_file_range IN OFF|- OUT OFF|- LEN
//   splice IN OFF|- OUT OFF|- LEN [FLAGS]
//       (sendfile and splice take a last word `drain`: what they put into a
//       pipe is read back at once and hashed; random sequences use it)
//   fork CALL...                   CALL runs in a forked child (which prints
//                                  its own result), the parent waits
//   mmap H LEN OFF PROT [FLAGS]    maps the file (FLAGS: MAP_SHARED by default,
//                                  or MAP_PRIVATE); makes handle mN (mN even
//                                  when it failed); prints 0 or -1, not the address
//   mstore M OFF LEN               stores a pattern through mapping M at OFF
//   mload M OFF LEN                hash of LEN bytes of mapping M at OFF
//   munmap M [OFF LEN]             the whole mapping, or a part of it
//   mremap M NEWLEN                MREMAP_MAYMOVE | mprotect M PROT | msync M
//   dup2_high H COUNT [dup3]       dup2 (or dup3 O_CLOEXEC) H onto each of the
//                                  COUNT numbers from upcache's reserve base
//                                  (RLIMIT_NOFILE soft minus a sixteenth,
//                                  64..4096, at least 100), where its own
//                                  descriptors live: the program's call must
//                                  succeed as without upcache; preads 16 bytes
//                                  through each, closes them, prints a summary
//   passfd H LEN [mmsg]            sends H over a Unix socket (SCM_RIGHTS, with
//                                  sendmsg or sendmmsg) to a receiver process
//                                  forked when the script started (so it
//                                  inherited no file): it reads LEN bytes from
//                                  the descriptor it got and prints them, the
//                                  parent waits and prints H's state
//   spawn H LEN                    posix_spawn this program with H as its
//                                  stdin; it reads LEN bytes and prints them
//   system H LEN                   the same through system() and a shell
//   sleep / nop
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

#define BUF_SIZE (16u << 20)
#define MAX_HANDLES 4096
#define MAX_IOV 1100
#define BIG (1ull << 62)

static unsigned char* g_buf;   // read/write buffer, page aligned
#define MAX_MAPS 64
static unsigned char* g_maps[MAX_MAPS];  // mmap handles (MAP_FAILED: failed)
static size_t g_map_len[MAX_MAPS];
static int g_nmaps;
static int g_handles[MAX_HANDLES];
static int g_nhandles;
static long g_line;
static const char* g_self;

// ---------------------------------------------------------------- output

static uint64_t fnv(uint64_t h, const unsigned char* p, size_t n) {
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}
#define FNV0 1469598103934665603ull

static void state_of(int fd, char* out, size_t cap) {
  if (fd < 0) {
    snprintf(out, cap, "-");
    return;
  }
  int saved = errno;
  off_t pos = lseek(fd, 0, SEEK_CUR);
  int pe = errno;
  struct stat st;
  int sr = fstat(fd, &st);
  int se = errno;
  char p[32], s[32];
  if (pos < 0) snprintf(p, sizeof p, "E%d", pe); else snprintf(p, sizeof p, "%lld", (long long)pos);
  if (sr < 0) snprintf(s, sizeof s, "E%d", se);
  else if (S_ISREG(st.st_mode)) snprintf(s, sizeof s, "%lld", (long long)st.st_size);
  else snprintf(s, sizeof s, "%s", S_ISDIR(st.st_mode) ? "dir" : S_ISFIFO(st.st_mode) ? "fifo" : "other");
  snprintf(out, cap, "pos=%s size=%s", p, s);
  errno = saved;
}

// Prints one result line. `fds` are up to two descriptors whose state follows.
static void result(long long ret, int err, uint64_t hash, const char* extra, int fd1, int fd2) {
  char s1[96], s2[96];
  state_of(fd1, s1, sizeof s1);
  state_of(fd2, s2, sizeof s2);
  printf("  -> ret=%lld errno=%d", ret, ret < 0 ? err : 0);
  if (hash) printf(" hash=%016" PRIx64, hash);
  if (extra && *extra) printf(" %s", extra);
  printf(" [%s]", s1);
  if (fd2 >= 0) printf(" [%s]", s2);
  printf("\n");
}

// ---------------------------------------------------------------- parsing

static int fail_parse(const char* what, const char* tok) {
  fprintf(stderr, "difftest: line %ld: bad %s '%s'\n", g_line, what, tok ? tok : "(missing)");
  exit(2);
}

static long long num(const char* t) {
  if (!t) fail_parse("number", t);
  if (strcmp(t, "big") == 0) return (long long)BIG;
  if (strcmp(t, "-big") == 0) return -(long long)BIG;
  if (strcmp(t, "huge") == 0) return (long long)(1ull << 63);  // negative as ssize_t
  char* end;
  long long v = strtoll(t, &end, 0);
  if (*end == 'K' || *end == 'k') v *= 1LL << 10, ++end;
  else if (*end == 'M' || *end == 'm') v *= 1LL << 20, ++end;
  else if (*end == 'G' || *end == 'g') v *= 1LL << 30, ++end;
  if (*end) fail_parse("number", t);
  return v;
}

static int fd_of(const char* t) {
  if (!t) fail_parse("descriptor", t);
  if (strncmp(t, "fd", 2) == 0) {
    long n = strtol(t + 2, NULL, 10);
    if (n < 0 || n >= g_nhandles) return -1000 - (int)n;  // never made: an invalid fd
    return g_handles[n];
  }
  return (int)num(t);
}

static int map_of(const char* t) {
  if (!t || t[0] != 'm') fail_parse("mapping", t);
  long n = strtol(t + 1, NULL, 10);
  if (n < 0 || n >= g_nmaps || g_maps[n] == MAP_FAILED) fail_parse("mapping (never made)", t);
  return (int)n;
}

static void add_handle(int fd) {
  if (fd >= 0 && g_nhandles < MAX_HANDLES) g_handles[g_nhandles++] = fd;
}

struct name_val {
  const char* name;
  long long val;
};
static const struct name_val k_names[] = {
  {"O_RDONLY", O_RDONLY}, {"O_WRONLY", O_WRONLY}, {"O_RDWR", O_RDWR}, {"O_CREAT", O_CREAT},
  {"O_TRUNC", O_TRUNC}, {"O_APPEND", O_APPEND}, {"O_EXCL", O_EXCL}, {"O_DIRECT", O_DIRECT},
  {"O_NONBLOCK", O_NONBLOCK}, {"O_CLOEXEC", O_CLOEXEC}, {"O_DIRECTORY", O_DIRECTORY},
  {"O_NOATIME", O_NOATIME}, {"O_SYNC", O_SYNC}, {"O_DSYNC", O_DSYNC}, {"O_PATH", O_PATH},
  {"SEEK_SET", SEEK_SET}, {"SEEK_CUR", SEEK_CUR}, {"SEEK_END", SEEK_END},
  {"SEEK_DATA", SEEK_DATA}, {"SEEK_HOLE", SEEK_HOLE},
  {"RWF_NOWAIT", RWF_NOWAIT}, {"RWF_HIPRI", RWF_HIPRI}, {"RWF_DSYNC", RWF_DSYNC},
  {"RWF_SYNC", RWF_SYNC}, {"RWF_APPEND", RWF_APPEND},
  {"FALLOC_FL_KEEP_SIZE", FALLOC_FL_KEEP_SIZE}, {"FALLOC_FL_PUNCH_HOLE", FALLOC_FL_PUNCH_HOLE},
  {"FALLOC_FL_ZERO_RANGE", FALLOC_FL_ZERO_RANGE}, {"FALLOC_FL_COLLAPSE_RANGE", FALLOC_FL_COLLAPSE_RANGE},
  {"FALLOC_FL_INSERT_RANGE", FALLOC_FL_INSERT_RANGE},
  {"POSIX_FADV_NORMAL", POSIX_FADV_NORMAL}, {"POSIX_FADV_RANDOM", POSIX_FADV_RANDOM},
  {"POSIX_FADV_SEQUENTIAL", POSIX_FADV_SEQUENTIAL}, {"POSIX_FADV_WILLNEED", POSIX_FADV_WILLNEED},
  {"POSIX_FADV_DONTNEED", POSIX_FADV_DONTNEED}, {"POSIX_FADV_NOREUSE", POSIX_FADV_NOREUSE},
  {"SPLICE_F_MOVE", SPLICE_F_MOVE}, {"SPLICE_F_NONBLOCK", SPLICE_F_NONBLOCK},
  {"SPLICE_F_MORE", SPLICE_F_MORE}, {"PROT_READ", PROT_READ}, {"PROT_WRITE", PROT_WRITE},
  {"PROT_NONE", PROT_NONE}, {"MAP_SHARED", MAP_SHARED}, {"MAP_PRIVATE", MAP_PRIVATE}, {"0", 0},
  {"LOCK_SH", LOCK_SH}, {"LOCK_EX", LOCK_EX}, {"LOCK_UN", LOCK_UN}, {"LOCK_NB", LOCK_NB},
  {"F_SETLK", F_SETLK}, {"F_OFD_SETLK", F_OFD_SETLK}, {"F_RDLCK", F_RDLCK}, {"F_WRLCK", F_WRLCK},
  {"F_UNLCK", F_UNLCK},
};

static long long flags_of(const char* t) {
  if (!t) fail_parse("flags", t);
  long long v = 0;
  char tmp[256];
  snprintf(tmp, sizeof tmp, "%s", t);
  for (char* save = NULL, *p = strtok_r(tmp, "|", &save); p; p = strtok_r(NULL, "|", &save)) {
    size_t i;
    for (i = 0; i < sizeof k_names / sizeof k_names[0]; ++i)
      if (strcmp(p, k_names[i].name) == 0) break;
    v |= i < sizeof k_names / sizeof k_names[0] ? k_names[i].val : num(p);
  }
  return v;
}

// Builds iovecs over g_buf from a comma list. Lengths that do not fit in the
// buffer must be `big`-sized (never touched by the kernel).
static int iovs_of(const char* t, struct iovec* iov, size_t* total_backed) {
  if (!t) fail_parse("iovec list", t);
  char tmp[8192];
  snprintf(tmp, sizeof tmp, "%s", t);
  int n = 0;
  size_t used = 0;
  for (char* save = NULL, *p = strtok_r(tmp, ",", &save); p && n < MAX_IOV; p = strtok_r(NULL, ",", &save)) {
    unsigned long long len = (unsigned long long)num(p);
    if (len <= BUF_SIZE - used) {
      iov[n].iov_base = g_buf + used;
      used += len;
    } else if (len >= (1ull << 40)) {
      iov[n].iov_base = g_buf;
    } else {
      fail_parse("iovec length (too large for the buffer)", p);
    }
    iov[n].iov_len = len;
    ++n;
  }
  *total_backed = used;
  return n;
}

static uint64_t hash_iov(const struct iovec* iov, int n, long long bytes) {
  uint64_t h = FNV0;
  for (int i = 0; i < n && bytes > 0; ++i) {
    size_t k = iov[i].iov_len < (unsigned long long)bytes ? iov[i].iov_len : (size_t)bytes;
    h = fnv(h, iov[i].iov_base, k);
    bytes -= (long long)k;
  }
  return h;
}

// Fills the first `n` bytes of the buffer with a pattern of this line.
static void pattern(size_t n) {
  if (n > BUF_SIZE) n = BUF_SIZE;
  uint32_t x = (uint32_t)g_line * 2654435761u + 12345u;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1103515245u + 12345u;
    g_buf[i] = (unsigned char)(x >> 16);
  }
}

static size_t clamp_len(long long len) {
  if (len < 0) return (size_t)len;
  return (unsigned long long)len > BUF_SIZE && (unsigned long long)len < (1ull << 40) ? BUF_SIZE : (size_t)len;
}

// ---------------------------------------------------------------- calls

static void run_tokens(char** tok, int ntok);

// Argument i, or null when the line has fewer (required ones fail in parsing).
__attribute__((noinline)) static const char* arg_at(char** tok, int ntok, int i) {
  return i < ntok ? tok[i] : NULL;
}

static void do_spawn(int fd, long long len, int use_system) {
  fflush(stdout);
  char lenbuf[32];
  snprintf(lenbuf, sizeof lenbuf, "%lld", len);
  int status = -1;
  if (use_system) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' --read-stdin %s <&%d", g_self, lenbuf, fd);
    status = system(cmd);
  } else {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd, 0);
    char* argv[] = {(char*)g_self, "--read-stdin", lenbuf, NULL};
    pid_t pid;
    int e = posix_spawn(&pid, g_self, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e == 0) waitpid(pid, &status, 0);
  }
  char extra[64];
  snprintf(extra, sizeof extra, "status=%d", status);
  result(0, 0, 0, extra, fd, -1);
}

// The child of spawn/system: reads LEN bytes of its inherited stdin with
// read() and prints them, then (a descriptor inherited at start-up, shared
// with the parent) preads, seeks back and reads again.
static int read_stdin_main(long long len) {
  size_t n = clamp_len(len);
  ssize_t r = read(0, g_buf, n);
  int e = errno;
  printf("  child: ");
  result(r, e, r > 0 ? fnv(FNV0, g_buf, (size_t)r) : 0, "", 0, -1);
  r = pread(0, g_buf, 100, 5);
  e = errno;
  printf("  child pread: ");
  result(r, e, r > 0 ? fnv(FNV0, g_buf, (size_t)r) : 0, "", 0, -1);
  off_t o = lseek(0, -7, SEEK_CUR);
  e = errno;
  printf("  child lseek: ");
  result(o, e, 0, "", 0, -1);
  r = read(0, g_buf, 20);
  e = errno;
  printf("  child read: ");
  result(r, e, r > 0 ? fnv(FNV0, g_buf, (size_t)r) : 0, "", 0, -1);
  fflush(stdout);
  return 0;
}

// `drain` after sendfile or splice into a pipe: reads back at once what the
// pipe holds (through a second read end opened on the pipe) and prints its
// hash. Why: the kernel's pipe buffers reference page-cache pages,
// so whether a later write to the file shows through them depends on
// truncation and writeback; upcache's served splice puts copies in the pipe.
// The bytes the call moved are the contract, not that aliasing: random
// sequences drain.
static void drain_pipe(int out, long long moved, char* extra, size_t cap) {
  struct stat st;
  if (moved <= 0 || fstat(out, &st) != 0 || !S_ISFIFO(st.st_mode)) return;
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", out);
  int rd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (rd < 0) return;
  static unsigned char buf[1 << 16];
  uint64_t h = FNV0;
  long long got = 0;
  // Everything the pipe holds, bytes written before the call included: any
  // byte left behind could be one the kernel aliases.
  for (;;) {
    ssize_t n = read(rd, buf, sizeof buf);
    if (n <= 0) break;
    h = fnv(h, buf, (size_t)n);
    got += n;
  }
  close(rd);
  size_t len = strlen(extra);
  snprintf(extra + len, cap - len, "%sdrained=%lld hash=%016llx", len ? " " : "", got,
           (unsigned long long)h);
}

// The receiver of passfd: a process forked before the script opened anything.
static int g_recv_sock = -1;
static pid_t g_recv_pid = -1;

static void receiver_main(int sock) {
  for (;;) {
    long long len = 0;
    struct iovec v = {&len, sizeof len};
    union {
      struct cmsghdr h;
      char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr m = {0};
    m.msg_iov = &v;
    m.msg_iovlen = 1;
    m.msg_control = ctl.buf;
    m.msg_controllen = sizeof ctl.buf;
    ssize_t n = recvmsg(sock, &m, 0);
    if (n <= 0) return;
    struct cmsghdr* c = CMSG_FIRSTHDR(&m);
    int fd = -1;
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(c), sizeof fd);
    size_t k = clamp_len(len);
    ssize_t r = read(fd, g_buf, k);
    int e = errno;
    printf("  receiver: ");
    result(r, e, r > 0 ? fnv(FNV0, g_buf, (size_t)r) : 0, "", fd, -1);
    close(fd);
    fflush(stdout);
    char ok = 'k';
    if (write(sock, &ok, 1) != 1) return;
  }
}

static void start_receiver(void) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return;
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    close(sv[0]);
    receiver_main(sv[1]);
    fflush(stdout);
    _exit(0);
  }
  close(sv[1]);
  if (pid < 0) {
    close(sv[0]);
    return;
  }
  g_recv_sock = sv[0];
  g_recv_pid = pid;
}

static void stop_receiver(void) {
  if (g_recv_sock < 0) return;
  close(g_recv_sock);
  waitpid(g_recv_pid, NULL, 0);
}

static void do_passfd(int fd, long long len, int use_mmsg) {
  fflush(stdout);
  struct iovec v = {&len, sizeof len};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } ctl;
  memset(&ctl, 0, sizeof ctl);
  struct msghdr m = {0};
  m.msg_iov = &v;
  m.msg_iovlen = 1;
  m.msg_control = ctl.buf;
  m.msg_controllen = sizeof ctl.buf;
  struct cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  long long r;
  if (use_mmsg) {
    struct mmsghdr mm = {m, 0};
    r = sendmmsg(g_recv_sock, &mm, 1, 0);
  } else {
    r = sendmsg(g_recv_sock, &m, 0);
  }
  int e = errno;
  char ok;
  if (r >= 0 && read(g_recv_sock, &ok, 1) != 1) r = -1, e = EPIPE;
  result(r, e, 0, "", fd, -1);
}

static void run_tokens(char** tok, int ntok) {
  const char* c = tok[0];
  long long r = 0;
  int e = 0;
  errno = 0;
  int drain = 0;
  if (ntok > 1 && strcmp(tok[ntok - 1], "drain") == 0) drain = 1, --ntok;
#define ARG(i) arg_at(tok, ntok, (i))
  if (strcmp(c, "open") == 0 || strcmp(c, "openat") == 0) {
    int flags = (int)flags_of(ARG(2));
    mode_t mode = ARG(3) ? (mode_t)num(ARG(3)) : 0644;
    r = c[4] ? openat(AT_FDCWD, ARG(1), flags, mode) : open(ARG(1), flags, mode);
    e = errno;
    add_handle((int)r);
    result(r, e, 0, "", (int)r, -1);
  } else if (strcmp(c, "creat") == 0) {
    r = creat(ARG(1), 0644);
    e = errno;
    add_handle((int)r);
    result(r, e, 0, "", (int)r, -1);
  } else if (strcmp(c, "close") == 0) {
    r = close(fd_of(ARG(1)));
    result(r, errno, 0, "", -1, -1);
  } else if (strcmp(c, "dup") == 0) {
    r = dup(fd_of(ARG(1)));
    e = errno;
    add_handle((int)r);
    result(r, e, 0, "", (int)r, -1);
  } else if (strcmp(c, "dup2") == 0 || strcmp(c, "dup3") == 0) {
    int fd = fd_of(ARG(1)), to = fd_of(ARG(2));
    r = c[3] == '2' ? dup2(fd, to) : dup3(fd, to, (int)flags_of(ARG(3)));
    e = errno;
    add_handle((int)r);
    result(r, e, 0, "", (int)r, -1);
  } else if (strncmp(c, "fcntl_dupfd", 11) == 0) {
    r = fcntl(fd_of(ARG(1)), c[11] ? F_DUPFD_CLOEXEC : F_DUPFD, (int)num(ARG(2)));
    e = errno;
    add_handle((int)r);
    result(r, e, 0, "", (int)r, -1);
  } else if (strcmp(c, "getfl") == 0) {
    int fd = fd_of(ARG(1));
    r = fcntl(fd, F_GETFL);
    e = errno;
    result(r, e, 0, "", fd, -1);
  } else if (strcmp(c, "setfl") == 0) {
    int fd = fd_of(ARG(1));
    int fl = (int)flags_of(ARG(2));
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode)) fl |= O_NONBLOCK;  // never block the run
    r = fcntl(fd, F_SETFL, fl);
    e = errno;
    result(r, e, 0, "", fd, -1);
  } else if (strcmp(c, "pipesz") == 0) {
    int fd = fd_of(ARG(1));
    r = fcntl(fd, F_SETPIPE_SZ, (int)num(ARG(2)));
    e = errno;
    char extra[64];
    snprintf(extra, sizeof extra, "size=%d", fcntl(fd, F_GETPIPE_SZ));
    result(r, e, 0, extra, -1, -1);
  } else if (strcmp(c, "pipe") == 0) {
    int p[2] = {-1, -1};
    r = pipe2(p, O_NONBLOCK);
    e = errno;
    add_handle(p[0]);
    add_handle(p[1]);
    char extra[64];
    snprintf(extra, sizeof extra, "fds=%d,%d", p[0], p[1]);
    result(r, e, 0, extra, -1, -1);
  } else if (strcmp(c, "read") == 0 || strcmp(c, "pread") == 0) {
    int fd = fd_of(ARG(1));
    size_t n = clamp_len(num(ARG(2)));
    int pos = c[0] == 'p';
    const char* bad = ARG(3 + pos);
    void* buf = g_buf;  // badbuf: unmapped; kbuf: above user space; nullbuf: NULL
    if (bad && strcmp(bad, "badbuf") == 0) buf = (void*)16;
    if (bad && strcmp(bad, "kbuf") == 0) buf = (void*)0xffff800000000000ull;
    if (bad && strcmp(bad, "nullbuf") == 0) buf = NULL;
    r = pos ? pread(fd, buf, n, (off_t)num(ARG(3))) : read(fd, buf, n);
    e = errno;
    result(r, e, r > 0 && buf == g_buf ? fnv(FNV0, g_buf, (size_t)r) : 0, "", fd, -1);
  } else if (strcmp(c, "readv") == 0 || strcmp(c, "preadv") == 0 || strcmp(c, "preadv2") == 0) {
    int fd = fd_of(ARG(1));
    struct iovec iov[MAX_IOV];
    size_t backed;
    int k = c[1] == 'r' ? (c[6] == '2' ? 4 : 3) : 2;  // index of LENS
    int n = iovs_of(ARG(k), iov, &backed);
    int cnt = ARG(k + 1) ? (int)num(ARG(k + 1)) : n;
    if (cnt > n && cnt <= MAX_IOV) {
      for (int i = n; i < cnt; ++i) iov[i] = (struct iovec){g_buf, 0};
    }
    off_t off = k >= 3 ? (off_t)num(ARG(2)) : 0;
    int flags = k == 4 ? (int)flags_of(ARG(3)) : 0;
    char extra[80] = "";
    if (k == 2) {
      r = readv(fd, iov, cnt);
    } else if (k == 3) {
      r = preadv(fd, iov, cnt, off);
    } else {
      r = preadv2(fd, iov, cnt, off, flags);
      e = errno;
      if ((flags & RWF_NOWAIT) && cnt > 0 && cnt <= n) {
        // Complete what RWF_NOWAIT did not read with a blocking read.
        long long first = r < 0 ? (e == EAGAIN ? 0 : -1) : r;
        if (first >= 0) {
          long long total = 0;
          for (int i = 0; i < cnt; ++i) total += (long long)iov[i].iov_len;
          if (first < total) {
            struct iovec rest[MAX_IOV];
            int m = 0;
            long long skip = first;
            for (int i = 0; i < cnt; ++i) {
              if ((long long)iov[i].iov_len <= skip) {
                skip -= (long long)iov[i].iov_len;
                continue;
              }
              rest[m].iov_base = (char*)iov[i].iov_base + skip;
              rest[m].iov_len = iov[i].iov_len - (size_t)skip;
              skip = 0;
              ++m;
            }
            long long more = preadv2(fd, rest, m, off == -1 ? -1 : off + first, flags & ~RWF_NOWAIT);
            r = more < 0 ? (first > 0 ? first : more) : first + more;
          }
          if (r >= 0) snprintf(extra, sizeof extra, "(nowait completed)");
        }
      }
    }
    if (k != 4 || !(flags & RWF_NOWAIT)) e = errno;
    else if (r >= 0) e = 0;
    else e = errno;
    result(r, e, r > 0 ? hash_iov(iov, cnt, r) : 0, extra, fd, -1);
  } else if (strcmp(c, "write") == 0 || strcmp(c, "pwrite") == 0) {
    int fd = fd_of(ARG(1));
    size_t n = clamp_len(num(ARG(2)));
    pattern(n);
    r = c[0] == 'p' ? pwrite(fd, g_buf, n, (off_t)num(ARG(3))) : write(fd, g_buf, n);
    e = errno;
    result(r, e, 0, "", fd, -1);
  } else if (strcmp(c, "writev") == 0 || strcmp(c, "pwritev") == 0 || strcmp(c, "pwritev2") == 0) {
    int fd = fd_of(ARG(1));
    struct iovec iov[MAX_IOV];
    size_t backed;
    int k = c[0] == 'p' ? (c[7] == '2' ? 4 : 3) : 2;
    int n = iovs_of(ARG(k), iov, &backed);
    pattern(backed);
    if (k == 2) r = writev(fd, iov, n);
    else if (k == 3) r = pwritev(fd, iov, n, (off_t)num(ARG(2)));
    else r = pwritev2(fd, iov, n, (off_t)num(ARG(2)), (int)flags_of(ARG(3)));
    e = errno;
    result(r, e, 0, "", fd, -1);
  } else if (strcmp(c, "lseek") == 0) {
    int fd = fd_of(ARG(1));
    r = lseek(fd, (off_t)num(ARG(2)), (int)flags_of(ARG(3)));
    e = errno;
    result(r, e, 0, "", fd, -1);
  } else if (strcmp(c, "ftruncate") == 0) {
    int fd = fd_of(ARG(1));
    r = ftruncate(fd, (off_t)num(ARG(2)));
    e = errno;
    result(r, e, 0, "", fd, -1);
  } else if (strcmp(c, "truncate") == 0) {
    r = truncate(ARG(1), (off_t)num(ARG(2)));
    result(r, errno, 0, "", -1, -1);
  } else if (strcmp(c, "fallocate") == 0) {
    int fd = fd_of(ARG(1));
    r = fallocate(fd, (int)flags_of(ARG(2)), (off_t)num(ARG(3)), (off_t)num(ARG(4)));
    e = errno;
    result(r, e, 0, "", fd, -1);
  } else if (strcmp(c, "flock") == 0) {
    int fd = fd_of(ARG(1));
    r = flock(fd, (int)flags_of(ARG(2)));
    e = errno;
    result(r, e, 0, "", fd, -1);
  } else if (strcmp(c, "lock") == 0) {
    int fd = fd_of(ARG(1));
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = (short)flags_of(ARG(3));
    fl.l_whence = SEEK_SET;
    fl.l_start = (off_t)num(ARG(4));
    fl.l_len = (off_t)num(ARG(5));
    r = fcntl(fd, (int)flags_of(ARG(2)), &fl);
    e = errno;
    result(r, e, 0, "", fd, -1);
  } else if (strcmp(c, "fadvise") == 0) {
    int fd = fd_of(ARG(1));
    r = posix_fadvise(fd, (off_t)num(ARG(2)), (off_t)num(ARG(3)), (int)flags_of(ARG(4)));
    result(r, 0, 0, "", fd, -1);  // returns the error number
  } else if (strcmp(c, "readahead") == 0) {
    int fd = fd_of(ARG(1));
    r = readahead(fd, (off_t)num(ARG(2)), (size_t)num(ARG(3)));
    e = errno;
    result(r, e, 0, "", fd, -1);
  } else if (strcmp(c, "sendfile") == 0) {
    int out = fd_of(ARG(1)), in = fd_of(ARG(2));
    off_t off = 0, *po = NULL;
    if (ARG(3) && strcmp(ARG(3), "-") != 0) off = (off_t)num(ARG(3)), po = &off;
    r = sendfile(out, in, po, (size_t)num(ARG(4)));
    e = errno;
    char extra[128] = "";
    if (po) snprintf(extra, sizeof extra, "off=%lld", (long long)off);
    if (drain) drain_pipe(out, r, extra, sizeof extra);
    result(r, e, 0, extra, in, out);
  } else if (strcmp(c, "copy_file_range") == 0 || strcmp(c, "splice") == 0) {
    int in = fd_of(ARG(1)), out = fd_of(ARG(3));
    loff_t oi = 0, oo = 0, *pi = NULL, *po = NULL;
    if (ARG(2) && strcmp(ARG(2), "-") != 0) oi = num(ARG(2)), pi = &oi;
    if (ARG(4) && strcmp(ARG(4), "-") != 0) oo = num(ARG(4)), po = &oo;
    size_t len = (size_t)num(ARG(5));
    unsigned fl = ARG(6) ? (unsigned)flags_of(ARG(6)) : 0;
    r = c[0] == 'c' ? copy_file_range(in, pi, out, po, len, fl) : splice(in, pi, out, po, len, fl);
    e = errno;
    char extra[160];
    snprintf(extra, sizeof extra, "off_in=%lld off_out=%lld", pi ? (long long)oi : -1LL,
             po ? (long long)oo : -1LL);
    if (drain) drain_pipe(out, r, extra, sizeof extra);
    result(r, e, 0, extra, in, out);
  } else if (strcmp(c, "fork") == 0) {
    if (ntok < 2) fail_parse("fork call", NULL);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      printf("  child:\n");
      run_tokens(tok + 1, ntok - 1);
      fflush(stdout);
      _exit(0);
    }
    int status = -1;
    if (pid > 0) waitpid(pid, &status, 0);
    char extra[64];
    snprintf(extra, sizeof extra, "status=%d", status);
    result(pid > 0 ? 0 : -1, errno, 0, extra, -1, -1);
  } else if (strcmp(c, "mmap") == 0) {
    int fd = fd_of(ARG(1));
    size_t len = (size_t)num(ARG(2));
    int flags = ARG(5) ? (int)flags_of(ARG(5)) : MAP_SHARED;
    void* p = mmap(NULL, len, (int)flags_of(ARG(4)), flags, fd, (off_t)num(ARG(3)));
    e = errno;
    if (g_nmaps < MAX_MAPS) {
      g_maps[g_nmaps] = p;
      g_map_len[g_nmaps++] = len;
    }
    result(p == MAP_FAILED ? -1 : 0, e, 0, "", fd, -1);
  } else if (strcmp(c, "mstore") == 0 || strcmp(c, "mload") == 0) {
    int m = map_of(ARG(1));
    size_t off = (size_t)num(ARG(2)), n = clamp_len(num(ARG(3)));
    if (off > g_map_len[m] || n > g_map_len[m] - off) fail_parse("range of the mapping", ARG(3));
    uint64_t h = 0;
    if (c[1] == 's') {
      pattern(n);
      memcpy(g_maps[m] + off, g_buf, n);
    } else {
      h = fnv(FNV0, g_maps[m] + off, n);
    }
    result((long long)n, 0, h, "", -1, -1);
  } else if (strcmp(c, "munmap") == 0) {
    int m = map_of(ARG(1));
    size_t off = ARG(2) ? (size_t)num(ARG(2)) : 0;
    size_t n = ARG(3) ? (size_t)num(ARG(3)) : g_map_len[m];
    r = munmap(g_maps[m] + off, n);
    e = errno;
    if (r == 0 && !ARG(2)) g_maps[m] = MAP_FAILED;
    result(r, e, 0, "", -1, -1);
  } else if (strcmp(c, "mremap") == 0) {
    int m = map_of(ARG(1));
    size_t n = (size_t)num(ARG(2));
    void* p = mremap(g_maps[m], g_map_len[m], n, MREMAP_MAYMOVE);
    e = errno;
    if (p != MAP_FAILED) g_maps[m] = p, g_map_len[m] = n;
    result(p == MAP_FAILED ? -1 : 0, e, 0, "", -1, -1);
  } else if (strcmp(c, "mprotect") == 0) {
    int m = map_of(ARG(1));
    r = mprotect(g_maps[m], g_map_len[m], (int)flags_of(ARG(2)));
    result(r, errno, 0, "", -1, -1);
  } else if (strcmp(c, "msync") == 0) {
    int m = map_of(ARG(1));
    r = msync(g_maps[m], g_map_len[m], MS_SYNC);
    result(r, errno, 0, "", -1, -1);
  } else if (strcmp(c, "dup2_high") == 0) {
    int fd = fd_of(ARG(1));
    int count = (int)num(ARG(2));
    int use3 = ARG(3) && strcmp(ARG(3), "dup3") == 0;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    long long soft = rl.rlim_cur > (1ull << 30) ? (1ll << 30) : (long long)rl.rlim_cur;
    long long reserve = soft / 16 < 64 ? 64 : (soft / 16 > 4096 ? 4096 : soft / 16);
    long long base = soft - reserve < 100 ? 100 : soft - reserve;
    int ok = 0, failed = 0, first_errno = 0;
    uint64_t h = FNV0;
    for (int i = 0; i < count && base + i < soft; ++i) {
      int n = (int)(base + i);
      int r2 = use3 ? dup3(fd, n, O_CLOEXEC) : dup2(fd, n);
      if (r2 != n) {
        if (!first_errno) first_errno = errno;
        ++failed;
        continue;
      }
      ++ok;
      ssize_t k = pread(n, g_buf, 16, i * 100);
      if (k > 0) h = fnv(h, g_buf, (size_t)k);
      h = fnv(h, (unsigned char*)&k, sizeof k);
      close(n);
    }
    char extra[96];
    snprintf(extra, sizeof extra, "ok=%d failed=%d errno=%d", ok, failed, first_errno);
    result(ok, 0, h, extra, fd, -1);
  } else if (strcmp(c, "passfd") == 0) {
    do_passfd(fd_of(ARG(1)), num(ARG(2)), ARG(3) && strcmp(ARG(3), "mmsg") == 0);
  } else if (strcmp(c, "spawn") == 0 || strcmp(c, "system") == 0) {
    do_spawn(fd_of(ARG(1)), num(ARG(2)), c[1] == 'y');
  } else if (strcmp(c, "nop") == 0) {
  } else {
    fail_parse("call", c);
  }
#undef ARG
}

static void run_line(char* line) {
  char* hash = strchr(line, '#');
  if (hash) *hash = 0;
  char* tok[32];
  int n = 0;
  for (char* save = NULL, *p = strtok_r(line, " \t\r\n", &save); p && n < 32; p = strtok_r(NULL, " \t\r\n", &save))
    tok[n++] = p;
  if (n == 0) return;
  printf("%ld:", g_line);
  for (int i = 0; i < n; ++i) printf(" %s", tok[i]);
  printf("\n");
  run_tokens(tok, n);
  fflush(stdout);
}

// ---------------------------------------------------------------- files

static void make_file(const char* name, size_t size, unsigned seed) {
  int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    perror(name);
    exit(2);
  }
  uint32_t x = seed * 2654435761u + 1;
  unsigned char block[65536];
  size_t done = 0;
  while (done < size) {
    size_t n = size - done < sizeof block ? size - done : sizeof block;
    for (size_t i = 0; i < n; ++i) {
      x = x * 1664525u + 1013904223u;
      block[i] = (unsigned char)(x >> 24);
    }
    if (write(fd, block, n) != (ssize_t)n) {
      perror("write");
      exit(2);
    }
    done += n;
  }
  close(fd);
}

static void setup_dir(const char* dir) {
  if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
    perror(dir);
    exit(2);
  }
  if (chdir(dir) < 0) {
    perror(dir);
    exit(2);
  }
  make_file("f0", 100000, 1);              // a few pages, tail page partial
  make_file("f1", 3 * 4096, 2);            // page multiple
  make_file("f2", 2 * 1024 * 1024 + 333, 3);  // larger than the small cache
  make_file("f3", 70000, 4);
  make_file("f4", 0, 5);                   // empty
  mkdir("d0", 0755);
}

// ---------------------------------------------------------------- generator

static uint64_t g_rng;
static uint64_t rnd(void) {  // splitmix64
  uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static long long rr(long long n) { return n <= 0 ? 0 : (long long)(rnd() % (uint64_t)n); }

// C leaves unspecified the order in which a call's arguments and an
// operator's operands are evaluated, and compilers differ: UBSan's divisor
// check made the sanitizer build draw `a() / b()` divisor first, so every
// seed generated another sequence there than in the release build. So no
// expression below holds two draws: each is its own statement, in the order
// GCC without UBSan took (operands left to right, call arguments right to
// left), which keeps the sequences of every seed as they were.

// Sizes and offsets around interesting values (page edges, file ends).
static long long rsize(void) {
  long long a, b;
  switch (rr(8)) {
    case 0: return rr(2) ? 0 : 1;
    case 1:
      a = rr(8);
      b = rr(3);
      return 4096 * (1 + a) + (b - 1);
    case 2: return rr(300);
    case 3: return 65536 * (1 + rr(4));
    case 4: return 4096 * (1 + rr(64));
    default: return rr(20000);
  }
}
static long long roff(void) {
  static const long long ends[] = {100000, 12288, 2097485, 70000, 0};
  long long a, b;
  switch (rr(6)) {
    case 0:
      a = ends[rr(5)];
      b = rr(9);
      return a + b - 4;
    case 1:
      a = rr(600);
      b = rr(3);
      return 4096 * a + (b - 1);
    case 2: return rr(2200000);
    case 3: return rr(10) == 0 ? -1 - rr(5) : rr(120000);
    default: return rr(110000);
  }
}
static void rlens(char* out, size_t cap, int* cnt) {
  int n = (int)rr(5) + 1;
  if (rr(30) == 0) n = 0;
  size_t k = 0;
  out[0] = 0;
  for (int i = 0; i < n; ++i) {
    long long s = 0;
    if (rr(4) != 0) {
      s = rsize();
      s /= rr(3) + 1;
    }
    k += (size_t)snprintf(out + k, cap - k, "%s%lld", i ? "," : "", s);
  }
  if (n == 0) snprintf(out, cap, "0");
  *cnt = n == 0 ? 0 : -2;
  if (rr(40) == 0) *cnt = (int)(rr(2) ? -1 : 1025);
  if (rr(60) == 0) snprintf(out, cap, "big,big");
}

static const char* k_files[] = {"f0", "f1", "f2", "f3", "f4", "d0", "nosuch"};
static const char* k_open_flags[] = {
  "O_RDONLY", "O_RDONLY", "O_RDONLY", "O_RDWR", "O_WRONLY", "O_RDWR|O_APPEND", "O_WRONLY|O_APPEND",
  "O_RDONLY|O_DIRECT", "O_RDWR|O_CREAT", "O_RDONLY|O_NOATIME", "O_RDONLY|O_CLOEXEC",
};
static const char* k_rwf[] = {"0", "RWF_HIPRI", "RWF_NOWAIT", "0x40000000", "RWF_DSYNC", "RWF_APPEND"};
static const char* k_whence[] = {"SEEK_SET", "SEEK_CUR", "SEEK_END", "SEEK_DATA", "SEEK_HOLE", "7"};
static const char* k_advice[] = {"POSIX_FADV_NORMAL", "POSIX_FADV_RANDOM", "POSIX_FADV_SEQUENTIAL",
                                 "POSIX_FADV_WILLNEED", "POSIX_FADV_DONTNEED", "POSIX_FADV_NOREUSE", "99"};
static const char* k_falloc[] = {"0", "FALLOC_FL_KEEP_SIZE", "FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE",
                                 "FALLOC_FL_ZERO_RANGE", "FALLOC_FL_PUNCH_HOLE"};

// Once a script may have made unwritten extents (fallocate, or a direct write
// through a descriptor it turned O_DIRECT), SEEK_DATA/SEEK_HOLE are no
// longer generated: over unwritten extents the kernel reports data exactly
// where its page cache holds pages, and upcache by design keeps its reads out
// of the kernel's page cache (O_DIRECT, or DONTNEED after buffered reads). The
// difference is inherent and documented in upcache(7) (like mincore/fincore);
// everything else about those files is still compared.
static int g_unwritten_extents;

// One random call into `out`. `nh` is the number of handles made so far.
static void gen_call(char* out, size_t cap, int* nh, int depth) {
  char h[16], h2[16], lens[512];
  int cnt;
  snprintf(h, sizeof h, "fd%lld", *nh ? rr(*nh) : 0);
  snprintf(h2, sizeof h2, "fd%lld", *nh ? rr(*nh) : 0);
  long long w = rr(100);
  long long d1, d2, d3;  // draws for one line, in the order they are made
  if (*nh < 3 || w < 8) {
    const char* flags = k_open_flags[rr(11)];
    const char* file = k_files[rr(7) == 0 ? rr(7) : rr(5)];
    snprintf(out, cap, "open %s %s", file, flags);
    ++*nh;
  } else if (w < 24) {
    snprintf(out, cap, "read %s %lld", h, rsize());
  } else if (w < 34) {
    d2 = roff();
    d1 = rsize();
    snprintf(out, cap, "pread %s %lld %lld", h, d1, d2);
  } else if (w < 40) {
    rlens(lens, sizeof lens, &cnt);
    if (cnt >= -1 && cnt != -2) snprintf(out, cap, "readv %s %s %d", h, lens, cnt);
    else snprintf(out, cap, "readv %s %s", h, lens);
  } else if (w < 44) {
    rlens(lens, sizeof lens, &cnt);
    snprintf(out, cap, "preadv %s %lld %s", h, roff(), lens);
  } else if (w < 50) {
    rlens(lens, sizeof lens, &cnt);
    const char* rwf = k_rwf[rr(4)];
    d1 = rr(2) ? -1 : roff();
    snprintf(out, cap, "preadv2 %s %lld %s %s", h, d1, rwf, lens);
  } else if (w < 58) {
    const char* whence = k_whence[rr(6)];
    if (g_unwritten_extents && (strcmp(whence, "SEEK_DATA") == 0 || strcmp(whence, "SEEK_HOLE") == 0))
      whence = "SEEK_END";
    snprintf(out, cap, "lseek %s %lld %s", h, rr(3) ? roff() : rr(200) - 100, whence);
  } else if (w < 61) {
    snprintf(out, cap, "write %s %lld", h, rsize() / 4);
  } else if (w < 64) {
    d2 = roff();
    d1 = rsize() / 4;
    snprintf(out, cap, "pwrite %s %lld %lld", h, d1, d2);
  } else if (w < 65) {
    rlens(lens, sizeof lens, &cnt);
    snprintf(out, cap, "writev %s %s", h, lens);
  } else if (w < 66) {
    rlens(lens, sizeof lens, &cnt);
    const char* rwf = k_rwf[rr(6)];
    d1 = rr(2) ? -1 : roff();
    snprintf(out, cap, "pwritev2 %s %lld %s %s", h, d1, rwf, lens);
  } else if (w < 68) {
    snprintf(out, cap, "ftruncate %s %lld", h, rr(3) ? roff() : 0);
  } else if (w < 72) {
    snprintf(out, cap, "%s %s", rr(2) ? "dup" : "fcntl_dupfd", h);
    if (out[0] == 'f') snprintf(out + strlen(out), cap - strlen(out), " %lld", rr(20));
    ++*nh;
  } else if (w < 73) {
    snprintf(out, cap, "dup2 %s %lld", h, 3 + rr(12));
    ++*nh;
  } else if (w < 78) {
    snprintf(out, cap, "close %s", h);
  } else if (w < 80) {
    const char* advice = k_advice[rr(7)];
    d2 = rsize();
    d1 = roff();
    snprintf(out, cap, "fadvise %s %lld %lld %s", h, d1, d2, advice);
  } else if (w < 82) {
    d2 = rsize();
    d1 = roff();
    snprintf(out, cap, "readahead %s %lld %lld", h, d1, d2);
  } else if (w < 83) {
    const char* mode = k_falloc[rr(5)];
    if (strstr(mode, "PUNCH_HOLE") == NULL) g_unwritten_extents = 1;
    d2 = rsize();
    d1 = roff();
    snprintf(out, cap, "fallocate %s %s %lld %lld", h, mode, d1, d2);
  } else if (w < 85) {
    d3 = rsize();
    const char* off = rr(2) ? "-" : "5000";
    snprintf(out, cap, "sendfile %s %s %s %lld drain", h2, h, off, d3);
    if (strstr(out, " 5000 ")) {
      char* p = strstr(out, " 5000 ");
      char tail[64];
      snprintf(tail, sizeof tail, "%s", p + 6);
      snprintf(p, cap - (size_t)(p - out), " %lld %s", roff(), tail);
    }
  } else if (w < 87) {
    char a[32] = "-", b[32] = "-";
    if (rr(2)) snprintf(a, sizeof a, "%lld", roff());
    if (rr(2)) snprintf(b, sizeof b, "%lld", roff());
    snprintf(out, cap, "copy_file_range %s %s %s %s %lld", h, a, h2, b, rsize());
  } else if (w < 89) {
    char a[32] = "-";
    if (rr(2)) snprintf(a, sizeof a, "%lld", roff());
    snprintf(out, cap, "splice %s %s %s - %lld SPLICE_F_NONBLOCK drain", h, a, h2, rsize());
  } else if (w < 90) {
    snprintf(out, cap, "pipe");
    *nh += 2;
  } else if (w < 93 && depth == 0) {
    char sub[400];
    int dummy = *nh;
    do gen_call(sub, sizeof sub, &dummy, 1);
    while (strncmp(sub, "open", 4) == 0 || strncmp(sub, "dup", 3) == 0 || strncmp(sub, "fcntl", 5) == 0 ||
           strncmp(sub, "pipe", 4) == 0);
    snprintf(out, cap, "fork %s", sub);
  } else if (w < 94 && depth == 0) {
    snprintf(out, cap, "spawn %s %lld", h, rsize());
  } else if (w < 96) {
    snprintf(out, cap, "getfl %s", h);
  } else if (w < 97) {
    const char* fl = rr(3) == 0 ? "O_APPEND" : rr(2) ? "O_DIRECT" : "0";
    // ext4 writes a direct write into a hole as an unwritten extent first,
    // and one that fails part-way (EINVAL on an unaligned rest) leaves it so.
    if (strcmp(fl, "O_DIRECT") == 0) g_unwritten_extents = 1;
    snprintf(out, cap, "setfl %s %s", h, fl);
  } else {
    d1 = roff() & 0xfffff;
    snprintf(out, cap, "truncate %s %lld", k_files[rr(5)], d1);
  }
}

// Writes a random script of `calls` lines into a memory file.
static FILE* gen_script(unsigned long long seed, long calls) {
  g_unwritten_extents = 0;
  g_rng = seed * 0x2545f4914f6cdd1dull + 7;
  char* text = NULL;
  size_t size = 0;
  FILE* f = open_memstream(&text, &size);
  int nh = 0;
  for (long i = 0; i < calls; ++i) {
    char line[600];
    gen_call(line, sizeof line, &nh, 0);
    fprintf(f, "%s\n", line);
  }
  fclose(f);
  return fmemopen(text, size, "r");
}

int main(int argc, char** argv) {
  g_self = realpath("/proc/self/exe", NULL);
  g_buf = mmap(NULL, BUF_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (g_buf == MAP_FAILED) return 2;
  setvbuf(stdout, NULL, _IOFBF, 1 << 16);
  signal(SIGPIPE, SIG_IGN);  // a write to a pipe without readers: EPIPE
  const char* dir = NULL;
  FILE* in = NULL;
  int only_gen = 0, random_script = 0;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--read-stdin") == 0 && i + 1 < argc) return read_stdin_main(num(argv[i + 1]));
    if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
      dir = argv[++i];
    } else if ((strcmp(argv[i], "--random") == 0 || strcmp(argv[i], "--gen") == 0) && i + 2 < argc) {
      only_gen = argv[i][2] == 'g';
      random_script = 1;
      in = gen_script(strtoull(argv[i + 1], NULL, 0), strtol(argv[i + 2], NULL, 0));
      i += 2;
    } else if (strcmp(argv[i], "--no-receiver") == 0) {
      random_script = 1;  // run a script as --random runs its lines (minimizing a seed)
    } else if (strcmp(argv[i], "-") == 0) {
      in = stdin;
    } else if (argv[i][0] != '-') {
      in = fopen(argv[i], "r");
      if (!in) {
        perror(argv[i]);
        return 2;
      }
    } else {
      fprintf(stderr, "usage: %s --dir DIR ([--no-receiver] SCRIPT | --random SEED CALLS) | --gen SEED CALLS\n",
              argv[0]);
      return 2;
    }
  }
  if (!in) {
    fprintf(stderr, "difftest: no script\n");
    return 2;
  }
  char line[8192];
  if (only_gen) {
    while (fgets(line, sizeof line, in)) fputs(line, stdout);
    return 0;
  }
  if (!dir) {
    fprintf(stderr, "difftest: --dir is required\n");
    return 2;
  }
  setup_dir(dir);
  // Scripts (not the random generator's, whose sequences stay as they were)
  // get a passfd receiver, forked before anything is open.
  if (!random_script) start_receiver();
  while (fgets(line, sizeof line, in)) {
    ++g_line;
    run_line(line);
  }
  fflush(stdout);
  stop_receiver();
  return 0;
}
