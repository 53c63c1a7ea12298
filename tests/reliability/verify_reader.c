// upcache_verify_reader: a multi-threaded, self-verifying reader.
//
// Every byte of the test file encodes its own offset (byte i is byte i % 8 of
// the little-endian 64-bit word (i / 8) * K), so any byte read can be checked
// without a second copy of the file: a wrong page, a stale frame, a short
// copy or bytes of another offset are found at once.
//
// usage: upcache_verify_reader --make FILE BYTES       write the file
//        upcache_verify_reader FILE THREADS OPS SEED   read and verify
//
// Each thread runs OPS operations, a random mix of: pread at random offsets
// and lengths (some starting or ending past end of file), read() runs from a
// random position on the thread's own descriptor, preadv with three iovecs,
// and pread on one descriptor all threads share. Exits 1 and prints a line
// starting with "FAIL:" on the first wrong byte, length or errno; prints the
// number of bytes verified otherwise.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define K 0x9E3779B97F4A7C15ull
#define MAX_LEN (512u << 10)

static const char* g_path;
static uint64_t g_size;
static int g_shared_fd;
static long g_ops;
static uint64_t g_seed;
static volatile int g_failed;

static inline unsigned char expected(uint64_t off) {
  uint64_t w = (off / 8) * K;
  return (unsigned char)(w >> (8 * (off % 8)));
}

static uint64_t rnd(uint64_t* s) {  // splitmix64
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static void fail(const char* what, uint64_t off, uint64_t len, long got, int err, uint64_t bad) {
  g_failed = 1;
  printf("FAIL: %s off=%" PRIu64 " len=%" PRIu64 " got=%ld errno=%d first bad byte at %" PRIu64
         "\n", what, off, len, got, err, bad);
  fflush(stdout);
}

// Checks a result of reading [off, off + len): length and bytes.
static int check(const char* what, const unsigned char* buf, uint64_t off, uint64_t len, long got,
                 int err) {
  uint64_t want = off >= g_size ? 0 : (g_size - off < len ? g_size - off : len);
  if (got < 0 || (uint64_t)got != want) {
    fail(what, off, len, got, got < 0 ? err : 0, 0);
    return -1;
  }
  for (uint64_t i = 0; i < want; ++i) {
    if (buf[i] != expected(off + i)) {
      fail(what, off, len, got, 0, off + i);
      return -1;
    }
  }
  return 0;
}

static uint64_t pick_offset(uint64_t* s) {
  uint64_t r = rnd(s) % 16;
  if (r == 0) {  // just before end of file
    uint64_t back = rnd(s) % 100000;
    return back < g_size ? g_size - back : 0;
  }
  if (r == 1) return g_size + rnd(s) % 100000;                                   // past EOF
  return rnd(s) % g_size;
}

static void* worker(void* arg) {
  uint64_t s = g_seed * 1000003 + (uint64_t)(uintptr_t)arg;
  unsigned char* buf = malloc(MAX_LEN);
  int fd = open(g_path, O_RDONLY);
  if (buf == NULL || fd < 0) {
    fail("open/malloc", 0, 0, -1, errno, 0);
    return NULL;
  }
  uint64_t verified = 0;
  for (long op = 0; op < g_ops && !g_failed; ++op) {
    uint64_t kind = rnd(&s) % 8;
    uint64_t off = pick_offset(&s);
    uint64_t len = 1 + rnd(&s) % (rnd(&s) % 4 == 0 ? MAX_LEN : 8192);
    if (kind <= 2) {  // pread, own descriptor
      errno = 0;
      long got = pread(fd, buf, len, (off_t)off);
      if (check("pread", buf, off, len, got, errno)) break;
      verified += got;
    } else if (kind == 3) {  // pread on the descriptor all threads share
      errno = 0;
      long got = pread(g_shared_fd, buf, len, (off_t)off);
      if (check("pread(shared fd)", buf, off, len, got, errno)) break;
      verified += got;
    } else if (kind <= 5) {  // sequential read() run
      if (lseek(fd, (off_t)off, SEEK_SET) != (off_t)off) {
        fail("lseek", off, 0, -1, errno, 0);
        break;
      }
      int steps = 1 + (int)(rnd(&s) % 32);
      uint64_t chunk = 1 + rnd(&s) % 131072;
      for (int i = 0; i < steps; ++i) {
        errno = 0;
        long got = read(fd, buf, chunk);
        if (check("read", buf, off, chunk, got, errno)) break;
        verified += got;
        off += (uint64_t)got;
        if (got == 0) break;
      }
      if (g_failed) break;
      off_t now = lseek(fd, 0, SEEK_CUR);
      if (now != (off_t)off) {
        fail("offset after reads", off, 0, (long)now, errno, 0);
        break;
      }
    } else {  // preadv with three iovecs of odd lengths
      uint64_t a = 1 + rnd(&s) % 5000, b = 1 + rnd(&s) % 70000, c = 1 + rnd(&s) % 100000;
      struct iovec iov[3] = {{buf, a}, {buf + a, b}, {buf + a + b, c}};
      errno = 0;
      long got = preadv(fd, iov, 3, (off_t)off);
      if (check("preadv", buf, off, a + b + c, got, errno)) break;
      verified += got;
    }
  }
  close(fd);
  free(buf);
  return (void*)(uintptr_t)verified;
}

static int make(const char* path, uint64_t size) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return perror("open"), 1;
  unsigned char* buf = malloc(1 << 20);
  for (uint64_t off = 0; off < size; off += 1 << 20) {
    uint64_t n = size - off < (1 << 20) ? size - off : (1 << 20);
    for (uint64_t i = 0; i < n; ++i) buf[i] = expected(off + i);
    if (write(fd, buf, n) != (ssize_t)n) return perror("write"), 1;
  }
  free(buf);
  return close(fd) != 0;
}

int main(int argc, char** argv) {
  if (argc == 4 && strcmp(argv[1], "--make") == 0) return make(argv[2], strtoull(argv[3], 0, 0));
  if (argc != 5) {
    fprintf(stderr, "usage: %s --make FILE BYTES | FILE THREADS OPS SEED\n", argv[0]);
    return 2;
  }
  g_path = argv[1];
  int threads = atoi(argv[2]);
  g_ops = atol(argv[3]);
  g_seed = strtoull(argv[4], 0, 0);
  struct stat st;
  g_shared_fd = open(g_path, O_RDONLY);
  if (g_shared_fd < 0 || fstat(g_shared_fd, &st) != 0) return perror(g_path), 1;
  g_size = (uint64_t)st.st_size;
  if (g_size < 1 << 20) return fprintf(stderr, "file too small\n"), 2;
  pthread_t t[64];
  if (threads < 1 || threads > 64) return 2;
  for (int i = 0; i < threads; ++i) pthread_create(&t[i], NULL, worker, (void*)(uintptr_t)i);
  uint64_t total = 0;
  for (int i = 0; i < threads; ++i) {
    void* r;
    pthread_join(t[i], &r);
    total += (uint64_t)(uintptr_t)r;
  }
  if (g_failed) return 1;
  printf("verified %" PRIu64 " bytes in %d threads\n", total, threads);
  return 0;
}
