// The worker process (see worker.h).
#include "bench/worker.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <string>
#include <vector>

#include "bench/pattern.h"

namespace upcache::bench {
namespace {

double now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Peak RSS of this process, or of its largest child (kCmd).
long maxrss_kib(int who = RUSAGE_SELF) {
  rusage ru{};
  getrusage(who, &ru);
  return ru.ru_maxrss;
}

int fail(const std::string& msg) {
  fprintf(stderr, "upcache-bench worker: %s\n", msg.c_str());
  return 1;
}

// Runs `cmd` with /bin/sh -c and waits; returns its exit status or -1.
int run_shell(const std::string& cmd) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

int worker_main(int argc, char** argv) {
  if (argc != 9) return fail("expected 8 arguments, see bench/worker.h");
  Workload w;
  std::string error;
  std::string name = argv[1];
  unsigned threads = static_cast<unsigned>(strtoul(argv[4], nullptr, 10));
  if (name == "cmd") {
    w.kind = Kind::kCmd;
  } else if (!parse_workload(name, threads, &w, &error)) {
    return fail(error);
  }
  w.ops = strtoull(argv[2], nullptr, 10);
  w.bytes = strtoull(argv[3], nullptr, 10);
  w.threads = threads ? threads : 1;
  bool warm = strcmp(argv[5], "1") == 0;
  bool mem = strcmp(argv[6], "mem") == 0;
  bool direct = strcmp(argv[6], "direct") == 0;
  uint64_t seed = strtoull(argv[7], nullptr, 10);
  std::string target = argv[8];

  if (w.kind == Kind::kCmd) {
    if (warm && run_shell(target) != 0) return fail("command failed: " + target);
    double t0 = now();
    int rc = run_shell(target);
    double t1 = now();
    if (rc != 0) return fail("command exited with " + std::to_string(rc) + ": " + target);
    printf("%.9f 0 %ld\n", t1 - t0, maxrss_kib(RUSAGE_CHILDREN));
    return 0;
  }
  if (w.kind == Kind::kPipe) {
    Plan p = prepare(w, 0, seed);
    if (warm && run_pipe(p, &error) < 0) return fail(error);
    int64_t ns = run_pipe(p, &error);
    if (ns < 0) return fail(error);
    printf("%.9f %" PRIu64 " %ld\n", ns * 1e-9, w.ops * w.bs, maxrss_kib());
    return 0;
  }

  int fd = open(target.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(target + ": " + strerror(errno));
  struct stat st{};
  if (fstat(fd, &st) != 0) return fail(target + ": " + strerror(errno));
  uint64_t size = st.st_size;
  Plan p = prepare(w, size, seed);

  if (w.kind == Kind::kOpenRead) {
    if (mem || direct) return fail("open-read is timed against the kernel only");
    close(fd);  // every open is then the file's only one: upcache takes a lease for each
    if (warm && run_open_read(p, target.c_str(), &error) < 0) return fail(error);
    int64_t ns = run_open_read(p, target.c_str(), &error);
    if (ns < 0) return fail(error);
    printf("%.9f %" PRIu64 " %ld\n", ns * 1e-9, w.ops * w.bs, maxrss_kib());
    return 0;
  }
  const char* copy = nullptr;
  if (mem) {
    // The physical limit: an anonymous copy of the file, faulted in, then
    // the same pattern with memcpy. Always "warm".
    void* m = mmap(nullptr, size ? size : 1, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return fail(std::string("mmap: ") + strerror(errno));
    // The best the machine can do: transparent huge pages where allowed
    // (fewer TLB misses on random access; the kernel copies from its direct
    // map, which has them).
    madvise(m, size, MADV_HUGEPAGE);
    for (uint64_t off = 0; off < size;) {
      ssize_t r = pread(fd, static_cast<char*>(m) + off, std::min<uint64_t>(size - off, 8 << 20), off);
      if (r <= 0) return fail(target + ": short read while copying");
      off += r;
    }
    copy = static_cast<const char*>(m);
  }
  int direct_fd = -1;
  if (direct) {
    direct_fd = open(target.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
    if (direct_fd < 0) return fail(target + ": O_DIRECT: " + strerror(errno));
  }
  auto pass = [&]() -> int64_t {
    if (mem) return run_mem(p, copy, &error);
    if (direct) return run_direct(p, direct_fd, &error);
    return run_fd(p, fd, &error);
  };
  if (warm && pass() < 0) return fail(error);
  // UPCACHE_BENCH_PASSES=N (profiling aid): N timed passes, the time of the
  // median one reported, so that a profile of the worker is mostly timed work.
  unsigned passes = 1;
  if (const char* e = getenv("UPCACHE_BENCH_PASSES"); e && atoi(e) > 1) passes = atoi(e);
  std::vector<double> times;
  int64_t bytes = 0;
  for (unsigned i = 0; i < passes && bytes >= 0; ++i) {
    double a = now();
    bytes = pass();
    times.push_back(now() - a);
  }
  std::sort(times.begin(), times.end());
  double t0 = 0, t1 = times[times.size() / 2];
  if (bytes < 0) return fail(error);
  printf("%.9f %" PRId64 " %ld\n", t1 - t0, bytes, maxrss_kib());
  return 0;
}

}  // namespace upcache::bench
