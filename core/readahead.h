// On-demand readahead, the kernel's algorithm (mm/readahead.c) on upcache pages.
//
// All quantities are in cache pages (Config::page_size bytes). The functions
// here only decide windows; core/cache.cc issues them (skipping pages already
// cached, clamping to end of file, marking the page at
// start + size - async_size with the READAHEAD mark).
//
// Thread safety: a RaState belongs to one open file description; the caller
// serializes access (the description's position lock). The functions are pure
// apart from the state they are given and the probe they call: no allocation,
// no system call, async-signal-safe.
#pragma once

#include <cstdint>

namespace upcache {

// The kernel's struct file_ra_state.
struct RaState {
  uint64_t start = 0;       // first page of the current window
  uint32_t size = 0;        // pages in the current window
  uint32_t async_size = 0;  // pages at the end of the window that are "ahead"
  uint32_t ra_pages = 0;    // maximum window; 0 disables readahead
  int64_t prev_pos = -1;    // byte just after the previous read, -1 at open
  bool random = false;      // POSIX_FADV_RANDOM: never grow a window
};

// A window to issue. `mark` is the page that gets the READAHEAD mark, or
// kNoMark. A window with size 0 issues nothing.
struct RaWindow {
  static constexpr uint64_t kNoMark = ~0ull;
  uint64_t start = 0;
  uint64_t size = 0;
  uint64_t mark = kNoMark;
};

// What the algorithm may ask about the file.
struct RaContext {
  // Is page `index` present in the cache (up to date or in flight)?
  bool (*cached)(const void* self, uint64_t index) = nullptr;
  const void* self = nullptr;
  uint64_t file_pages = 0;  // pages in the file (ceil(size / page)); windows are clamped to it
  uint32_t io_pages = 0;    // largest single request the device takes (0: same as ra_pages)
};

// Initial window of a request of `req` pages with maximum `max` (get_init_ra_size).
uint32_t ra_init_size(uint32_t req, uint32_t max);
// Window that follows a window of `cur` pages (get_next_ra_size).
uint32_t ra_next_size(uint32_t cur, uint32_t max);

// A miss: pages [index, index + req) are wanted and page `index` is missing
// (page_cache_sync_ra). Updates `ra` and returns what to read. For a random
// read (or random-advised/disabled state) the window is exactly the request
// and carries no mark.
RaWindow ra_on_miss(RaState& ra, const RaContext& ctx, uint64_t index, uint64_t req);

// A page carrying the READAHEAD mark was reached while reading
// [index, index + req) (page_cache_async_ra); `marked` is that page. Updates
// `ra` and returns the next window (size 0 when nothing should be issued).
RaWindow ra_on_marked(RaState& ra, const RaContext& ctx, uint64_t marked, uint64_t index,
                      uint64_t req);

}  // namespace upcache
