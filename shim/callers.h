// Call-site attribution (UPCACHE_CALLERS=N): one served read in N, per
// thread, records the program's call stack (return addresses, through
// libunwind) in the statistics segment, aggregated by stack: samples, bytes
// returned, pages missed. `upcache stat --callers` symbolizes them.
//
// Thread-safe, lock free; no allocation. Off (one predictable branch) when
// UPCACHE_CALLERS is 0.
#pragma once

#include <cstdint>

#include "core/stats.h"
#include "core/stats_sink.h"
#include "shim/runtime.h"

namespace upcache::shim {

void callers_sample(int64_t result, unsigned every);

// After a read the cache served: `result` as returned to the program.
// Inline: the test of "off" is all a hit pays.
inline void callers_after_read(int64_t result) {
  unsigned every = g_stats->segment()->callers_every;
  if (__builtin_expect(every != 0, 0)) callers_sample(result, every);
}

}  // namespace upcache::shim
