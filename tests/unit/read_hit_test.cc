// The hit fast paths, Cache::read_hit and Cache::read_cursor: they serve
// exactly what read() would for a one-page hit and count it the same; they
// decline (return 0, count nothing) whenever read() has more to do; a write,
// an eviction or a reassignment of the frame used before is never served
// from; the READAHEAD mark still fires; threads sharing one description get
// right bytes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/cache.h"
#include "core/copy_guard.h"
#include "core/stats.h"
#include "core/stats_sink.h"
#include "cache_fixture.h"
#include "test_files.h"

namespace upcache {
namespace {

using upcache::testing::fill_pattern;
using upcache::testing::pattern_byte;
using upcache::testing::write_pattern_file;

class ReadHitTest : public upcache::testing::CacheFixture {
 protected:
  ReadHitTest() : CacheFixture("readhit") {}
  int64_t read_at(FileRef* f, RaState& ra, uint64_t pos, char* buf, uint64_t n) {
    iovec iov{buf, n};
    return cache->read(f, ra, pos, &iov, 1);
  }
  // What the shim does: the fast path first, read() when it declines.
  int64_t shim_read(FileRef* f, RaState& ra, uint64_t pos, char* buf, uint64_t n, bool* fast) {
    int64_t r = cache->read_hit(f, ra, pos, buf, n);
    *fast = r > 0;
    return r > 0 ? r : read_at(f, ra, pos, buf, n);
  }
  // What the shim's read() does: the description's cursor, then read_hit
  // (refilling the cursor), then read().
  int64_t cursor_read(FileRef* f, RaState& ra, HitCursor& cur, uint64_t pos, char* buf, uint64_t n,
                      int* path) {
    int64_t r = cache->read_cursor(cur, ra, pos, buf, n);
    if (r > 0) {
      *path = 0;
      return r;
    }
    r = cache->read_hit(f, ra, pos, buf, n, &cur);
    *path = r > 0 ? 1 : 2;
    return r > 0 ? r : read_at(f, ra, pos, buf, n);
  }
  uint64_t hit_latency_samples() {
    uint64_t sum = 0;
    for (const auto& stripe : seg->stripes)
      for (const auto& b : stripe.latency[stats::kHitLatency]) sum += b.load();
    return sum;
  }
  bool bytes_ok(const char* buf, uint64_t pos, uint64_t n, uint64_t salt) {
    for (uint64_t i = 0; i < n; ++i)
      if (static_cast<uint8_t>(buf[i]) != pattern_byte(pos + i, salt)) return false;
    return true;
  }
  uint64_t file_counter(stats::FileCounter c) {
    uint64_t sum = 0;
    for (const auto& slot : seg->files)
      if (slot.file_id.load() != 0)
        for (const auto& s : slot.stripes) sum += s.counters[c].load();
    return sum;
  }
};

TEST_F(ReadHitTest, ServesExactBytesAndCountsLikeReadHits) {
  make_cache(8 << 20, 4096, 0);  // no readahead: no marks, no unread pages
  const uint64_t size = 10 * 4096 + 100;
  FileRef* f = open_pattern_file(size, 1);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  char buf[8192];
  // Not cached: declined, nothing counted.
  EXPECT_EQ(cache->read_hit(f, ra, 4096, buf, 64), 0);
  EXPECT_EQ(counter(stats::kReads), 0u);
  ASSERT_EQ(read_at(f, ra, 4096, buf, 4096), 4096);  // a miss caches page 1
  const uint64_t reads = counter(stats::kReads), hits = counter(stats::kHits);
  const uint64_t bytes = counter(stats::kBytesRead), misses = counter(stats::kMisses);
  const uint64_t fbytes = file_counter(stats::kFileBytes), fhits = file_counter(stats::kFileHits);
  uint64_t served = 0, calls = 0;
  for (uint64_t pos = 4096; pos < 8192; pos += 64) {
    memset(buf, 0, sizeof buf);
    ASSERT_EQ(cache->read_hit(f, ra, pos, buf, 64), 64) << pos;
    ASSERT_TRUE(bytes_ok(buf, pos, 64, 1)) << pos;
    EXPECT_EQ(static_cast<int64_t>(ra.prev_pos), static_cast<int64_t>(pos + 64));
    served += 64;
    ++calls;
  }
  ASSERT_EQ(cache->read_hit(f, ra, 4096 + 1, buf, 4095), 4095);  // the whole rest of the page
  ASSERT_TRUE(bytes_ok(buf, 4097, 4095, 1));
  served += 4095;
  ++calls;
  EXPECT_EQ(counter(stats::kReads), reads + calls);
  EXPECT_EQ(counter(stats::kHits), hits + calls);
  EXPECT_EQ(counter(stats::kBytesRead), bytes + served);
  EXPECT_EQ(counter(stats::kMisses), misses);
  EXPECT_EQ(file_counter(stats::kFileBytes), fbytes + served);
  EXPECT_EQ(file_counter(stats::kFileHits), fhits + calls);

  // Declined, nothing counted: across a page boundary, into an uncached
  // page, zero bytes, at or past the end of file.
  ASSERT_EQ(read_at(f, ra, 10 * 4096, buf, 100), 100);  // caches the tail page
  const uint64_t reads2 = counter(stats::kReads);
  EXPECT_EQ(cache->read_hit(f, ra, 8192 - 10, buf, 20), 0);
  EXPECT_EQ(cache->read_hit(f, ra, 3 * 4096, buf, 20), 0);
  EXPECT_EQ(cache->read_hit(f, ra, 4096, buf, 0), 0);
  EXPECT_EQ(cache->read_hit(f, ra, size - 10, buf, 20), 0);  // would reach the end
  EXPECT_EQ(cache->read_hit(f, ra, size, buf, 1), 0);
  EXPECT_EQ(counter(stats::kReads), reads2);
  // Inside the tail page, short of the end: served.
  ASSERT_EQ(cache->read_hit(f, ra, size - 30, buf, 20), 20);
  EXPECT_TRUE(bytes_ok(buf, size - 30, 20, 1));
}

TEST_F(ReadHitTest, WriteBetweenTwoReadsIsNeverServedStale) {
  coherence = Coherence::kOpen;  // writes while holding the file open (cache_fixture.h)
  make_cache(8 << 20, 4096, 0);
  FileRef* f = open_pattern_file(50000, 2, O_RDWR);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  char buf[4096];
  ASSERT_EQ(read_at(f, ra, 8192, buf, 4096), 4096);
  ASSERT_EQ(cache->read_hit(f, ra, 8192 + 100, buf, 100), 100);  // the hint now names the frame
  ASSERT_TRUE(bytes_ok(buf, 8292, 100, 2));
  std::vector<char> other(300);
  fill_pattern(other, 8200, 3);
  ASSERT_EQ(pwrite(fds.back(), other.data(), other.size(), 8200), 300);
  cache->invalidate(f, 8200, 300);
  EXPECT_EQ(cache->read_hit(f, ra, 8192 + 100, buf, 100), 0);  // dropped: not served
  bool fast = true;
  ASSERT_EQ(shim_read(f, ra, 8192 + 100, buf, 100, &fast), 100);
  EXPECT_FALSE(fast);
  EXPECT_TRUE(bytes_ok(buf, 8292, 100, 3));
  // The page read again is served by the fast path, with the new bytes.
  ASSERT_EQ(cache->read_hit(f, ra, 8192 + 100, buf, 100), 100);
  EXPECT_TRUE(bytes_ok(buf, 8292, 100, 3));
}

TEST_F(ReadHitTest, ReassignedFrameIsNotServedFrom) {
  make_cache(64 << 10, 4096, 0);  // 16 frames
  std::string a = dir + "/a", b = dir + "/b";
  ASSERT_TRUE(write_pattern_file(a, 1 << 20, 4));
  ASSERT_TRUE(write_pattern_file(b, 1 << 20, 5));
  FileRef* fa = open_file(a);
  FileRef* fb = open_file(b);
  ASSERT_NE(fa, nullptr);
  ASSERT_NE(fb, nullptr);
  RaState ra = cache->new_ra_state(), rb = cache->new_ra_state();
  char buf[4096];
  ASSERT_EQ(read_at(fa, ra, 0, buf, 4096), 4096);
  ASSERT_EQ(cache->read_hit(fa, ra, 10, buf, 10), 10);  // hint: (a, 0) -> its frame
  // Read other pages of b until every frame has been given to another page
  // at least once; page 0 of b, which shares the hint slot's page number,
  // among them.
  for (uint64_t pos = 0; pos < 64 * 4096; pos += 4096) ASSERT_EQ(read_at(fb, rb, pos, buf, 4096), 4096);
  EXPECT_GT(counter(stats::kEvictions), 0u);
  // Page 0 of a is gone: the hint's frame now holds something else.
  EXPECT_EQ(cache->read_hit(fa, ra, 10, buf, 10), 0);
  bool fast = true;
  ASSERT_EQ(shim_read(fa, ra, 10, buf, 10, &fast), 10);
  EXPECT_TRUE(bytes_ok(buf, 10, 10, 4));
  // And b's pages, wherever they are, read right through the fast path.
  for (uint64_t pos = 60 * 4096; pos < 64 * 4096; pos += 1000) {
    ASSERT_EQ(shim_read(fb, rb, pos, buf, 50, &fast), 50);
    ASSERT_TRUE(bytes_ok(buf, pos, 50, 5)) << pos;
  }
}

TEST_F(ReadHitTest, FirstHitOnAPageReadAheadIsServedAndCountedOnce) {
  make_cache(16 << 20, 4096, 64 << 10);  // 16-page windows
  const uint64_t size = 1 << 20;
  FileRef* f = open_pattern_file(size, 8);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  char buf[16384];
  // A miss of 4 pages at 0: an 8-page window, the last 4 read ahead.
  ASSERT_EQ(read_at(f, ra, 0, buf, 16384), 16384);
  const uint64_t ahead = counter(stats::kReadaheadPages);
  ASSERT_EQ(ahead, 4u);
  const uint64_t misses = counter(stats::kMisses);
  // The window ahead is read asynchronously: wait until it is in.
  for (int i = 0; i < 5000 && seg->cached_bytes.load() < 8 * 4096; ++i) usleep(1000);
  ASSERT_EQ(seg->cached_bytes.load(), 8u * 4096);
  ASSERT_EQ(counter(stats::kReadaheadHits), 0u);
  // Pages read ahead and never read yet are hits of the fast path, each
  // counted as a read-ahead page used exactly once; only the page carrying
  // the READAHEAD mark is left to read() (it starts the next window).
  uint64_t served = 0;
  for (uint64_t p = 4; p < 4 + ahead; ++p) {
    RaState other = cache->new_ra_state();  // no sequential history
    int64_t r = cache->read_hit(f, other, p * 4096, buf, 4096);
    if (r == 0) continue;
    ASSERT_EQ(r, 4096);
    ASSERT_TRUE(bytes_ok(buf, p * 4096, 4096, 8)) << p;
    ++served;
    EXPECT_EQ(counter(stats::kReadaheadHits), served) << p;
  }
  EXPECT_EQ(served, ahead - 1);
  // Read again: hits, but not read-ahead pages used a second time.
  const uint64_t hits = counter(stats::kHits);
  for (uint64_t p = 4; p < 4 + ahead; ++p) {
    RaState other = cache->new_ra_state();
    cache->read_hit(f, other, p * 4096, buf, 4096);
  }
  EXPECT_EQ(counter(stats::kHits), hits + served);
  EXPECT_EQ(counter(stats::kReadaheadHits), served);
  EXPECT_EQ(counter(stats::kMisses), misses);
}

TEST_F(ReadHitTest, ReadaheadMarkStillTriggersAsyncReadahead) {
  make_cache(16 << 20, 4096, 64 << 10);  // 16-page windows
  const uint64_t size = 4 << 20;
  FileRef* f = open_pattern_file(size, 6);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  char buf[64];
  uint64_t fast_reads = 0;
  // A 64-byte sequential reader, as the shim serves it.
  for (uint64_t pos = 0; pos < size; pos += 64) {
    bool fast = false;
    ASSERT_EQ(shim_read(f, ra, pos, buf, 64, &fast), 64);
    ASSERT_TRUE(bytes_ok(buf, pos, 64, 6)) << pos;
    fast_reads += fast;
  }
  const uint64_t pages = size / 4096;
  // Only the first page was a synchronous miss: every later window was
  // started by a READAHEAD mark the fast path left to read().
  EXPECT_EQ(counter(stats::kMisses), 1u);
  EXPECT_EQ(counter(stats::kReadaheadPages), pages - 1);
  EXPECT_EQ(counter(stats::kReadaheadHits), pages - 1);
  EXPECT_EQ(counter(stats::kHits), size / 64 - 1);
  EXPECT_EQ(counter(stats::kReads), size / 64);
  EXPECT_EQ(counter(stats::kBytesRead), size);
  EXPECT_EQ(static_cast<int64_t>(ra.prev_pos), static_cast<int64_t>(size));
  // Most reads took the fast path (all but about one per page).
  EXPECT_GT(fast_reads, size / 64 - 2 * pages);
}

TEST_F(ReadHitTest, ThreadsOnOneDescriptionWithEvictionAndInvalidation) {
  make_cache(256 << 10, 4096, 32 << 10);  // 64 frames, 2 MiB file: constant eviction
  const uint64_t size = 2 << 20;
  FileRef* f = open_pattern_file(size, 7);
  ASSERT_NE(f, nullptr);
  // One description: one RaState. read() is serialized by a try-lock as the
  // shim does (a busy state reads with a scratch copy); read_hit is not.
  RaState ra = cache->new_ra_state();
  const RaState initial = ra;
  std::mutex ra_lock;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bad{0}, fast_total{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(77 + t);
      std::vector<char> buf(9000);
      for (int i = 0; i < 30000; ++i) {
        // Small reads in a few hot pages (fast path) and elsewhere (misses
        // that evict the hot pages' frames under the other threads).
        uint64_t pos = rng() % 4 == 0 ? rng() % size : (rng() % 8) * 4096 + rng() % 4000;
        uint64_t n = 1 + rng() % (rng() % 8 == 0 ? buf.size() : 96);
        int64_t got = cache->read_hit(f, ra, pos, buf.data(), n);
        if (got > 0) {
          fast_total.fetch_add(1, std::memory_order_relaxed);
        } else if (ra_lock.try_lock()) {
          got = read_at(f, ra, pos, buf.data(), n);
          ra_lock.unlock();
        } else {
          RaState scratch = initial;
          got = read_at(f, scratch, pos, buf.data(), n);
        }
        uint64_t expect = pos >= size ? 0 : std::min(n, size - pos);
        if (got != static_cast<int64_t>(expect) || !bytes_ok(buf.data(), pos, expect, 7)) bad.fetch_add(1);
      }
    });
  }
  // Coherence traffic on the hot pages (the bytes do not change, so every
  // read stays checkable): frames dropped under the readers.
  std::thread dropper([&] {
    while (!stop.load()) {
      cache->invalidate(f, (rand() % 8) * 4096, 4096);
      std::this_thread::yield();
    }
  });
  for (auto& th : threads) th.join();
  stop.store(true);
  dropper.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GT(fast_total.load(), 0u);
  EXPECT_GT(counter(stats::kEvictions), 0u);
}

TEST_F(ReadHitTest, CursorServesItsPageExactlyAndCountsLikeReadHits) {
  make_cache(8 << 20, 4096, 0);  // no readahead: no marks, no unread pages
  const uint64_t size = 10 * 4096 + 100;
  FileRef* f = open_pattern_file(size, 11);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  HitCursor cur;
  char buf[8192];
  EXPECT_EQ(cache->read_cursor(cur, ra, 0, buf, 64), 0);  // empty
  ASSERT_EQ(read_at(f, ra, 4096, buf, 4096), 4096);      // page 1 cached
  EXPECT_EQ(cache->read_cursor(cur, ra, 4096, buf, 64), 0);  // still empty
  ASSERT_EQ(cache->read_hit(f, ra, 4096, buf, 64, &cur), 64);  // fills it
  const uint64_t reads = counter(stats::kReads), hits = counter(stats::kHits);
  const uint64_t bytes = counter(stats::kBytesRead);
  const uint64_t fbytes = file_counter(stats::kFileBytes), fhits = file_counter(stats::kFileHits);
  const uint64_t samples = hit_latency_samples();
  // 64 sequential 64-byte reads of page 1, as the shim makes them: all but
  // the sampled ones (one in 256 per thread, timed by read_hit) by the cursor.
  uint64_t by_cursor = 0, by_hit = 0;
  for (int round = 0; round < 8; ++round) {
    for (uint64_t pos = 4096; pos < 8192; pos += 64) {
      memset(buf, 0, 64);
      int path_taken = -1;
      ASSERT_EQ(cursor_read(f, ra, cur, pos, buf, 64, &path_taken), 64) << pos;
      ASSERT_TRUE(bytes_ok(buf, pos, 64, 11)) << pos;
      ASSERT_NE(path_taken, 2) << pos;  // never read()
      EXPECT_EQ(static_cast<int64_t>(ra.prev_pos), static_cast<int64_t>(pos + 64));
      (path_taken == 0 ? by_cursor : by_hit) += 1;
    }
  }
  const uint64_t calls = 8 * 64;
  EXPECT_EQ(by_cursor + by_hit, calls);
  EXPECT_EQ(by_hit, calls / hit_path::kHitSample);  // 512 reads: 2 sampled
  EXPECT_EQ(hit_latency_samples(), samples + by_hit);
  EXPECT_EQ(counter(stats::kReads), reads + calls);
  EXPECT_EQ(counter(stats::kHits), hits + calls);
  EXPECT_EQ(counter(stats::kBytesRead), bytes + calls * 64);
  EXPECT_EQ(file_counter(stats::kFileBytes), fbytes + calls * 64);
  EXPECT_EQ(file_counter(stats::kFileHits), fhits + calls);

  // Declined, nothing counted: outside its page (before, across the end,
  // in another cached page), zero bytes.
  ASSERT_EQ(read_at(f, ra, 0, buf, 4096), 4096);  // page 0 cached too
  const uint64_t reads2 = counter(stats::kReads);
  EXPECT_EQ(cache->read_cursor(cur, ra, 4096 - 1, buf, 2), 0);
  EXPECT_EQ(cache->read_cursor(cur, ra, 8192 - 10, buf, 20), 0);
  EXPECT_EQ(cache->read_cursor(cur, ra, 100, buf, 20), 0);
  EXPECT_EQ(cache->read_cursor(cur, ra, 4096, buf, 0), 0);
  EXPECT_EQ(counter(stats::kReads), reads2);
  // The tail page: served short of the end of file, never at or past it.
  ASSERT_EQ(read_at(f, ra, 10 * 4096, buf, 100), 100);
  ASSERT_EQ(cache->read_hit(f, ra, size - 100, buf, 10, &cur), 10);
  int unused;
  ASSERT_EQ(cursor_read(f, ra, cur, size - 90, buf, 90, &unused), 90);
  EXPECT_TRUE(bytes_ok(buf, size - 90, 90, 11));
  EXPECT_EQ(cache->read_cursor(cur, ra, size - 10, buf, 20), 0);
  EXPECT_EQ(cache->read_cursor(cur, ra, size, buf, 1), 0);
}

TEST_F(ReadHitTest, CursorIsNeverServedFromAFrameThatChanged) {
  coherence = Coherence::kOpen;  // writes while holding the file open (cache_fixture.h)
  make_cache(64 << 10, 4096, 0);  // 16 frames
  std::string a = dir + "/a", b = dir + "/b";
  ASSERT_TRUE(write_pattern_file(a, 1 << 20, 12));
  ASSERT_TRUE(write_pattern_file(b, 1 << 20, 13));
  FileRef* fa = open_file(a, O_RDWR);
  FileRef* fb = open_file(b);
  ASSERT_NE(fa, nullptr);
  ASSERT_NE(fb, nullptr);
  RaState ra = cache->new_ra_state(), rb = cache->new_ra_state();
  HitCursor cur;
  char buf[4096];
  int path_taken = -1;
  // A write drops the page: the cursor declines, the new bytes come from read().
  ASSERT_EQ(read_at(fa, ra, 8192, buf, 4096), 4096);
  ASSERT_EQ(cache->read_hit(fa, ra, 8192, buf, 10, &cur), 10);
  ASSERT_EQ(cache->read_cursor(cur, ra, 8192 + 100, buf, 100), 100);
  std::vector<char> other(300);
  fill_pattern(other, 8200, 14);
  ASSERT_EQ(pwrite(fds[0], other.data(), other.size(), 8200), 300);
  cache->invalidate(fa, 8200, 300);
  EXPECT_EQ(cache->read_cursor(cur, ra, 8192 + 100, buf, 100), 0);
  ASSERT_EQ(cursor_read(fa, ra, cur, 8192 + 100, buf, 100, &path_taken), 100);
  EXPECT_EQ(path_taken, 2);
  EXPECT_TRUE(bytes_ok(buf, 8292, 100, 14));
  ASSERT_EQ(cursor_read(fa, ra, cur, 8192 + 100, buf, 100, &path_taken), 100);  // refilled
  ASSERT_EQ(cursor_read(fa, ra, cur, 8192 + 200, buf, 100, &path_taken), 100);
  EXPECT_EQ(path_taken, 0);
  EXPECT_TRUE(bytes_ok(buf, 8392, 100, 14));
  // Every frame given to pages of b: the cursor's frame now holds another
  // page, perhaps of the same number, and is not served from.
  for (uint64_t pos = 0; pos < 64 * 4096; pos += 4096) ASSERT_EQ(read_at(fb, rb, pos, buf, 4096), 4096);
  EXPECT_GT(counter(stats::kEvictions), 0u);
  EXPECT_EQ(cache->read_cursor(cur, ra, 8192 + 108, buf, 100), 0);
  ASSERT_EQ(cursor_read(fa, ra, cur, 8192 + 108, buf, 100, &path_taken), 100);
  EXPECT_EQ(path_taken, 2);
  EXPECT_TRUE(bytes_ok(buf, 8300, 100, 14));
}

TEST_F(ReadHitTest, ReadaheadMarkStillTriggersThroughTheCursor) {
  make_cache(16 << 20, 4096, 64 << 10);  // 16-page windows
  const uint64_t size = 4 << 20;
  FileRef* f = open_pattern_file(size, 15);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  HitCursor cur;
  char buf[64];
  uint64_t by_cursor = 0;
  for (uint64_t pos = 0; pos < size; pos += 64) {
    int path_taken = -1;
    ASSERT_EQ(cursor_read(f, ra, cur, pos, buf, 64, &path_taken), 64);
    ASSERT_TRUE(bytes_ok(buf, pos, 64, 15)) << pos;
    by_cursor += path_taken == 0;
  }
  const uint64_t pages = size / 4096;
  // Exactly as without the cursor (ReadaheadMarkStillTriggersAsyncReadahead).
  EXPECT_EQ(counter(stats::kMisses), 1u);
  EXPECT_EQ(counter(stats::kReadaheadPages), pages - 1);
  EXPECT_EQ(counter(stats::kReadaheadHits), pages - 1);
  EXPECT_EQ(counter(stats::kHits), size / 64 - 1);
  EXPECT_EQ(counter(stats::kReads), size / 64);
  EXPECT_EQ(counter(stats::kBytesRead), size);
  EXPECT_EQ(static_cast<int64_t>(ra.prev_pos), static_cast<int64_t>(size));
  // All but about two reads a page (read() for the first, read_hit to fill
  // the cursor) and the sampled ones took the cursor.
  EXPECT_GT(by_cursor, size / 64 - 2 * pages - size / 64 / hit_path::kHitSample - 1);
}

TEST_F(ReadHitTest, ThreadsWithCursorsUnderEvictionAndInvalidation) {
  make_cache(256 << 10, 4096, 32 << 10);  // 64 frames, 2 MiB file: constant eviction
  const uint64_t size = 2 << 20;
  FileRef* f = open_pattern_file(size, 16);
  ASSERT_NE(f, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bad{0}, by_cursor{0};
  std::vector<std::thread> threads;
  // A description each (its own readahead state and cursor), as threads
  // reading their own opens of one file.
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(91 + t);
      RaState ra = cache->new_ra_state();
      HitCursor cur;
      std::vector<char> buf(512);
      uint64_t pos = (rng() % 8) * 4096;
      for (int i = 0; i < 40000; ++i) {
        // Mostly sequential small reads in the hot pages, sometimes a jump
        // elsewhere (misses that evict the hot pages' frames).
        if (rng() % 64 == 0) pos = rng() % 4 == 0 ? rng() % size : (rng() % 8) * 4096;
        uint64_t n = 1 + rng() % 200;
        int path_taken = -1;
        int64_t got = cursor_read(f, ra, cur, pos, buf.data(), n, &path_taken);
        uint64_t expect = pos >= size ? 0 : std::min(n, size - pos);
        if (got != static_cast<int64_t>(expect) || !bytes_ok(buf.data(), pos, expect, 16)) bad.fetch_add(1);
        if (path_taken == 0) by_cursor.fetch_add(1, std::memory_order_relaxed);
        pos = pos + n >= size ? 0 : pos + n;
      }
    });
  }
  std::thread dropper([&] {
    while (!stop.load()) {
      cache->invalidate(f, (rand() % 8) * 4096, 4096);
      std::this_thread::yield();
    }
  });
  for (auto& th : threads) th.join();
  stop.store(true);
  dropper.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GT(by_cursor.load(), 0u);
  EXPECT_GT(counter(stats::kEvictions), 0u);
}

// What the shim's SIGSEGV/SIGBUS handler does (shim/signals.cc).
void fix_or_die(int sig, siginfo_t*, void* uc) {
  if (copy_guard_fixup(uc)) return;
  copy_guard_recover(sig);
  signal(sig, SIG_DFL);
  raise(sig);
}

// A bad buffer: the fast path declines without a crash and read() reports it.
TEST_F(ReadHitTest, BadBufferIsDeclinedNotACrash) {
  make_cache(8 << 20, 4096, 0);
  FileRef* f = open_pattern_file(100000, 8);
  ASSERT_NE(f, nullptr);
  struct sigaction sa {}, old_segv{}, old_bus{};
  sa.sa_sigaction = fix_or_die;
  sa.sa_flags = SA_SIGINFO;
  ASSERT_EQ(sigaction(SIGSEGV, &sa, &old_segv), 0);
  ASSERT_EQ(sigaction(SIGBUS, &sa, &old_bus), 0);
  long ps = sysconf(_SC_PAGESIZE);
  char* m = static_cast<char*>(mmap(nullptr, 2 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(m, MAP_FAILED);
  ASSERT_EQ(mprotect(m + ps, ps, PROT_READ), 0);
  RaState ra = cache->new_ra_state();
  char good[100];
  ASSERT_EQ(read_at(f, ra, 0, good, 100), 100);  // page 0 cached
  const uint64_t reads = counter(stats::kReads);
  EXPECT_EQ(cache->read_hit(f, ra, 0, m + ps, 100), 0);       // read-only: declined
  EXPECT_EQ(cache->read_hit(f, ra, 0, m + ps - 50, 100), 0);  // bad in the middle: declined
  EXPECT_EQ(counter(stats::kReads), reads);                    // and not counted
  EXPECT_EQ(read_at(f, ra, 0, m + ps, 100), -EFAULT);
  // Every shape of the copy (guarded_copy: overlapping 16-byte moves from 16
  // to 64 bytes, `rep movsb` otherwise), a buffer bad from its first byte or
  // from its middle, then good: declined, declined, exact.
  for (uint64_t n : {1, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 100}) {
    EXPECT_EQ(cache->read_hit(f, ra, 7, m + ps, n), 0) << n;
    if (n >= 2) {
      EXPECT_EQ(cache->read_hit(f, ra, 7, m + ps - n / 2, n), 0) << n;
    }
    char fine[128];
    ASSERT_EQ(cache->read_hit(f, ra, 7, fine, n), static_cast<int64_t>(n)) << n;
    EXPECT_TRUE(bytes_ok(fine, 7, n, 8)) << n;
  }
  // The cursor's copy is guarded the same way.
  HitCursor cur;
  ASSERT_EQ(cache->read_hit(f, ra, 0, good, 10, &cur), 10);
  const uint64_t reads2 = counter(stats::kReads);
  for (uint64_t n : {1, 16, 33, 64, 100}) {
    EXPECT_EQ(cache->read_cursor(cur, ra, 7, m + ps, n), 0) << n;
    if (n >= 2) {
      EXPECT_EQ(cache->read_cursor(cur, ra, 7, m + ps - n / 2, n), 0) << n;
    }
  }
  EXPECT_EQ(counter(stats::kReads), reads2);
  int path_taken = -1;
  ASSERT_EQ(cursor_read(f, ra, cur, 20, good, 64, &path_taken), 64);
  EXPECT_TRUE(bytes_ok(good, 20, 64, 8));
  // Still serving through the fast path.
  ASSERT_EQ(cache->read_hit(f, ra, 10, good, 90), 90);
  EXPECT_TRUE(bytes_ok(good, 10, 90, 8));
  sigaction(SIGSEGV, &old_segv, nullptr);
  sigaction(SIGBUS, &old_bus, nullptr);
  munmap(m, 2 * ps);
}

TEST(StatsStripes, ExitedThreadsGiveTheirStripeBack) {
  // Far more short-lived threads than stripes, one after another: each owns
  // a stripe while it runs, because the one before gave its stripe back.
  for (int i = 0; i < 3 * stats::kStripes; ++i) {
    bool owned = false;
    std::thread([&] {
      auto seg = std::make_unique<stats::Segment>();
      memset(static_cast<void*>(seg.get()), 0, sizeof(stats::Segment));
      StatsSink sink(seg.get());
      sink.add(stats::kReads);
      owned = StatsSink::thread_owns_stripe();
    }).join();
    EXPECT_TRUE(owned) << "thread " << i;
  }
}

}  // namespace
}  // namespace upcache
