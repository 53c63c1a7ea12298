// upcache_close_race: threads read one descriptor while another thread keeps
// replacing the open file description behind it with dup2 (shim/hazard.h:
// the read path uses a description without a reference; the last close of
// one must wait for readers that still use it, or defer its release).
//
// usage: upcache_close_race DIR SECONDS
//
// Two 4 MiB files whose 8-byte words are (i * K) in A and ~(i * K) in B, i
// the word's index. Three threads read the descriptor FD with read() (64
// bytes at the description's offset, back to 0 at end of file) and pread()
// (64 bytes at a random word); a fourth keeps opening A or B and dup2-ing
// it onto FD, so the description it replaces is released while readers may
// be inside the shim with it. FD is always open: every call must return 64
// bytes, all of one file and consecutive (for pread: of that offset).
// Prints "FAIL: ..." and exits 1 on a wrong result; otherwise
// "ok reads=R swaps=S".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define K 0x9E3779B97F4A7C15ull
#define SIZE (4u << 20)
#define FD 50
#define READERS 3

static char g_path[2][4096];
static atomic_int g_stop;
static atomic_uint_fast64_t g_reads;

static void fail(const char* what, long a, long b) {
  printf("FAIL: %s (%ld, %ld)\n", what, a, b);
  fflush(stdout);
  _exit(1);
}

static void make(const char* path, int flip) {
  uint64_t* words = malloc(SIZE);
  for (uint64_t i = 0; i < SIZE / 8; ++i) words[i] = flip ? ~(i * K) : i * K;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || write(fd, words, SIZE) != SIZE || close(fd) != 0) fail("make", errno, 0);
  free(words);
}

// 0: the 8 words are consecutive words of A (or of B); -1 otherwise. With
// `at` >= 0 they must also be the words from byte `at`.
static int check(const uint64_t* w, long at) {
  for (int f = 0; f < 2; ++f) {
    uint64_t first = f ? ~w[0] : w[0];
    int ok = 1;
    for (int k = 1; k < 8 && ok; ++k) ok = (f ? ~w[k] : w[k]) - first == (uint64_t)k * K;
    if (ok && (at < 0 || first == (uint64_t)at / 8 * K)) return 0;
  }
  return -1;
}

static void* reader(void* arg) {
  uint64_t s = (uintptr_t)arg * 7919 + 1;
  uint64_t w[8];
  while (!atomic_load(&g_stop)) {
    ssize_t r = read(FD, w, sizeof w);
    if (r == 0) {
      if (lseek(FD, 0, SEEK_SET) != 0) fail("lseek", errno, 0);
      continue;
    }
    if (r != sizeof w) fail("read", r, errno);
    if (check(w, -1) != 0) fail("read: bytes of no file", (long)w[0], (long)w[1]);
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    long at = (long)((s >> 20) % (SIZE / 8 - 8)) * 8;
    r = pread(FD, w, sizeof w, at);
    if (r != sizeof w) fail("pread", r, errno);
    if (check(w, at) != 0) fail("pread: wrong bytes at", at, (long)w[0]);
    atomic_fetch_add(&g_reads, 2);
  }
  return NULL;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s DIR SECONDS\n", argv[0]);
    return 2;
  }
  for (int f = 0; f < 2; ++f) {
    snprintf(g_path[f], sizeof g_path[f], "%s/race-%c", argv[1], 'a' + f);
    make(g_path[f], f);
  }
  int fd = open(g_path[0], O_RDONLY);
  if (fd < 0 || dup2(fd, FD) != FD) fail("open", errno, 0);
  close(fd);
  pthread_t th[READERS];
  for (long i = 0; i < READERS; ++i) pthread_create(&th[i], NULL, reader, (void*)i);
  double end = now() + atof(argv[2]);
  uint64_t swaps = 0;
  while (now() < end) {
    int n = open(g_path[swaps & 1], O_RDONLY);
    if (n < 0 || dup2(n, FD) != FD) fail("swap", errno, 0);
    close(n);
    ++swaps;
  }
  atomic_store(&g_stop, 1);
  for (int i = 0; i < READERS; ++i) pthread_join(th[i], NULL);
  for (int f = 0; f < 2; ++f) unlink(g_path[f]);
  printf("ok reads=%" PRIu64 " swaps=%" PRIu64 "\n", (uint64_t)atomic_load(&g_reads), swaps);
  return 0;
}
