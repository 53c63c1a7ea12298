// upcache_fork_engine: fork() right after the shim started its I/O threads.
//
// usage: upcache_fork_engine DIR ROUNDS
//
// Each round forks a child that asks for 1 MiB of a file it has not read
// (posix_fadvise WILLNEED: asynchronous readahead, so the shim starts its
// engine threads there) and forks again at once; the grandchild does the
// same with the next MiB, reads 64 KiB of it back and checks the bytes.
// A thread still inside the runtime's start-up when fork() copies the
// process holds locks the grandchild inherits locked (the ASan allocator
// hung the grandchild's own new threads that way), so the grandchild has
// an alarm: a hang is a failure, not a stuck test. The file's 8-byte words
// are (i * K), i the word's index. Prints "FAIL: ..." and exits 1 on a wrong
// byte, a hang or a crash; otherwise "ok rounds=N".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define K 0x9E3779B97F4A7C15ull
#define MIB (1u << 20)
#define CHECKED (64u << 10)

static char g_path[4096];

static void fail(const char* what, long a, long b) {
  printf("FAIL: %s (%ld, %ld)\n", what, a, b);
  fflush(stdout);
  _exit(1);
}

static void make(size_t size) {
  uint64_t* words = malloc(MIB);
  int fd = open(g_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || words == NULL) fail("make", errno, 0);
  for (size_t at = 0; at < size; at += MIB) {
    for (uint64_t i = 0; i < MIB / 8; ++i) words[i] = (at / 8 + i) * K;
    if (write(fd, words, MIB) != MIB) fail("make: write", errno, (long)at);
  }
  if (close(fd) != 0) fail("make: close", errno, 0);
  free(words);
}

// Opens the file and asks for the MiB at `mib`. Returns the descriptor.
static int ask(long mib) {
  int fd = open(g_path, O_RDONLY);
  if (fd < 0) fail("open", errno, mib);
  int err = posix_fadvise(fd, mib * (off_t)MIB, MIB, POSIX_FADV_WILLNEED);
  if (err != 0) fail("posix_fadvise", err, mib);
  return fd;
}

// The first CHECKED bytes of the MiB at `mib` must be its words.
static void verify(int fd, long mib) {
  static uint64_t words[CHECKED / 8];
  ssize_t n = pread(fd, words, CHECKED, mib * (off_t)MIB);
  if (n != CHECKED) fail("pread", n < 0 ? errno : n, mib);
  for (uint64_t i = 0; i < CHECKED / 8; ++i)
    if (words[i] != ((uint64_t)mib * MIB / 8 + i) * K) fail("wrong word", mib, (long)i);
}

// 0 when the process exited 0; prints why not otherwise.
static int reap(pid_t pid, const char* who, int round) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) fail("waitpid", errno, round);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
  if (WIFSIGNALED(status))
    printf("FAIL: round %d: the %s died of signal %d%s\n", round, who, WTERMSIG(status),
           WTERMSIG(status) == SIGALRM ? " (hung after fork)" : "");
  else
    printf("FAIL: round %d: the %s exited %d\n", round, who, WEXITSTATUS(status));
  fflush(stdout);
  return -1;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s DIR ROUNDS\n", argv[0]);
    return 2;
  }
  int rounds = atoi(argv[2]);
  snprintf(g_path, sizeof g_path, "%s/fork-engine.dat", argv[1]);
  make((size_t)rounds * 2 * MIB);
  for (int r = 0; r < rounds; ++r) {
    pid_t child = fork();
    if (child < 0) fail("fork", errno, r);
    if (child == 0) {
      int fd = ask(2L * r);
      pid_t grandchild = fork();  // the engine's threads have just started
      if (grandchild < 0) fail("fork (child)", errno, r);
      if (grandchild == 0) {
        alarm(30);
        int gfd = ask(2L * r + 1);
        verify(gfd, 2L * r + 1);
        _exit(0);
      }
      verify(fd, 2L * r);
      _exit(reap(grandchild, "grandchild", r) == 0 ? 0 : 1);
    }
    if (reap(child, "child", r) != 0) return 1;
  }
  unlink(g_path);
  printf("ok rounds=%d\n", rounds);
  return 0;
}
