// Command line of upcache-bench (the harness, not the worker).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/runner.h"

namespace upcache::bench {

enum class Format { kTable, kJson, kCsv };

struct Options {
  std::vector<std::string> workloads;  // empty: default_workloads()
  std::vector<Mode> modes;             // empty: all
  std::string file;                    // empty: generate
  std::string dir = ".";
  uint64_t size = 1ull << 30;
  unsigned reps = 5;
  unsigned threads = 2;
  uint64_t ops = 0;                    // 0: per workload
  uint64_t seed = 1;
  std::string cmd;
  std::string lib;
  Format format = Format::kTable;
  std::string plot;
  bool keep = false;                   // keep the generated file
  bool quiet = false;
};

// Parses argv. Returns 0 to go on, or an exit status (help printed: 0;
// error printed: 2) to stop with.
int parse_options(int argc, char** argv, Options* o, int* exit_code);
void print_usage(FILE* out);

}  // namespace upcache::bench
