// upcache: run a program on the user-space page cache and watch its statistics.
//
//   upcache run [OPTIONS] [--] COMMAND [ARGS...]
//   upcache stat [OPTIONS] [PID...]
//   upcache ls
//   upcache clean
#include <cstdio>
#include <cstring>

#include "core/stats.h"
#include "tools/cli.h"

#ifndef UPCACHE_VERSION
#define UPCACHE_VERSION "unknown"
#endif

namespace upcache::tool {

const char* const kProgram = "upcache";

namespace {

void usage(FILE* f) {
  fprintf(f,
          "Usage: upcache COMMAND [OPTIONS]\n"
          "A user-space page cache for unmodified programs, and its statistics.\n"
          "\n"
          "Commands:\n"
          "  run [OPTIONS] [--] CMD [ARGS...]  run CMD under libupcache.so, then summarize\n"
          "  stat [OPTIONS] [PID...]           statistics of processes (-i SECONDS to watch,\n"
          "                                    --json, --prom, --files, --callers)\n"
          "  ls                                list statistics segments\n"
          "  clean                             remove segments of processes that are gone\n"
          "\n"
          "  -h, --help                        this help ('upcache COMMAND --help' for more)\n"
          "  -V, --version                     version\n"
          "\n"
          "See upcache(1) and, for the environment variables and counters, upcache(7).\n");
}

}  // namespace
}  // namespace upcache::tool

int main(int argc, char** argv) {
  using namespace upcache::tool;
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char* cmd = argv[1];
  if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
    printf("upcache %s (statistics layout version %u)\n", UPCACHE_VERSION,
           upcache::stats::kVersion);
    return 0;
  }
  if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
  if (!strcmp(cmd, "stat")) return cmd_stat(argc - 1, argv + 1);
  if (!strcmp(cmd, "ls")) return cmd_ls(argc - 1, argv + 1);
  if (!strcmp(cmd, "clean")) return cmd_clean(argc - 1, argv + 1);
  fprintf(stderr, "%s: unknown command '%s'\nTry 'upcache --help'.\n", kProgram, cmd);
  return 2;
}
