// See report.h.
#include "bench/report.h"

#include <algorithm>
#include <cinttypes>

namespace upcache::bench {
namespace {

double quantile(const std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  double pos = q * (v.size() - 1);
  size_t lo = static_cast<size_t>(pos);
  size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

double ratio(const WorkloadResult& w, Mode a, Mode b) {
  auto x = w.summary.find(a), y = w.summary.find(b);
  if (x == w.summary.end() || y == w.summary.end() || y->second.median <= 0) return 0;
  return x->second.median / y->second.median;
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') { o += '\\'; o += c; }
    else if (static_cast<unsigned char>(c) < 0x20) { char b[8]; snprintf(b, sizeof b, "\\u%04x", c); o += b; }
    else o += c;
  }
  return o;
}

const char* num_or_null(double v, char* buf, size_t n) {
  if (v <= 0) return "null";
  snprintf(buf, n, "%.6g", v);
  return buf;
}

std::string fmt_time(double s) {
  char b[32];
  if (s < 1e-3) snprintf(b, sizeof b, "%.1fus", s * 1e6);
  else if (s < 1) snprintf(b, sizeof b, "%.2fms", s * 1e3);
  else snprintf(b, sizeof b, "%.3fs", s);
  return b;
}

std::string fmt_ratio(double r) {
  if (r <= 0) return "-";
  char b[32];
  snprintf(b, sizeof b, "%.2f", r);
  return b;
}

}  // namespace

Summary summarize(const std::vector<Sample>& samples) {
  Summary s;
  if (samples.empty()) return s;
  std::vector<double> t;
  std::vector<long> rss;
  for (const auto& x : samples) { t.push_back(x.seconds); rss.push_back(x.maxrss_kib); }
  std::sort(t.begin(), t.end());
  std::sort(rss.begin(), rss.end());
  s.median = quantile(t, 0.5);
  s.min = t.front();
  s.max = t.back();
  s.q1 = quantile(t, 0.25);
  s.q3 = quantile(t, 0.75);
  s.bytes = samples.back().bytes;
  s.maxrss_kib = rss[rss.size() / 2];
  return s;
}

double WorkloadResult::ratio_cold() const { return ratio(*this, Mode::kKernelCold, Mode::kUpcacheCold); }
double WorkloadResult::ratio_warm() const { return ratio(*this, Mode::kKernelWarm, Mode::kUpcacheWarm); }
double WorkloadResult::kernel_of_limit() const { return ratio(*this, Mode::kLimit, Mode::kKernelWarm); }
double WorkloadResult::upcache_of_limit() const { return ratio(*this, Mode::kLimit, Mode::kUpcacheWarm); }
double WorkloadResult::kernel_of_device() const { return ratio(*this, Mode::kDevice, Mode::kKernelCold); }
double WorkloadResult::upcache_of_device() const { return ratio(*this, Mode::kDevice, Mode::kUpcacheCold); }

void print_table(FILE* out, const Report& r) {
  fprintf(out, "file %s (%" PRIu64 " bytes), %u repetitions, cold = %s, lib %s\n\n", r.file.c_str(),
          r.file_size, r.reps, r.drop_method.c_str(), r.lib.c_str());
  fprintf(out, "%-18s %-13s %10s %10s %10s %10s %10s %9s\n", "workload", "mode", "median", "min",
          "max", "iqr", "MiB/s", "maxrss");
  for (const auto& w : r.results)
    for (const auto& [m, s] : w.summary)
      fprintf(out, "%-18s %-13s %10s %10s %10s %10s %10.1f %8ldM\n", w.name.c_str(), mode_name(m),
              fmt_time(s.median).c_str(), fmt_time(s.min).c_str(), fmt_time(s.max).c_str(),
              fmt_time(s.q3 - s.q1).c_str(), s.mib_s(), s.maxrss_kib / 1024);
  fprintf(out, "\nratio kernel/upcache (above 1: upcache faster); of limit = memcpy time / warm time;\n"
               "of device = O_DIRECT time / cold time\n");
  fprintf(out, "%-18s %10s %10s %16s %17s %17s %18s\n", "workload", "cold", "warm", "kernel of limit",
          "upcache of limit", "kernel of device", "upcache of device");
  for (const auto& w : r.results)
    fprintf(out, "%-18s %10s %10s %16s %17s %17s %18s\n", w.name.c_str(),
            fmt_ratio(w.ratio_cold()).c_str(), fmt_ratio(w.ratio_warm()).c_str(),
            fmt_ratio(w.kernel_of_limit()).c_str(), fmt_ratio(w.upcache_of_limit()).c_str(),
            fmt_ratio(w.kernel_of_device()).c_str(), fmt_ratio(w.upcache_of_device()).c_str());
}

void print_json(FILE* out, const Report& r) {
  char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32];
  fprintf(out, "{\n  \"file\": \"%s\",\n  \"file_size\": %" PRIu64 ",\n  \"reps\": %u,\n",
          json_escape(r.file).c_str(), r.file_size, r.reps);
  fprintf(out, "  \"lib\": \"%s\",\n  \"cold_method\": \"%s\",\n  \"workloads\": [",
          json_escape(r.lib).c_str(), r.drop_method.c_str());
  for (size_t i = 0; i < r.results.size(); ++i) {
    const auto& w = r.results[i];
    fprintf(out, "%s\n    {\n      \"workload\": \"%s\",\n      \"modes\": {", i ? "," : "",
            json_escape(w.name).c_str());
    bool first = true;
    for (const auto& [m, s] : w.summary) {
      fprintf(out,
              "%s\n        \"%s\": {\"median_s\": %.9g, \"min_s\": %.9g, \"max_s\": %.9g, "
              "\"q1_s\": %.9g, \"q3_s\": %.9g, \"bytes\": %" PRIu64 ", \"mib_s\": %.6g, "
              "\"maxrss_kib\": %ld, \"times_s\": [",
              first ? "" : ",", mode_name(m), s.median, s.min, s.max, s.q1, s.q3, s.bytes,
              s.mib_s(), s.maxrss_kib);
      const auto& v = w.samples.at(m);
      for (size_t k = 0; k < v.size(); ++k) fprintf(out, "%s%.9g", k ? ", " : "", v[k].seconds);
      fprintf(out, "]}");
      first = false;
    }
    fprintf(out,
            "\n      },\n      \"ratio_cold\": %s,\n      \"ratio_warm\": %s,\n"
            "      \"kernel_of_limit\": %s,\n      \"upcache_of_limit\": %s,\n"
            "      \"kernel_of_device\": %s,\n      \"upcache_of_device\": %s\n    }",
            num_or_null(w.ratio_cold(), b1, sizeof b1), num_or_null(w.ratio_warm(), b2, sizeof b2),
            num_or_null(w.kernel_of_limit(), b3, sizeof b3),
            num_or_null(w.upcache_of_limit(), b4, sizeof b4),
            num_or_null(w.kernel_of_device(), b5, sizeof b5),
            num_or_null(w.upcache_of_device(), b6, sizeof b6));
  }
  fprintf(out, "\n  ]\n}\n");
}

void print_csv(FILE* out, const Report& r) {
  fprintf(out, "workload,mode,median_s,min_s,max_s,q1_s,q3_s,bytes,mib_s,maxrss_kib,ratio,of_limit\n");
  for (const auto& w : r.results)
    for (const auto& [m, s] : w.summary) {
      double ratio = m == Mode::kUpcacheCold ? w.ratio_cold() : m == Mode::kUpcacheWarm ? w.ratio_warm() : 0;
      double lim = m == Mode::kUpcacheWarm   ? w.upcache_of_limit()
                   : m == Mode::kKernelWarm  ? w.kernel_of_limit()
                   : m == Mode::kUpcacheCold ? w.upcache_of_device()
                   : m == Mode::kKernelCold  ? w.kernel_of_device()
                                             : 0;
      fprintf(out, "%s,%s,%.9g,%.9g,%.9g,%.9g,%.9g,%" PRIu64 ",%.6g,%ld,", w.name.c_str(),
              mode_name(m), s.median, s.min, s.max, s.q1, s.q3, s.bytes, s.mib_s(), s.maxrss_kib);
      if (ratio > 0) fprintf(out, "%.6g", ratio);
      fprintf(out, ",");
      if (lim > 0) fprintf(out, "%.6g", lim);
      fprintf(out, "\n");
    }
}

}  // namespace upcache::bench
