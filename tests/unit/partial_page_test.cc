// Partial pages (core/frame.h): a small random miss reads only the blocks it
// needs; reads inside them are hits; a read needing other bytes, a readahead
// window or WILLNEED completes the page in place, exactly once however many
// threads or processes race for it; errors, RWF_NOWAIT, end of file,
// coherence and the counters stay exact.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/cache.h"
#include "core/fault.h"
#include "core/stats.h"
#include "core/stats_sink.h"
#include "cache_fixture.h"
#include "test_files.h"

namespace upcache {
namespace {

using upcache::testing::pattern_byte;
using upcache::testing::write_pattern_file;

constexpr uint64_t kPage = 16384;

class PartialPageTest : public upcache::testing::CacheFixture {
 protected:
  PartialPageTest() : CacheFixture("partial") {}

  // Bytes read from the disk so far.
  uint64_t disk() { return counter(stats::kDirectBytes) + counter(stats::kBufferedBytes); }
  int64_t cached() { return static_cast<int64_t>(seg->cached_bytes.load()); }

  // A read with a fresh readahead state: a lone random read.
  int64_t random_read(FileRef* f, uint64_t pos, uint64_t n, uint64_t salt, uint64_t size,
                      unsigned flags = 0) {
    RaState ra = cache->new_ra_state();
    return checked_read(f, ra, pos, n, salt, size, flags);
  }
  int64_t checked_read(FileRef* f, RaState& ra, uint64_t pos, uint64_t n, uint64_t salt,
                       uint64_t size, unsigned flags = 0) {
    std::vector<char> buf(n);
    iovec iov{buf.data(), n};
    int64_t got = cache->read(f, ra, pos, &iov, 1, flags);
    if (got < 0) return got;
    uint64_t expect = pos >= size ? 0 : std::min<uint64_t>(n, size - pos);
    EXPECT_EQ(got, static_cast<int64_t>(expect)) << "pos " << pos << " n " << n;
    for (int64_t i = 0; i < got; ++i)
      if (static_cast<uint8_t>(buf[i]) != pattern_byte(pos + i, salt)) {
        ADD_FAILURE() << "wrong byte at " << pos + i;
        break;
      }
    return got;
  }
  FileRef* pattern_file(uint64_t size, uint64_t salt, const char* name = "f") {
    std::string path = dir + "/" + name;
    EXPECT_TRUE(write_pattern_file(path, size, salt));
    return open_file(path);
  }
};

TEST_F(PartialPageTest, RandomMissReadsOnlyItsBlocksAndCompletesOnce) {
  make_cache(8 << 20, kPage);
  const uint64_t size = 1 << 20;
  FileRef* f = pattern_file(size, 1);
  ASSERT_NE(f, nullptr);
  const uint64_t page5 = 5 * kPage;

  // 100 bytes in the second block of page 5: one 4 KiB block from the disk.
  ASSERT_EQ(random_read(f, page5 + 5000, 100, 1, size), 100);
  EXPECT_EQ(disk(), 4096u);
  EXPECT_EQ(counter(stats::kMisses), 1u);
  EXPECT_EQ(cached(), 4096);
  EXPECT_EQ(counter(stats::kReadaheadPages), 0u);

  // Anything inside the block is a hit, on both paths, without I/O.
  ASSERT_EQ(random_read(f, page5 + 4096, 4096, 1, size), 4096);
  RaState ra = cache->new_ra_state();
  std::vector<char> buf(4096);
  ASSERT_EQ(cache->read_hit(f, ra, page5 + 4096 + 10, buf.data(), 1000), 1000);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(static_cast<uint8_t>(buf[i]), pattern_byte(page5 + 4106 + i, 1));
  EXPECT_EQ(disk(), 4096u);
  EXPECT_EQ(counter(stats::kMisses), 1u);
  EXPECT_EQ(counter(stats::kHits), 2u);

  // Bytes outside it are never served by the fast path...
  EXPECT_EQ(cache->read_hit(f, ra, page5 + 4000, buf.data(), 200), 0);
  EXPECT_EQ(cache->read_hit(f, ra, page5 + 8192, buf.data(), 1), 0);
  // ...and a read needing them completes the page: one read of the page.
  ASSERT_EQ(random_read(f, page5 + 4000, 200, 1, size), 200);
  EXPECT_EQ(disk(), 4096u + kPage);
  EXPECT_EQ(counter(stats::kMisses), 2u);
  EXPECT_EQ(cached(), static_cast<int64_t>(kPage));

  // Now the page is whole: every byte is a hit.
  uint64_t hits = counter(stats::kHits);
  for (uint64_t off = 0; off < kPage; off += 1024) random_read(f, page5 + off, 1024, 1, size);
  EXPECT_EQ(cache->read_hit(f, ra, page5, buf.data(), 4096), 4096);
  EXPECT_EQ(disk(), 4096u + kPage);
  EXPECT_EQ(counter(stats::kMisses), 2u);
  EXPECT_EQ(counter(stats::kHits), hits + 16 + 1);
}

TEST_F(PartialPageTest, ReadSpanningBlocksHoldsThemAll) {
  make_cache(8 << 20, kPage);
  const uint64_t size = 1 << 20;
  FileRef* f = pattern_file(size, 2);
  ASSERT_NE(f, nullptr);
  const uint64_t page7 = 7 * kPage;
  // [3000, 9000) of the page: blocks 0..2.
  ASSERT_EQ(random_read(f, page7 + 3000, 6000, 2, size), 6000);
  EXPECT_EQ(disk(), 12288u);
  EXPECT_EQ(cached(), 12288);
  ASSERT_EQ(random_read(f, page7, 12288, 2, size), 12288);
  EXPECT_EQ(disk(), 12288u);
  // The last byte of the page is not held.
  ASSERT_EQ(random_read(f, page7 + kPage - 1, 1, 2, size), 1);
  EXPECT_EQ(disk(), 12288u + kPage);
}

TEST_F(PartialPageTest, PageAtEndOfFile) {
  make_cache(8 << 20, kPage);
  // Page 4 holds 5000 bytes of file.
  const uint64_t size = 4 * kPage + 5000;
  FileRef* f = pattern_file(size, 3);
  ASSERT_NE(f, nullptr);
  const uint64_t page4 = 4 * kPage;
  // The first block of the tail page: partial [0, 4096).
  ASSERT_EQ(random_read(f, page4 + 100, 50, 3, size), 50);
  EXPECT_EQ(disk(), 4096u);
  // Up to and past end of file: completed, exactly 5000 valid bytes.
  ASSERT_EQ(random_read(f, page4 + 4500, 1000, 3, size), 500);
  EXPECT_EQ(disk(), 4096u + 5000u);
  EXPECT_EQ(cached(), 5000);
  ASSERT_EQ(random_read(f, page4, kPage, 3, size), 5000);
  ASSERT_EQ(random_read(f, size, 10, 3, size), 0);

  // Another file: a read near the end of the tail page reads from its block
  // to end of file, and the first block is then missing.
  FileRef* g = pattern_file(size, 4, "g");
  ASSERT_NE(g, nullptr);
  uint64_t before = disk();
  ASSERT_EQ(random_read(g, page4 + 4200, 100, 4, size), 100);
  EXPECT_EQ(disk(), before + 5000 - 4096);
  ASSERT_EQ(random_read(g, page4 + 4096, 2000, 4, size), 5000 - 4096);
  EXPECT_EQ(disk(), before + 5000 - 4096);
  ASSERT_EQ(random_read(g, page4 + 10, 10, 4, size), 10);
  EXPECT_EQ(disk(), before + 5000 - 4096 + 5000);
  ASSERT_EQ(random_read(g, page4, kPage, 4, size), 5000);
  EXPECT_EQ(cached(), 10000);
}

TEST_F(PartialPageTest, SequentialReadaheadCompletesPartialPages) {
  make_cache(8 << 20, kPage);
  const uint64_t size = 1 << 20;
  FileRef* f = pattern_file(size, 5);
  ASSERT_NE(f, nullptr);
  for (uint64_t p : {3ull, 10ull, 11ull, 40ull}) ASSERT_EQ(random_read(f, p * kPage + 8192, 64, 5, size), 64);
  EXPECT_EQ(disk(), 4 * 4096u);
  EXPECT_EQ(counter(stats::kReadaheadPages), 0u);
  RaState seq = cache->new_ra_state();
  for (uint64_t pos = 0; pos < size; pos += 10000) checked_read(f, seq, pos, 10000, 5, size);
  // Every page read once whole, the partial ones included.
  EXPECT_EQ(disk(), 4 * 4096u + size);
  EXPECT_EQ(cached(), static_cast<int64_t>(size));
  uint64_t before = disk();
  RaState again = cache->new_ra_state();
  for (uint64_t pos = 0; pos < size; pos += 10000) checked_read(f, again, pos, 10000, 5, size);
  EXPECT_EQ(disk(), before);
}

TEST_F(PartialPageTest, WillNeedCompletesPartialPages) {
  make_cache(8 << 20, kPage);
  const uint64_t size = 1 << 20;
  FileRef* f = pattern_file(size, 6);
  ASSERT_NE(f, nullptr);
  for (uint64_t p : {2ull, 7ull, 63ull}) ASSERT_EQ(random_read(f, p * kPage + 12288, 4096, 6, size), 4096);
  uint64_t after_random = disk();
  ASSERT_EQ(after_random, 3 * 4096u);
  RaState ra = cache->new_ra_state();
  ASSERT_EQ(cache->advise(f, ra, 0, 0, POSIX_FADV_WILLNEED), 0);
  // Every page is read now, whole: readers find them in flight or up to date.
  uint64_t misses = counter(stats::kMisses);
  for (uint64_t pos = 0; pos < size; pos += kPage) random_read(f, pos, kPage, 6, size);
  EXPECT_EQ(counter(stats::kMisses), misses);
  EXPECT_EQ(disk() - after_random, size);  // the partial pages re-read whole
  EXPECT_EQ(cached(), static_cast<int64_t>(size));
}

TEST_F(PartialPageTest, RandomReadersLeaveNoMarks) {
  make_cache(8 << 20, kPage);
  const uint64_t size = 1 << 20;
  FileRef* f = pattern_file(size, 7);
  ASSERT_NE(f, nullptr);
  std::mt19937_64 rng(7);
  // Odd pages only: no run of cached pages that context readahead would
  // take for a stream.
  for (int i = 0; i < 300; ++i) {
    uint64_t pos = (1 + 2 * (rng() % 32)) * kPage + (rng() % 4) * 4096;
    random_read(f, pos, 4096, 7, size);
  }
  // Partial pages, completed pages: none of it is readahead, none of it
  // starts any.
  EXPECT_EQ(counter(stats::kReadaheadPages), 0u);
}

TEST_F(PartialPageTest, NoWaitServesHeldBytesOnly) {
  make_cache(8 << 20, kPage);
  const uint64_t size = 1 << 20;
  FileRef* f = pattern_file(size, 8);
  ASSERT_NE(f, nullptr);
  const uint64_t page9 = 9 * kPage;
  EXPECT_EQ(random_read(f, page9 + 4096, 100, 8, size, kReadNoWait), -EAGAIN);
  EXPECT_EQ(disk(), 0u);
  ASSERT_EQ(random_read(f, page9 + 4096, 100, 8, size), 100);
  EXPECT_EQ(random_read(f, page9 + 4096, 4096, 8, size, kReadNoWait), 4096);
  EXPECT_EQ(random_read(f, page9 + 4095, 2, 8, size, kReadNoWait), -EAGAIN);
  EXPECT_EQ(random_read(f, page9 + 8192, 2, 8, size, kReadNoWait), -EAGAIN);
  EXPECT_EQ(disk(), 4096u);
}

TEST_F(PartialPageTest, ErrorDuringCompletionDropsThePageAndIsRetried) {
  const uint64_t page5 = 5 * kPage;
  std::string fault = "eio_at=" + std::to_string(page5 + 8192 + 100);
  make_cache(8 << 20, kPage, 1 << 20, fault.c_str());
  const uint64_t size = 1 << 20;
  FileRef* f = pattern_file(size, 9);
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(random_read(f, page5 + 10, 100, 9, size), 100);
  EXPECT_EQ(cached(), 4096);
  // Completing the page touches the bad block: the read fails like the kernel's.
  EXPECT_EQ(random_read(f, page5 + 8192, 100, 9, size), -EIO);
  EXPECT_GE(counter(stats::kIoErrors), 1u);
  // Nothing of the failed completion stays: the page was dropped.
  EXPECT_EQ(cached(), 0);
  RaState ra = cache->new_ra_state();
  std::vector<char> buf(100);
  EXPECT_EQ(cache->read_hit(f, ra, page5 + 10, buf.data(), 100), 0);
  // The held bytes are read again, fine; the bad block keeps failing; the
  // blocks around it are fine.
  ASSERT_EQ(random_read(f, page5 + 10, 100, 9, size), 100);
  EXPECT_EQ(random_read(f, page5 + 8192 + 50, 100, 9, size), -EIO);
  ASSERT_EQ(random_read(f, page5 + 12288, 4096, 9, size), 4096);
  ASSERT_EQ(random_read(f, page5 + 4096, 4096, 9, size), 4096);
  // A read of the whole page fails, as it does without partial pages.
  RaState seq = cache->new_ra_state();
  EXPECT_EQ(checked_read(f, seq, page5, kPage, 9, size), -EIO);
}

TEST_F(PartialPageTest, CoherenceAndEvictionKeepTheCountersExact) {
  coherence = Coherence::kOpen;  // writes while holding the file open (cache_fixture.h)
  make_cache(64 * kPage, kPage);  // 64 frames for a 256-page file
  const uint64_t size = 256 * kPage;
  std::string path = dir + "/f";
  ASSERT_TRUE(write_pattern_file(path, size, 10));
  FileRef* f = open_file(path);
  ASSERT_NE(f, nullptr);
  std::mt19937_64 rng(10);
  for (int i = 0; i < 3000; ++i) {
    uint64_t pos = rng() % size, n = 1 + rng() % 6000;
    random_read(f, pos, n, 10, size);
    ASSERT_LE(cached(), static_cast<int64_t>(64 * kPage));
    ASSERT_GE(cached(), 0);
  }
  EXPECT_GT(counter(stats::kEvictions), 0u);
  // Overwrite a range: the pages touched, partial or not, are dropped.
  std::vector<char> zeros(3 * kPage, 0);
  int fd = open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, zeros.data(), zeros.size(), 10 * kPage + 5000), static_cast<ssize_t>(zeros.size()));
  close(fd);
  cache->invalidate(f, 10 * kPage + 5000, zeros.size());
  for (uint64_t pos = 10 * kPage; pos < 14 * kPage; pos += 4096) {
    RaState ra = cache->new_ra_state();
    std::vector<char> buf(4096);
    iovec iov{buf.data(), buf.size()};
    ASSERT_EQ(cache->read(f, ra, pos, &iov, 1), 4096);
    for (uint64_t k = 0; k < 4096; ++k) {
      uint64_t off = pos + k;
      uint8_t want = off >= 10 * kPage + 5000 && off < 13 * kPage + 5000 ? 0 : pattern_byte(off, 10);
      ASSERT_EQ(static_cast<uint8_t>(buf[k]), want) << off;
    }
  }
  // Dropping everything leaves nothing counted.
  RaState ra = cache->new_ra_state();
  ASSERT_EQ(cache->advise(f, ra, 0, 0, POSIX_FADV_DONTNEED), 0);
  EXPECT_EQ(cached(), 0);
}

// Threads that each need other bytes of the same partial pages: one of them
// reads each page, the others wait for it; every byte is right.
TEST_F(PartialPageTest, ThreadsRacingToCompleteAPageCompleteItOnce) {
  make_cache(8 << 20, kPage);
  const uint64_t size = 4 << 20;
  FileRef* f = pattern_file(size, 11);
  ASSERT_NE(f, nullptr);
  // Even pages: no two whole pages side by side, which context readahead
  // would take for a stream (and read ahead, muddling the count).
  const uint64_t pages = 60;
  for (uint64_t p = 2; p <= 2 * pages; p += 2) ASSERT_EQ(random_read(f, p * kPage, 100, 11, size), 100);
  ASSERT_EQ(disk(), pages * 4096);
  std::atomic<int> ready{0};
  std::atomic<uint64_t> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      ready.fetch_add(1);
      while (ready.load() < 3) {
      }
      for (uint64_t p = 2; p <= 2 * pages; p += 2) {
        RaState ra = cache->new_ra_state();
        uint64_t pos = p * kPage + 4096 * (1 + t) + 7;
        std::vector<char> buf(3000);
        iovec iov{buf.data(), buf.size()};
        if (cache->read(f, ra, pos, &iov, 1) != 3000) {
          bad.fetch_add(1);
          continue;
        }
        for (int k = 0; k < 3000; ++k)
          if (static_cast<uint8_t>(buf[k]) != pattern_byte(pos + k, 11)) {
            bad.fetch_add(1);
            break;
          }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_EQ(disk(), pages * (4096 + kPage));
  EXPECT_EQ(cached(), static_cast<int64_t>(pages * kPage));
}

// Random readers of single blocks, a sequential reader and WILLNEED windows
// all over the same pages at once, through a cache smaller than the file.
TEST_F(PartialPageTest, WindowsAndRandomReadersRacing) {
  make_cache(48 * kPage, kPage, 256 << 10);
  const uint64_t size = 128 * kPage + 777;
  FileRef* f = pattern_file(size, 12);
  ASSERT_NE(f, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bad{0};
  auto check = [&](RaState& ra, uint64_t pos, uint64_t n) {
    std::vector<char> buf(n);
    iovec iov{buf.data(), n};
    int64_t got = cache->read(f, ra, pos, &iov, 1);
    uint64_t expect = pos >= size ? 0 : std::min<uint64_t>(n, size - pos);
    if (got != static_cast<int64_t>(expect)) {
      bad.fetch_add(1);
      return;
    }
    for (uint64_t k = 0; k < expect; ++k)
      if (static_cast<uint8_t>(buf[k]) != pattern_byte(pos + k, 12)) {
        bad.fetch_add(1);
        return;
      }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      for (int i = 0; i < 3000; ++i) {
        RaState ra = cache->new_ra_state();
        check(ra, rng() % (size + 100), 1 + rng() % 5000);
        // Read the hit path too.
        uint64_t pos = rng() % size, n = 1 + rng() % 300;
        std::vector<char> buf(n);
        if (cache->read_hit(f, ra, pos, buf.data(), n) == static_cast<int64_t>(n)) {
          for (uint64_t k = 0; k < n; ++k)
            if (static_cast<uint8_t>(buf[k]) != pattern_byte(pos + k, 12)) {
              bad.fetch_add(1);
              break;
            }
        }
      }
    });
  }
  threads.emplace_back([&] {
    while (!stop.load()) {
      RaState seq = cache->new_ra_state();
      for (uint64_t pos = 0; pos < size && !stop.load(); pos += 7000) check(seq, pos, 7000);
    }
  });
  threads.emplace_back([&] {
    std::mt19937_64 rng(200);
    RaState ra = cache->new_ra_state();
    while (!stop.load()) {
      cache->advise(f, ra, (rng() % 128) * kPage, 8 * kPage, POSIX_FADV_WILLNEED);
      struct timespec ts = {0, 200 * 1000};
      nanosleep(&ts, nullptr);
    }
  });
  threads[0].join();
  threads[1].join();
  stop.store(true);
  for (size_t i = 2; i < threads.size(); ++i) threads[i].join();
  EXPECT_EQ(bad.load(), 0u);
  RaState ra = cache->new_ra_state();
  ASSERT_EQ(cache->advise(f, ra, 0, 0, POSIX_FADV_DONTNEED), 0);
  EXPECT_EQ(cached(), 0);
}

// Forked processes completing the same partial pages through the shared
// arena: every byte right, and the pages end up whole.
TEST_F(PartialPageTest, ForkedProcessesRacingToCompletePages) {
  coherence = Coherence::kOpen;  // forked workers need no lease thread (none may start after a multithreaded fork under TSan)
  make_cache(8 << 20, kPage);
  const uint64_t size = 1 << 20;
  FileRef* f = pattern_file(size, 13);
  ASSERT_NE(f, nullptr);
  const uint64_t pages = 40;
  for (uint64_t p = 1; p <= pages; ++p) ASSERT_EQ(random_read(f, p * kPage + 100, 100, 13, size), 100);
  std::vector<pid_t> kids;
  for (int k = 0; k < 3; ++k) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      cache->after_fork_child();
      bool ok = true;
      for (uint64_t p = 1; p <= pages && ok; ++p) {
        RaState ra = cache->new_ra_state();
        uint64_t pos = p * kPage + 4096 * (1 + k);
        std::vector<char> buf(4096);
        iovec iov{buf.data(), buf.size()};
        ok = cache->read(f, ra, pos, &iov, 1) == 4096;
        for (int i = 0; ok && i < 4096; ++i) ok = static_cast<uint8_t>(buf[i]) == pattern_byte(pos + i, 13);
      }
      _exit(ok ? 0 : 1);
    }
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  // The children completed every page: the parent reads them whole, no I/O.
  uint64_t before = disk();
  for (uint64_t p = 1; p <= pages; ++p) ASSERT_EQ(random_read(f, p * kPage, kPage, 13, size), static_cast<int64_t>(kPage));
  EXPECT_EQ(disk(), before);
}

// A forked worker killed between claiming a page's completion and taking
// IO leaves only its claim: the next reader takes it over and completes the
// page instead of waiting for ever (before the claim went first, IO could
// be left set with nobody named for the reaper).
TEST_F(PartialPageTest, CompleterKilledBeforeTakingIoIsTakenOver) {
  coherence = Coherence::kOpen;  // forked workers need no lease thread (none may start after a multithreaded fork under TSan)
  make_cache(8 << 20, kPage);
  const uint64_t size = 1 << 20;
  FileRef* f = pattern_file(size, 17);
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(random_read(f, 3 * kPage + 100, 100, 17, size), 100);  // page 3 partial
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    cache->after_fork_child();
    fault_arm_kill_in_completion();
    RaState ra = cache->new_ra_state();
    std::vector<char> buf(4096);
    iovec iov{buf.data(), buf.size()};
    cache->read(f, ra, 3 * kPage + 8192, &iov, 1);  // killed mid-claim
    _exit(3);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  // The page is still partial, claimed by the dead: a read of other bytes
  // completes it (one read of the page), and then it is whole.
  uint64_t before = disk();
  ASSERT_EQ(random_read(f, 3 * kPage + 8192, 4096, 17, size), 4096);
  EXPECT_EQ(disk(), before + kPage);
  ASSERT_EQ(random_read(f, 3 * kPage, kPage, 17, size), static_cast<int64_t>(kPage));
  EXPECT_EQ(disk(), before + kPage);
}

// The buffered fallback (O_DIRECT refused) reads partial pages the same way.
TEST_F(PartialPageTest, BufferedFallbackReadsPartialPagesToo) {
  make_cache(8 << 20, kPage, 1 << 20, "nodirect");
  const uint64_t size = 1 << 20;
  FileRef* f = pattern_file(size, 14);
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(random_read(f, 3 * kPage + 9000, 10, 14, size), 10);
  EXPECT_EQ(counter(stats::kBufferedBytes), 4096u);
  EXPECT_EQ(counter(stats::kDirectBytes), 0u);
  ASSERT_EQ(random_read(f, 3 * kPage + 100, 10, 14, size), 10);
  EXPECT_EQ(counter(stats::kBufferedBytes), 4096u + kPage);
  ASSERT_EQ(random_read(f, 3 * kPage, kPage, 14, size), static_cast<int64_t>(kPage));
}

// Pages no larger than a block are never partial.
TEST_F(PartialPageTest, SmallPagesAreReadWhole) {
  make_cache(8 << 20, 4096);
  const uint64_t size = 1 << 20;
  FileRef* f = pattern_file(size, 15);
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(random_read(f, 30 * 4096 + 100, 10, 15, size), 10);
  EXPECT_EQ(disk(), 4096u);
  ASSERT_EQ(random_read(f, 30 * 4096, 4096, 15, size), 4096);
  EXPECT_EQ(disk(), 4096u);
}

}  // namespace
}  // namespace upcache
