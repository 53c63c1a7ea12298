// --plot: the ratios kernel/upcache (cold and warm) of every workload as a
// bar chart, drawn by gnuplot into a PNG.
#pragma once

#include <string>

#include "bench/report.h"

namespace upcache::bench {

// Returns false and sets *error when gnuplot is missing or fails.
bool plot_ratios(const Report& r, const std::string& png, std::string* error);

}  // namespace upcache::bench
