// Results, their statistics (median, min/max, quartiles), the ratios
// kernel/upcache and "of the limit", and the three text formats.
#pragma once

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "bench/runner.h"

namespace upcache::bench {

struct Summary {
  double median = 0, min = 0, max = 0, q1 = 0, q3 = 0;
  uint64_t bytes = 0;
  long maxrss_kib = 0;  // median over the runs
  double mib_s() const { return median > 0 ? bytes / median / 1048576.0 : 0; }
};
Summary summarize(const std::vector<Sample>& samples);

struct WorkloadResult {
  std::string name;
  std::map<Mode, std::vector<Sample>> samples;
  std::map<Mode, Summary> summary;
  // 0 when a side is missing.
  double ratio_cold() const;         // kernel-cold / upcache-cold
  double ratio_warm() const;         // kernel-warm / upcache-warm
  double kernel_of_limit() const;    // limit / kernel-warm (1 = at the limit)
  double upcache_of_limit() const;   // limit / upcache-warm
  double kernel_of_device() const;   // device / kernel-cold
  double upcache_of_device() const;  // device / upcache-cold
};

struct Report {
  std::string file;
  uint64_t file_size = 0;
  unsigned reps = 0;
  std::string lib;
  std::string drop_method;
  std::vector<WorkloadResult> results;
};

void print_table(FILE* out, const Report& r);
void print_json(FILE* out, const Report& r);
void print_csv(FILE* out, const Report& r);

}  // namespace upcache::bench
