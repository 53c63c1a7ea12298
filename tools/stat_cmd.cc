// upcache stat, upcache ls, upcache clean: reading the statistics segments.
#include <getopt.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tools/cli.h"
#include "tools/format.h"
#include "tools/symbolize.h"

namespace upcache::tool {

using stats::Totals;
using stats::WriterState;

const char* counter_help(unsigned c) {
  static const char* const help[stats::kCounterCount] = {
      "Read-family calls served by upcache.",
      "Bytes returned by the read-family calls served by upcache.",
      "Cache pages a read found up to date or already in flight.",
      "Cache pages a read had to wait for the disk to fill.",
      "Cache pages read ahead of the program.",
      "Read-ahead pages that a read later used.",
      "Read-ahead pages evicted before any read used them.",
      "Cache frames taken from one page to hold another.",
      "Bytes read from disk with O_DIRECT.",
      "Bytes read from disk through the buffered fallback (O_DIRECT refused).",
      "Intercepted calls passed straight to the kernel.",
      "Backend reads that failed.",
      "Reads sent to the kernel because upcache held no lease on the file (coherence).",
      "Cache pages dropped because another process opened the file for writing or truncated it.",
      "Read leases taken.",
      "Read leases broken by another process (an open for writing, a truncate).",
  };
  return c < stats::kCounterCount ? help[c] : "";
}

namespace {

double now_realtime() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double monotonic() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

bool parse_pid(const char* s, int* pid) {
  char* end = nullptr;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v <= 0 || v > 0x7fffffff) return false;
  *pid = static_cast<int>(v);
  return true;
}

uint64_t c(const Totals& t, stats::Counter k) { return t.counters[k]; }

std::string hit_ratio(const Totals& t) {
  return percent(c(t, stats::kHits), c(t, stats::kHits) + c(t, stats::kMisses));
}
std::string ra_effectiveness(const Totals& t) {
  return percent(c(t, stats::kReadaheadHits), c(t, stats::kReadaheadPages));
}
std::string rate(double bytes, double seconds) {
  if (seconds <= 0) return "-";
  return human_bytes(bytes / seconds) + "/s";
}

}  // namespace

void Proc::refresh() {
  state = view->state();
  totals = stats::totals(view->seg());
  const stats::Segment& s = view->seg();
  uint64_t end = s.end_time_ns.load(std::memory_order_relaxed);
  double start = static_cast<double>(s.start_time_ns) * 1e-9;
  double stop = end != 0 ? static_cast<double>(end) * 1e-9 : now_realtime();
  elapsed = std::max(0.0, stop - start);
}

std::vector<Proc> gather(const std::vector<int>& pids, std::vector<std::string>* errors) {
  std::vector<Proc> out;
  std::vector<stats::SegmentEntry> entries;
  std::string error;
  if (stats::list_segments(nullptr, &entries, &error) < 0) {
    errors->push_back(error);
    return out;
  }
  auto open_one = [&](const stats::SegmentEntry& e, bool explicit_pid) {
    int err = 0;
    auto view = stats::open_segment(e.path, &error, &err);
    if (!view) {
      // A segment being created right now is not worth a word.
      if (err != -ENOENT && (explicit_pid || error.find("empty") == std::string::npos))
        errors->push_back(error);
      return;
    }
    Proc p;
    p.entry = e;
    p.view = std::move(view);
    p.refresh();
    out.push_back(std::move(p));
  };
  if (pids.empty()) {
    for (const auto& e : entries) open_one(e, false);
    return out;
  }
  for (int pid : pids) {
    size_t before = out.size();
    bool named = false;
    for (const auto& e : entries) {
      if (e.pid != pid) continue;
      named = true;
      open_one(e, true);
    }
    if (out.size() == before && !named) {
      if (kill(pid, 0) == 0 || errno == EPERM)
        errors->push_back("process " + std::to_string(pid) +
                          " has no upcache statistics (not started under upcache, "
                          "UPCACHE_STATS=0, or owned by another user)");
      else
        errors->push_back("no process " + std::to_string(pid) +
                          " and no statistics kept for it (UPCACHE_STATS_KEEP=1 keeps them "
                          "after exit)");
    }
  }
  return out;
}

std::vector<Proc> gather_run(const std::string& run_id, std::vector<std::string>* errors) {
  std::vector<Proc> all = gather({}, errors), out;
  for (auto& p : all)
    if (run_id == std::string(p.seg().run_id, strnlen(p.seg().run_id, sizeof p.seg().run_id)))
      out.push_back(std::move(p));
  return out;
}

namespace {

std::string command_of(const stats::Segment& s) {
  return std::string(s.command, strnlen(s.command, sizeof s.command));
}

// ---------------------------------------------------------------------------
// Plain tables.

void print_table(const std::vector<Proc>& procs) {
  Table t({"PID", "STATE", "TIME", "READS", "READ", "RATE", "HIT%", "HITS", "MISSES", "RA-PAGES",
           "RA-EFF", "WASTED", "EVICT", "DIRECT", "BUFFERED", "PASS", "COH-PASS", "COH-DROP", "BROKEN",
           "ERR", "CACHED", "COMMAND"},
          {false, true, false, false, false, false, false, false, false, false, false, false, false,
           false, false, false, false, false, false, false, false, true});
  Totals total;
  for (const Proc& p : procs) {
    const Totals& x = p.totals;
    total.add(x);
    t.row({std::to_string(p.seg().pid), stats::writer_state_name(p.state), duration(p.elapsed),
           std::to_string(c(x, stats::kReads)), human_bytes(double(c(x, stats::kBytesRead))),
           rate(double(c(x, stats::kBytesRead)), p.elapsed), hit_ratio(x),
           std::to_string(c(x, stats::kHits)), std::to_string(c(x, stats::kMisses)),
           std::to_string(c(x, stats::kReadaheadPages)), ra_effectiveness(x),
           std::to_string(c(x, stats::kReadaheadWasted)), std::to_string(c(x, stats::kEvictions)),
           human_bytes(double(c(x, stats::kDirectBytes))),
           human_bytes(double(c(x, stats::kBufferedBytes))),
           std::to_string(c(x, stats::kPassthroughCalls)),
           std::to_string(c(x, stats::kCoherencePassthrough)), std::to_string(c(x, stats::kCoherenceDrops)),
           std::to_string(c(x, stats::kLeasesBroken)), std::to_string(c(x, stats::kIoErrors)),
           human_bytes(double(x.cached_bytes)) + "/" + human_bytes(double(x.capacity_bytes)),
           command_of(p.seg())});
  }
  const Totals& x = total;
  t.row({"TOTAL", std::to_string(procs.size()) + (procs.size() == 1 ? " proc" : " procs"), "",
         std::to_string(c(x, stats::kReads)), human_bytes(double(c(x, stats::kBytesRead))), "",
         hit_ratio(x), std::to_string(c(x, stats::kHits)), std::to_string(c(x, stats::kMisses)),
         std::to_string(c(x, stats::kReadaheadPages)), ra_effectiveness(x),
         std::to_string(c(x, stats::kReadaheadWasted)), std::to_string(c(x, stats::kEvictions)),
         human_bytes(double(c(x, stats::kDirectBytes))),
         human_bytes(double(c(x, stats::kBufferedBytes))),
         std::to_string(c(x, stats::kPassthroughCalls)),
         std::to_string(c(x, stats::kCoherencePassthrough)), std::to_string(c(x, stats::kCoherenceDrops)),
         std::to_string(c(x, stats::kLeasesBroken)), std::to_string(c(x, stats::kIoErrors)),
         human_bytes(double(x.cached_bytes)) + "/" + human_bytes(double(x.capacity_bytes)), ""});
  fputs(t.render().c_str(), stdout);
}

void print_files(const Proc& p, size_t top) {
  auto files = stats::file_totals(p.seg());
  printf("\nfiles of pid %d (%s), by bytes read:\n", p.seg().pid, command_of(p.seg()).c_str());
  if (files.empty()) {
    printf("  (none recorded)\n");
    return;
  }
  Table t({"BYTES", "HITS", "MISSES", "RA-PAGES", "HIT%", "KERNEL", "COHERENCE", "PATH"},
          {false, false, false, false, false, false, true, true});
  size_t shown = 0;
  for (const auto& f : files) {
    if (shown++ == top) break;
    const uint64_t* k = f.counters;
    t.row({human_bytes(double(k[stats::kFileBytes])), std::to_string(k[stats::kFileHits]),
           std::to_string(k[stats::kFileMisses]), std::to_string(k[stats::kFileReadahead]),
           percent(k[stats::kFileHits], k[stats::kFileHits] + k[stats::kFileMisses]),
           std::to_string(k[stats::kFilePassthrough]), stats::kCoherenceNames[f.coherence], f.path});
  }
  fputs(t.render("  ").c_str(), stdout);
  if (files.size() > top) printf("  ... and %zu more (--top N)\n", files.size() - top);
}

// A call site as text: the frames outside libupcache.so, innermost first.
struct Site {
  stats::CallerTotals totals;
  std::vector<std::string> frames;
};

std::vector<Site> describe_callers(const Proc& p, bool* symbolized) {
  std::vector<Site> sites;
  auto callers = stats::caller_totals(p.seg());
  std::unique_ptr<Symbolizer> sym;
  if (p.state == WriterState::kRunning) sym = std::make_unique<Symbolizer>(p.seg().pid);
  *symbolized = sym && sym->ok();
  for (const auto& ct : callers) {
    Site s;
    s.totals = ct;
    bool skipping = true;
    for (int i = 0; i < ct.depth; ++i) {
      if (*symbolized) {
        Symbolizer::Frame f = sym->lookup(ct.pcs[i]);
        // The shim's own frames say nothing about the program.
        if (skipping && base_name(f.module).rfind("libupcache", 0) == 0) continue;
        skipping = false;
        s.frames.push_back(sym->describe(ct.pcs[i]));
      } else {
        char buf[32];
        snprintf(buf, sizeof buf, "0x%" PRIx64, ct.pcs[i]);
        s.frames.push_back(buf);
      }
    }
    sites.push_back(std::move(s));
  }
  return sites;
}

void print_callers(const Proc& p, size_t top) {
  bool symbolized = false;
  auto sites = describe_callers(p, &symbolized);
  printf("\ncall sites of pid %d (%s)", p.seg().pid, command_of(p.seg()).c_str());
  if (p.seg().callers_every) printf(", sampled 1 read in %u", p.seg().callers_every);
  printf(":\n");
  if (sites.empty()) {
    printf("  (none recorded%s)\n", p.seg().callers_every == 0
                                       ? "; run with UPCACHE_CALLERS=N, e.g. upcache run --callers 100"
                                       : "");
    return;
  }
  if (!symbolized)
    printf("  (process not running: raw addresses, no symbols; its /proc/%d/maps is gone)\n",
           p.seg().pid);
  for (int by_bytes = 0; by_bytes < 2; ++by_bytes) {
    std::stable_sort(sites.begin(), sites.end(), [&](const Site& a, const Site& b) {
      return by_bytes ? a.totals.bytes > b.totals.bytes : a.totals.misses > b.totals.misses;
    });
    printf("  by %s:\n", by_bytes ? "bytes" : "misses");
    Table t({"MISSES", "BYTES", "SAMPLES", "CALL SITE (innermost first)"},
            {false, false, false, true});
    size_t shown = 0;
    for (const Site& s : sites) {
      if (shown++ == top) break;
      std::string where;
      for (size_t i = 0; i < s.frames.size() && i < 4; ++i) where += (i ? " < " : "") + s.frames[i];
      if (where.empty()) where = "(inside libupcache.so)";
      t.row({std::to_string(s.totals.misses), human_bytes(double(s.totals.bytes)),
             std::to_string(s.totals.samples), where});
    }
    fputs(t.render("    ").c_str(), stdout);
  }
}

// ---------------------------------------------------------------------------
// JSON.

struct Json {
  bool pretty;
  std::string out;
  void nl(int level) {
    if (pretty) {
      out += '\n';
      out.append(static_cast<size_t>(2 * level), ' ');
    }
  }
  const char* sep() const { return pretty ? ", " : ","; }
  const char* colon() const { return pretty ? ": " : ":"; }
  void key(const char* k) {
    out += json_string(k);
    out += colon();
  }
  void counters(const Totals& t) {
    out += '{';
    for (unsigned k = 0; k < stats::kCounterCount; ++k) {
      key(stats::kCounterNames[k]);
      out += std::to_string(t.counters[k]);
      out += sep();
    }
    key("cached_bytes");
    out += std::to_string(t.cached_bytes);
    out += sep();
    key("capacity_bytes");
    out += std::to_string(t.capacity_bytes);
    out += '}';
  }
};

std::string to_json(const std::vector<Proc>& procs, bool pretty, bool with_callers) {
  Json j{pretty, {}};
  Totals total;
  j.out += '{';
  j.nl(1);
  j.key("processes");
  j.out += '[';
  for (size_t i = 0; i < procs.size(); ++i) {
    const Proc& p = procs[i];
    total.add(p.totals);
    if (i) j.out += ',';
    j.nl(2);
    j.out += '{';
    j.nl(3);
    j.key("pid");
    j.out += std::to_string(p.seg().pid) + ",";
    j.nl(3);
    j.key("command");
    j.out += json_string(command_of(p.seg())) + ",";
    j.nl(3);
    j.key("page_size");
    j.out += std::to_string(p.seg().page_size) + ",";
    j.nl(3);
    j.key("counters");
    j.counters(p.totals);
    j.out += ',';
    j.nl(3);
    j.key("latency");
    j.out += '{';
    for (unsigned h = 0; h < stats::kHistogramCount; ++h) {
      if (h) j.out += j.sep();
      j.key(stats::kHistogramNames[h]);
      j.out += '[';
      for (int b = 0; b < stats::kBuckets; ++b) {
        if (b) j.out += ',';
        j.out += std::to_string(p.totals.latency[h][b]);
      }
      j.out += ']';
    }
    j.out += "},";
    j.nl(3);
    j.key("files");
    j.out += '[';
    auto files = stats::file_totals(p.seg());
    for (size_t f = 0; f < files.size(); ++f) {
      if (f) j.out += ',';
      j.nl(4);
      j.out += '{';
      j.key("path");
      j.out += json_string(files[f].path);
      j.out += j.sep();
      j.key("coherence");
      j.out += json_string(stats::kCoherenceNames[files[f].coherence]);
      for (unsigned k = 0; k < stats::kFileCounterCount; ++k) {
        j.out += j.sep();
        j.key(stats::kFileCounterNames[k]);
        j.out += std::to_string(files[f].counters[k]);
      }
      j.out += '}';
    }
    if (!files.empty()) j.nl(3);
    j.out += ']';
    if (with_callers) {
      bool symbolized = false;
      auto sites = describe_callers(p, &symbolized);
      std::stable_sort(sites.begin(), sites.end(),
                       [](const Site& a, const Site& b) { return a.totals.misses > b.totals.misses; });
      j.out += ',';
      j.nl(3);
      j.key("callers");
      j.out += '[';
      for (size_t s = 0; s < sites.size(); ++s) {
        if (s) j.out += ',';
        j.nl(4);
        j.out += '{';
        j.key("misses");
        j.out += std::to_string(sites[s].totals.misses) + j.sep();
        j.key("bytes");
        j.out += std::to_string(sites[s].totals.bytes) + j.sep();
        j.key("samples");
        j.out += std::to_string(sites[s].totals.samples) + j.sep();
        j.key("frames");
        j.out += '[';
        for (size_t f = 0; f < sites[s].frames.size(); ++f)
          j.out += (f ? j.sep() : "") + json_string(sites[s].frames[f]);
        j.out += "]}";
      }
      if (!sites.empty()) j.nl(3);
      j.out += ']';
    }
    j.nl(2);
    j.out += '}';
  }
  if (!procs.empty()) j.nl(1);
  j.out += "],";
  j.nl(1);
  j.key("total");
  j.counters(total);
  j.nl(0);
  j.out += "}\n";
  return j.out;
}

// ---------------------------------------------------------------------------
// Prometheus text exposition format (version 0.0.4).

std::string to_prom(const std::vector<Proc>& procs) {
  // One series per pid: segments of one pid (an exec chain) are summed.
  std::map<int, Totals> by_pid;
  std::map<int, uint64_t> page_size;
  for (const Proc& p : procs) {
    by_pid[p.seg().pid].add(p.totals);
    page_size[p.seg().pid] = p.seg().page_size;
  }
  std::string out;
  auto family = [&](const std::string& name, const char* type, const char* help) {
    out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  auto sample = [&](const std::string& name, int pid, uint64_t v) {
    out += name + "{pid=\"" + std::to_string(pid) + "\"} " + std::to_string(v) + "\n";
  };
  for (unsigned k = 0; k < stats::kCounterCount; ++k) {
    std::string name = std::string("upcache_") + stats::kCounterNames[k] + "_total";
    family(name, "counter", counter_help(k));
    for (const auto& [pid, t] : by_pid) sample(name, pid, t.counters[k]);
  }
  family("upcache_cached_bytes", "gauge", "Bytes of cache frames holding file data.");
  for (const auto& [pid, t] : by_pid) sample("upcache_cached_bytes", pid, t.cached_bytes);
  family("upcache_capacity_bytes", "gauge", "Capacity of the cache (UPCACHE_SIZE).");
  for (const auto& [pid, t] : by_pid) sample("upcache_capacity_bytes", pid, t.capacity_bytes);
  family("upcache_page_size_bytes", "gauge", "Size of one cache page, the unit of page counters.");
  for (const auto& [pid, v] : page_size) sample("upcache_page_size_bytes", pid, v);
  return out;
}

// ---------------------------------------------------------------------------
// Live refresh (-i).

volatile sig_atomic_t g_stop = 0;
void on_stop(int) { g_stop = 1; }

void sleep_interruptible(double seconds) {
  double until = monotonic() + seconds;
  while (!g_stop) {
    double left = until - monotonic();
    if (left <= 0) break;
    timespec ts{static_cast<time_t>(left), static_cast<long>((left - std::floor(left)) * 1e9)};
    nanosleep(&ts, nullptr);
  }
}

struct Key {
  int pid;
  uint64_t nonce;
  bool operator<(const Key& o) const { return pid != o.pid ? pid < o.pid : nonce < o.nonce; }
};

void interval_row(Table& t, const std::string& when, const std::string& who, const Totals& d,
                  double secs, const std::string& cached, const std::string& command) {
  auto per_s = [&](uint64_t v) {
    char buf[32];
    double r = secs > 0 ? double(v) / secs : 0;
    snprintf(buf, sizeof buf, r >= 100 || r == 0 ? "%.0f" : "%.1f", r);
    return std::string(buf);
  };
  t.row({when, who, per_s(c(d, stats::kReads)), rate(double(c(d, stats::kBytesRead)), secs),
         hit_ratio(d), per_s(c(d, stats::kHits)), per_s(c(d, stats::kMisses)),
         per_s(c(d, stats::kReadaheadPages)), ra_effectiveness(d),
         per_s(c(d, stats::kReadaheadWasted)), rate(double(c(d, stats::kDirectBytes)), secs),
         rate(double(c(d, stats::kBufferedBytes)), secs), per_s(c(d, stats::kPassthroughCalls)),
         cached, command});
}

int watch(const std::vector<int>& pids, double interval, long count, bool json, bool prom) {
  struct sigaction sa{};
  sa.sa_handler = on_stop;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::map<Key, Totals> last;
  double last_time = monotonic();
  int rc = 0;
  bool seen_any = false;
  for (long report = 0; !g_stop && (count <= 0 || report < count); ++report) {
    if (report > 0) sleep_interruptible(interval);
    if (g_stop) break;
    std::vector<std::string> errors;
    std::vector<Proc> procs = gather(pids, &errors);
    if (report == 0)
      for (const auto& e : errors) fprintf(stderr, "%s: %s\n", kProgram, e.c_str());
    if (report == 0 && !errors.empty() && !pids.empty()) rc = 1;
    if (!pids.empty() && procs.empty() && (seen_any || report == 0)) {
      if (seen_any) fprintf(stderr, "%s: no process left to watch\n", kProgram);
      return rc != 0 ? rc : (seen_any ? 0 : 1);
    }
    seen_any = seen_any || !procs.empty();
    // Given pids that have all exited (kept or dead): this report is the last.
    const bool last_report = !pids.empty() && std::none_of(procs.begin(), procs.end(), [](const Proc& p) {
      return p.state == WriterState::kRunning;
    });
    double now = monotonic();
    if (json || prom) {
      std::string s = json ? to_json(procs, false, false) : to_prom(procs);
      fputs(s.c_str(), stdout);
      if (prom) fputs("\n", stdout);
      fflush(stdout);
      if (last_report) {
        fprintf(stderr, "%s: no process left to watch\n", kProgram);
        break;
      }
      continue;
    }
    Table t({"TIME", "PID", "READS/s", "READ/s", "HIT%", "HITS/s", "MISSES/s", "RA/s", "RA-EFF",
             "WASTED/s", "DIRECT/s", "BUFFERED/s", "PASS/s", "CACHED", "COMMAND"},
            {true, false, false, false, false, false, false, false, false, false, false, false,
             false, false, true});
    char when[16];
    time_t wall = time(nullptr);
    strftime(when, sizeof when, "%H:%M:%S", localtime(&wall));
    Totals total_delta;
    uint64_t cached_total = 0, capacity_total = 0;
    std::map<Key, Totals> next;
    for (const Proc& p : procs) {
      Key k{p.seg().pid, p.seg().nonce};
      auto it = last.find(k);
      // First sight: everything since the process started (like vmstat's first line).
      Totals d = it == last.end() ? p.totals : p.totals.minus(it->second);
      double secs = it == last.end() ? p.elapsed : now - last_time;
      next[k] = p.totals;
      total_delta.add(d);
      cached_total += p.totals.cached_bytes;
      capacity_total += p.totals.capacity_bytes;
      std::string who = std::to_string(p.seg().pid);
      if (p.state != WriterState::kRunning) who += std::string("(") + stats::writer_state_name(p.state) + ")";
      interval_row(t, when, who, d, secs, human_bytes(double(p.totals.cached_bytes)),
                   command_of(p.seg()));
    }
    if (procs.size() != 1)
      interval_row(t, when, "all", total_delta, report == 0 ? 0 : now - last_time,
                   human_bytes(double(cached_total)), std::to_string(procs.size()) + " processes");
    last = std::move(next);
    last_time = now;
    std::string text = t.render();
    // The header once every 20 reports, like vmstat.
    if (report % 20 != 0) text = text.substr(text.find('\n') + 1);
    fputs(text.c_str(), stdout);
    fflush(stdout);
    if (last_report) {
      fprintf(stderr, "%s: no process left to watch\n", kProgram);
      break;
    }
  }
  return rc;
}

void stat_usage(FILE* f) {
  fprintf(f,
          "Usage: upcache stat [OPTIONS] [PID...]\n"
          "Show the statistics of processes running under upcache (all of yours by default,\n"
          "running and kept).\n"
          "\n"
          "  -i, --interval SECONDS  refresh every SECONDS, printing per-interval rates\n"
          "  -c, --count N           stop after N reports (with -i)\n"
          "      --json              JSON: {\"processes\": [...], \"total\": {...}}\n"
          "      --prom              Prometheus text exposition format\n"
          "      --files             also show the top files by bytes read\n"
          "      --callers           also show the top call sites (UPCACHE_CALLERS=N)\n"
          "      --top N             rows in --files and --callers (default 10)\n"
          "  -h, --help              this help\n"
          "\n"
          "Counters (pages are cache pages, see page_size):\n");
  for (unsigned k = 0; k < stats::kCounterCount; ++k)
    fprintf(f, "  %-18s %s\n", stats::kCounterNames[k], counter_help(k));
}

}  // namespace

int cmd_stat(int argc, char** argv) {
  enum { kJson = 1000, kProm, kFiles, kCallers, kTop };
  static const option longopts[] = {
      {"interval", required_argument, nullptr, 'i'}, {"count", required_argument, nullptr, 'c'},
      {"json", no_argument, nullptr, kJson},         {"prom", no_argument, nullptr, kProm},
      {"files", no_argument, nullptr, kFiles},       {"callers", no_argument, nullptr, kCallers},
      {"top", required_argument, nullptr, kTop},     {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0}};
  double interval = 0;
  long count = 0;
  bool json = false, prom = false, files = false, callers = false;
  size_t top = 10;
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, ":i:c:h", longopts, nullptr)) != -1) {
    char* end = nullptr;
    switch (ch) {
      case 'i':
        errno = 0;
        interval = strtod(optarg, &end);
        if (errno || end == optarg || *end || !(interval > 0) || interval > 86400) {
          fprintf(stderr, "%s stat: -i wants a number of seconds (> 0), not \"%s\"\n", kProgram,
                  optarg);
          return 2;
        }
        break;
      case 'c':
        errno = 0;
        count = strtol(optarg, &end, 10);
        if (errno || end == optarg || *end || count <= 0) {
          fprintf(stderr, "%s stat: -c wants a positive count, not \"%s\"\n", kProgram, optarg);
          return 2;
        }
        break;
      case kTop: {
        errno = 0;
        long n = strtol(optarg, &end, 10);
        if (errno || end == optarg || *end || n <= 0) {
          fprintf(stderr, "%s stat: --top wants a positive number, not \"%s\"\n", kProgram, optarg);
          return 2;
        }
        top = static_cast<size_t>(n);
        break;
      }
      case kJson: json = true; break;
      case kProm: prom = true; break;
      case kFiles: files = true; break;
      case kCallers: callers = true; break;
      case 'h': stat_usage(stdout); return 0;
      case ':':
        fprintf(stderr, "%s stat: option '%s' needs a value\nTry '%s stat --help'.\n", kProgram,
                argv[optind - 1], kProgram);
        return 2;
      default:
        fprintf(stderr, "%s stat: unknown option '%s'\nTry '%s stat --help'.\n", kProgram,
                argv[optind - 1], kProgram);
        return 2;
    }
  }
  if (json && prom) {
    fprintf(stderr, "%s stat: choose one of --json and --prom\n", kProgram);
    return 2;
  }
  if (count > 0 && interval == 0) {
    fprintf(stderr, "%s stat: -c needs -i SECONDS\n", kProgram);
    return 2;
  }
  std::vector<int> pids;
  for (int i = optind; i < argc; ++i) {
    int pid = 0;
    if (!parse_pid(argv[i], &pid)) {
      fprintf(stderr, "%s stat: \"%s\" is not a process id\n", kProgram, argv[i]);
      return 2;
    }
    pids.push_back(pid);
  }
  if (interval > 0) return watch(pids, interval, count, json, prom);

  std::vector<std::string> errors;
  std::vector<Proc> procs = gather(pids, &errors);
  for (const auto& e : errors) fprintf(stderr, "%s: %s\n", kProgram, e.c_str());
  int rc = !pids.empty() && !errors.empty() ? 1 : 0;
  if (!pids.empty() && procs.empty()) return 1;
  if (json) {
    fputs(to_json(procs, true, callers).c_str(), stdout);
    return rc;
  }
  if (prom) {
    fputs(to_prom(procs).c_str(), stdout);
    return rc;
  }
  if (procs.empty()) {
    printf("no upcache statistics segments in %s (start a program with 'upcache run -- CMD')\n",
           stats::segment_dir());
    return rc;
  }
  print_table(procs);
  if (files)
    for (const Proc& p : procs) print_files(p, top);
  if (callers)
    for (const Proc& p : procs) print_callers(p, top);
  return rc;
}

int cmd_ls(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      printf("Usage: upcache ls\nList your upcache statistics segments in %s: pid, state (alive,\n"
             "kept: exited and kept, dead: gone without exiting cleanly), age, size, run id,\n"
             "segment name and command.\n",
             stats::segment_dir());
      return 0;
    }
    fprintf(stderr, "%s ls: unexpected argument '%s'\nTry '%s ls --help'.\n", kProgram, argv[i],
            kProgram);
    return 2;
  }
  std::vector<stats::SegmentEntry> entries;
  std::string error;
  if (stats::list_segments(nullptr, &entries, &error) < 0) {
    fprintf(stderr, "%s: %s\n", kProgram, error.c_str());
    return 1;
  }
  Table t({"PID", "STATE", "AGE", "SIZE", "RUN", "SEGMENT", "COMMAND"},
          {false, true, false, false, true, true, true});
  double now = now_realtime();
  for (const auto& e : entries) {
    int err = 0;
    auto view = stats::open_segment(e.path, &error, &err);
    if (!view) {
      if (err == -ENOENT) continue;
      t.row({std::to_string(e.pid), "?", "", human_bytes(double(e.file_bytes)), "", e.name,
             "(" + error.substr(error.rfind(": ") + 2) + ")"});
      continue;
    }
    const stats::Segment& s = view->seg();
    std::string run(s.run_id, strnlen(s.run_id, sizeof s.run_id));
    t.row({std::to_string(s.pid), stats::writer_state_name(view->state()),
           duration(now - double(s.start_time_ns) * 1e-9), human_bytes(double(e.file_bytes)),
           run.empty() ? "-" : run, e.name, command_of(s)});
  }
  if (t.empty()) {
    printf("no upcache statistics segments in %s\n", stats::segment_dir());
    return 0;
  }
  fputs(t.render().c_str(), stdout);
  return 0;
}

int cmd_clean(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      printf("Usage: upcache clean\nRemove your statistics segments in %s whose process is gone:\n"
             "kept segments of exited processes and segments of processes that died.\n",
             stats::segment_dir());
      return 0;
    }
    fprintf(stderr, "%s clean: unexpected argument '%s'\nTry '%s clean --help'.\n", kProgram,
            argv[i], kProgram);
    return 2;
  }
  stats::CleanResult result;
  int r = stats::clean_segments(nullptr, &result);
  for (const auto& m : result.messages) fprintf(stderr, "%s: %s\n", kProgram, m.c_str());
  if (r < 0) return 1;
  printf("removed %d segment%s", result.removed, result.removed == 1 ? "" : "s");
  if (result.running) printf(" (%d in use by running processes left alone)", result.running);
  printf("\n");
  return result.failed ? 1 : 0;
}

}  // namespace upcache::tool
