// A peer process for the cross-process coherence tests (coherence_test.py).
//
// Driven over stdin/stdout: one command per line, one answer line per
// command: "ok ..." or "err ERRNO TEXT". The same program is the long-lived
// READER (started with LD_PRELOAD=libupcache.so, it holds the file open and
// reads it) and a WRITER (plain or preloaded, it changes the file). Every
// command works on the peer's one current descriptor (open/close), except
// those that name a path.
//
//   peer                     commands from stdin
//   peer --batch CMD...      run the commands given as arguments (answers to
//                            stderr), exit 0 if every one answered ok, else 1;
//                            what `spawn` executes
//
// Reader commands
//   open PATH [rdonly|rdwr|wronly|append|trunc]  -> ok FD
//   close                                         -> ok
//   read OFF LEN        pread            -> ok N HASH H0 H1 ...
//   readseq LEN         read() at the current offset       (same answer)
//   readv LEN           readv() of two halves at the offset (same answer)
//   preadv OFF LEN      preadv() of two halves             (same answer)
//       HASH: CRC-32 (zlib's) of the N bytes, Hi: of the i-th 4 KiB block
//   lseek OFF set|cur|end                -> ok POS
//   size                fstat st_size    -> ok SIZE
//   lock rd|wr|un OFF LEN    fcntl F_SETLKW (LEN 0: to the end)
//   getlk rd|wr OFF LEN      fcntl F_GETLK  -> ok none | ok PID
//   flock sh|ex|un
//   ofd rd|wr|un OFF LEN     fcntl F_OFD_SETLKW
//   waitpipe FD              read one line from FD -> ok LINE
//   spawn plain|preload CMD;CMD;...   fork + exec of this program with
//                            --batch CMD...; plain drops LD_PRELOAD and
//                            UPCACHE_* from its environment -> ok PID
//   wait                     waitpid the spawned child -> ok EXITSTATUS
//   sighandler SIG           install a counting handler (SIG: a number,
//                            rtmax-N or rtmin+N)
//   raise SIG N raise|kill   raise(SIG) or kill(getpid(), SIG) N times
//                            -> ok COUNT (what the handler got in total)
//   sigcount SIG             -> ok COUNT
//   pid                      -> ok PID
//   exit
//
// Writer commands (BYTE: a seed; the bytes written depend on it and on their
// file offset, so a misplaced block is seen)
//   write OFF LEN BYTE       lseek + write (overwrite in place) -> ok N
//   pwrite OFF LEN BYTE
//   append LEN BYTE          write() (open it with `append`: O_APPEND)
//   ftruncate LEN
//   truncate PATH LEN        truncate(2) of a path
//   punch OFF LEN            fallocate PUNCH_HOLE|KEEP_SIZE
//   zero OFF LEN             fallocate ZERO_RANGE
//   copy SRC SRCOFF OFF LEN      copy_file_range from the file SRC
//   sendfile SRC SRCOFF OFF LEN  sendfile from SRC at this file's offset OFF
//   splice SRC SRCOFF OFF LEN    SRC into a pipe, splice into the file at OFF
//   mmap OFF LEN BYTE keep|unmap MAP_SHARED, store, no msync; keep the
//                            mapping (it outlives `close`) or munmap it
//   mstore OFF LEN BYTE      store again into the kept mapping
//   munmap
//   notify FD TEXT           write "TEXT\n" to FD (a pipe)
//   fsync
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

static int g_fd = -1;
static pid_t g_child = -1;
static char* g_map = NULL;   // the kept mapping
static off_t g_map_off = 0;  // its file offset (page aligned)
static size_t g_map_len = 0;
static volatile sig_atomic_t g_sig_count[65];
static const char* g_self = "/proc/self/exe";
static FILE* g_out;  // answers: stdout, or stderr in --batch mode
static int g_failed = 0;

// ------------------------------------------------------------- answers

static void ok(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static void ok(const char* fmt, ...) {
  va_list ap;
  fputs("ok", g_out);
  if (fmt && *fmt) {
    fputc(' ', g_out);
    va_start(ap, fmt);
    vfprintf(g_out, fmt, ap);
    va_end(ap);
  }
  fputc('\n', g_out);
  fflush(g_out);
}

static void err(int e, const char* what) {
  fprintf(g_out, "err %d %s: %s\n", e, what, strerror(e));
  fflush(g_out);
  g_failed = 1;
}

static void usage_err(const char* what) {
  fprintf(g_out, "err %d bad command: %s\n", EINVAL, what);
  fflush(g_out);
  g_failed = 1;
}

// CRC-32 (the zlib one: Python's zlib.crc32 checks it quickly).
static uint32_t crc32(const unsigned char* p, size_t n) {
  static uint32_t table[256];
  if (!table[1])
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

// "ok N HASH H0 H1 ...": the CRC-32 of the bytes and of each 4 KiB block.
static void answer_bytes(const unsigned char* buf, ssize_t n) {
  fprintf(g_out, "ok %zd %08x", n, crc32(buf, n > 0 ? (size_t)n : 0));
  for (ssize_t b = 0; b < n; b += 4096) {
    size_t len = (size_t)(n - b < 4096 ? n - b : 4096);
    fprintf(g_out, " %08x", crc32(buf + b, len));
  }
  fputc('\n', g_out);
  fflush(g_out);
}

// The bytes a writer puts at file offset `off` for seed `seed`.
static void fill(unsigned char* buf, off_t off, size_t len, unsigned seed) {
  for (size_t i = 0; i < len; ++i) {
    uint64_t o = (uint64_t)off + i;
    buf[i] = (unsigned char)(seed * 101u + (o >> 12) * 31u + o * 7u + (o >> 9));
  }
}

// ------------------------------------------------------------- parsing

static char* next_word(char** rest) {
  char* w = strsep(rest, " \t");
  while (w && !*w) w = strsep(rest, " \t");
  return w;
}

static int parse_ll(const char* s, long long* v) {
  if (!s) return 0;
  char* end;
  errno = 0;
  *v = strtoll(s, &end, 0);
  return errno == 0 && end != s && *end == 0;
}

static int parse_signal(const char* s) {
  long long v;
  if (!s) return -1;
  if (!strncmp(s, "rtmax-", 6) && parse_ll(s + 6, &v)) return SIGRTMAX - (int)v;
  if (!strncmp(s, "rtmin+", 6) && parse_ll(s + 6, &v)) return SIGRTMIN + (int)v;
  if (parse_ll(s, &v) && v > 0 && v <= 64) return (int)v;
  return -1;
}

#define NEED_LL(var, word)         \
  long long var;                   \
  if (!parse_ll((word), &var)) {   \
    usage_err(line);               \
    return;                        \
  }

static int need_fd(void) {
  if (g_fd < 0) {
    err(EBADF, "no file open");
    return 0;
  }
  return 1;
}

static unsigned char* alloc_or_fail(size_t n) {
  unsigned char* b = malloc(n ? n : 1);
  if (!b) err(ENOMEM, "malloc");
  return b;
}

// ------------------------------------------------------------- reader commands

static void cmd_open(char* rest, const char* line) {
  char* path = next_word(&rest);
  char* mode = next_word(&rest);
  if (!path) return usage_err(line);
  int flags = O_RDONLY;
  if (!mode || !strcmp(mode, "rdonly")) flags = O_RDONLY;
  else if (!strcmp(mode, "rdwr")) flags = O_RDWR;
  else if (!strcmp(mode, "wronly")) flags = O_WRONLY;
  else if (!strcmp(mode, "append")) flags = O_WRONLY | O_APPEND;
  else if (!strcmp(mode, "trunc")) flags = O_RDWR | O_TRUNC;
  else return usage_err(line);
  if (g_fd >= 0) close(g_fd);
  g_fd = open(path, flags | O_CLOEXEC);
  if (g_fd < 0) return err(errno, "open");
  ok("%d", g_fd);
}

static void cmd_close(void) {
  if (g_fd >= 0 && close(g_fd) != 0) {
    g_fd = -1;
    return err(errno, "close");
  }
  g_fd = -1;
  ok(NULL);
}

static void cmd_read(char* rest, const char* line) {
  NEED_LL(off, next_word(&rest));
  NEED_LL(len, next_word(&rest));
  if (!need_fd()) return;
  unsigned char* b = alloc_or_fail((size_t)len);
  if (!b) return;
  ssize_t n = pread(g_fd, b, (size_t)len, (off_t)off);
  if (n < 0) err(errno, "pread");
  else answer_bytes(b, n);
  free(b);
}

static void cmd_readseq(char* rest, const char* line) {
  NEED_LL(len, next_word(&rest));
  if (!need_fd()) return;
  unsigned char* b = alloc_or_fail((size_t)len);
  if (!b) return;
  ssize_t n = read(g_fd, b, (size_t)len);
  if (n < 0) err(errno, "read");
  else answer_bytes(b, n);
  free(b);
}

static void cmd_readv(char* rest, const char* line, int positioned) {
  long long off = 0;
  if (positioned && !parse_ll(next_word(&rest), &off)) return usage_err(line);
  NEED_LL(len, next_word(&rest));
  if (!need_fd()) return;
  unsigned char* b = alloc_or_fail((size_t)len);
  if (!b) return;
  size_t half = (size_t)len / 2 + 123 > (size_t)len ? (size_t)len / 2 : (size_t)len / 2 + 123;
  struct iovec iov[2] = {{b, half}, {b + half, (size_t)len - half}};
  ssize_t n = positioned ? preadv(g_fd, iov, 2, (off_t)off) : readv(g_fd, iov, 2);
  if (n < 0) err(errno, positioned ? "preadv" : "readv");
  else answer_bytes(b, n);
  free(b);
}

static void cmd_lseek(char* rest, const char* line) {
  NEED_LL(off, next_word(&rest));
  char* w = next_word(&rest);
  int whence = SEEK_SET;
  if (w && !strcmp(w, "cur")) whence = SEEK_CUR;
  else if (w && !strcmp(w, "end")) whence = SEEK_END;
  else if (w && strcmp(w, "set")) return usage_err(line);
  if (!need_fd()) return;
  off_t r = lseek(g_fd, (off_t)off, whence);
  if (r < 0) return err(errno, "lseek");
  ok("%lld", (long long)r);
}

static void cmd_size(void) {
  struct stat st;
  if (!need_fd()) return;
  if (fstat(g_fd, &st) != 0) return err(errno, "fstat");
  ok("%lld", (long long)st.st_size);
}

static int lock_type(const char* w) {
  if (!w) return -1;
  if (!strcmp(w, "rd")) return F_RDLCK;
  if (!strcmp(w, "wr")) return F_WRLCK;
  if (!strcmp(w, "un")) return F_UNLCK;
  return -1;
}

static void cmd_lock(char* rest, const char* line, int cmd) {
  int type = lock_type(next_word(&rest));
  NEED_LL(off, next_word(&rest));
  NEED_LL(len, next_word(&rest));
  if (type < 0) return usage_err(line);
  if (!need_fd()) return;
  struct flock fl = {0};
  fl.l_type = (short)type;
  fl.l_whence = SEEK_SET;
  fl.l_start = (off_t)off;
  fl.l_len = (off_t)len;
  if (fcntl(g_fd, cmd, &fl) != 0) return err(errno, "fcntl lock");
  ok(NULL);
}

static void cmd_getlk(char* rest, const char* line) {
  int type = lock_type(next_word(&rest));
  NEED_LL(off, next_word(&rest));
  NEED_LL(len, next_word(&rest));
  if (type < 0 || type == F_UNLCK) return usage_err(line);
  if (!need_fd()) return;
  struct flock fl = {0};
  fl.l_type = (short)type;
  fl.l_whence = SEEK_SET;
  fl.l_start = (off_t)off;
  fl.l_len = (off_t)len;
  if (fcntl(g_fd, F_GETLK, &fl) != 0) return err(errno, "F_GETLK");
  if (fl.l_type == F_UNLCK) ok("none");
  else ok("%d", (int)fl.l_pid);
}

static void cmd_flock(char* rest, const char* line) {
  char* w = next_word(&rest);
  int op;
  if (w && !strcmp(w, "sh")) op = LOCK_SH;
  else if (w && !strcmp(w, "ex")) op = LOCK_EX;
  else if (w && !strcmp(w, "un")) op = LOCK_UN;
  else return usage_err(line);
  if (!need_fd()) return;
  if (flock(g_fd, op) != 0) return err(errno, "flock");
  ok(NULL);
}

static void cmd_waitpipe(char* rest, const char* line) {
  NEED_LL(fd, next_word(&rest));
  char msg[512];
  size_t n = 0;
  for (;;) {
    char c;
    ssize_t r = read((int)fd, &c, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return err(errno, "read pipe");
    if (r == 0) return err(EPIPE, "pipe closed");
    if (c == '\n') break;
    if (n + 1 < sizeof msg) msg[n++] = c;
  }
  msg[n] = 0;
  ok("%s", msg);
}

static void cmd_spawn(char* rest, const char* line) {
  char* how = next_word(&rest);
  if (!how || (strcmp(how, "plain") && strcmp(how, "preload")) || !rest) return usage_err(line);
  char* argv[256];
  int argc = 0;
  argv[argc++] = (char*)g_self;
  argv[argc++] = "--batch";
  for (char* c; (c = strsep(&rest, ";")) != NULL && argc < 255;)
    if (*c) argv[argc++] = c;
  argv[argc] = NULL;
  // The child's environment: built before fork (no allocation after it).
  size_t nenv = 0;
  while (environ[nenv]) nenv++;
  char** envp = calloc(nenv + 1, sizeof *envp);
  if (!envp) return err(ENOMEM, "calloc");
  size_t k = 0;
  for (size_t i = 0; i < nenv; ++i) {
    if (!strcmp(how, "plain") &&
        (!strncmp(environ[i], "LD_PRELOAD=", 11) || !strncmp(environ[i], "UPCACHE_", 8)))
      continue;
    envp[k++] = environ[i];
  }
  envp[k] = NULL;
  fflush(g_out);
  pid_t pid = fork();
  if (pid < 0) {
    free(envp);
    return err(errno, "fork");
  }
  if (pid == 0) {
    dup2(2, 1);  // the child's answers must not mix with ours
    execve(argv[0], argv, envp);
    _exit(127);
  }
  free(envp);
  g_child = pid;
  ok("%d", (int)pid);
}

static void cmd_wait(void) {
  int status;
  if (g_child < 0) return err(ECHILD, "no child");
  pid_t r;
  while ((r = waitpid(g_child, &status, 0)) < 0 && errno == EINTR) {
  }
  if (r < 0) return err(errno, "waitpid");
  g_child = -1;
  if (WIFEXITED(status)) ok("%d", WEXITSTATUS(status));
  else ok("signal%d", WTERMSIG(status));
}

static void on_signal(int sig) {
  if (sig > 0 && sig <= 64) g_sig_count[sig]++;
}

static void cmd_sighandler(char* rest, const char* line) {
  int sig = parse_signal(next_word(&rest));
  if (sig < 0) return usage_err(line);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(sig, &sa, NULL) != 0) return err(errno, "sigaction");
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  sigprocmask(SIG_UNBLOCK, &set, NULL);
  ok("%d", sig);
}

static void cmd_raise(char* rest, const char* line) {
  int sig = parse_signal(next_word(&rest));
  NEED_LL(n, next_word(&rest));
  char* how = next_word(&rest);
  if (sig < 0 || !how || (strcmp(how, "raise") && strcmp(how, "kill"))) return usage_err(line);
  for (long long i = 0; i < n; ++i) {
    int r = !strcmp(how, "raise") ? raise(sig) : kill(getpid(), sig);
    if (r != 0) return err(errno, how);
  }
  ok("%d", (int)g_sig_count[sig]);
}

static void cmd_sigcount(char* rest, const char* line) {
  int sig = parse_signal(next_word(&rest));
  if (sig < 0) return usage_err(line);
  ok("%d", (int)g_sig_count[sig]);
}

// ------------------------------------------------------------- writer commands

static void write_all_answer(const unsigned char* b, size_t len, off_t off, int positioned) {
  size_t done = 0;
  while (done < len) {
    ssize_t r = positioned ? pwrite(g_fd, b + done, len - done, off + (off_t)done)
                           : write(g_fd, b + done, len - done);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return err(r < 0 ? errno : EIO, positioned ? "pwrite" : "write");
    done += (size_t)r;
  }
  ok("%zu", done);
}

static void cmd_write(char* rest, const char* line, int positioned) {
  NEED_LL(off, next_word(&rest));
  NEED_LL(len, next_word(&rest));
  NEED_LL(seed, next_word(&rest));
  if (!need_fd()) return;
  unsigned char* b = alloc_or_fail((size_t)len);
  if (!b) return;
  fill(b, (off_t)off, (size_t)len, (unsigned)seed);
  if (!positioned && lseek(g_fd, (off_t)off, SEEK_SET) < 0) err(errno, "lseek");
  else write_all_answer(b, (size_t)len, (off_t)off, positioned);
  free(b);
}

static void cmd_append(char* rest, const char* line) {
  NEED_LL(len, next_word(&rest));
  NEED_LL(seed, next_word(&rest));
  if (!need_fd()) return;
  struct stat st;
  if (fstat(g_fd, &st) != 0) return err(errno, "fstat");
  unsigned char* b = alloc_or_fail((size_t)len);
  if (!b) return;
  fill(b, st.st_size, (size_t)len, (unsigned)seed);
  write_all_answer(b, (size_t)len, 0, 0);
  free(b);
}

static void cmd_ftruncate(char* rest, const char* line) {
  NEED_LL(len, next_word(&rest));
  if (!need_fd()) return;
  if (ftruncate(g_fd, (off_t)len) != 0) return err(errno, "ftruncate");
  ok(NULL);
}

static void cmd_truncate(char* rest, const char* line) {
  char* path = next_word(&rest);
  NEED_LL(len, next_word(&rest));
  if (!path) return usage_err(line);
  if (truncate(path, (off_t)len) != 0) return err(errno, "truncate");
  ok(NULL);
}

static void cmd_fallocate(char* rest, const char* line, int mode) {
  NEED_LL(off, next_word(&rest));
  NEED_LL(len, next_word(&rest));
  if (!need_fd()) return;
  if (fallocate(g_fd, mode, (off_t)off, (off_t)len) != 0) return err(errno, "fallocate");
  ok(NULL);
}

enum copy_kind { kCopyFileRange, kSendfile, kSplice };

static void cmd_copy(char* rest, const char* line, enum copy_kind kind) {
  char* src = next_word(&rest);
  NEED_LL(src_off, next_word(&rest));
  NEED_LL(off, next_word(&rest));
  NEED_LL(len, next_word(&rest));
  if (!src) return usage_err(line);
  if (!need_fd()) return;
  int in = open(src, O_RDONLY | O_CLOEXEC);
  if (in < 0) return err(errno, "open source");
  long long done = 0;
  int fail = 0;
  if (kind == kCopyFileRange) {
    loff_t ioff = src_off, ooff = off;
    while (done < len) {
      ssize_t r = copy_file_range(in, &ioff, g_fd, &ooff, (size_t)(len - done), 0);
      if (r <= 0) {
        fail = r < 0 ? errno : EIO;
        break;
      }
      done += r;
    }
  } else if (kind == kSendfile) {
    // sendfile writes at the output's file offset.
    off_t ioff = src_off;
    if (lseek(g_fd, (off_t)off, SEEK_SET) < 0) fail = errno;
    while (!fail && done < len) {
      ssize_t r = sendfile(g_fd, in, &ioff, (size_t)(len - done));
      if (r <= 0) {
        fail = r < 0 ? errno : EIO;
        break;
      }
      done += r;
    }
  } else {
    int p[2];
    if (pipe(p) != 0) {
      fail = errno;
    } else {
      loff_t ioff = src_off, ooff = off;
      while (!fail && done < len) {
        size_t chunk = (size_t)(len - done < 65536 ? len - done : 65536);
        ssize_t in_pipe = splice(in, &ioff, p[1], NULL, chunk, 0);
        if (in_pipe <= 0) {
          fail = in_pipe < 0 ? errno : EIO;
          break;
        }
        while (in_pipe > 0) {
          ssize_t r = splice(p[0], NULL, g_fd, &ooff, (size_t)in_pipe, 0);
          if (r <= 0) {
            fail = r < 0 ? errno : EIO;
            break;
          }
          in_pipe -= r;
          done += r;
        }
      }
      close(p[0]);
      close(p[1]);
    }
  }
  close(in);
  if (fail) return err(fail, kind == kCopyFileRange ? "copy_file_range"
                             : kind == kSendfile    ? "sendfile"
                                                    : "splice");
  ok("%lld", done);
}

static void store(off_t off, size_t len, unsigned seed) {
  unsigned char* p = (unsigned char*)g_map + (off - g_map_off);
  fill(p, off, len, seed);
}

static void cmd_mmap(char* rest, const char* line) {
  NEED_LL(off, next_word(&rest));
  NEED_LL(len, next_word(&rest));
  NEED_LL(seed, next_word(&rest));
  char* how = next_word(&rest);
  if (!how || (strcmp(how, "keep") && strcmp(how, "unmap")) || len <= 0) return usage_err(line);
  if (!need_fd()) return;
  if (g_map) munmap(g_map, g_map_len);
  long pg = sysconf(_SC_PAGESIZE);
  g_map_off = (off_t)(off / pg * pg);
  g_map_len = (size_t)(off + len - g_map_off);
  g_map = mmap(NULL, g_map_len, PROT_READ | PROT_WRITE, MAP_SHARED, g_fd, g_map_off);
  if (g_map == MAP_FAILED) {
    g_map = NULL;
    return err(errno, "mmap");
  }
  store((off_t)off, (size_t)len, (unsigned)seed);
  if (!strcmp(how, "unmap")) {
    munmap(g_map, g_map_len);
    g_map = NULL;
  }
  ok(NULL);
}

static void cmd_mstore(char* rest, const char* line) {
  NEED_LL(off, next_word(&rest));
  NEED_LL(len, next_word(&rest));
  NEED_LL(seed, next_word(&rest));
  if (!g_map) return err(EINVAL, "no kept mapping");
  if (off < g_map_off || (size_t)(off + len - g_map_off) > g_map_len)
    return err(ERANGE, "outside the mapping");
  store((off_t)off, (size_t)len, (unsigned)seed);
  ok(NULL);
}

static void cmd_munmap(void) {
  if (g_map) munmap(g_map, g_map_len);
  g_map = NULL;
  ok(NULL);
}

static void cmd_notify(char* rest, const char* line) {
  NEED_LL(fd, next_word(&rest));
  char msg[600];
  int n = snprintf(msg, sizeof msg, "%s\n", rest ? rest : "");
  if (n <= 0 || n >= (int)sizeof msg) return usage_err(line);
  if (write((int)fd, msg, (size_t)n) != n) return err(errno, "write pipe");
  ok(NULL);
}

static void cmd_fsync(void) {
  if (!need_fd()) return;
  if (fsync(g_fd) != 0) return err(errno, "fsync");
  ok(NULL);
}

// ------------------------------------------------------------- dispatch

// Runs one command line; returns 0 on "exit".
static int run(char* line) {
  char* rest = line;
  char copy[1024];
  snprintf(copy, sizeof copy, "%s", line);
  char* cmd = next_word(&rest);
  const char* l = copy;
  if (!cmd) {
    usage_err("empty line");
  } else if (!strcmp(cmd, "open")) cmd_open(rest, l);
  else if (!strcmp(cmd, "close")) cmd_close();
  else if (!strcmp(cmd, "read")) cmd_read(rest, l);
  else if (!strcmp(cmd, "readseq")) cmd_readseq(rest, l);
  else if (!strcmp(cmd, "readv")) cmd_readv(rest, l, 0);
  else if (!strcmp(cmd, "preadv")) cmd_readv(rest, l, 1);
  else if (!strcmp(cmd, "lseek")) cmd_lseek(rest, l);
  else if (!strcmp(cmd, "size")) cmd_size();
  else if (!strcmp(cmd, "lock")) cmd_lock(rest, l, F_SETLKW);
  else if (!strcmp(cmd, "getlk")) cmd_getlk(rest, l);
  else if (!strcmp(cmd, "flock")) cmd_flock(rest, l);
  else if (!strcmp(cmd, "ofd")) cmd_lock(rest, l, F_OFD_SETLKW);
  else if (!strcmp(cmd, "waitpipe")) cmd_waitpipe(rest, l);
  else if (!strcmp(cmd, "spawn")) cmd_spawn(rest, l);
  else if (!strcmp(cmd, "wait")) cmd_wait();
  else if (!strcmp(cmd, "sighandler")) cmd_sighandler(rest, l);
  else if (!strcmp(cmd, "raise")) cmd_raise(rest, l);
  else if (!strcmp(cmd, "sigcount")) cmd_sigcount(rest, l);
  else if (!strcmp(cmd, "pid")) ok("%d", (int)getpid());
  else if (!strcmp(cmd, "write")) cmd_write(rest, l, 0);
  else if (!strcmp(cmd, "pwrite")) cmd_write(rest, l, 1);
  else if (!strcmp(cmd, "append")) cmd_append(rest, l);
  else if (!strcmp(cmd, "ftruncate")) cmd_ftruncate(rest, l);
  else if (!strcmp(cmd, "truncate")) cmd_truncate(rest, l);
  else if (!strcmp(cmd, "punch")) cmd_fallocate(rest, l, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
  else if (!strcmp(cmd, "zero")) cmd_fallocate(rest, l, FALLOC_FL_ZERO_RANGE);
  else if (!strcmp(cmd, "copy")) cmd_copy(rest, l, kCopyFileRange);
  else if (!strcmp(cmd, "sendfile")) cmd_copy(rest, l, kSendfile);
  else if (!strcmp(cmd, "splice")) cmd_copy(rest, l, kSplice);
  else if (!strcmp(cmd, "mmap")) cmd_mmap(rest, l);
  else if (!strcmp(cmd, "mstore")) cmd_mstore(rest, l);
  else if (!strcmp(cmd, "munmap")) cmd_munmap();
  else if (!strcmp(cmd, "notify")) cmd_notify(rest, l);
  else if (!strcmp(cmd, "fsync")) cmd_fsync();
  else if (!strcmp(cmd, "exit")) {
    ok(NULL);
    return 0;
  } else usage_err(l);
  return 1;
}

int main(int argc, char** argv) {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = 0;
    g_self = self;
  }
  signal(SIGPIPE, SIG_IGN);
  if (argc >= 2 && !strcmp(argv[1], "--batch")) {
    g_out = stderr;
    for (int i = 2; i < argc; ++i) {
      char line[1024];
      snprintf(line, sizeof line, "%s", argv[i]);
      if (!run(line)) break;
    }
    return g_failed ? 1 : 0;
  }
  g_out = stdout;
  char* line = NULL;
  size_t cap = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, stdin)) > 0) {
    if (line[len - 1] == '\n') line[len - 1] = 0;
    if (!run(line)) break;
  }
  free(line);
  return 0;
}
