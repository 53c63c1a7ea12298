// See plot.h.
#include "bench/plot.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace upcache::bench {

bool plot_ratios(const Report& r, const std::string& png, std::string* error) {
  char data[] = "/tmp/upcache-bench-plot-XXXXXX";
  int fd = mkstemp(data);
  if (fd < 0) { *error = "mkstemp failed"; return false; }
  FILE* f = fdopen(fd, "w");
  for (const auto& w : r.results)
  {
    char c[32] = "?", h[32] = "?";
    if (w.ratio_cold() > 0) snprintf(c, sizeof c, "%.4f", w.ratio_cold());
    if (w.ratio_warm() > 0) snprintf(h, sizeof h, "%.4f", w.ratio_warm());
    fprintf(f, "\"%s\" %s %s\n", w.name.c_str(), c, h);
  }
  fclose(f);
  std::string script =
      "set terminal pngcairo size 1200,600 noenhanced\n"
      "set output '" + png + "'\n"
      "set title 'upcache-bench: kernel time / upcache time (above 1: upcache faster)'\n"
      "set style data histograms\nset style histogram clustered gap 1\n"
      "set style fill solid 0.8 border -1\nset boxwidth 0.9\n"
      "set datafile missing '?'\nset xtics rotate by -40 scale 0\nset grid ytics\n"
      "set logscale y 2\nset yrange [0.125:*]\n"
      "set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 2 lc rgb 'black'\n"
      "plot '" + std::string(data) + "' using 2:xtic(1) title 'cold', '' using 3 title 'warm'\n";
  FILE* gp = popen("gnuplot 2>&1", "w");
  if (!gp) { unlink(data); *error = "cannot run gnuplot"; return false; }
  fputs(script.c_str(), gp);
  int st = pclose(gp);
  unlink(data);
  if (st != 0) {
    *error = "gnuplot failed (is gnuplot installed?)";
    return false;
  }
  return true;
}

}  // namespace upcache::bench
