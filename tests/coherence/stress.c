// Cross-process stress of coherence (coherence_test.py, case stress).
//
// A file of NSLOTS 4 KiB slots, each holding one checksummed record:
//   u32 magic, u32 slot, u64 seq, u32 writer, u32 zero, payload(seq, slot),
//   u64 FNV-1a 64 of the 4088 bytes before it.
// Writer W owns the slots S with S % NWRITERS == W. To commit a record it
// takes an fcntl write lock on the slot, writes it (pwrite, or lseek+write),
// unlocks, then sends "slot S seq Q ack A\n" to every reader's pipe. A reader
// that receives a message takes an fcntl read lock on the slot (or on the
// 64 KiB around it), reads it and must see a valid record with seq >= Q;
// every record it reads must also be at least as new as every message it had
// received for that slot and as what it read there before. Between messages
// a reader reads random 64 KiB chunks (under a read lock, checked the same
// way), so its reads race with the writers' opens that break its leases.
// Anything else is printed as a FAIL line and makes the reader exit 1.
//
// A paced writer (ACKFD >= 0) waits after each record until every reader
// acknowledged it (one byte on ACKFD) after reading 8 more chunks: between
// its records no one has the file open for writing, the readers take leases
// and cache, and the next record's open breaks them.
//
//   stress init PATH NSLOTS
//   stress writer PATH ID NWRITERS NSLOTS REOPEN SEQBASE SECONDS FD,FD,... ACKFD NREADERS
//          REOPEN 0: one descriptor for the whole run; 1: open and close for
//          every record; N: reopen every N records
//   stress reader PATH ID NSLOTS PIPEFD REOPEN ACKFD,ACKFD,...
//          reads the whole file twice, prints "ready", then serves messages
//          until every writer closed the pipe; REOPEN N: reopen every N
//          messages (0: never); the i-th ACKFD acknowledges writer i (-1: none)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SLOT 4096
#define MAGIC 0x52435055u /* "UPCR" */

struct header {
  uint32_t magic;
  uint32_t slot;
  uint64_t seq;
  uint32_t writer;
  uint32_t zero;
};

static uint64_t fnv(const unsigned char* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

static void make_record(unsigned char* r, uint32_t slot, uint64_t seq, uint32_t writer) {
  struct header h = {MAGIC, slot, seq, writer, 0};
  memcpy(r, &h, sizeof h);
  uint64_t x = seq * 0x9E3779B97F4A7C15ull ^ (slot + 1) * 0xC2B2AE3D27D4EB4Full;
  for (size_t i = sizeof h; i < SLOT - 8; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    memcpy(r + i, &x, 8);
  }
  uint64_t c = fnv(r, SLOT - 8);
  memcpy(r + SLOT - 8, &c, 8);
}

// 0: valid; else why not.
static const char* check_record(const unsigned char* r, uint32_t slot, struct header* h) {
  memcpy(h, r, sizeof *h);
  uint64_t c;
  memcpy(&c, r + SLOT - 8, 8);
  if (c != fnv(r, SLOT - 8)) return "torn or corrupt (checksum mismatch)";
  if (h->magic != MAGIC) return "bad magic";
  if (h->slot != slot) return "record of another slot";
  return NULL;
}

static int lock(int fd, short type, off_t off, off_t len) {
  struct flock fl = {0};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = off;
  fl.l_len = len;
  while (fcntl(fd, F_SETLKW, &fl) != 0) {
    if (errno != EINTR) return -1;
  }
  return 0;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char* what) {
  printf("FAIL: stress: %s: %s\n", what, strerror(errno));
  fflush(stdout);
  exit(2);
}

static int cmd_init(const char* path, long nslots) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) die("open");
  unsigned char r[SLOT];
  for (long s = 0; s < nslots; ++s) {
    make_record(r, (uint32_t)s, 0, 0xffffffffu);
    if (pwrite(fd, r, SLOT, s * SLOT) != SLOT) die("pwrite");
  }
  if (fsync(fd) != 0 || close(fd) != 0) die("fsync");
  return 0;
}

static int cmd_writer(const char* path, uint32_t id, long nwriters, long nslots, long reopen,
                      uint64_t seqbase, double seconds, char* fdlist, int ackfd, long nreaders) {
  int fds[64], nfds = 0;
  for (char* f; (f = strsep(&fdlist, ",")) != NULL && nfds < 64;)
    if (*f) fds[nfds++] = atoi(f);
  long mine[4096], nmine = 0;
  for (long s = id; s < nslots && nmine < 4096; s += nwriters) mine[nmine++] = s;
  uint64_t* seq = calloc((size_t)nslots, sizeof *seq);
  unsigned char r[SLOT];
  int fd = -1;
  long records = 0, since_open = 0;
  uint64_t rnd = 88172645463325252ull ^ (id + 1);
  double deadline = now() + seconds;
  while (now() < deadline) {
    if (fd < 0) {
      fd = open(path, O_RDWR | O_CLOEXEC);
      if (fd < 0) die("writer open");
      since_open = 0;
    }
    rnd ^= rnd << 13;
    rnd ^= rnd >> 7;
    rnd ^= rnd << 17;
    long s = mine[rnd % (uint64_t)nmine];
    uint64_t q = seqbase + ++seq[s];
    make_record(r, (uint32_t)s, q, id);
    if (lock(fd, F_WRLCK, s * SLOT, SLOT) != 0) die("writer lock");
    ssize_t w;
    if (records % 3 == 2) {
      if (lseek(fd, s * SLOT, SEEK_SET) < 0) die("lseek");
      w = write(fd, r, SLOT);
    } else {
      w = pwrite(fd, r, SLOT, s * SLOT);
    }
    if (w != SLOT) die("writer write");
    if (lock(fd, F_UNLCK, s * SLOT, SLOT) != 0) die("writer unlock");
    records++;
    if (reopen > 0 && ++since_open >= reopen) {
      if (close(fd) != 0) die("writer close");
      fd = -1;
    }
    char msg[80];
    int n = snprintf(msg, sizeof msg, "slot %ld seq %llu ack %d\n", s, (unsigned long long)q,
                     ackfd >= 0 ? (int)id : -1);
    for (int i = 0; i < nfds; ++i)
      if (write(fds[i], msg, (size_t)n) != n) die("writer notify");
    for (long got = 0; ackfd >= 0 && got < nreaders;) {
      char acks[64];
      ssize_t r = read(ackfd, acks, (size_t)(nreaders - got < 64 ? nreaders - got : 64));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) die("writer ack");
      got += r;
    }
  }
  if (fd >= 0) close(fd);
  printf("writer %u records %ld\n", id, records);
  return 0;
}

struct reader {
  uint32_t id;
  const char* path;
  long nslots;
  int fd;
  uint64_t* msg_seq;   // newest seq a message announced, per slot
  uint64_t* read_seq;  // newest seq read, per slot
  long failures, checked, messages;
};

static void report(struct reader* rd, long slot, const char* how, const char* why,
                   const struct header* h, uint64_t want) {
  rd->failures++;
  if (rd->failures <= 20)
    printf("FAIL: stress reader %u: slot %ld (%s): %s: record seq %llu writer %u magic %08x; "
           "want seq >= %llu (announced %llu, read before %llu)\n",
           rd->id, slot, how, why, (unsigned long long)h->seq, h->writer, h->magic,
           (unsigned long long)want, (unsigned long long)rd->msg_seq[slot],
           (unsigned long long)rd->read_seq[slot]);
  fflush(stdout);
}

static void check_buffer(struct reader* rd, const unsigned char* buf, long first, long n,
                         const char* how) {
  for (long i = 0; i < n; ++i) {
    long s = first + i;
    struct header h;
    const char* why = check_record(buf + i * SLOT, (uint32_t)s, &h);
    uint64_t want = rd->msg_seq[s] > rd->read_seq[s] ? rd->msg_seq[s] : rd->read_seq[s];
    rd->checked++;
    if (why) {
      report(rd, s, how, why, &h, want);
    } else if (h.seq < want) {
      report(rd, s, how, "stale", &h, want);
    } else {
      rd->read_seq[s] = h.seq;
    }
  }
}

// Reads slots [first, first + n) under a read lock, in one of several ways.
static void read_slots(struct reader* rd, long first, long n, int way) {
  unsigned char* buf = malloc((size_t)n * SLOT);
  size_t len = (size_t)n * SLOT;
  off_t off = first * SLOT;
  if (lock(rd->fd, F_RDLCK, off, (off_t)len) != 0) die("reader lock");
  ssize_t r;
  const char* how;
  if (way == 0) {
    how = "pread";
    r = pread(rd->fd, buf, len, off);
  } else if (way == 1) {
    how = "lseek+read";
    if (lseek(rd->fd, off, SEEK_SET) < 0) die("lseek");
    r = read(rd->fd, buf, len);
  } else {
    how = "preadv";
    struct iovec iov[2] = {{buf, len / 2 + 100}, {buf + len / 2 + 100, len - len / 2 - 100}};
    r = preadv(rd->fd, iov, 2, off);
  }
  if (r != (ssize_t)len) {
    printf("FAIL: stress reader %u: %s of %zu bytes at %lld returned %zd (%s)\n", rd->id, how, len,
           (long long)off, r, r < 0 ? strerror(errno) : "short");
    rd->failures++;
  } else {
    check_buffer(rd, buf, first, n, how);
  }
  if (lock(rd->fd, F_UNLCK, off, (off_t)len) != 0) die("reader unlock");
  free(buf);
}

static void reader_open(struct reader* rd) {
  if (rd->fd >= 0) close(rd->fd);
  rd->fd = open(rd->path, O_RDONLY | O_CLOEXEC);
  if (rd->fd < 0) die("reader open");
}

static uint64_t g_rnd = 0x2545F4914F6CDD1Dull;
static long random_chunk(long nslots) {
  g_rnd ^= g_rnd << 13;
  g_rnd ^= g_rnd >> 7;
  g_rnd ^= g_rnd << 17;
  return (long)(g_rnd % (uint64_t)((nslots + 15) / 16)) * 16;
}

static void read_chunk(struct reader* rd, long first, int way) {
  read_slots(rd, first, rd->nslots - first < 16 ? rd->nslots - first : 16, way);
}

static int cmd_reader(const char* path, uint32_t id, long nslots, int pipefd, long reopen,
                      char* acklist) {
  struct reader rd = {id, path, nslots, -1, calloc((size_t)nslots, 8), calloc((size_t)nslots, 8),
                      0, 0, 0};
  int ackfds[64], nack = 0;
  for (char* f; (f = strsep(&acklist, ",")) != NULL && nack < 64;)
    if (*f) ackfds[nack++] = atoi(f);
  g_rnd ^= (uint64_t)(id + 1) * 0x9E3779B97F4A7C15ull;
  int flags = fcntl(pipefd, F_GETFL);
  fcntl(pipefd, F_SETFL, flags | O_NONBLOCK);
  reader_open(&rd);
  for (int pass = 0; pass < 2; ++pass)
    for (long s = 0; s < nslots; s += 16) read_slots(&rd, s, nslots - s < 16 ? nslots - s : 16, 0);
  printf("ready\n");
  fflush(stdout);
  char buf[8192];
  size_t have = 0;
  for (;;) {
    char* nl = memchr(buf, '\n', have);
    if (!nl) {
      if (have == sizeof buf) have = 0;
      ssize_t r = read(pipefd, buf + have, sizeof buf - have);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && errno == EAGAIN) {
        read_chunk(&rd, random_chunk(nslots), 0);  // no message yet: a read racing the writers
        continue;
      }
      if (r < 0) die("reader pipe");
      if (r == 0) break;
      have += (size_t)r;
      continue;
    }
    *nl = 0;
    long s;
    unsigned long long q;
    int ack;
    if (sscanf(buf, "slot %ld seq %llu ack %d", &s, &q, &ack) != 3 || s < 0 || s >= nslots ||
        ack >= nack) {
      printf("FAIL: stress reader %u: bad message \"%s\"\n", id, buf);
      rd.failures++;
    } else {
      if (q > rd.msg_seq[s]) rd.msg_seq[s] = q;
      long m = rd.messages++;
      if (m % 4 == 3) {
        long first = s / 16 * 16;  // the 64 KiB around the slot
        read_slots(&rd, first, nslots - first < 16 ? nslots - first : 16, (int)(m / 4 % 3));
      } else {
        read_slots(&rd, s, 1, (int)(m % 3));
      }
      if (reopen > 0 && rd.messages % reopen == 0) reader_open(&rd);
      if (ack >= 0) {
        for (int i = 0; i < 8; ++i) read_chunk(&rd, random_chunk(nslots), i % 3);
        if (ackfds[ack] < 0 || write(ackfds[ack], "a", 1) != 1) die("reader ack");
      }
    }
    size_t used = (size_t)(nl + 1 - buf);
    memmove(buf, nl + 1, have - used);
    have -= used;
  }
  printf("reader %u messages %ld records_checked %ld failures %ld\n", id, rd.messages, rd.checked,
         rd.failures);
  return rd.failures ? 1 : 0;
}

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc == 4 && !strcmp(argv[1], "init")) return cmd_init(argv[2], atol(argv[3]));
  if (argc == 12 && !strcmp(argv[1], "writer"))
    return cmd_writer(argv[2], (uint32_t)atol(argv[3]), atol(argv[4]), atol(argv[5]), atol(argv[6]),
                      strtoull(argv[7], NULL, 0), atof(argv[8]), argv[9], atoi(argv[10]),
                      atol(argv[11]));
  if (argc == 8 && !strcmp(argv[1], "reader"))
    return cmd_reader(argv[2], (uint32_t)atol(argv[3]), atol(argv[4]), atoi(argv[5]), atol(argv[6]),
                      argv[7]);
  fprintf(stderr,
          "usage: stress init PATH NSLOTS\n"
          "       stress writer PATH ID NWRITERS NSLOTS REOPEN SEQBASE SECONDS FD,FD,... ACKFD "
          "NREADERS\n"
          "       stress reader PATH ID NSLOTS PIPEFD REOPEN ACKFD,ACKFD,...\n");
  return 2;
}
