// Configuration of one cache, read from UPCACHE_* environment variables.
//
// Contract: Config is a plain value. from_env() never throws and never aborts:
// a bad value produces one message through `warn` naming upcache and the
// variable, and the documented default is kept. Not async-signal-safe (it
// parses strings); call it once at start-up.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace upcache {

enum class DirectMode { kAuto, kOn, kOff };
enum class AsyncEngine { kAuto, kUring, kThreads };
// UPCACHE_COHERENCE (upcache(7), Coherence): how the cache knows that no
// other process changed a file it serves.
//  - kLease (default): only under a read lease (core/lease_watch.h); a file
//    that cannot be leased is passed to the kernel. Exact.
//  - kOpen (opt-in): a file that cannot be leased is served as before leases
//    existed, revalidated (size, mtime, ctime) at each open: another
//    process's write is seen after the reader's next open, not before.
//  - kLocks (opt-in): as kLease, and a file that cannot be leased because
//    some process has it open for writing is served, checked against the
//    kernel (size, mtime, ctime) each time the program takes a lock (fcntl
//    F_SETLK*, F_OFD_SETLK*, flock): exact for programs that read under a
//    lock the writer takes too (SQLite), on filesystems with multigrain
//    timestamps; elsewhere such a file still goes to the kernel.
enum class Coherence { kLease, kOpen, kLocks };

struct Config {
  // Documented defaults; README and upcache(7) state them and why.
  static constexpr uint64_t kDefaultCacheBytes = 1ull << 30;       // 1 GiB
  static constexpr uint64_t kDefaultPageSize = 16ull << 10;        // 16 KiB
  static constexpr uint64_t kDefaultRaMaxBytes = 16ull << 20;      // 16 MiB
  static constexpr uint64_t kDefaultMinFileBytes = 64ull << 10;    // 64 KiB
  static constexpr uint64_t kMinPageSize = 4096;
  static constexpr uint64_t kMaxPageSize = 2ull << 20;

  uint64_t cache_bytes = kDefaultCacheBytes;  // UPCACHE_SIZE
  uint64_t page_size = kDefaultPageSize;      // UPCACHE_PAGE_SIZE
  uint64_t ra_max_bytes = kDefaultRaMaxBytes; // UPCACHE_RA_MAX (0 disables)
  // UPCACHE_MIN_FILE: files smaller than this at open are left to the kernel.
  // Small files (interpreter modules, locale data, shared-library headers)
  // are read once, whole, and are usually warm in the kernel's cache; caching
  // them costs an O_DIRECT descriptor, a cold disk read and a whole frame
  // each, and saves nothing. 0 caches every regular file.
  uint64_t min_file_bytes = kDefaultMinFileBytes;
  DirectMode direct = DirectMode::kAuto;      // UPCACHE_DIRECT=auto|on|off
  AsyncEngine async_engine = AsyncEngine::kAuto;  // UPCACHE_ASYNC=auto|uring|threads
  unsigned io_threads = 4;                    // UPCACHE_IO_THREADS (thread engine)
  // UPCACHE_SPLICE=cache|kernel: splice(2) from a cached file into a pipe is
  // served from the cache (cache), or passed to the kernel (kernel).
  bool splice_from_cache = true;
  // UPCACHE_HUGEPAGES=1: put the cache on the administrator's reserved 2 MiB
  // huge pages (/proc/sys/vm/nr_hugepages) when enough are free. Off by
  // default: reserved huge pages are set aside for programs that ask, and a
  // cache taking them silently could starve the program they were meant for.
  bool huge_pages = false;
  // UPCACHE_THP=0 turns off 2 MiB transparent huge pages for the cache's
  // memory (a private huge=always tmpfs, core/huge_shmem.h). On by default:
  // the kernel gives them only where it has free 2 MiB pages and takes
  // nothing from anyone; random hits of a large cache walk no page tables.
  bool transparent_huge = true;
  Coherence coherence = Coherence::kLease;    // UPCACHE_COHERENCE=lease|open|locks
  // UPCACHE_LEASE_SIGNAL: the real-time signal the kernel sends to the lease
  // thread when another process breaks a lease. Thread-directed and blocked
  // there, so the program never sees it; 0 here means SIGRTMAX - 3.
  unsigned lease_signal = 0;
  bool disabled = false;                      // UPCACHE_DISABLE=1: pass everything through
  bool stats = true;                          // UPCACHE_STATS=0 turns the segment off
  bool stats_keep = false;                    // UPCACHE_STATS_KEEP=1
  unsigned callers = 0;                       // UPCACHE_CALLERS=N: sample 1 read in N
  int log_level = 1;                          // UPCACHE_LOG_LEVEL 0..3
  std::string log_file;                       // UPCACHE_LOG (empty: stderr)
  std::string include;                        // UPCACHE_INCLUDE: ':'-separated path prefixes
  std::string exclude;                        // UPCACHE_EXCLUDE: ':'-separated path prefixes
  std::string fault;                          // UPCACHE_FAULT (tests only; see backend.h)

  uint64_t ra_max_pages() const { return ra_max_bytes / page_size; }
  uint64_t frame_count() const { return cache_bytes / page_size; }

  // Reads the environment. `warn` receives one complete line per bad value
  // (without trailing newline); null means stderr. `secure` (AT_SECURE) makes
  // environment-supplied paths (UPCACHE_LOG) ignored.
  static Config from_env(void (*warn)(const char* line) = nullptr, bool secure = false);
};

// Parses "123", "4K", "64k", "1M", "2G", "1T" (binary units, optional trailing
// "B"/"iB"). Returns false on anything else or on overflow.
bool parse_size(const char* text, uint64_t* out);

}  // namespace upcache
