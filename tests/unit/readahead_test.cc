// Unit tests of core/readahead: the kernel's on-demand readahead sequences.
//
// Every expected value below is derived by hand from
// /work/shared/reference/readahead.md (the derivation is in the comments),
// never by calling the function under test.
//
// Sim replays how core/cache.cc (like the kernel's filemap_read /
// filemap_get_pages) drives the algorithm: a read of [pos, pos + count)
// covers pages [index, last); walking them in order, a missing page triggers
// ra_on_miss(page, last - page) and the returned window is "issued" (pages
// already cached are skipped; the mark is set only on a newly read page); a
// page carrying the READAHEAD mark has its mark cleared and triggers
// ra_on_marked. prev_pos becomes the byte after the read (clamped to EOF).
#include "core/readahead.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <ostream>
#include <set>
#include <vector>

namespace upcache {
namespace {

constexpr uint64_t N = RaWindow::kNoMark;

// One call of the algorithm: the window returned and the state after it.
struct Event {
  char kind;            // 'S' ra_on_miss (sync), 'A' ra_on_marked (async)
  uint64_t start;       // returned window
  uint64_t size;
  uint64_t mark;
  uint64_t ra_start;    // RaState after the call
  uint32_t ra_size;
  uint32_t ra_async;
  bool operator==(const Event&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Event& e) {
  os << e.kind << "{win " << e.start << "+" << e.size << " mark ";
  if (e.mark == N) os << "none"; else os << e.mark;
  return os << ", ra " << e.ra_start << "/" << e.ra_size << "/" << e.ra_async << "}";
}

class Sim {
 public:
  Sim(uint64_t file_bytes, uint32_t ra_pages, uint32_t page_shift = 12, uint32_t io_pages = 0)
      : file_bytes_(file_bytes), shift_(page_shift) {
    ra.ra_pages = ra_pages;
    ctx.cached = &Sim::probe;
    ctx.self = this;
    ctx.page_shift = page_shift;
    ctx.io_pages = io_pages;
    ctx.file_pages = (file_bytes + page() - 1) >> shift_;
  }
  Sim(const Sim&) = delete;
  Sim& operator=(const Sim&) = delete;

  uint64_t page() const { return uint64_t{1} << shift_; }

  // read(2) of `count` bytes at byte `pos`.
  void read(uint64_t pos, uint64_t count) {
    if (count == 0 || pos >= file_bytes_) return;  // EOF: no readahead
    const uint64_t index = pos >> shift_;
    const uint64_t last = (pos + count + page() - 1) >> shift_;
    const uint64_t limit = std::min(last, ctx.file_pages);
    uint64_t p = index;
    while (p < limit) {
      if (!cached.count(p)) {
        RaWindow w = ra_on_miss(ra, ctx, p, last - p);
        record('S', w);
        issue(w);
        if (!cached.count(p)) {
          ADD_FAILURE() << "page " << p << " still missing after ra_on_miss";
          return;
        }
      }
      // The batch of cached pages; it ends after a marked page.
      while (p < limit && cached.count(p)) {
        const bool marked = marks.erase(p) != 0;
        ++p;
        if (marked) {
          RaWindow w = ra_on_marked(ra, ctx, p - 1, index, last - index);
          record('A', w);
          issue(w);
          break;
        }
      }
    }
    ra.prev_pos = static_cast<int64_t>(std::min(pos + count, file_bytes_));
  }
  void read_pages(uint64_t first, uint64_t n) { read(first << shift_, n << shift_); }

  // Pages cached by someone else (another descriptor), no marks.
  void preload(uint64_t first, uint64_t n) {
    for (uint64_t p = first; p < first + n; ++p) cached.insert(p);
  }

  RaState ra;
  RaContext ctx;
  std::set<uint64_t> cached;
  std::set<uint64_t> marks;
  std::vector<Event> events;

 private:
  static bool probe(const void* self, uint64_t index) {
    return static_cast<const Sim*>(self)->cached.count(index) != 0;
  }
  void record(char kind, const RaWindow& w) {
    events.push_back(Event{kind, w.start, w.size, w.mark, ra.start, ra.size, ra.async_size});
  }
  void issue(const RaWindow& w) {
    if (w.size > 0) {
      EXPECT_LE(w.start + w.size, ctx.file_pages) << "window past EOF";
    }
    if (w.mark != N) {
      EXPECT_GE(w.mark, w.start);
      EXPECT_LT(w.mark, w.start + w.size);
    }
    for (uint64_t p = w.start; p < w.start + w.size; ++p) {
      if (cached.insert(p).second && p == w.mark) marks.insert(p);
    }
  }

  uint64_t file_bytes_;
  uint32_t shift_;
};

constexpr uint64_t KiB = 1024;
constexpr uint64_t MiB = 1024 * KiB;

// ---------------------------------------------------------------------------
// Window size tables.

// max = 32 pages (128 KiB of 4 KiB pages), the kernel's default.
TEST(Readahead, InitAndNextSizeTableMax32) {
  // init: n = roundup_pow2(req); 4n if n <= 32/32 = 1, 2n if n <= 32/4 = 8,
  // else 32.
  //   req 1 -> n 1 -> 4 (1 <= 1)        req 2 -> n 2 -> 4 (2 <= 8)
  //   req 3,4 -> n 4 -> 8               req 5..8 -> n 8 -> 16
  //   req 9..16 -> n 16 > 8 -> 32       req 17.. -> 32
  const uint32_t expected_init[] = {0, 4, 4, 8, 8, 16, 16, 16, 16};
  for (uint32_t req = 1; req <= 8; ++req)
    EXPECT_EQ(ra_init_size(req, 32), expected_init[req]) << "req " << req;
  for (uint32_t req : {9u, 16u, 17u, 32u, 33u, 64u, 1000u, 0xffffffffu})
    EXPECT_EQ(ra_init_size(req, 32), 32u) << "req " << req;
  EXPECT_EQ(ra_init_size(0, 32), 4u);  // 0 counts as 1
  // In bytes with 4 KiB pages: 1-2 pages -> 16 KiB, 3-4 -> 32 KiB,
  // 5-8 -> 64 KiB, more -> 128 KiB.
  EXPECT_EQ(ra_init_size(2, 32) * 4 * KiB, 16 * KiB);
  EXPECT_EQ(ra_init_size(4, 32) * 4 * KiB, 32 * KiB);
  EXPECT_EQ(ra_init_size(8, 32) * 4 * KiB, 64 * KiB);
  EXPECT_EQ(ra_init_size(9, 32) * 4 * KiB, 128 * KiB);

  // next: 4*cur if cur < 32/16 = 2, 2*cur if cur <= 32/2 = 16, else 32.
  EXPECT_EQ(ra_next_size(1, 32), 4u);    // 1 < 2
  EXPECT_EQ(ra_next_size(2, 32), 4u);    // 2 <= 16
  EXPECT_EQ(ra_next_size(3, 32), 6u);
  EXPECT_EQ(ra_next_size(4, 32), 8u);
  EXPECT_EQ(ra_next_size(8, 32), 16u);
  EXPECT_EQ(ra_next_size(16, 32), 32u);  // 16 <= 16
  EXPECT_EQ(ra_next_size(17, 32), 32u);  // > 16: max
  EXPECT_EQ(ra_next_size(32, 32), 32u);
}

// A large maximum: 1024 pages (4 MiB of 4 KiB pages).
TEST(Readahead, InitAndNextSizeTableMax1024) {
  // init: 4n if n <= 1024/32 = 32, 2n if n <= 1024/4 = 256, else 1024.
  EXPECT_EQ(ra_init_size(1, 1024), 4u);
  EXPECT_EQ(ra_init_size(2, 1024), 8u);
  EXPECT_EQ(ra_init_size(3, 1024), 16u);     // n 4
  EXPECT_EQ(ra_init_size(16, 1024), 64u);
  EXPECT_EQ(ra_init_size(17, 1024), 128u);   // n 32 <= 32 -> 4n
  EXPECT_EQ(ra_init_size(32, 1024), 128u);
  EXPECT_EQ(ra_init_size(33, 1024), 128u);   // n 64 -> 2n
  EXPECT_EQ(ra_init_size(100, 1024), 256u);  // n 128 -> 2n
  EXPECT_EQ(ra_init_size(256, 1024), 512u);  // n 256 <= 256 -> 2n
  EXPECT_EQ(ra_init_size(257, 1024), 1024u); // n 512 > 256 -> max
  EXPECT_EQ(ra_init_size(1024, 1024), 1024u);
  EXPECT_EQ(ra_init_size(5000, 1024), 1024u);

  // next: 4*cur if cur < 1024/16 = 64, 2*cur if cur <= 512, else 1024.
  EXPECT_EQ(ra_next_size(4, 1024), 16u);
  EXPECT_EQ(ra_next_size(16, 1024), 64u);
  EXPECT_EQ(ra_next_size(63, 1024), 252u);
  EXPECT_EQ(ra_next_size(64, 1024), 128u);   // 64 is not < 64
  EXPECT_EQ(ra_next_size(128, 1024), 256u);
  EXPECT_EQ(ra_next_size(512, 1024), 1024u); // 512 <= 512
  EXPECT_EQ(ra_next_size(513, 1024), 1024u);
  EXPECT_EQ(ra_next_size(1024, 1024), 1024u);
}

// Neither size ever exceeds the maximum, whatever the maximum (also odd ones).
TEST(Readahead, SizesNeverExceedMax) {
  for (uint32_t max = 0; max <= 2100; ++max) {
    for (uint32_t v : {0u, 1u, 2u, 3u, 5u, 7u, 15u, 31u, 33u, 63u, 100u, 129u, 511u, 513u,
                       1023u, 1025u, 2047u, 4096u, 0x80000001u, 0xffffffffu}) {
      ASSERT_LE(ra_init_size(v, max), max) << "init " << v << " max " << max;
      ASSERT_LE(ra_next_size(v, max), max) << "next " << v << " max " << max;
    }
  }
  EXPECT_EQ(ra_init_size(1, 1), 1u);
  EXPECT_EQ(ra_next_size(1, 1), 1u);
  EXPECT_EQ(ra_init_size(5, 0), 0u);
}

// ---------------------------------------------------------------------------
// Sequences.

// 4 KiB reads from offset 0 of a 1 MiB file (256 pages), max 32.
TEST(Readahead, SequentialFromStart) {
  Sim s(1 * MiB, 32);
  for (uint64_t p = 0; p < 257; ++p) s.read_pages(p, 1);  // the last one is at EOF
  // p0 miss, index 0: size init(1) = 4, async 4 - 1 = 3, mark 0+4-3 = 1.
  // p1 marked, expected 0+4-3 = 1: start 4, size next(4) = 8 (4 <= 16), mark 4.
  // p4: start 12, size next(8) = 16, mark 12.
  // p12: start 28, size next(16) = 32 (16 <= 16), mark 28.
  // p28, p60, ...: start += 32, size next(32) = 32.
  // p220: start 252, size 32, clamped to 256 - 252 = 4 pages, mark 252 < 256.
  // p252: start 284 >= 256: nothing issued; the state still moves on.
  const std::vector<Event> expected = {
      {'S', 0, 4, 1, 0, 4, 3},
      {'A', 4, 8, 4, 4, 8, 8},
      {'A', 12, 16, 12, 12, 16, 16},
      {'A', 28, 32, 28, 28, 32, 32},
      {'A', 60, 32, 60, 60, 32, 32},
      {'A', 92, 32, 92, 92, 32, 32},
      {'A', 124, 32, 124, 124, 32, 32},
      {'A', 156, 32, 156, 156, 32, 32},
      {'A', 188, 32, 188, 188, 32, 32},
      {'A', 220, 32, 220, 220, 32, 32},
      {'A', 252, 4, 252, 252, 32, 32},
      {'A', 284, 0, N, 284, 32, 32},
  };
  EXPECT_EQ(s.events, expected);
  EXPECT_EQ(s.cached.size(), 256u);
  EXPECT_TRUE(s.marks.empty());
  EXPECT_EQ(s.ra.prev_pos, int64_t(1 * MiB));
}

// 64 KiB reads (16 pages) from offset 0, max 32: one window per two reads.
TEST(Readahead, SequentialLargeReadsFromStart) {
  Sim s(1 * MiB, 32);
  for (uint64_t p = 0; p < 96; p += 16) s.read_pages(p, 16);
  // [0,16) miss: init(16) = 32 (n 16 > 8), async 32 - 16 = 16, mark 16.
  // [16,32): p16 marked, req_count 32 - 16 = 16, expected 0+32-16 = 16:
  //   start 32, size next(32) = 32, mark 32.
  // [32,48): p32 marked, expected 32: start 64, mark 64. [48,64): hits.
  // [64,80): p64 marked: start 96, mark 96. [80,96): hits.
  const std::vector<Event> expected = {
      {'S', 0, 32, 16, 0, 32, 16},
      {'A', 32, 32, 32, 32, 32, 32},
      {'A', 64, 32, 64, 64, 32, 32},
      {'A', 96, 32, 96, 96, 32, 32},
  };
  EXPECT_EQ(s.events, expected);
}

// upcache's own units: 64 KiB pages (shift 16), max 64 pages (4 MiB),
// 128 KiB reads.
TEST(Readahead, SequentialFromStartUpcachePages) {
  Sim s(100 * MiB, 64, 16);
  for (uint64_t p = 0; p < 130; p += 2) s.read_pages(p, 2);
  // [0,2) miss: n 2 <= 64/32 = 2 -> init 8, async 8 - 2 = 6, mark 2.
  // [2,4): p2 marked = 0+8-6: start 8, next(8) = 16 (8 < 4 no, 8 <= 32), mark 8.
  // [8,10): start 24, next(16) = 32, mark 24.
  // [24,26): start 56, next(32) = 64 (32 <= 32), mark 56.
  // [56,58): start 120, next(64) = 64, mark 120.  [120,122): start 184.
  const std::vector<Event> expected = {
      {'S', 0, 8, 2, 0, 8, 6},
      {'A', 8, 16, 8, 8, 16, 16},
      {'A', 24, 32, 24, 24, 32, 32},
      {'A', 56, 64, 56, 56, 64, 64},
      {'A', 120, 64, 120, 120, 64, 64},
      {'A', 184, 64, 184, 184, 64, 64},
  };
  EXPECT_EQ(s.events, expected);
}

// A fresh descriptor reading 4 KiB at a time from page 100 of a 1000-page file.
TEST(Readahead, SequentialFromMiddle) {
  Sim s(1000 * 4 * KiB, 32);
  for (uint64_t p = 100; p < 140; ++p) s.read_pages(p, 1);
  // p100 miss: not index 0, prev_pos -1, no cached pages before: random,
  //   exactly [100,1), no mark, state untouched.
  // p101 miss: prev_index = 101*4096 >> 12 = 101, 101 - 101 = 0 <= 1:
  //   sequential, init(1) = 4, async 3, mark 102.
  // p102 marked (101+4-3): start 105, size 8, mark 105.
  // p105: start 113, size 16.  p113: start 129, size 32.
  // p129: start 161, size next(32) = 32.
  const std::vector<Event> expected = {
      {'S', 100, 1, N, 0, 0, 0},
      {'S', 101, 4, 102, 101, 4, 3},
      {'A', 105, 8, 105, 105, 8, 8},
      {'A', 113, 16, 113, 113, 16, 16},
      {'A', 129, 32, 129, 129, 32, 32},
      {'A', 161, 32, 161, 161, 32, 32},
  };
  EXPECT_EQ(s.events, expected);
}

// Unaligned reads (6000 bytes) from the middle: prev_pos is in bytes and is
// converted with page_shift.
TEST(Readahead, UnalignedSequentialReads) {
  Sim s(1000 * 4 * KiB, 32);
  const uint64_t base = 100 * 4096;  // 409600
  for (uint64_t i = 0; i < 5; ++i) s.read(base + i * 6000, 6000);
  // read 0: [409600, 415600) -> pages [100, 102) (415600/4096 = 101.5): miss
  //   at 100, prev -1, nothing cached before: exactly [100,2).
  //   prev_pos 415600 -> prev_index 101.
  // read 1: [415600, 421600) -> pages [101, 103): 101 cached, 102 missing,
  //   req 1, 102 - 101 = 1: sequential, init(1) = 4, async 3, mark 103.
  //   prev_index 421600 >> 12 = 102.
  // read 2: [421600, 427600) -> pages [102, 105): 103 marked = 102+4-3:
  //   start 106, size next(4) = 8, mark 106.
  // read 3: [427600, 433600) -> pages [104, 106): hits.
  // read 4: [433600, 439600) -> pages [105, 108): 106 marked: start 114,
  //   size 16, mark 114.
  const std::vector<Event> expected = {
      {'S', 100, 2, N, 0, 0, 0},
      {'S', 102, 4, 103, 102, 4, 3},
      {'A', 106, 8, 106, 106, 8, 8},
      {'A', 114, 16, 114, 114, 16, 16},
  };
  EXPECT_EQ(s.events, expected);
  EXPECT_EQ(s.ra.prev_pos, int64_t(base + 5 * 6000));
}

// Small random reads: each reads exactly its page and leaves the state alone.
TEST(Readahead, SmallRandomReads) {
  Sim s(1000 * 4 * KiB, 32);
  for (uint64_t p : {500u, 37u, 900u, 250u, 36u, 501u}) s.read_pages(p, 1);
  // None is at index 0 or within one page after the previous read
  // (37 - 501, 900 - 38, 250 - 901, 36 - 251 wrap around; 501 - 37 = 464);
  // no page before them is cached except 500 before 501: a run of 1, not
  // longer than the request of 1, so random too.
  const std::vector<Event> expected = {
      {'S', 500, 1, N, 0, 0, 0}, {'S', 37, 1, N, 0, 0, 0},  {'S', 900, 1, N, 0, 0, 0},
      {'S', 250, 1, N, 0, 0, 0}, {'S', 36, 1, N, 0, 0, 0},  {'S', 501, 1, N, 0, 0, 0},
  };
  EXPECT_EQ(s.events, expected);
  EXPECT_EQ(s.cached, (std::set<uint64_t>{36, 37, 250, 500, 501, 900}));
  EXPECT_TRUE(s.marks.empty());
}

// A read larger than the maximum (256 KiB, max 128 KiB), device limit unknown.
TEST(Readahead, OversizeRead) {
  Sim s(1000 * 4 * KiB, 32);
  s.read_pages(0, 64);
  // Miss at 0, req 64 > 32: init(64) = 32 (max), 32 > 64 is false so
  //   async = 32 / 2 = 16, mark 16.
  // p16 marked: req_count = 64 - 16 = 48, max stays 32 (io_pages 0);
  //   expected 0+32-16 = 16: start 32, size next(32) = 32, mark 32.
  // p32 marked, req_count 32: expected 32+32-32 = 32: start 64, mark 64.
  const std::vector<Event> expected = {
      {'S', 0, 32, 16, 0, 32, 16},
      {'A', 32, 32, 32, 32, 32, 32},
      {'A', 64, 32, 64, 64, 32, 32},
  };
  EXPECT_EQ(s.events, expected);
  EXPECT_EQ(s.ra.prev_pos, int64_t(64 * 4096));
}

// Oversize requests with a device that takes 128 pages in one request.
TEST(Readahead, OversizeReadUpToIoPages) {
  Sim s(4000 * 4 * KiB, 32, 12, 128);
  s.read_pages(200, 64);
  // Miss at 200, req 64 > 32 and io_pages 128 > 32: max = min(64, 128) = 64;
  //   64 > 64 is false, not index 0, not sequential (prev -1); nothing cached
  //   before: a random read, exactly [200,64) in one go.
  s.read_pages(1000, 256);
  // Miss at 1000, req 256: max = min(256, 128) = 128; 256 > 128: oversize.
  //   init(256, 128) = 128, async 128 / 2 = 64, mark 1064.
  // p1064 marked: req_count 1256 - 1064 = 192 -> max 128; expected
  //   1000+128-64 = 1064: start 1128, next(128, 128) = 128, mark 1128.
  // p1128 marked: req_count 128 -> max min(128, 128) = 128: start 1256,
  //   size 128, mark 1256.
  const std::vector<Event> expected = {
      {'S', 200, 64, N, 0, 0, 0},
      {'S', 1000, 128, 1064, 1000, 128, 64},
      {'A', 1128, 128, 1128, 1128, 128, 128},
      {'A', 1256, 128, 1256, 1256, 128, 128},
  };
  EXPECT_EQ(s.events, expected);
}

// Two sequential streams interleaved on one descriptor: A reads pages 0..12,
// B pages 500..512, alternately, 4 KiB each; max 32.
TEST(Readahead, TwoInterleavedStreams) {
  Sim s(1000 * 4 * KiB, 32);
  for (uint64_t i = 0; i <= 12; ++i) {
    s.read_pages(i, 1);
    s.read_pages(500 + i, 1);
  }
  // A0: miss at 0: init 4, async 3, window [0,4) mark 1.
  // B500: prev_index 1, not sequential, nothing cached before: exactly 500.
  // A1: marked, expected 0+4-3 = 1: start 4, size 8, mark 4.
  // B501: run before = 1 (500), not > req 1: exactly 501.
  // A2: hit.
  // B502: run 2 (501, 500) > 1, does not reach page 0: start 502,
  //   size min(2 + 1, 32) = 3, async 1, mark 502+3-1 = 504.
  // A3, B503: hits.
  // A4: marked but state expects 502+3-1 = 504: lost. 5..11 cached, first
  //   miss 12, gap 8: size next(8 + 1) = 18 (9 <= 16), start 12, mark 12.
  // B504: marked, state expects 12: lost. First miss 505, gap 1:
  //   next(1 + 1) = 4 (2 is not < 2; 2 <= 16), start 505, mark 505.
  // A5: hit.  B505: marked = 505+4-4: start 509, next(4) = 8, mark 509.
  // A6..A9, B506..B508: hits.  B509: marked = 509: start 517, size 16.
  // A10, B510, A11, B511: hits.
  // A12: marked, state expects 517: lost. 13..29 cached, first miss 30,
  //   gap 18: next(18 + 1) = 32 (19 > 16), start 30, mark 30.
  // B512: hit.
  const std::vector<Event> expected = {
      {'S', 0, 4, 1, 0, 4, 3},
      {'S', 500, 1, N, 0, 4, 3},
      {'A', 4, 8, 4, 4, 8, 8},
      {'S', 501, 1, N, 4, 8, 8},
      {'S', 502, 3, 504, 502, 3, 1},
      {'A', 12, 18, 12, 12, 18, 18},
      {'A', 505, 4, 505, 505, 4, 4},
      {'A', 509, 8, 509, 509, 8, 8},
      {'A', 517, 16, 517, 517, 16, 16},
      {'A', 30, 32, 30, 30, 32, 32},
  };
  EXPECT_EQ(s.events, expected);
}

// A reader goes through pages 0..9, seeks to 200 and reads 200..205, then
// seeks back and resumes at 10..20.
TEST(Readahead, PauseAndResume) {
  Sim s(1000 * 4 * KiB, 32);
  for (uint64_t p = 0; p < 10; ++p) s.read_pages(p, 1);
  for (uint64_t p = 200; p < 206; ++p) s.read_pages(p, 1);
  for (uint64_t p = 10; p <= 20; ++p) s.read_pages(p, 1);
  // p0: [0,4) mark 1.  p1: [4,12) mark 4.  p4: [12,28) mark 12.
  // p200: prev_index 10, not sequential, 199 not cached: exactly 200.
  // p201: 201 - 201 = 0: sequential: init 4, async 3, [201,205) mark 202.
  // p202: marked = 201+4-3: [205,213) mark 205.  p205: [213,229) mark 213.
  // p10, p11: hits (cached since p1).
  // p12: the mark left at 12 is still there, but the state expects 213:
  //   lost. 13..27 cached, first miss 28, gap 16: next(16 + 1) = 32 (17 > 16),
  //   [28,60) mark 28.  p13..p20: hits.
  const std::vector<Event> expected = {
      {'S', 0, 4, 1, 0, 4, 3},
      {'A', 4, 8, 4, 4, 8, 8},
      {'A', 12, 16, 12, 12, 16, 16},
      {'S', 200, 1, N, 12, 16, 16},
      {'S', 201, 4, 202, 201, 4, 3},
      {'A', 205, 8, 205, 205, 8, 8},
      {'A', 213, 16, 213, 213, 16, 16},
      {'A', 28, 32, 28, 28, 32, 32},
  };
  EXPECT_EQ(s.events, expected);
}

// Context readahead: a miss that is not sequential for this descriptor, after
// pages someone else cached.
TEST(Readahead, ContextReadaheadFromCachedHistory) {
  {
    // Pages 0..4 cached; fresh descriptor reads page 5. Run 5 reaches page 0:
    // doubled to 10; size min(10 + 1, 32) = 11, async 1, mark 5+11-1 = 15.
    Sim s(1000 * 4 * KiB, 32);
    s.preload(0, 5);
    s.read_pages(5, 1);
    EXPECT_EQ(s.events, (std::vector<Event>{{'S', 5, 11, 15, 5, 11, 1}}));
  }
  {
    // Pages 10..19 cached, 9 not: run 10, size 11, [20,31) mark 30.
    Sim s(1000 * 4 * KiB, 32);
    s.preload(10, 10);
    s.read_pages(20, 1);
    EXPECT_EQ(s.events, (std::vector<Event>{{'S', 20, 11, 30, 20, 11, 1}}));
  }
  {
    // Pages 0..99 cached: run counted up to max 32 only (not back to page 0):
    // size min(32 + 2, 32) = 32 for a 2-page read, [100,132) mark 131.
    Sim s(1000 * 4 * KiB, 32);
    s.preload(0, 100);
    s.read_pages(100, 2);
    EXPECT_EQ(s.events, (std::vector<Event>{{'S', 100, 32, 131, 100, 32, 1}}));
  }
  {
    // Pages 40..42 cached, 4-page read at 43: run 3 <= 4: random, exactly 4.
    Sim s(1000 * 4 * KiB, 32);
    s.preload(40, 3);
    s.read_pages(43, 4);
    EXPECT_EQ(s.events, (std::vector<Event>{{'S', 43, 4, N, 0, 0, 0}}));
  }
}

// A marked page without state, with everything cached well ahead of it:
// nothing to issue, state unchanged.
TEST(Readahead, LostStateNothingMissingAhead) {
  Sim s(1000 * 4 * KiB, 32);
  s.preload(0, 100);
  s.marks.insert(50);
  s.read_pages(50, 1);
  // 51..82 (32 pages) all cached: no miss within max: nothing.
  EXPECT_EQ(s.events, (std::vector<Event>{{'A', 0, 0, N, 0, 0, 0}}));
  // With a miss exactly max pages after the mark it continues there:
  // first miss 50+32 = 82, gap 32: next(32 + 1) = 32, [82,114) mark 82.
  Sim t(1000 * 4 * KiB, 32);
  t.preload(0, 82);
  t.marks.insert(50);
  t.read_pages(50, 1);
  EXPECT_EQ(t.events, (std::vector<Event>{{'A', 82, 32, 82, 82, 32, 32}}));
}

// A file smaller than the first window.
TEST(Readahead, FileShorterThanOneWindow) {
  {
    // 10 KiB (3 pages) read with one 128 KiB read: pages [0,32) wanted.
    // Miss at 0: init(32) = 32, async 32 / 2 = 16 (32 > 32 false). The
    // window is clamped to 3 pages and its mark (16) falls past EOF: none.
    Sim s(10 * KiB, 32);
    s.read(0, 128 * KiB);
    s.read(10 * KiB, 128 * KiB);  // at EOF: nothing
    EXPECT_EQ(s.events, (std::vector<Event>{{'S', 0, 3, N, 0, 32, 16}}));
    EXPECT_EQ(s.cached, (std::set<uint64_t>{0, 1, 2}));
    EXPECT_EQ(s.ra.prev_pos, int64_t(10 * KiB));
  }
  {
    // Same file, 4 KiB reads. p0: init 4, async 3, clamped to 3 pages, mark
    // 1 < 3 kept. p1 marked: start 4, size 8: at EOF, nothing issued.
    Sim s(10 * KiB, 32);
    for (uint64_t p = 0; p < 4; ++p) s.read_pages(p, 1);
    const std::vector<Event> expected = {
        {'S', 0, 3, 1, 0, 4, 3},
        {'A', 4, 0, N, 4, 8, 8},
    };
    EXPECT_EQ(s.events, expected);
  }
  {
    // An empty file issues nothing.
    RaState ra;
    ra.ra_pages = 32;
    RaContext ctx;
    ctx.page_shift = 12;
    RaWindow w = ra_on_miss(ra, ctx, 0, 1);
    EXPECT_EQ(w.size, 0u);
    EXPECT_EQ(w.mark, N);
  }
}

// POSIX_FADV_RANDOM: every miss reads exactly the request, whatever its size
// and position; marks left by others do not start readahead.
TEST(Readahead, RandomAdvised) {
  Sim s(1000 * 4 * KiB, 32);
  s.ra.random = true;
  for (uint64_t p = 0; p < 4; ++p) s.read_pages(p, 1);
  s.read_pages(100, 64);  // larger than max: still exactly the request
  s.preload(300, 10);
  s.marks.insert(300);
  s.read_pages(300, 1);
  const std::vector<Event> expected = {
      {'S', 0, 1, N, 0, 0, 0},   {'S', 1, 1, N, 0, 0, 0}, {'S', 2, 1, N, 0, 0, 0},
      {'S', 3, 1, N, 0, 0, 0},   {'S', 100, 64, N, 0, 0, 0},
      {'A', 0, 0, N, 0, 0, 0},
  };
  EXPECT_EQ(s.events, expected);
  EXPECT_TRUE(s.marks.empty());
}

// ra_pages == 0: readahead disabled; each miss reads exactly the request.
TEST(Readahead, ReadaheadDisabled) {
  Sim s(1000 * 4 * KiB, 0);
  s.read_pages(0, 4);
  s.read_pages(4, 4);
  s.read_pages(8, 1);
  s.preload(300, 10);
  s.marks.insert(300);
  s.read_pages(300, 1);
  const std::vector<Event> expected = {
      {'S', 0, 4, N, 0, 0, 0},
      {'S', 4, 4, N, 0, 0, 0},
      {'S', 8, 1, N, 0, 0, 0},
      {'A', 0, 0, N, 0, 0, 0},
  };
  EXPECT_EQ(s.events, expected);
  EXPECT_EQ(s.cached.size(), 9u + 10u);
}

// The stream flag: windows the state describes (a stream: sequential,
// context, async readahead) carry it; the exact request of a random reader
// (random read, random-advised, readahead off) does not, so the cache may
// read only the blocks such a reader asks for and never marks its pages.
TEST(Readahead, StreamFlagTellsStreamsFromRandomReads) {
  auto miss = [](RaState& ra, RaContext& ctx, uint64_t index, uint64_t req) {
    return ra_on_miss(ra, ctx, index, req);
  };
  std::set<uint64_t> cached;
  RaContext ctx;
  ctx.page_shift = 12;
  ctx.file_pages = 1000;
  ctx.self = &cached;
  ctx.cached = [](const void* self, uint64_t i) {
    return static_cast<const std::set<uint64_t>*>(self)->count(i) != 0;
  };
  {
    RaState ra;
    ra.ra_pages = 32;
    RaWindow w = miss(ra, ctx, 500, 1);  // random: exactly the request
    EXPECT_EQ(w.start, 500u);
    EXPECT_EQ(w.size, 1u);
    EXPECT_EQ(w.mark, N);
    EXPECT_FALSE(w.stream);
    w = miss(ra, ctx, 0, 1);  // start of file: a stream
    EXPECT_EQ(w.size, 4u);
    EXPECT_EQ(w.mark, 1u);
    EXPECT_TRUE(w.stream);
    ra.prev_pos = 4 * 4096;
    w = miss(ra, ctx, 4, 1);  // sequential continuation
    EXPECT_TRUE(w.stream);
    w = ra_on_marked(ra, ctx, w.mark, 5, 1);  // async readahead
    EXPECT_GT(w.size, 0u);
    EXPECT_TRUE(w.stream);
  }
  {
    // Context readahead: a run of cached pages longer than the request.
    for (uint64_t p = 90; p < 100; ++p) cached.insert(p);
    RaState ra;
    ra.ra_pages = 32;
    RaWindow w = miss(ra, ctx, 100, 1);
    EXPECT_EQ(w.size, 11u);
    EXPECT_TRUE(w.stream);
    // A run no longer than the request: random, exact.
    cached.insert(199);
    w = miss(ra, ctx, 200, 1);
    EXPECT_EQ(w.size, 1u);
    EXPECT_FALSE(w.stream);
    cached.clear();
  }
  {
    RaState ra;
    ra.ra_pages = 32;
    ra.random = true;
    RaWindow w = miss(ra, ctx, 0, 1);  // random-advised: even at page 0
    EXPECT_EQ(w.size, 1u);
    EXPECT_FALSE(w.stream);
    RaState off;
    off.ra_pages = 0;
    w = miss(off, ctx, 0, 3);  // readahead off
    EXPECT_EQ(w.size, 3u);
    EXPECT_FALSE(w.stream);
    // Nothing to issue is no stream either.
    RaState ra2;
    ra2.ra_pages = 32;
    w = miss(ra2, ctx, 1000, 1);
    EXPECT_EQ(w.size, 0u);
    EXPECT_FALSE(w.stream);
  }
}

}  // namespace
}  // namespace upcache
