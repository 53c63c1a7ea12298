// upcache run: start a command under libupcache.so and summarize its reads.
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/config.h"
#include "tools/find_library.h"
#include "tools/cli.h"
#include "tools/format.h"

#ifndef UPCACHE_INSTALL_LIBDIR
#define UPCACHE_INSTALL_LIBDIR "/usr/local/lib"
#endif
#ifndef UPCACHE_MULTIARCH
#define UPCACHE_MULTIARCH ""
#endif

namespace upcache::tool {
namespace {

// Exit statuses of `upcache run` itself (as env(1), timeout(1) and nice(1)).
constexpr int kRunFailed = 125;     // upcache could not start the command
constexpr int kCannotExecute = 126; // the command exists but cannot be run
constexpr int kNotFound = 127;      // the command was not found

volatile sig_atomic_t g_child = 0;

// Forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT to the child. A signal the terminal
// generated (si_code SI_KERNEL) already reached the child's process group, so
// it is not sent twice.
void forward(int sig, siginfo_t* info, void*) {
  if (g_child > 0 && (info == nullptr || info->si_code != SI_KERNEL)) kill(g_child, sig);
}

constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

std::string make_run_id() {
  uint64_t v = 0;
  FILE* f = fopen("/dev/urandom", "re");
  if (f == nullptr || fread(&v, sizeof v, 1, f) != 1) {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    v = static_cast<uint64_t>(ts.tv_nsec) * 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(getpid());
  }
  if (f) fclose(f);
  char buf[24];
  snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

bool truthy(const char* v) {
  return v && (!strcmp(v, "1") || !strcasecmp(v, "yes") || !strcasecmp(v, "on") ||
               !strcasecmp(v, "true"));
}

double monotonic() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void run_usage(FILE* f) {
  fprintf(f,
          "Usage: upcache run [OPTIONS] [--] COMMAND [ARGS...]\n"
          "Run COMMAND with libupcache.so preloaded, then print a summary of its reads\n"
          "(all processes it started) on standard error.\n"
          "\n"
          "  --size SIZE          cache capacity (UPCACHE_SIZE; default 1G)\n"
          "  --page-size SIZE     cache page size, a power of two from 4K to 2M\n"
          "                       (UPCACHE_PAGE_SIZE; default 16K)\n"
          "  --ra-max SIZE        largest readahead window, 0 disables (UPCACHE_RA_MAX; default 16M)\n"
          "  --direct MODE        O_DIRECT backend: auto, on or off (UPCACHE_DIRECT)\n"
          "  --coherence MODE     lease (never stale, the default), open (serve files that\n"
          "                       cannot be leased too) or locks (UPCACHE_COHERENCE)\n"
          "  --async ENGINE       asynchronous readahead: auto, uring or threads (UPCACHE_ASYNC)\n"
          "  --io-threads N       threads of the threads engine (UPCACHE_IO_THREADS)\n"
          "  --callers N          record the call stack of one read in N (UPCACHE_CALLERS)\n"
          "  --log FILE           upcache's messages go to FILE (UPCACHE_LOG)\n"
          "  --log-level N        0 silent .. 3 debug (UPCACHE_LOG_LEVEL)\n"
          "  --include PREFIXES   cache only paths under these ':'-separated prefixes\n"
          "                       (UPCACHE_INCLUDE; repeatable)\n"
          "  --exclude PREFIXES   never cache paths under these prefixes (UPCACHE_EXCLUDE)\n"
          "  --keep               keep the statistics after exit (UPCACHE_STATS_KEEP=1)\n"
          "  --hugepages          put the cache on reserved 2M huge pages when enough are\n"
          "                       free (UPCACHE_HUGEPAGES=1)\n"
          "  --no-thp             no transparent 2M pages for the cache (UPCACHE_THP=0)\n"
          "  --disable            pass every call to the kernel (UPCACHE_DISABLE=1)\n"
          "  --lib PATH           the libupcache.so to preload (default: $UPCACHE_LIB, or\n"
          "                       the one installed with this upcache)\n"
          "  -q, --quiet          no summary\n"
          "  -h, --help           this help\n"
          "\n"
          "SIZE takes the suffixes K, M, G and T (powers of 1024). The exit status is the\n"
          "command's (128+N if signal N killed it); 125 if upcache failed, 126 if COMMAND\n"
          "cannot be executed, 127 if it was not found.\n");
}

void print_summary(const std::vector<Proc>& procs, double elapsed, bool disabled) {
  if (procs.empty()) {
    fprintf(stderr,
            "upcache: no statistics from the command (%s)\n",
            disabled ? "--disable" : "UPCACHE_STATS=0, a statically linked program, or "
                                     "libupcache.so did not load");
    return;
  }
  stats::Totals t;
  uint64_t page_size = 0;
  for (const Proc& p : procs) {
    t.add(p.totals);
    if (page_size == 0) page_size = p.seg().page_size;
  }
  auto n = [&](stats::Counter k) { return t.counters[k]; };
  double bytes = double(n(stats::kBytesRead));
  fprintf(stderr, "upcache: %zu process%s, %s: %s reads, %s read (%s/s)\n", procs.size(),
          procs.size() == 1 ? "" : "es", duration(elapsed).c_str(), grouped(n(stats::kReads)).c_str(),
          human_bytes(bytes).c_str(), human_bytes(elapsed > 0 ? bytes / elapsed : 0).c_str());
  fprintf(stderr, "upcache: hit ratio %s: %s hits, %s misses (pages of %s)\n",
          percent(n(stats::kHits), n(stats::kHits) + n(stats::kMisses)).c_str(),
          grouped(n(stats::kHits)).c_str(), grouped(n(stats::kMisses)).c_str(),
          human_bytes(double(page_size)).c_str());
  fprintf(stderr, "upcache: readahead %s pages, %s used (%s), %s wasted; %s evictions\n",
          grouped(n(stats::kReadaheadPages)).c_str(), grouped(n(stats::kReadaheadHits)).c_str(),
          percent(n(stats::kReadaheadHits), n(stats::kReadaheadPages)).c_str(),
          grouped(n(stats::kReadaheadWasted)).c_str(), grouped(n(stats::kEvictions)).c_str());
  fprintf(stderr, "upcache: disk %s direct, %s buffered; %s calls passed through; %s I/O errors\n",
          human_bytes(double(n(stats::kDirectBytes))).c_str(),
          human_bytes(double(n(stats::kBufferedBytes))).c_str(),
          grouped(n(stats::kPassthroughCalls)).c_str(), grouped(n(stats::kIoErrors)).c_str());
}

}  // namespace

int cmd_run(int argc, char** argv) {
  enum {
    kSize = 1000, kPageSize, kRaMax, kDirect, kAsync, kIoThreads, kCallers, kLog, kLogLevel,
    kInclude, kExclude, kKeep, kDisable, kLib, kHugePages, kNoThp, kCoherence
  };
  static const option longopts[] = {
      {"size", required_argument, nullptr, kSize},
      {"page-size", required_argument, nullptr, kPageSize},
      {"ra-max", required_argument, nullptr, kRaMax},
      {"direct", required_argument, nullptr, kDirect},
      {"coherence", required_argument, nullptr, kCoherence},
      {"async", required_argument, nullptr, kAsync},
      {"io-threads", required_argument, nullptr, kIoThreads},
      {"callers", required_argument, nullptr, kCallers},
      {"log", required_argument, nullptr, kLog},
      {"log-level", required_argument, nullptr, kLogLevel},
      {"include", required_argument, nullptr, kInclude},
      {"exclude", required_argument, nullptr, kExclude},
      {"keep", no_argument, nullptr, kKeep},
      {"hugepages", no_argument, nullptr, kHugePages},
      {"no-thp", no_argument, nullptr, kNoThp},
      {"disable", no_argument, nullptr, kDisable},
      {"lib", required_argument, nullptr, kLib},
      {"quiet", no_argument, nullptr, 'q'},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0}};

  std::vector<std::pair<std::string, std::string>> env;  // set in this order
  std::string lib_flag, include, exclude;
  bool keep = truthy(getenv("UPCACHE_STATS_KEEP")), quiet = false;
  bool disabled = truthy(getenv("UPCACHE_DISABLE"));

  auto bad = [&](const char* flag, const char* value, const char* expected) {
    fprintf(stderr, "%s run: %s \"%s\": expected %s\n", kProgram, flag, value, expected);
    return kRunFailed;
  };
  auto size_flag = [&](const char* flag, const char* var, uint64_t lo, uint64_t hi, bool pow2,
                       const char* expected) {
    uint64_t v = 0;
    if (!parse_size(optarg, &v) || v < lo || v > hi || (pow2 && (v & (v - 1)) != 0))
      return bad(flag, optarg, expected);
    env.emplace_back(var, optarg);
    return 0;
  };
  auto number_flag = [&](const char* flag, const char* var, unsigned long lo, unsigned long hi) {
    char* end = nullptr;
    errno = 0;
    unsigned long v = strtoul(optarg, &end, 10);
    if (errno || end == optarg || *end || optarg[0] == '-' || v < lo || v > hi) {
      char expected[64];
      snprintf(expected, sizeof expected, "a whole number from %lu to %lu", lo, hi);
      return bad(flag, optarg, expected);
    }
    env.emplace_back(var, optarg);
    return 0;
  };
  auto word_flag = [&](const char* flag, const char* var, std::initializer_list<const char*> words,
                       const char* expected) {
    for (const char* w : words)
      if (!strcasecmp(optarg, w)) {
        env.emplace_back(var, w);
        return 0;
      }
    return bad(flag, optarg, expected);
  };

  optind = 1;
  opterr = 0;
  int ch, rc = 0;
  while (rc == 0 && (ch = getopt_long(argc, argv, "+:qh", longopts, nullptr)) != -1) {
    switch (ch) {
      case kSize:
        rc = size_flag("--size", "UPCACHE_SIZE", 1ull << 20, 1ull << 46, false,
                       "a size from 1M to 64T (suffixes K, M, G, T)");
        break;
      case kPageSize:
        rc = size_flag("--page-size", "UPCACHE_PAGE_SIZE", Config::kMinPageSize,
                       Config::kMaxPageSize, true, "a power of two from 4K to 2M");
        break;
      case kRaMax:
        rc = size_flag("--ra-max", "UPCACHE_RA_MAX", 0, 1ull << 30, false,
                       "a size from 0 to 1G (suffixes K, M, G)");
        break;
      case kDirect: rc = word_flag("--direct", "UPCACHE_DIRECT", {"auto", "on", "off"}, "auto, on or off"); break;
      case kCoherence:
        rc = word_flag("--coherence", "UPCACHE_COHERENCE", {"lease", "open", "locks"}, "lease, open or locks");
        break;
      case kAsync:
        rc = word_flag("--async", "UPCACHE_ASYNC", {"auto", "uring", "threads"},
                       "auto, uring or threads");
        break;
      case kIoThreads: rc = number_flag("--io-threads", "UPCACHE_IO_THREADS", 1, 64); break;
      case kCallers: rc = number_flag("--callers", "UPCACHE_CALLERS", 0, 1ul << 30); break;
      case kLogLevel: rc = number_flag("--log-level", "UPCACHE_LOG_LEVEL", 0, 3); break;
      case kLog: {
        // An absolute path: the command may change directory before logging.
        std::string path = optarg;
        if (!path.empty() && path[0] != '/') {
          char cwd[PATH_MAX];
          if (getcwd(cwd, sizeof cwd)) path = std::string(cwd) + "/" + path;
        }
        env.emplace_back("UPCACHE_LOG", path);
        break;
      }
      case kInclude: include += (include.empty() ? "" : ":") + std::string(optarg); break;
      case kExclude: exclude += (exclude.empty() ? "" : ":") + std::string(optarg); break;
      case kKeep: keep = true; break;
      case kHugePages: env.emplace_back("UPCACHE_HUGEPAGES", "1"); break;
      case kNoThp: env.emplace_back("UPCACHE_THP", "0"); break;
      case kDisable:
        disabled = true;
        env.emplace_back("UPCACHE_DISABLE", "1");
        break;
      case kLib: lib_flag = optarg; break;
      case 'q': quiet = true; break;
      case 'h': run_usage(stdout); return 0;
      case ':':
        fprintf(stderr, "%s run: option '%s' needs a value\n", kProgram, argv[optind - 1]);
        fprintf(stderr, "Try '%s run --help'.\n", kProgram);
        return kRunFailed;
      default:
        fprintf(stderr, "%s run: unknown option '%s'\n", kProgram, argv[optind - 1]);
        fprintf(stderr, "Try '%s run --help'.\n", kProgram);
        return kRunFailed;
    }
  }
  if (rc != 0) return rc;
  if (optind >= argc) {
    fprintf(stderr, "%s run: no command given\nUsage: %s run [OPTIONS] [--] COMMAND [ARGS...]\n",
            kProgram, kProgram);
    return kRunFailed;
  }
  if (!include.empty()) env.emplace_back("UPCACHE_INCLUDE", include);
  if (!exclude.empty()) env.emplace_back("UPCACHE_EXCLUDE", exclude);

  std::string lib, error;
  if (!find_library(lib_flag, &lib, &error)) {
    fprintf(stderr, "%s run: %s\n", kProgram, error.c_str());
    return kRunFailed;
  }
  // Prepend to LD_PRELOAD (unless it is already there).
  std::string preload = lib;
  if (const char* old = getenv("LD_PRELOAD"); old && *old) {
    std::string o = old;
    bool present = false;
    size_t start = 0;
    while (start <= o.size()) {
      size_t end = o.find_first_of(": ", start);
      if (end == std::string::npos) end = o.size();
      if (o.compare(start, end - start, lib) == 0) present = true;
      start = end + 1;
    }
    preload = present ? o : lib + ":" + o;
  }
  const std::string run_id = make_run_id();
  env.emplace_back("LD_PRELOAD", preload);
  env.emplace_back("UPCACHE_RUN_ID", run_id);
  // Kept for the whole tree so that the summary can read processes that have
  // exited; removed below unless the user asked to keep them.
  env.emplace_back("UPCACHE_STATS_KEEP", "1");
  for (const auto& [name, value] : env) {
    if (setenv(name.c_str(), value.c_str(), 1) != 0) {
      fprintf(stderr, "%s run: cannot set %s: %s\n", kProgram, name.c_str(), strerror(errno));
      return kRunFailed;
    }
  }

  // Block the forwarded signals until the child's pid is known.
  sigset_t block, old_mask;
  sigemptyset(&block);
  for (int s : kForwarded) sigaddset(&block, s);
  sigprocmask(SIG_BLOCK, &block, &old_mask);
  struct sigaction sa{}, old_sa[4];
  sa.sa_sigaction = forward;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (int i = 0; i < 4; ++i) sigaction(kForwarded[i], &sa, &old_sa[i]);

  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) {
    fprintf(stderr, "%s run: pipe: %s\n", kProgram, strerror(errno));
    return kRunFailed;
  }
  const double start = monotonic();
  pid_t child = fork();
  if (child < 0) {
    fprintf(stderr, "%s run: fork: %s\n", kProgram, strerror(errno));
    return kRunFailed;
  }
  if (child == 0) {
    for (int i = 0; i < 4; ++i) sigaction(kForwarded[i], &old_sa[i], nullptr);
    sigprocmask(SIG_SETMASK, &old_mask, nullptr);
    close(report[0]);
    execvp(argv[optind], argv + optind);
    int e = errno;
    ssize_t w = write(report[1], &e, sizeof e);
    (void)w;
    _exit(e == ENOENT ? kNotFound : kCannotExecute);
  }
  g_child = child;
  sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  close(report[1]);
  int exec_errno = 0;
  ssize_t got;
  do got = read(report[0], &exec_errno, sizeof exec_errno);
  while (got < 0 && errno == EINTR);
  close(report[0]);

  int status = 0;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) {
      fprintf(stderr, "%s run: waitpid: %s\n", kProgram, strerror(errno));
      return kRunFailed;
    }
  }
  g_child = 0;
  const double elapsed = monotonic() - start;
  if (got == sizeof exec_errno) {
    fprintf(stderr, "%s run: %s: %s\n", kProgram, argv[optind], strerror(exec_errno));
    return exec_errno == ENOENT ? kNotFound : kCannotExecute;
  }

  std::vector<std::string> errors;
  std::vector<Proc> procs = gather_run(run_id, &errors);
  if (!quiet) {
    for (const auto& e : errors) fprintf(stderr, "%s: %s\n", kProgram, e.c_str());
    print_summary(procs, elapsed, disabled);
    if (keep && !procs.empty()) {
      std::string pids;
      for (const Proc& p : procs) pids += " " + std::to_string(p.seg().pid);
      fprintf(stderr, "upcache: statistics kept: upcache stat%s\n", pids.c_str());
    }
  }
  if (!keep) {
    for (const Proc& p : procs) {
      if (p.state == stats::WriterState::kRunning) {
        // Still running (a daemon of the tree): it removes its own at exit.
        std::string e;
        stats::set_segment_keep(p.entry.path, false, &e);
      } else {
        unlink(p.entry.path.c_str());
      }
    }
  }

  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return kRunFailed;
}

}  // namespace upcache::tool
