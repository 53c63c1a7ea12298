// The statistics segment: layout shared by core/, shim/ and tools/.
//
// One segment per process in /dev/shm, named "upcache.<pid>.<nonce>", mode
// 0600, created with O_EXCL. Counters live in the mapping at all times, so a
// process that dies leaves readable numbers. Writers bump counters with
// relaxed atomics in their own stripe (chosen per thread), so the hit path
// never contends on a shared cache line; readers sum the stripes.
//
// The layout is versioned: bump kVersion on any change. Everything is fixed
// size and position independent. No file contents are ever stored here.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace upcache::stats {

constexpr uint32_t kMagic = 0x53435055;  // "UPCS"
constexpr uint32_t kVersion = 3;  // 3: coherence counters and file states

// Monotonic counters. Page counts are in units of Segment::page_size.
enum Counter : uint32_t {
  kReads,             // read-family calls served by upcache
  kBytesRead,         // bytes returned by those calls
  kHits,              // pages found up to date (or in flight) in the cache
  kMisses,            // pages that had to be read for the caller
  kReadaheadPages,    // pages read ahead of the caller
  kReadaheadHits,     // read-ahead pages later read by someone
  kReadaheadWasted,   // read-ahead pages evicted unread
  kEvictions,         // frames taken from one page for another
  kDirectBytes,       // bytes read from disk with O_DIRECT
  kBufferedBytes,     // bytes read through the buffered fallback
  kPassthroughCalls,  // intercepted calls passed to the kernel
  kIoErrors,          // backend reads that failed
  // Coherence (since version 3; upcache(7), Coherence):
  kCoherencePassthrough,  // reads sent to the kernel: the file had no lease
  kCoherenceDrops,        // pages dropped: another process opened the file for writing
  kLeases,                // read leases taken
  kLeasesBroken,          // leases broken by another process (open for writing, truncate)
  kCounterCount
};

// Names as they appear in `upcache stat --json` and in Prometheus output.
inline constexpr const char* kCounterNames[kCounterCount] = {
    "reads",         "bytes_read",       "hits",      "misses",
    "readahead_pages", "readahead_hits", "readahead_wasted", "evictions",
    "direct_bytes",  "buffered_bytes",   "passthrough_calls", "io_errors",
    "coherence_passthrough", "coherence_drops", "leases", "leases_broken"};

// log2 latency histograms, bucket i counts latencies in [2^i, 2^(i+1)) ns.
enum Histogram : uint32_t { kHitLatency, kMissLatency, kIoLatency, kHistogramCount };
inline constexpr const char* kHistogramNames[kHistogramCount] = {"hit", "miss", "io"};
constexpr int kBuckets = 40;  // up to ~18 minutes

constexpr int kStripes = 16;
struct alignas(64) Stripe {
  std::atomic<uint64_t> counters[kCounterCount];
  std::atomic<uint64_t> latency[kHistogramCount][kBuckets];
};

// Per-file counters, striped like the process counters.
enum FileCounter : uint32_t {
  kFileBytes, kFileHits, kFileMisses, kFileReadahead,
  kFilePassthrough,  // reads sent to the kernel for coherence
  kFileCounterCount
};
inline constexpr const char* kFileCounterNames[kFileCounterCount] = {"bytes", "hits", "misses",
                                                                     "readahead_pages", "passthrough"};

// Why a file is or is not served from the cache now (FileSlot::coherence).
enum FileCoherence : uint32_t {
  kCoherencePending,   // not read since it was opened
  kCoherenceLease,     // served: under a read lease
  kCoherenceWriter,    // to the kernel: some process has it open for writing
  kCoherenceRefused,   // to the kernel: no lease to be had (owner, filesystem, disabled)
  kCoherenceReadOnly,  // served: a filesystem nobody can write (squashfs, iso9660, erofs)
  kCoherenceWeak,      // served, revalidated at open only (UPCACHE_COHERENCE=open)
  kCoherenceLocks,     // served, revalidated at each lock the program takes (UPCACHE_COHERENCE=locks)
  kCoherenceStates
};
inline constexpr const char* kCoherenceNames[kCoherenceStates] = {"pending", "lease", "writer",
                                                                  "refused", "read-only", "weak", "locks"};
constexpr int kFileStripes = 4;
constexpr int kFiles = 256;
constexpr int kPathMax = 240;
struct alignas(64) FileStripe {
  std::atomic<uint64_t> counters[kFileCounterCount];
};
struct FileSlot {
  std::atomic<uint64_t> file_id;  // 0: free; written once when claimed
  char path[kPathMax];            // NUL-terminated, truncated
  std::atomic<uint32_t> coherence;  // FileCoherence, as this process last decided
  FileStripe stripes[kFileStripes];
};

// Call sites sampled with UPCACHE_CALLERS (stack of return addresses).
constexpr int kCallers = 128;
constexpr int kCallerDepth = 8;
struct CallerSlot {
  std::atomic<uint64_t> hash;  // 0: free
  uint64_t pcs[kCallerDepth];  // absolute addresses in the owning process
  std::atomic<uint64_t> samples, bytes, misses;
};

// Header fields are written once by the owner at creation (core/stats_segment.h)
// before `magic` is published with release order; readers check magic first.
struct Segment {
  uint32_t magic;
  uint32_t version;
  uint64_t segment_bytes;  // sizeof(Segment)
  int32_t pid;
  int32_t ppid;
  uint64_t start_time_ns;  // CLOCK_REALTIME at creation
  uint64_t page_size;
  uint64_t capacity_bytes;
  std::atomic<uint64_t> cached_bytes;  // gauge: bytes of frames holding data
  std::atomic<uint32_t> alive;         // 1 while the process runs; 0 after a clean exit
  uint32_t callers_every;              // UPCACHE_CALLERS
  char command[128];                   // argv joined by spaces, truncated
  char run_id[40];                     // UPCACHE_RUN_ID set by `upcache run` (tree aggregation)
  // Since version 2.
  uint64_t proc_start_ticks;           // field 22 of /proc/<pid>/stat: tells a reused pid apart
  uint64_t nonce;                      // the random part of the segment's name
  std::atomic<uint64_t> end_time_ns;   // CLOCK_REALTIME at exit (or exec); 0 while running
  std::atomic<uint32_t> keep;          // 1: the name stays after exit (UPCACHE_STATS_KEEP);
                                       // `upcache run` may clear it while the owner runs
  uint32_t reserved;
  Stripe stripes[kStripes];
  FileSlot files[kFiles];
  CallerSlot callers[kCallers];
};

}  // namespace upcache::stats
