// Option parsing and --help of upcache-bench.
#include "bench/options.h"

#include <getopt.h>

#include <cerrno>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/config.h"

namespace upcache::bench {

void print_usage(FILE* out) {
  fprintf(out,
          "Usage: upcache-bench [OPTIONS]\n"
          "       upcache-bench [OPTIONS] --cmd 'COMMAND'\n"
          "Times the same reads on the kernel's page cache and on upcache (LD_PRELOAD of\n"
          "libupcache.so), alternating, each measurement in a fresh process, and reports\n"
          "medians, spread and the ratio kernel time / upcache time (above 1: upcache\n"
          "is faster), plus the memcpy limit of each warm pattern and the O_DIRECT\n"
          "device limit of each cold random one.\n"
          "\n"
          "Options:\n"
          "  -w, --workload NAME  run this workload (repeatable; default: all of the\n"
          "                       default set). NAME is one of\n"
          "                       %s\n"
          "                       SIZE is the request size (64, 4K, 1M ...)\n"
          "  -m, --mode MODE      run only this mode (repeatable): kernel-cold,\n"
          "                       kernel-warm, upcache-cold, upcache-warm, limit,\n"
          "                       device\n"
          "  -f, --file PATH      file to read (default: generate one in --dir)\n"
          "  -s, --size SIZE      size of the generated file (default 1G)\n"
          "  -d, --dir DIR        where to generate it (default .)\n"
          "      --keep           keep the generated file (default: removed at exit)\n"
          "  -r, --reps N         repetitions of each mode, alternating (default 5)\n"
          "  -t, --threads N      threads of the threads workload (default 2)\n"
          "      --ops N          calls per random workload (default: per workload)\n"
          "      --seed N         seed of the random offsets (default 1)\n"
          "  -c, --cmd COMMAND    time an external command (/bin/sh -c) instead\n"
          "      --lib PATH       libupcache.so to preload (default: $UPCACHE_LIB, or\n"
          "                       ../shim/ or ../lib/ beside this program, or the\n"
          "                       installed library)\n"
          "      --json           JSON output\n"
          "      --csv            CSV output\n"
          "      --plot FILE.png  plot the ratios with gnuplot\n"
          "  -q, --quiet          no progress on stderr\n"
          "  -h, --help           this help\n"
          "\n"
          "Warm modes do one untimed pass of the same pattern in the same process, then\n"
          "time the second (upcache's cache lives in the process). UPCACHE_* variables\n"
          "apply to the upcache runs. See upcache-bench(1).\n",
          kind_list());
}

int parse_options(int argc, char** argv, Options* o, int* exit_code) {
  enum { kJson = 256, kCsv, kPlot, kLib, kOps, kSeed, kKeep };
  static const option longopts[] = {
      {"workload", required_argument, nullptr, 'w'}, {"mode", required_argument, nullptr, 'm'},
      {"file", required_argument, nullptr, 'f'},     {"size", required_argument, nullptr, 's'},
      {"dir", required_argument, nullptr, 'd'},      {"reps", required_argument, nullptr, 'r'},
      {"threads", required_argument, nullptr, 't'},  {"cmd", required_argument, nullptr, 'c'},
      {"ops", required_argument, nullptr, kOps},     {"seed", required_argument, nullptr, kSeed},
      {"lib", required_argument, nullptr, kLib},     {"json", no_argument, nullptr, kJson},
      {"csv", no_argument, nullptr, kCsv},           {"plot", required_argument, nullptr, kPlot},
      {"keep", no_argument, nullptr, kKeep},         {"quiet", no_argument, nullptr, 'q'},
      {"help", no_argument, nullptr, 'h'},           {nullptr, 0, nullptr, 0}};
  auto bad = [&](const char* what, const char* value) {
    fprintf(stderr, "upcache-bench: bad %s '%s' (see --help)\n", what, value);
    *exit_code = 2;
    return 1;
  };
  auto number = [](const char* s, uint64_t* v) {
    char* end = nullptr;
    errno = 0;
    *v = strtoull(s, &end, 10);
    return errno == 0 && end != s && *end == 0;
  };
  int c;
  while ((c = getopt_long(argc, argv, "w:m:f:s:d:r:t:c:qh", longopts, nullptr)) != -1) {
    uint64_t v = 0;
    switch (c) {
      case 'w': o->workloads.push_back(optarg); break;
      case 'm': {
        Mode m;
        if (!parse_mode(optarg, &m)) return bad("mode", optarg);
        o->modes.push_back(m);
        break;
      }
      case 'f': o->file = optarg; break;
      case 's':
        if (!parse_size(optarg, &o->size) || o->size < 4096) return bad("size (at least 4K)", optarg);
        break;
      case 'd': o->dir = optarg; break;
      case 'r':
        if (!number(optarg, &v) || v < 1 || v > 1000) return bad("repetition count", optarg);
        o->reps = v;
        break;
      case 't':
        if (!number(optarg, &v) || v < 1 || v > 256) return bad("thread count", optarg);
        o->threads = v;
        break;
      case 'c': o->cmd = optarg; break;
      case kOps:
        if (!number(optarg, &v) || v < 1) return bad("operation count", optarg);
        o->ops = v;
        break;
      case kSeed:
        if (!number(optarg, &o->seed)) return bad("seed", optarg);
        break;
      case kLib: o->lib = optarg; break;
      case kJson: o->format = Format::kJson; break;
      case kCsv: o->format = Format::kCsv; break;
      case kPlot: o->plot = optarg; break;
      case kKeep: o->keep = true; break;
      case 'q': o->quiet = true; break;
      case 'h': print_usage(stdout); *exit_code = 0; return 1;
      default: *exit_code = 2; return 1;
    }
  }
  if (optind < argc) return bad("argument", argv[optind]);
  if (!o->cmd.empty() && !o->workloads.empty()) {
    fprintf(stderr, "upcache-bench: --cmd and --workload are exclusive\n");
    *exit_code = 2;
    return 1;
  }
  return 0;
}

}  // namespace upcache::bench
