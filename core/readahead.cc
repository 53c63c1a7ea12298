// On-demand readahead: the kernel's algorithm (mm/readahead.c, 6.x) on
// upcache pages. See core/readahead.h for the interface and
// /work/shared/reference/readahead.md for the behaviour reproduced here.
//
// The state (RaState, the kernel's file_ra_state) describes the most recent
// readahead window:
//
//                        |<------ async_size ------|
//     |------------------------ size -------------->|
//     |=================#===========================|
//     ^start            ^page carrying the READAHEAD mark
//
// Readahead is pipelined: instead of waiting until the reader has consumed a
// window and stalls on a miss, the next window is issued as soon as the reader
// touches the marked page, i.e. when only async_size pages of the window are
// left ahead of it. Normally async_size == size, so about one window is always
// in flight ahead of a sequential reader.
//
// The mark lives on the page, not in the state. Several streams sharing one
// descriptor keep overwriting each other's state, but each stream still finds
// its own marks; a mark that does not match the state is recognised, and the
// window it belonged to is recovered by looking at what is cached after it.
// Likewise a miss that does not look sequential (prev_pos) is checked against
// the cache: a run of cached pages just before it is the trace a sequential
// stream leaves behind (context readahead).
//
// Windows ramp up fast while they are small and more slowly near the maximum.
#include "core/readahead.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>

namespace upcache {
namespace {

constexpr uint64_t kU32Max = std::numeric_limits<uint32_t>::max();

uint32_t sat32(uint64_t v) { return static_cast<uint32_t>(std::min(v, kU32Max)); }

bool is_cached(const RaContext& ctx, uint64_t index) {
  return ctx.cached != nullptr && ctx.cached(ctx.self, index);
}

// The largest window for a request of `req` pages (the kernel's
// ractl_max_pages). Normally ra_pages; but a request that is larger than the
// readahead maximum anyway may be read in one go up to what the device takes
// in a single request, since splitting it would only cost more I/Os.
uint32_t max_pages_for(const RaState& ra, const RaContext& ctx, uint64_t req) {
  uint32_t max = ra.ra_pages;
  if (req > max && ctx.io_pages > max) max = sat32(std::min<uint64_t>(req, ctx.io_pages));
  return max;
}

// What to issue for [start, start + size) with the mark async_size pages
// before its end, clamped to end of file. The state keeps the unclamped
// window; only the I/O (and the mark) stop at EOF.
RaWindow clamp_to_eof(const RaContext& ctx, uint64_t start, uint64_t size, uint64_t async_size) {
  RaWindow w;
  w.start = start;
  if (start >= ctx.file_pages) return w;  // size 0: nothing at or past EOF
  w.size = std::min(size, ctx.file_pages - start);
  // async_size == 0 puts the "mark" just past the window: no page gets it.
  if (async_size > 0 && async_size <= size) {
    const uint64_t mark = start + size - async_size;
    if (mark < start + w.size) w.mark = mark;
  }
  return w;
}

// Issue the window the state now describes.
RaWindow submit(const RaState& ra, const RaContext& ctx) {
  RaWindow w = clamp_to_eof(ctx, ra.start, ra.size, ra.async_size);
  w.stream = w.size > 0;
  return w;
}

// Read just what was asked for: no mark, state untouched, so that a lone
// random read neither pollutes the state nor triggers later readahead.
// Not a stream: the cache may read only the blocks asked for.
RaWindow exact(const RaContext& ctx, uint64_t index, uint64_t req) {
  return clamp_to_eof(ctx, index, req, 0);
}

}  // namespace

// First window of a stream. The request is rounded up to a power of two;
// small requests get four times that, medium ones twice, and anything that
// is already a sizeable fraction of the maximum gets the maximum at once.
// With max = 32 pages of 4 KiB: 1-2 pages -> 16 KiB, 3-4 -> 32 KiB,
// 5-8 -> 64 KiB, more -> 128 KiB.
uint32_t ra_init_size(uint32_t req, uint32_t max) {
  // 64-bit so that rounding a request above 2^31 up cannot overflow.
  const uint64_t n = std::bit_ceil(static_cast<uint64_t>(std::max<uint32_t>(req, 1)));
  if (n <= max / 32) return static_cast<uint32_t>(n * 4);  // <= max / 8
  if (n <= max / 4) return static_cast<uint32_t>(n * 2);   // <= max / 2
  return max;
}

// Ramp-up of the following windows: quadruple while small, double while
// that stays within the maximum, then stay at the maximum.
uint32_t ra_next_size(uint32_t cur, uint32_t max) {
  if (cur < max / 16) return 4 * cur;  // < max / 4
  if (cur <= max / 2) return 2 * cur;  // <= max
  return max;
}

// Synchronous readahead: page `index` is missing and the reader will wait
// for it (page_cache_sync_ra).
RaWindow ra_on_miss(RaState& ra, const RaContext& ctx, uint64_t index, uint64_t req) {
  if (req == 0) req = 1;  // page `index` itself is wanted

  // POSIX_FADV_RANDOM, or readahead switched off: be dumb, read what the
  // reader needs and nothing more. (With ra_pages == 0 the kernel reads a
  // single page per miss and comes back for the next; reading the whole
  // request, as the reference says, saves those round trips.)
  if (ra.random || ra.ra_pages == 0) return exact(ctx, index, req);

  const uint32_t max = max_pages_for(ra, ctx, req);

  // prev_pos is the byte just after the previous read; -1 at open turns into
  // a huge page index, so nothing looks sequential to it.
  const uint64_t prev_index = static_cast<uint64_t>(ra.prev_pos) >> ctx.page_shift;

  // Start a fresh window on
  //  - the first page of the file: assume the whole file is about to be read;
  //  - an oversize request: it needs at least a full window anyway;
  //  - a sequential miss: the reader went on from where it stopped
  //    (index - prev_index == 1), or re-reads the page where it stopped, as
  //    unaligned sequential reads do (== 0). Unsigned: going backwards is
  //    not sequential.
  if (index == 0 || req > max || index - prev_index <= 1) {
    ra.start = index;
    ra.size = ra_init_size(sat32(req), max);
    // The mark goes on the first page past the request, so the reader's next
    // request triggers the next window; if the window is no larger than the
    // request, the mark goes halfway through it so that the next window is
    // issued while the reader is still in this one.
    ra.async_size = ra.size > req ? static_cast<uint32_t>(ra.size - req) : ra.size / 2;
    return submit(ra, ctx);
  }

  // Not obviously sequential: look behind for the trace a sequential stream
  // leaves in the cache (another stream on this descriptor, another
  // descriptor, a reader whose state we lost). Count the cached pages right
  // before `index`, at most `max`.
  uint64_t run = 0;
  while (run < max && run < index && is_cached(ctx, index - 1 - run)) ++run;

  // A run no longer than the request is no evidence of a stream: a
  // standalone small random read. Read it as is, leave the state alone.
  if (run <= req) return exact(ctx, index, req);

  // Cached all the way from the start of the file: a strong hint of a
  // long-running stream (or a whole-file read), so trust it twice as much.
  if (run == index) run *= 2;

  ra.start = index;
  ra.size = sat32(std::min<uint64_t>(run + req, max));
  // Mark the last page: the stream's next window follows when this one has
  // been read through.
  ra.async_size = 1;
  return submit(ra, ctx);
}

// Asynchronous readahead: the reader reached a page carrying the READAHEAD
// mark, so it is consuming the window we issued; issue the next one without
// making the reader wait (page_cache_async_ra).
RaWindow ra_on_marked(RaState& ra, const RaContext& ctx, uint64_t marked, uint64_t index,
                      uint64_t req) {
  // Disabled, or advised random: never grow a window. (The kernel checks
  // only ra_pages here; a random-advised descriptor would follow marks left by
  // someone else. The reference says random never grows a window.)
  if (ra.ra_pages == 0 || ra.random) return RaWindow{};

  // Like the kernel, the request counts from the marked page to the end of
  // the read.
  const uint64_t end = index + req;
  const uint64_t req_count = end > marked ? end - marked : 1;
  const uint32_t max = max_pages_for(ra, ctx, req_count);

  // The mark is where the state put it: the reader is going through the
  // current window sequentially. Push the window forward and ramp it up; the
  // whole new window is "ahead", so its first page carries the next mark.
  if (marked == ra.start + ra.size - ra.async_size) {
    ra.start += ra.size;
    ra.size = ra_next_size(ra.size, max);
    ra.async_size = ra.size;
    return submit(ra, ctx);
  }

  // A marked page without matching state, e.g. streams interleaved on one
  // descriptor overwrote it. The pages cached after the mark are what is left
  // of the window it belonged to (normally async_size == size of them): find
  // where they end, within `max`, and continue from there with that amount,
  // plus the request, ramped up as the next window.
  uint64_t gap = 1;
  while (gap <= max && is_cached(ctx, marked + gap)) ++gap;
  if (gap > max) return RaWindow{};  // all cached well ahead: nothing to do

  ra.start = marked + gap;
  ra.size = ra_next_size(sat32(gap + req_count), max);
  ra.async_size = ra.size;
  return submit(ra, ctx);
}

}  // namespace upcache
