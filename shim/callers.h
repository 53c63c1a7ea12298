// Call-site attribution (UPCACHE_CALLERS=N): one served read in N, per
// thread, records the program's call stack (return addresses, through
// libunwind) in the statistics segment, aggregated by stack: samples, bytes
// returned, pages missed. `upcache stat --callers` symbolizes them.
//
// Thread-safe, lock free; no allocation. Off (one predictable branch) when
// UPCACHE_CALLERS is 0.
#pragma once

#include <cstdint>

namespace upcache::shim {

// After a read the cache served: `result` as returned to the program.
void callers_after_read(int64_t result);

}  // namespace upcache::shim
