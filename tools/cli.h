// The subcommands of the `upcache` command and what they share.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/stats_segment.h"

namespace upcache::tool {

int cmd_run(int argc, char** argv);    // run_cmd.cc
int cmd_stat(int argc, char** argv);   // stat_cmd.cc
int cmd_ls(int argc, char** argv);     // stat_cmd.cc
int cmd_clean(int argc, char** argv);  // stat_cmd.cc

// One process as seen through its statistics segment.
struct Proc {
  stats::SegmentEntry entry;
  std::unique_ptr<stats::SegmentView> view;
  stats::WriterState state = stats::WriterState::kRunning;
  stats::Totals totals;
  double elapsed = 0;  // seconds from creation to exit (or to now)

  const stats::Segment& seg() const { return view->seg(); }
  // Reads the counters and the state again.
  void refresh();
};

// The readable segments of the user (pids empty: all of them; otherwise
// those of the given pids, in that order). Problems go to *errors, one per
// line; a pid without a segment is one of them.
std::vector<Proc> gather(const std::vector<int>& pids, std::vector<std::string>* errors);

// Segments whose header carries this run id.
std::vector<Proc> gather_run(const std::string& run_id, std::vector<std::string>* errors);

// Name of the program for messages ("upcache").
extern const char* const kProgram;

}  // namespace upcache::tool

namespace upcache::tool {

// One line describing a counter (Prometheus HELP, `upcache stat --help`).
const char* counter_help(unsigned counter);

}  // namespace upcache::tool
