// Running one measurement: the mode, dropping caches, finding libupcache.so,
// generating the test file, and spawning the worker process.
#pragma once

#include "tools/find_library.h"

#include <cstdint>
#include <string>
#include <vector>

#include "bench/workload.h"

namespace upcache::bench {

// kLimit: the warm physical limit (memcpy from an anonymous copy of the
// file). kDevice: the cold one, for random patterns only: each request
// widened to whole 4 KiB blocks and read with O_DIRECT into memory faulted
// in beforehand, caches dropped, one request at a time per thread; no cache
// can serve a cold read faster than its device does.
enum class Mode { kKernelCold, kKernelWarm, kUpcacheCold, kUpcacheWarm, kLimit, kDevice };
constexpr Mode kAllModes[] = {Mode::kKernelCold, Mode::kKernelWarm, Mode::kUpcacheCold,
                              Mode::kUpcacheWarm, Mode::kLimit,       Mode::kDevice};
const char* mode_name(Mode m);          // "kernel-cold", ..., "limit", "device"
bool parse_mode(const std::string& s, Mode* out);
inline bool is_cold(Mode m) {
  return m == Mode::kKernelCold || m == Mode::kUpcacheCold || m == Mode::kDevice;
}
inline bool is_upcache(Mode m) { return m == Mode::kUpcacheCold || m == Mode::kUpcacheWarm; }

struct Sample {
  double seconds = 0;
  uint64_t bytes = 0;
  long maxrss_kib = 0;
};

// Locating libupcache.so: upcache::find_library (tools/find_library.h).
using upcache::find_library;

// Drops `path` from the kernel's page cache: sync + /proc/sys/vm/drop_caches
// when permitted, else fdatasync + posix_fadvise(DONTNEED). Returns the
// method used ("drop_caches" or "fadvise").
std::string drop_caches(const std::string& path);

// Creates `path` with `size` bytes of pseudo-random data unless it already
// exists with exactly that size.
bool make_file(const std::string& path, uint64_t size, std::string* error);

// Runs the worker for workload `w` (already sized) in mode `m`; `lib` is the
// library preloaded in upcache modes. Cold modes drop caches first.
bool run_worker(const Workload& w, Mode m, const std::string& target, const std::string& lib,
                uint64_t seed, Sample* out, std::string* error);

}  // namespace upcache::bench
