// On-demand readahead, the kernel's algorithm (mm/readahead.c) on upcache pages.
//
// All quantities are in cache pages (Config::page_size bytes), except
// RaState::prev_pos, which is in bytes like the kernel's; RaContext::page_shift
// converts it. The functions here only decide windows; core/cache.cc issues
// them: it skips pages already cached, and it sets the READAHEAD mark on the
// page `mark` only if that page is newly read (as the kernel does, so that a
// cached page never triggers readahead-for-nothing).
//
// End of file: the RaWindow returned is already clamped to ctx.file_pages
// (nothing at or past EOF is issued; if the marked page would fall at or past
// EOF the window carries no mark), while RaState keeps the unclamped window,
// as the kernel's file_ra_state does (page_cache_ra_order marks
// start + size - async_size only if that page is within the file).
//
// Thread safety: a RaState belongs to one open file description; the caller
// serializes access (the description's readahead lock), except for prev_pos,
// which a hit may store concurrently (RelaxedPos). The functions are pure
// apart from the state they are given and the probe they call: no allocation,
// no system call, async-signal-safe.
#pragma once

#include <cstdint>

namespace upcache {

// RaState::prev_pos. Cache::read_hit stores it without the caller's
// serialization, possibly while another thread holds the state for a miss
// (the kernel updates file_ra_state.prev_pos without a lock, too): every
// access is a relaxed atomic one, so it is never torn and never a data race,
// and it costs a plain load or store. Copyable like the int64_t it wraps.
class RelaxedPos {
 public:
  constexpr RelaxedPos(int64_t v = -1) : v_(v) {}  // NOLINT: converts like an int64_t
  RelaxedPos(const RelaxedPos& o) : v_(o.load()) {}
  RelaxedPos& operator=(const RelaxedPos& o) {
    store(o.load());
    return *this;
  }
  RelaxedPos& operator=(int64_t v) {
    store(v);
    return *this;
  }
  operator int64_t() const { return load(); }  // NOLINT
  int64_t load() const { return __atomic_load_n(&v_, __ATOMIC_RELAXED); }
  void store(int64_t v) { __atomic_store_n(&v_, v, __ATOMIC_RELAXED); }

 private:
  int64_t v_;
};

// The kernel's struct file_ra_state.
struct RaState {
  uint64_t start = 0;       // first page of the current window
  uint32_t size = 0;        // pages in the current window
  uint32_t async_size = 0;  // pages at the end of the window that are "ahead"
  uint32_t ra_pages = 0;    // maximum window; 0 disables readahead
  RelaxedPos prev_pos{-1};  // byte just after the previous read, -1 at open
  bool random = false;      // POSIX_FADV_RANDOM: never grow a window
};

// A window to issue. `mark` is the page that gets the READAHEAD mark, or
// kNoMark. A window with size 0 issues nothing. `stream` tells whether the
// window belongs to a stream (a window the state describes: sequential,
// context or async readahead) or is just the request of a random reader
// (exact: random, random-advised, readahead off). For a random reader of a
// single page the cache reads only the blocks asked for (a PARTIAL page,
// core/frame.h), and the pages a random reader reads or completes never
// carry a mark.
struct RaWindow {
  static constexpr uint64_t kNoMark = ~0ull;
  uint64_t start = 0;
  uint64_t size = 0;
  uint64_t mark = kNoMark;
  bool stream = false;
};

// What the algorithm may ask about the file.
struct RaContext {
  // Is page `index` present in the cache (up to date or in flight, whole or
  // PARTIAL, core/frame.h)?
  bool (*cached)(const void* self, uint64_t index) = nullptr;
  const void* self = nullptr;
  uint64_t file_pages = 0;  // pages in the file (ceil(size / page)); windows are clamped to it
  uint32_t io_pages = 0;    // largest single request the device takes (0: same as ra_pages)
  uint32_t page_shift = 16; // log2(Config::page_size); converts RaState::prev_pos to pages.
                            // The default matches Config::kDefaultPageSize; set it always.
};

// Initial window of a request of `req` pages with maximum `max` (get_init_ra_size).
// Never more than max; a request of 0 pages counts as 1.
uint32_t ra_init_size(uint32_t req, uint32_t max);
// Window that follows a window of `cur` pages (get_next_ra_size). Never more than max.
uint32_t ra_next_size(uint32_t cur, uint32_t max);

// A miss: pages [index, index + req) are wanted and page `index` is missing
// (page_cache_sync_ra). Updates `ra` and returns what to read. For a random
// read (or random-advised/disabled state) the window is exactly the request
// (clamped to EOF), carries no mark and leaves `ra` alone.
RaWindow ra_on_miss(RaState& ra, const RaContext& ctx, uint64_t index, uint64_t req);

// A page carrying the READAHEAD mark was reached while reading
// [index, index + req) (page_cache_async_ra); `marked` is that page, and the
// caller has already cleared its mark. Only the end of the read matters: like
// the kernel, the request is sized as index + req - marked. Updates `ra` and
// returns the next window (size 0 when nothing should be issued, always so for
// random-advised or disabled state).
RaWindow ra_on_marked(RaState& ra, const RaContext& ctx, uint64_t marked, uint64_t index,
                      uint64_t req);

}  // namespace upcache
