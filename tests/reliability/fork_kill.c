// upcache_fork_kill: forked workers read one file through the shared cache
// while the parent SIGKILLs them at random moments (issue 6).
//
// Run under LD_PRELOAD=libupcache.so with a cache smaller than the file: the
// workers, forked from one preloaded parent, share its arena, and a worker
// killed in the middle of a read leaves frames in flight (its own reads and
// its readahead) that the others must not wait for forever.
//
// usage: upcache_fork_kill FILE WORKERS KILLS SEED
//
// The file's bytes encode their offsets (as upcache_verify_reader --make
// writes it), so every byte read is checked. Each worker loops over random
// operations (sequential read() runs of 1 MiB, preads up to 4 MiB, preadv)
// until told to stop. For each of KILLS rounds the parent:
//   1. picks a victim (sometimes two), waits until it is inside a read (or,
//      one round in four, kills it at once: during fork or its first read),
//      sleeps a random 0-30 ms and sends SIGKILL;
//   2. does NOT reap it yet: while it is a zombie (or still exiting), every
//      other worker is asked to read the range the victim was reading plus
//      the 24 MiB after it (its readahead), and the parent waits until they
//      all have; one round in two it also leaves the zombie a while longer
//      while the workers go on with their own reads;
//   3. reaps the victim (it must have died of SIGKILL) and forks a new one.
// At the end the workers are stopped (each must exit 0: no wrong byte) and
// the parent reads and checks the whole file itself.
//
// A hang is a failure: a watchdog in the parent fails the run when any read
// (a worker's or its own) has not returned after kHangSeconds, or a round
// makes no progress for that long. That is far beyond any read's time, even
// under sanitizers; it bounds a deadlock, it does not measure speed.
//
// Prints "FAIL: ..." and exits 1 on failure; otherwise one line:
// "ok kills=K in_read=R zombie_rounds=Z forced_reads=F bytes=B".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define K 0x9E3779B97F4A7C15ull
#define MAX_WORKERS 8
#define MAX_LEN (4u << 20)
#define FORCED_SPAN (24ull << 20)
static const int kHangSeconds = 30;

struct worker_ctl {
  _Atomic uint64_t busy_since;  // monotonic ns when the current read started, 0 between reads
  _Atomic uint64_t cur_off;     // the range of the read in progress
  _Atomic uint64_t cur_len;
  _Atomic uint64_t reads;       // reads completed and verified
  _Atomic uint64_t bytes;
  _Atomic uint64_t max_read_ns;  // the longest read (reported, not asserted)
  _Atomic uint64_t last_read_ns;  // the last one (reported with a failure)
  _Atomic uint64_t forced_off;  // a read the parent asks for: [off, off + len)
  _Atomic uint64_t forced_len;
  _Atomic uint64_t forced_seq;  // asked when forced_seq > forced_done
  _Atomic uint64_t forced_done;
};

struct ctl {
  _Atomic int stop;
  struct worker_ctl w[MAX_WORKERS];
};

static struct ctl* g_ctl;
static const char* g_path;
static uint64_t g_size;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(uint64_t* s) {  // splitmix64
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static inline unsigned char expected(uint64_t off) {
  uint64_t w = (off / 8) * K;
  return (unsigned char)(w >> (8 * (off % 8)));
}

// The first offset in [off, off + n) whose byte is wrong, or UINT64_MAX.
// Whole words are compared at once (byte i of word j is byte i of j * K).
static uint64_t first_bad(const unsigned char* buf, uint64_t off, uint64_t n) {
  uint64_t i = 0;
  for (; i < n && (off + i) % 8 != 0; ++i)
    if (buf[i] != expected(off + i)) return off + i;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    memcpy(&v, buf + i, 8);
    if (v != ((off + i) / 8) * K) {
      for (int b = 0; b < 8; ++b)
        if (buf[i + b] != expected(off + i + b)) return off + i + b;
    }
  }
  for (; i < n; ++i)
    if (buf[i] != expected(off + i)) return off + i;
  return UINT64_MAX;
}

// Checks the result of reading [off, off + len); exits the worker on error.
static void verify(int me, const char* what, const unsigned char* buf, uint64_t off, uint64_t len,
                   long got, int err) {
  uint64_t want = off >= g_size ? 0 : (g_size - off < len ? g_size - off : len);
  if (got < 0 || (uint64_t)got != want) {
    printf("FAIL: worker %d: %s off=%" PRIu64 " len=%" PRIu64 " returned %ld (%s), want %" PRIu64
           " (the call took %" PRIu64 " ms)\n", me, what, off, len, got,
           got < 0 ? strerror(err) : "a short count", want,
           atomic_load(&g_ctl->w[me].last_read_ns) / 1000000);
    fflush(stdout);
    _exit(1);
  }
  uint64_t bad = first_bad(buf, off, want);
  if (bad != UINT64_MAX) {
    printf("FAIL: worker %d: %s off=%" PRIu64 " len=%" PRIu64 ": wrong byte at %" PRIu64 "\n", me,
           what, off, len, bad);
    fflush(stdout);
    _exit(1);
  }
}

static void begin(struct worker_ctl* w, uint64_t off, uint64_t len) {
  atomic_store(&w->cur_off, off);
  atomic_store(&w->cur_len, len);
  atomic_store(&w->busy_since, now_ns());
}

static void end(struct worker_ctl* w, long got) {
  uint64_t took = now_ns() - atomic_load(&w->busy_since);
  atomic_store(&w->last_read_ns, took);
  if (took > atomic_load(&w->max_read_ns)) atomic_store(&w->max_read_ns, took);
  atomic_store(&w->busy_since, 0);
  atomic_fetch_add(&w->reads, 1);
  if (got > 0) atomic_fetch_add(&w->bytes, (uint64_t)got);
}

static long do_pread(struct worker_ctl* w, int fd, unsigned char* buf, uint64_t len, uint64_t off) {
  begin(w, off, len);
  long got = pread(fd, buf, len, (off_t)off);
  int err = errno;
  end(w, got);
  errno = err;
  return got;
}

static void worker(int me, uint64_t seed) {
  struct worker_ctl* w = &g_ctl->w[me];
  uint64_t s = seed;
  unsigned char* buf = malloc(MAX_LEN);
  int fd = open(g_path, O_RDONLY);
  if (buf == NULL || fd < 0) {
    printf("FAIL: worker %d: open/malloc: %s\n", me, strerror(errno));
    _exit(1);
  }
  while (!atomic_load(&g_ctl->stop)) {
    uint64_t seq = atomic_load(&w->forced_seq);
    if (seq > atomic_load(&w->forced_done)) {
      // The parent's request: the range a killed worker was reading.
      uint64_t off = atomic_load(&w->forced_off), end_off = off + atomic_load(&w->forced_len);
      for (; off < end_off; off += 1 << 20) {
        uint64_t n = end_off - off < (1u << 20) ? end_off - off : (1u << 20);
        long got = do_pread(w, fd, buf, n, off);
        verify(me, "forced pread", buf, off, n, got, errno);
      }
      atomic_store(&w->forced_done, seq);
      continue;
    }
    uint64_t kind = rnd(&s) % 4;
    uint64_t off = rnd(&s) % g_size;
    if (kind == 0) {  // a sequential run of read(): the readahead's case
      if (lseek(fd, (off_t)off, SEEK_SET) != (off_t)off) {
        printf("FAIL: worker %d: lseek: %s\n", me, strerror(errno));
        _exit(1);
      }
      for (int i = 0; i < 16 && !atomic_load(&g_ctl->stop); ++i) {
        begin(w, off, 1 << 20);
        long got = read(fd, buf, 1 << 20);
        int err = errno;
        end(w, got);
        verify(me, "read", buf, off, 1 << 20, got, err);
        if (got == 0) break;
        off += (uint64_t)got;
      }
    } else if (kind <= 2) {
      uint64_t len = 1 + rnd(&s) % MAX_LEN;
      long got = do_pread(w, fd, buf, len, off);
      verify(me, "pread", buf, off, len, got, errno);
    } else {
      uint64_t a = 1 + rnd(&s) % 70000, b = 1 + rnd(&s) % (2u << 20);
      struct iovec iov[2] = {{buf, a}, {buf + a, b}};
      begin(w, off, a + b);
      long got = preadv(fd, iov, 2, (off_t)off);
      int err = errno;
      end(w, got);
      verify(me, "preadv", buf, off, a + b, got, err);
    }
  }
  _exit(0);
}

static pid_t g_pids[MAX_WORKERS];
static int g_workers;

static void kill_all(void) {
  for (int i = 0; i < g_workers; ++i)
    if (g_pids[i] > 0) kill(g_pids[i], SIGKILL);
}

static void fail_hang(const char* what, int i) {
  struct worker_ctl* w = &g_ctl->w[i >= 0 ? i : 0];
  printf("FAIL: hang: %s (worker %d, pid %d, in a read of off=%" PRIu64 " len=%" PRIu64
         " for %d s or more)\n", what, i, i >= 0 ? g_pids[i] : 0, atomic_load(&w->cur_off),
         atomic_load(&w->cur_len), kHangSeconds);
  fflush(stdout);
  if (getenv("FORK_KILL_HOLD_ON_HANG") != NULL) {
    // For debugging a hang by hand: keep every process as it is, to attach gdb.
    printf("holding: parent %d workers", (int)getpid());
    for (int j = 0; j < g_workers; ++j) printf(" %d", (int)g_pids[j]);
    printf("\n");
    fflush(stdout);
    for (;;) pause();
  }
  kill_all();
  _exit(1);
}

static pid_t spawn(int i, uint64_t seed) {
  memset(&g_ctl->w[i], 0, sizeof g_ctl->w[i]);
  pid_t pid = fork();
  if (pid < 0) {
    printf("FAIL: fork: %s\n", strerror(errno));
    kill_all();
    _exit(1);
  }
  if (pid == 0) worker(i, seed);
  return pid;
}

// The watchdog, called while the parent waits: no read of a live worker may
// last kHangSeconds, and a worker may only end by the parent's SIGKILL.
static void watch(const int* victim) {
  uint64_t t = now_ns();
  for (int i = 0; i < g_workers; ++i) {
    if (victim[i]) continue;
    uint64_t since = atomic_load(&g_ctl->w[i].busy_since);
    if (since != 0 && t > since && t - since > (uint64_t)kHangSeconds * 1000000000ull)
      fail_hang("a worker's read never returned", i);
    int st;
    pid_t r = waitpid(g_pids[i], &st, WNOHANG);
    if (r == g_pids[i]) {
      printf("FAIL: worker %d (pid %d) ended on its own (status 0x%x)\n", i, r, st);
      fflush(stdout);
      g_pids[i] = 0;
      kill_all();
      _exit(1);
    }
  }
}

static void nap_us(uint64_t us) {
  struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
  nanosleep(&ts, NULL);
}

// Waits (watching) until cond(i) holds; a hang after kHangSeconds.
static void wait_until(int (*cond)(int), int i, const int* victim, const char* what) {
  uint64_t start = now_ns();
  while (!cond(i)) {
    watch(victim);
    if (now_ns() - start > (uint64_t)kHangSeconds * 1000000000ull) fail_hang(what, i);
    nap_us(200);
  }
}

static int in_read(int i) { return atomic_load(&g_ctl->w[i].busy_since) != 0; }
static int forced_done(int i) {
  return atomic_load(&g_ctl->w[i].forced_done) == atomic_load(&g_ctl->w[i].forced_seq);
}
static int g_reads_target[MAX_WORKERS];
static int read_more(int i) { return atomic_load(&g_ctl->w[i].reads) >= (uint64_t)g_reads_target[i]; }

// 'Z' (zombie) or gone; anything else: still exiting (e.g. in D).
static int dead_or_zombie(int i) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", g_pids[i]);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 1;
  buf[n] = 0;
  char* p = strrchr(buf, ')');
  return p == NULL || p[1] == 0 || p[2] == 'Z' || p[2] == 'X';
}

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "FAIL: hang: the parent's own read of the whole file never returned\n";
  ssize_t r = write(1, msg, sizeof msg - 1);
  (void)r;
  _exit(1);
}

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s FILE WORKERS KILLS SEED\n", argv[0]);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  g_path = argv[1];
  g_workers = atoi(argv[2]);
  int kills = atoi(argv[3]);
  uint64_t seed = strtoull(argv[4], 0, 0);
  struct stat st;
  if (stat(g_path, &st) != 0 || st.st_size < (16 << 20)) {
    fprintf(stderr, "%s: missing or smaller than 16 MiB\n", g_path);
    return 2;
  }
  g_size = (uint64_t)st.st_size;
  if (g_workers < 2 || g_workers > MAX_WORKERS || kills < 1) return 2;
  g_ctl = mmap(NULL, sizeof *g_ctl, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (g_ctl == MAP_FAILED) return perror("mmap"), 1;
  memset(g_ctl, 0, sizeof *g_ctl);

  uint64_t s = seed;
  for (int i = 0; i < g_workers; ++i) g_pids[i] = spawn(i, rnd(&s));
  int in_read_kills = 0, zombie_rounds = 0, forced = 0, killed = 0;
  for (int round = 0; round < kills; ++round) {
    int victim[MAX_WORKERS] = {0};
    int v = (int)(rnd(&s) % (uint64_t)g_workers);
    victim[v] = 1;
    if (g_workers >= 3 && rnd(&s) % 5 == 0) {  // two at once
      int v2 = (v + 1 + (int)(rnd(&s) % (uint64_t)(g_workers - 1))) % g_workers;
      victim[v2] = 1;
    }
    int at_once = rnd(&s) % 4 == 0;
    if (!at_once) {
      for (int i = 0; i < g_workers; ++i)
        if (victim[i]) {
          int none[MAX_WORKERS] = {0};
          wait_until(in_read, i, none, "a worker never started a read");
        }
      nap_us(rnd(&s) % 30000);
    }
    for (int i = 0; i < g_workers; ++i)
      if (victim[i]) {
        if (in_read(i)) ++in_read_kills;
        kill(g_pids[i], SIGKILL);
        ++killed;
      }
    // Not reaped: the victims are zombies (or still exiting) while the
    // others read what they were reading, and the readahead after it.
    for (int i = 0; i < g_workers; ++i)
      if (victim[i]) wait_until(dead_or_zombie, i, victim, "a killed worker never died");
    for (int i = 0; i < g_workers; ++i) {
      if (!victim[i]) continue;
      uint64_t off = atomic_load(&g_ctl->w[i].cur_off) & ~((1ull << 20) - 1);
      if (off >= g_size) off = 0;
      uint64_t len = FORCED_SPAN < g_size - off ? FORCED_SPAN : g_size - off;
      for (int j = 0; j < g_workers; ++j) {
        if (victim[j]) continue;
        atomic_store(&g_ctl->w[j].forced_off, off);
        atomic_store(&g_ctl->w[j].forced_len, len);
        atomic_fetch_add(&g_ctl->w[j].forced_seq, 1);
        ++forced;
      }
      for (int j = 0; j < g_workers; ++j)
        if (!victim[j]) wait_until(forced_done, j, victim, "a forced read (a killed worker's range)");
    }
    if (rnd(&s) % 2 == 0) {
      // Keep the zombies while every other worker completes a few reads of its own.
      ++zombie_rounds;
      for (int j = 0; j < g_workers; ++j) {
        if (victim[j]) continue;
        g_reads_target[j] = (int)atomic_load(&g_ctl->w[j].reads) + 3;
        wait_until(read_more, j, victim, "reads while a killed worker was a zombie");
      }
    }
    for (int i = 0; i < g_workers; ++i) {
      if (!victim[i]) continue;
      int wst;
      pid_t r = waitpid(g_pids[i], &wst, 0);
      if (r != g_pids[i] || !WIFSIGNALED(wst) || WTERMSIG(wst) != SIGKILL) {
        printf("FAIL: worker %d (pid %d) did not die of SIGKILL (status 0x%x): its output above\n",
               i, g_pids[i], wst);
        kill_all();
        return 1;
      }
      g_pids[i] = spawn(i, rnd(&s));
    }
  }
  atomic_store(&g_ctl->stop, 1);
  uint64_t bytes = 0, max_read_ns = 0;
  for (int i = 0; i < g_workers; ++i) {
    uint64_t start = now_ns();
    int wst;
    pid_t r;
    while ((r = waitpid(g_pids[i], &wst, WNOHANG)) == 0) {
      uint64_t since = atomic_load(&g_ctl->w[i].busy_since);
      if (since != 0 && now_ns() - since > (uint64_t)kHangSeconds * 1000000000ull)
        fail_hang("a worker's last read never returned", i);
      if (now_ns() - start > 2ull * kHangSeconds * 1000000000ull)
        fail_hang("a worker did not stop", i);
      nap_us(1000);
    }
    if (r != g_pids[i] || !WIFEXITED(wst) || WEXITSTATUS(wst) != 0) {
      printf("FAIL: worker %d (pid %d) exited with status 0x%x\n", i, g_pids[i], wst);
      kill_all();
      return 1;
    }
    g_pids[i] = 0;
    bytes += atomic_load(&g_ctl->w[i].bytes);
    if (atomic_load(&g_ctl->w[i].max_read_ns) > max_read_ns) max_read_ns = atomic_load(&g_ctl->w[i].max_read_ns);
  }
  // The parent's own read of the whole file: nothing left stuck in flight.
  signal(SIGALRM, on_alarm);
  alarm((unsigned)kHangSeconds * 2);
  int fd = open(g_path, O_RDONLY);
  unsigned char* buf = malloc(MAX_LEN);
  if (fd < 0 || buf == NULL) return perror(g_path), 1;
  for (uint64_t off = 0; off < g_size; off += MAX_LEN) {
    long got = pread(fd, buf, MAX_LEN, (off_t)off);
    uint64_t want = g_size - off < MAX_LEN ? g_size - off : MAX_LEN;
    if (got < 0 || (uint64_t)got != want) {
      printf("FAIL: parent: pread off=%" PRIu64 " returned %ld (errno %d)\n", off, got, errno);
      return 1;
    }
    uint64_t bad = first_bad(buf, off, want);
    if (bad != UINT64_MAX) {
      printf("FAIL: parent: wrong byte at %" PRIu64 "\n", bad);
      return 1;
    }
    bytes += want;
  }
  alarm(0);
  printf("ok kills=%d in_read=%d zombie_rounds=%d forced_reads=%d bytes=%" PRIu64
         " longest_read_ms=%" PRIu64 "\n", killed, in_read_kills, zombie_rounds, forced, bytes,
         max_read_ns / 1000000);
  return 0;
}
