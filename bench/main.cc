// upcache-bench: the A/B harness against the kernel's page cache.
//
// For every workload and repetition it runs the modes in alternation
// (kernel then upcache, upcache then kernel on the next repetition), each in
// a fresh worker process (bench/worker.h), and reports medians, spread and
// ratios (bench/report.h).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench/options.h"
#include "bench/plot.h"
#include "bench/report.h"
#include "bench/runner.h"
#include "bench/worker.h"
#include "bench/workload.h"

using namespace upcache::bench;

namespace {

// The modes a workload runs in, in the order of one repetition.
// `direct_ok`: the file can be opened with O_DIRECT (not on tmpfs, say), so
// the device limit can be measured.
std::vector<Mode> modes_for(const Workload& w, const Options& o, unsigned rep, bool direct_ok) {
  std::vector<Mode> order;
  bool kernel_first = rep % 2 == 0;
  auto pair = [&](Mode k, Mode u) {
    if (kernel_first) { order.push_back(k); order.push_back(u); }
    else { order.push_back(u); order.push_back(k); }
  };
  if (w.kind != Kind::kPipe) pair(Mode::kKernelCold, Mode::kUpcacheCold);
  pair(Mode::kKernelWarm, Mode::kUpcacheWarm);
  if (reads_file(w.kind)) order.push_back(Mode::kLimit);
  if (direct_ok && has_device_limit(w.kind)) order.push_back(Mode::kDevice);
  if (o.modes.empty()) return order;
  std::vector<Mode> kept;
  for (Mode m : order)
    for (Mode want : o.modes)
      if (m == want) kept.push_back(m);
  return kept;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "--worker") == 0) return worker_main(argc - 1, argv + 1);

  Options o;
  int code = 0;
  if (parse_options(argc, argv, &o, &code)) return code;

  std::vector<Workload> workloads;
  std::string error;
  if (!o.cmd.empty()) {
    Workload w;
    w.kind = Kind::kCmd;
    w.cmd = o.cmd;
    workloads.push_back(w);
  } else {
    for (const auto& name : o.workloads.empty() ? default_workloads() : o.workloads) {
      Workload w;
      if (!parse_workload(name, o.threads, &w, &error)) {
        fprintf(stderr, "upcache-bench: %s (see --help)\n", error.c_str());
        return 2;
      }
      w.ops = o.ops;
      workloads.push_back(w);
    }
  }

  Report report;
  report.reps = o.reps;
  bool needs_upcache = o.modes.empty();
  for (Mode m : o.modes) needs_upcache |= is_upcache(m);
  if (needs_upcache && !find_library(o.lib, &report.lib, &error)) {
    fprintf(stderr, "upcache-bench: %s\n", error.c_str());
    return 1;
  }

  bool needs_file = false;
  for (const auto& w : workloads) needs_file |= reads_file(w.kind);
  bool remove_file = false;
  bool direct_ok = false;
  if (needs_file) {
    if (o.file.empty()) {
      o.file = o.dir + "/upcache-bench-" + format_size(o.size) + ".dat";
      struct stat st{};
      remove_file = !o.keep && stat(o.file.c_str(), &st) != 0;
      if (!o.quiet) fprintf(stderr, "upcache-bench: preparing %s\n", o.file.c_str());
      if (!make_file(o.file, o.size, &error)) {
        fprintf(stderr, "upcache-bench: %s\n", error.c_str());
        return 1;
      }
    }
    struct stat st{};
    if (stat(o.file.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      fprintf(stderr, "upcache-bench: %s: not a readable regular file\n", o.file.c_str());
      return 1;
    }
    report.file = o.file;
    report.file_size = st.st_size;
    int probe = open(o.file.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
    direct_ok = probe >= 0;
    if (probe >= 0) close(probe);
  }
  report.drop_method = access("/proc/sys/vm/drop_caches", W_OK) == 0 ? "drop_caches" : "fadvise";

  int status = 0;
  for (const auto& base : workloads) {
    WorkloadResult res;
    res.name = base.kind == Kind::kCmd ? "cmd" : base.name();
    for (unsigned rep = 0; rep < o.reps && status == 0; ++rep) {
      for (Mode m : modes_for(base, o, rep, direct_ok)) {
        Workload w = base;
        size_workload(&w, report.file_size, is_cold(m));
        Sample s;
        const std::string& target = w.kind == Kind::kCmd ? w.cmd : o.file;
        if (!run_worker(w, m, target, report.lib, o.seed + rep, &s, &error)) {
          fprintf(stderr, "upcache-bench: %s\n", error.c_str());
          status = 1;
          break;
        }
        if (!o.quiet)
          fprintf(stderr, "  %-18s %-13s rep %u/%u  %.6fs\n", res.name.c_str(), mode_name(m), rep + 1,
                  o.reps, s.seconds);
        res.samples[m].push_back(s);
      }
    }
    for (const auto& [m, v] : res.samples) res.summary[m] = summarize(v);
    report.results.push_back(std::move(res));
    if (status) break;
  }
  if (remove_file) unlink(o.file.c_str());

  switch (o.format) {
    case Format::kTable: print_table(stdout, report); break;
    case Format::kJson: print_json(stdout, report); break;
    case Format::kCsv: print_csv(stdout, report); break;
  }
  if (!o.plot.empty() && !plot_ratios(report, o.plot, &error)) {
    fprintf(stderr, "upcache-bench: --plot: %s\n", error.c_str());
    status = status ? status : 1;
  }
  return status;
}
