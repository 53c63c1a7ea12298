// The read path of core::Cache against real files: bytes, end of file, tail
// pages, growth, invalidation, revalidation at open, eligibility, counters.
#include "core/cache.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/huge_shmem.h"
#include "core/stats.h"
#include "core/stats_sink.h"
#include "cache_fixture.h"
#include "test_files.h"

namespace upcache {
namespace {

using upcache::testing::fill_pattern;
using upcache::testing::pattern_byte;
using upcache::testing::write_pattern_file;

class CacheTest : public upcache::testing::CacheFixture {
 protected:
  CacheTest() : CacheFixture("cache") {}
  int64_t read_at(FileRef* f, RaState& ra, uint64_t pos, std::vector<char>& buf) {
    iovec iov{buf.data(), buf.size()};
    return cache->read(f, ra, pos, &iov, 1);
  }
  // Reads [pos, pos+n) and checks every byte against the pattern.
  void expect_pattern(FileRef* f, RaState& ra, uint64_t pos, uint64_t n, uint64_t file_size,
                      uint64_t salt) {
    std::vector<char> buf(n);
    int64_t got = read_at(f, ra, pos, buf);
    uint64_t expect = pos >= file_size ? 0 : std::min<uint64_t>(n, file_size - pos);
    ASSERT_EQ(got, static_cast<int64_t>(expect)) << "pos " << pos << " n " << n;
    for (uint64_t i = 0; i < expect; ++i)
      ASSERT_EQ(static_cast<uint8_t>(buf[i]), pattern_byte(pos + i, salt)) << "at " << pos + i;
  }
};

TEST_F(CacheTest, ReadsExactBytesAtAnyOffsetAndSize) {
  make_cache(8 << 20, 4096);
  const uint64_t size = 3 * 65536 + 1234;  // tail page partly valid
  FileRef* f = open_pattern_file(size, 1);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  for (uint64_t pos : std::initializer_list<uint64_t>{0, 1, 4095, 4096, 70000, size - 10, size - 1, size, size + 5})
    for (uint64_t n : {1ull, 7ull, 4096ull, 10000ull, 300000ull})
      expect_pattern(f, ra, pos, n, size, 1);
}

TEST_F(CacheTest, ScatteredBuffersAreFilledInOrder) {
  make_cache(8 << 20, 4096);
  FileRef* f = open_pattern_file(100000, 2);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  std::vector<char> a(10), b(0), c(5000), d(3);
  iovec iov[4] = {{a.data(), a.size()}, {b.data(), 0}, {c.data(), c.size()}, {d.data(), d.size()}};
  ASSERT_EQ(cache->read(f, ra, 4090, iov, 4), 5013);
  uint64_t off = 4090;
  for (auto* v : {&a, &c, &d})
    for (char ch : *v) ASSERT_EQ(static_cast<uint8_t>(ch), pattern_byte(off++, 2));
}

TEST_F(CacheTest, SecondPassIsAllHits) {
  make_cache(16 << 20, 65536, 1 << 20);
  const uint64_t size = 4 << 20;
  FileRef* f = open_pattern_file(size, 3);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  for (uint64_t pos = 0; pos < size; pos += 65536) expect_pattern(f, ra, pos, 65536, size, 3);
  uint64_t misses_first = counter(stats::kMisses);
  uint64_t hits_first = counter(stats::kHits);
  EXPECT_EQ(misses_first + hits_first, size / 65536);
  EXPECT_GT(counter(stats::kReadaheadPages), 0u);
  EXPECT_GT(counter(stats::kReadaheadHits), 0u);
  // Sequential readahead keeps ahead of the reader: most pages were hits.
  EXPECT_LT(misses_first, size / 65536 / 4);
  RaState ra2 = cache->new_ra_state();
  for (uint64_t pos = 0; pos < size; pos += 65536) expect_pattern(f, ra2, pos, 65536, size, 3);
  EXPECT_EQ(counter(stats::kMisses), misses_first);
  EXPECT_EQ(counter(stats::kHits), hits_first + size / 65536);
  EXPECT_EQ(counter(stats::kBytesRead), 2 * size);
  EXPECT_EQ(counter(stats::kReads), 2 * size / 65536);
}

// A reader streaming through a file eight times the cache: the window read
// ahead (at most a quarter of the cache) must outlive the pages already read
// until its reader reaches it. Each page is then read from the disk once.
TEST_F(CacheTest, StreamingThroughASmallCacheWastesNoReadahead) {
  make_cache(1 << 20, 16384, 16 << 20);  // 64 frames; the window is capped at 16
  const uint64_t size = 8 << 20;
  FileRef* f = open_pattern_file(size, 12);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  EXPECT_EQ(ra.ra_pages, 16u);
  for (uint64_t pos = 0; pos < size; pos += 131072) expect_pattern(f, ra, pos, 131072, size, 12);
  EXPECT_GT(counter(stats::kReadaheadPages), size / 16384 / 2);
  EXPECT_EQ(counter(stats::kReadaheadWasted), 0u);
  EXPECT_EQ(counter(stats::kReadaheadHits), counter(stats::kReadaheadPages));
  EXPECT_EQ(counter(stats::kMisses) + counter(stats::kReadaheadPages), size / 16384);
}

TEST_F(CacheTest, EvictionUnderPressureKeepsBytesRight) {
  make_cache(64 << 10, 4096, 16 << 10);  // 16 frames
  const uint64_t size = 1 << 20;
  FileRef* f = open_pattern_file(size, 4);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  for (int pass = 0; pass < 2; ++pass)
    for (uint64_t pos = 0; pos < size; pos += 3000) expect_pattern(f, ra, pos, 3000, size, 4);
  EXPECT_GT(counter(stats::kEvictions), 0u);
  for (uint64_t pos : {900000ull, 10ull, 500000ull, 4095ull})
    expect_pattern(f, ra, pos, 20000, size, 4);
}

TEST_F(CacheTest, FileThatGrowsIsReadPastItsOldEnd) {
  coherence = Coherence::kOpen;  // writes while holding the file open (cache_fixture.h)
  make_cache(8 << 20, 4096);
  std::string path = dir + "/f";
  ASSERT_TRUE(write_pattern_file(path, 5000, 5));
  FileRef* f = open_file(path);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  expect_pattern(f, ra, 0, 10000, 5000, 5);  // caches the short tail page
  ASSERT_TRUE(write_pattern_file(path + ".new", 20000, 5));
  // Grow in place (same inode): append the rest of the pattern.
  {
    int fd = open(path.c_str(), O_WRONLY);
    std::vector<char> more(15000);
    fill_pattern(more, 5000, 5);
    ASSERT_EQ(pwrite(fd, more.data(), more.size(), 5000), 15000);
    close(fd);
  }
  expect_pattern(f, ra, 0, 30000, 20000, 5);
  expect_pattern(f, ra, 4000, 2000, 20000, 5);
}

TEST_F(CacheTest, InvalidateDropsOverwrittenPages) {
  coherence = Coherence::kOpen;  // writes while holding the file open (cache_fixture.h)
  make_cache(8 << 20, 4096);
  FileRef* f = open_pattern_file(50000, 6, O_RDWR);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  expect_pattern(f, ra, 0, 50000, 50000, 6);
  std::vector<char> other(10000);
  fill_pattern(other, 20000, 7);
  ASSERT_EQ(pwrite(fds.back(), other.data(), other.size(), 20000), 10000);
  cache->invalidate(f, 20000, 10000);
  std::vector<char> buf(50000);
  ASSERT_EQ(read_at(f, ra, 0, buf), 50000);
  for (uint64_t i = 0; i < 50000; ++i) {
    uint8_t want = (i >= 20000 && i < 30000) ? pattern_byte(i, 7) : pattern_byte(i, 6);
    ASSERT_EQ(static_cast<uint8_t>(buf[i]), want) << i;
  }
  // Truncate: nothing is served past the new end.
  ASSERT_EQ(ftruncate(fds.back(), 8000), 0);
  cache->invalidate(f, 8000, 0);
  expect_pattern(f, ra, 0, 50000, 8000, 6);
}

TEST_F(CacheTest, ChangedFileGetsFreshPagesAtReopen) {
  make_cache(8 << 20, 4096);
  std::string path = dir + "/f";
  ASSERT_TRUE(write_pattern_file(path, 40000, 8));
  FileRef* f = open_file(path);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  expect_pattern(f, ra, 0, 40000, 40000, 8);
  // Another program rewrites the file in place, same size (close-to-open).
  usleep(20000);  // let the mtime tick
  {
    int fd = open(path.c_str(), O_WRONLY);
    std::vector<char> v(40000);
    fill_pattern(v, 0, 9);
    ASSERT_EQ(pwrite(fd, v.data(), v.size(), 0), 40000);
    close(fd);
  }
  FileRef* g = open_file(path);
  ASSERT_NE(g, nullptr);
  EXPECT_NE(f, g);
  RaState ra2 = cache->new_ra_state();
  expect_pattern(g, ra2, 0, 40000, 40000, 9);
  // A recycled inode number (delete, create) never returns the old bytes.
  unlink(path.c_str());
  ASSERT_TRUE(write_pattern_file(path, 40000, 10));
  FileRef* h = open_file(path);
  ASSERT_NE(h, nullptr);
  RaState ra3 = cache->new_ra_state();
  expect_pattern(h, ra3, 0, 40000, 40000, 10);
}

TEST_F(CacheTest, OnlyRegularReadableFilesOnRealFilesystemsAreCached) {
  make_cache(8 << 20, 4096);
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  EXPECT_EQ(cache->attach(p[0], nullptr, O_RDONLY), nullptr);
  close(p[0]);
  close(p[1]);
  int proc = open("/proc/self/status", O_RDONLY);
  EXPECT_EQ(cache->attach(proc, "/proc/self/status", O_RDONLY), nullptr);
  close(proc);
  int d = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  EXPECT_EQ(cache->attach(d, dir.c_str(), O_RDONLY), nullptr);
  close(d);
  std::string path = dir + "/f";
  ASSERT_TRUE(write_pattern_file(path, 100, 1));
  int w = open(path.c_str(), O_WRONLY);
  EXPECT_EQ(cache->attach(w, path.c_str(), O_WRONLY), nullptr);
  close(w);
  int direct = open(path.c_str(), O_RDONLY | O_DIRECT);
  if (direct >= 0) {
    EXPECT_EQ(cache->attach(direct, path.c_str(), O_RDONLY | O_DIRECT), nullptr);
    close(direct);
  }
  EXPECT_NE(open_file(path), nullptr);
}

TEST_F(CacheTest, IncludeAndExcludePrefixes) {
  Config c;
  c.min_file_bytes = 0;
  c.cache_bytes = 8 << 20;
  c.page_size = 4096;
  c.exclude = dir + "/skip";
  std::string err;
  cache = Cache::create(c, sink.get(), &err);
  ASSERT_TRUE(cache);
  ASSERT_TRUE(write_pattern_file(dir + "/skip-me", 100, 1));
  ASSERT_TRUE(write_pattern_file(dir + "/keep", 100, 1));
  EXPECT_EQ(open_file(dir + "/skip-me"), nullptr);
  EXPECT_NE(open_file(dir + "/keep"), nullptr);
}

TEST_F(CacheTest, NoWaitReadsOnlyWhatIsCached) {
  make_cache(8 << 20, 4096, 0);  // no readahead
  FileRef* f = open_pattern_file(100000, 11);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  std::vector<char> buf(8192);
  iovec iov{buf.data(), buf.size()};
  EXPECT_EQ(cache->read(f, ra, 0, &iov, 1, kReadNoWait), -EAGAIN);
  expect_pattern(f, ra, 0, 4096, 100000, 11);
  // The first page is cached, the second is not: a short read.
  EXPECT_EQ(cache->read(f, ra, 0, &iov, 1, kReadNoWait), 4096);
}

TEST_F(CacheTest, DeviceErrorsAreReportedLikeTheKernel) {
  make_cache(8 << 20, 4096, 0, "eio=2");
  FileRef* f = open_pattern_file(100000, 12);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  expect_pattern(f, ra, 0, 8192, 100000, 12);  // pages 0-1 are fine
  std::vector<char> buf(4096);
  EXPECT_EQ(read_at(f, ra, 2 * 4096, buf), -EIO);
  EXPECT_GE(counter(stats::kIoErrors), 1u);
  // A read that reaches the bad page after good ones returns the good bytes.
  std::vector<char> wide(5 * 4096);
  EXPECT_EQ(read_at(f, ra, 4096, wide), 4096);
  // Pages after the bad one are unaffected.
  expect_pattern(f, ra, 3 * 4096, 8192, 100000, 12);
}

TEST_F(CacheTest, TransientDeviceErrorIsRetriedNotCached) {
  // As filemap_read does, a page whose read failed is read once more,
  // alone, before an error is reported: a transient failure never reaches
  // the program, and nothing of it stays cached.
  coherence = Coherence::kOpen;  // forked workers need no lease thread (none may start after a multithreaded fork under TSan)
  make_cache(8 << 20, 4096, 1 << 20, "eio_once=2");
  FileRef* f = open_pattern_file(100000, 12);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  expect_pattern(f, ra, 0, 100000, 100000, 12);
  EXPECT_EQ(counter(stats::kIoErrors), 1u);
  expect_pattern(f, ra, 0, 100000, 100000, 12);
}

// A forked child (after_fork_child, as the shim's fork handler does) reads
// [0, size) of f, a pattern file of `salt`, through the shared cache.
struct ChildRead {
  bool exited = false;         // exited normally
  bool bytes_right = false;    // read all size bytes, every one right
  bool on_huge_pages = false;  // the child saw the frames on 2 MiB pages
};

ChildRead child_reads_pattern(Cache& cache, FileRef* f, uint64_t size, uint64_t salt) {
  pid_t pid = fork();
  if (pid == 0) {
    cache.after_fork_child();
    RaState ra = cache.new_ra_state();
    std::vector<char> buf(size);
    iovec iov{buf.data(), buf.size()};
    bool ok = cache.read(f, ra, 0, &iov, 1) == static_cast<int64_t>(size);
    for (uint64_t i = 0; ok && i < size; ++i) ok = static_cast<uint8_t>(buf[i]) == pattern_byte(i, salt);
    _exit((ok ? 0 : 1) | (cache.on_transparent_huge_pages() ? 0 : 2));
  }
  ChildRead r;
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return r;
  r.exited = true;
  r.bytes_right = (WEXITSTATUS(status) & 1) == 0;
  r.on_huge_pages = (WEXITSTATUS(status) & 2) == 0;
  return r;
}

TEST_F(CacheTest, ForkedChildSharesTheCache) {
  coherence = Coherence::kOpen;  // forked workers need no lease thread (none may start after a multithreaded fork under TSan)
  make_cache(16 << 20, 65536);
  const uint64_t size = 2 << 20;
  FileRef* f = open_pattern_file(size, 13);
  ASSERT_NE(f, nullptr);
  ChildRead child = child_reads_pattern(*cache, f, size, 13);
  ASSERT_TRUE(child.exited && child.bytes_right);
  // The child's reads filled the shared arena: the parent only hits.
  uint64_t misses = counter(stats::kMisses);
  RaState ra = cache->new_ra_state();
  expect_pattern(f, ra, 0, size, size, 13);
  EXPECT_EQ(counter(stats::kMisses), misses);
  // Forked without before_fork (the shim's fork handler): the frames stayed
  // where both processes see them (Arena::settle_backing).
  EXPECT_FALSE(cache->on_transparent_huge_pages());
}

// The frames move to 2 MiB pages at the first fill, or at before_fork when
// that comes first, and a child forked then shares them.
TEST_F(CacheTest, FramesMoveToHugePagesBeforeTheFirstFillOrFork) {
  int probe = huge_shmem_open(4 << 20);
  if (probe < 0) GTEST_SKIP() << "no private tmpfs here: " << strerror(-probe);
  close(probe);
  coherence = Coherence::kOpen;  // forked workers need no lease thread (none may start after a multithreaded fork under TSan)
  make_cache(32 << 20, 16384);
  const uint64_t size = 4 << 20;
  FileRef* f = open_pattern_file(size, 15);
  ASSERT_NE(f, nullptr);
  EXPECT_FALSE(cache->on_transparent_huge_pages());  // nothing filled yet
  cache->before_fork();
  EXPECT_TRUE(cache->on_transparent_huge_pages());
  ChildRead child = child_reads_pattern(*cache, f, size, 15);
  ASSERT_TRUE(child.exited && child.bytes_right);
  EXPECT_TRUE(child.on_huge_pages);
  uint64_t misses = counter(stats::kMisses);
  RaState ra = cache->new_ra_state();
  expect_pattern(f, ra, 0, size, size, 15);
  EXPECT_EQ(counter(stats::kMisses), misses);  // the child's fills, seen here
}

TEST_F(CacheTest, FramesMoveToHugePagesAtTheFirstFillUnlessTurnedOff) {
  int probe = huge_shmem_open(4 << 20);
  if (probe < 0) GTEST_SKIP() << "no private tmpfs here: " << strerror(-probe);
  close(probe);
  std::string path = dir + "/f";
  ASSERT_TRUE(write_pattern_file(path, 1 << 20, 16));
  for (bool thp : {true, false}) {
    Config c;
    c.min_file_bytes = 0;
    c.cache_bytes = 32 << 20;
    c.page_size = 16384;
    c.transparent_huge = thp;
    std::string err;
    cache = Cache::create(c, sink.get(), &err);
    ASSERT_TRUE(cache) << err;
    FileRef* f = open_file(path);
    ASSERT_NE(f, nullptr);
    EXPECT_FALSE(cache->on_transparent_huge_pages());
    RaState ra = cache->new_ra_state();
    expect_pattern(f, ra, 4096, 100000, 1 << 20, 16);
    EXPECT_EQ(cache->on_transparent_huge_pages(), thp);
    expect_pattern(f, ra, 0, 1 << 20, 1 << 20, 16);
    cache->release(f);
    refs.clear();
    cache.reset();
  }
}

}  // namespace
}  // namespace upcache

namespace upcache {
namespace {

TEST_F(CacheTest, WriteThroughAnotherDescriptorDropsPages) {
  coherence = Coherence::kOpen;  // writes while holding the file open (cache_fixture.h)
  make_cache(8 << 20, 4096);
  std::string path = dir + "/f";
  ASSERT_TRUE(write_pattern_file(path, 30000, 14));
  FileRef* f = open_file(path);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  expect_pattern(f, ra, 0, 30000, 30000, 14);
  int w = open(path.c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(w, 0);
  std::vector<char> more(5000);
  fill_pattern(more, 30000, 14);
  ASSERT_EQ(write(w, more.data(), more.size()), 5000);
  cache->invalidate_fd(w, 30000, 5000);
  close(w);
  w = open(path.c_str(), O_WRONLY);  // (pwrite on O_APPEND appends on Linux)
  ASSERT_EQ(pwrite(w, "xyz", 3, 100), 3);
  cache->invalidate_fd(w, 100, 3);
  close(w);
  std::vector<char> buf(40000);
  ASSERT_EQ(read_at(f, ra, 0, buf), 35000);
  EXPECT_EQ(std::string(buf.data() + 100, 3), "xyz");
  for (uint64_t i = 103; i < 35000; ++i) ASSERT_EQ(static_cast<uint8_t>(buf[i]), pattern_byte(i, 14)) << i;
}

TEST_F(CacheTest, AdviceActsOnTheReadaheadState) {
  make_cache(64 << 20, 4096, 128 << 10);
  FileRef* f = open_pattern_file(1 << 20, 15);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  EXPECT_EQ(ra.ra_pages, 32u);
  EXPECT_EQ(cache->advise(f, ra, 0, 0, POSIX_FADV_SEQUENTIAL), 0);
  EXPECT_EQ(ra.ra_pages, 64u);
  EXPECT_EQ(cache->advise(f, ra, 0, 0, POSIX_FADV_RANDOM), 0);
  EXPECT_TRUE(ra.random);
  EXPECT_EQ(cache->advise(f, ra, 0, 0, POSIX_FADV_NORMAL), 0);
  EXPECT_FALSE(ra.random);
  EXPECT_EQ(ra.ra_pages, 32u);
  EXPECT_EQ(cache->advise(f, ra, 0, 0, 99), -EINVAL);
  // RANDOM: a miss reads exactly what is asked, no readahead.
  cache->advise(f, ra, 0, 0, POSIX_FADV_RANDOM);
  expect_pattern(f, ra, 0, 4096, 1 << 20, 15);
  expect_pattern(f, ra, 4096, 4096, 1 << 20, 15);
  EXPECT_EQ(counter(stats::kReadaheadPages), 0u);
  EXPECT_EQ(counter(stats::kMisses), 2u);
  // WILLNEED: the range is read ahead of the reader; later reads only hit.
  cache->advise(f, ra, 65536, 65536, POSIX_FADV_WILLNEED);
  uint64_t misses = counter(stats::kMisses);
  expect_pattern(f, ra, 65536, 65536, 1 << 20, 15);
  EXPECT_EQ(counter(stats::kMisses), misses);
  // DONTNEED: the pages go; reading them again misses.
  cache->advise(f, ra, 65536, 65536, POSIX_FADV_DONTNEED);
  expect_pattern(f, ra, 65536, 4096, 1 << 20, 15);
  EXPECT_EQ(counter(stats::kMisses), misses + 1);
}

}  // namespace
}  // namespace upcache

namespace upcache {
namespace {

// A forked worker queues readahead and dies before it completes (here: exits
// at once; SIGKILL is the same to the others). Nobody will ever complete
// those reads; readers of the shared arena must not wait forever nor see a
// short read: they read the pages themselves.
TEST_F(CacheTest, ChildDyingWithReadsInFlightDoesNotStallOthers) {
  coherence = Coherence::kOpen;  // forked workers need no lease thread (none may start after a multithreaded fork under TSan)
  make_cache(64 << 20, 65536, 4 << 20);
  const uint64_t size = 16 << 20;
  FileRef* f = open_pattern_file(size, 16);
  ASSERT_NE(f, nullptr);
  for (int round = 0; round < 4; ++round) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      cache->after_fork_child();
      cache->prefetch(f, 0, size);
      // No drain: the reads are still in flight. Rounds alternate between a
      // plain exit and SIGKILL (no handler, no exit path at all).
      if (round % 2) raise(SIGKILL);
      _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    RaState ra = cache->new_ra_state();
    expect_pattern(f, ra, 0, size, size, 16);
    cache->invalidate(f, 0, 0);  // next round starts cold
  }
}

}  // namespace
}  // namespace upcache

#include <signal.h>
#include <sys/mman.h>

#include "core/copy_guard.h"

namespace upcache {
namespace {

void recover_or_die(int sig, siginfo_t*, void*) {
  copy_guard_recover(sig);
  signal(sig, SIG_DFL);
  raise(sig);
}

// A bad buffer inside the address space: EFAULT (or the bytes copied before
// the bad part), never a crash, and the cache stays usable.
TEST_F(CacheTest, BadBufferIsEfaultNotACrash) {
  make_cache(8 << 20, 4096);
  FileRef* f = open_pattern_file(100000, 17);
  ASSERT_NE(f, nullptr);
  struct sigaction sa {}, old_segv{}, old_bus{};
  sa.sa_sigaction = recover_or_die;
  sa.sa_flags = SA_SIGINFO;
  ASSERT_EQ(sigaction(SIGSEGV, &sa, &old_segv), 0);
  ASSERT_EQ(sigaction(SIGBUS, &sa, &old_bus), 0);
  long ps = sysconf(_SC_PAGESIZE);
  char* m = static_cast<char*>(mmap(nullptr, 3 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(m, MAP_FAILED);
  ASSERT_EQ(mprotect(m + ps, ps, PROT_NONE), 0);
  RaState ra = cache->new_ra_state();
  // Entirely bad: EFAULT.
  iovec bad{m + ps, 100};
  EXPECT_EQ(cache->read(f, ra, 0, &bad, 1), -EFAULT);
  // Read-only memory is bad too.
  ASSERT_EQ(mprotect(m + 2 * ps, ps, PROT_READ), 0);
  iovec ro{m + 2 * ps, 100};
  EXPECT_EQ(cache->read(f, ra, 0, &ro, 1), -EFAULT);
  // Good, then bad: the good part is returned (a cache page at a time).
  iovec two[2] = {{m, 4096}, {m + ps, 4096}};
  int64_t got = cache->read(f, ra, 0, two, 2);
  EXPECT_EQ(got, 4096);
  for (int i = 0; i < 4096; ++i) ASSERT_EQ(static_cast<uint8_t>(m[i]), pattern_byte(i, 17));
  // Still serving, nothing left pinned.
  expect_pattern(f, ra, 0, 100000, 100000, 17);
  sigaction(SIGSEGV, &old_segv, nullptr);
  sigaction(SIGBUS, &old_bus, nullptr);
  munmap(m, 3 * ps);
}

}  // namespace
}  // namespace upcache

namespace upcache {
namespace {

TEST_F(CacheTest, SmallFilesAreLeftToTheKernelByDefault) {
  Config c;  // default UPCACHE_MIN_FILE
  c.cache_bytes = 8 << 20;
  c.page_size = 4096;
  std::string err;
  cache = Cache::create(c, sink.get(), &err);
  ASSERT_TRUE(cache) << err;
  ASSERT_TRUE(write_pattern_file(dir + "/small", Config::kDefaultMinFileBytes - 1, 1));
  ASSERT_TRUE(write_pattern_file(dir + "/big", Config::kDefaultMinFileBytes, 1));
  EXPECT_EQ(open_file(dir + "/small"), nullptr);
  EXPECT_NE(open_file(dir + "/big"), nullptr);
}

}  // namespace
}  // namespace upcache

namespace upcache {
namespace {

// A forked relative that has no FileRef for the inode writes to it (through a
// write-only descriptor): the pages the parent cached under the inode's
// shared file id must go, or the parent would keep reading the old bytes.
TEST_F(CacheTest, WriteInAnotherProcessWithoutFileRefDropsSharedPages) {
  coherence = Coherence::kOpen;  // writes while holding the file open (cache_fixture.h)
  make_cache(8 << 20, 4096);
  std::string path = dir + "/f";
  ASSERT_TRUE(write_pattern_file(path, 60000, 18));
  int go[2], done[2];
  ASSERT_EQ(pipe(go), 0);
  ASSERT_EQ(pipe(done), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    cache->after_fork_child();
    char c;
    if (read(go[0], &c, 1) != 1) _exit(2);
    int w = open(path.c_str(), O_WRONLY);
    std::vector<char> v(10000);
    fill_pattern(v, 20000, 19);
    bool ok = pwrite(w, v.data(), v.size(), 20000) == 10000;
    cache->invalidate_fd(w, 20000, 10000);
    close(w);
    ok = ok && write(done[1], "x", 1) == 1;
    _exit(ok ? 0 : 1);
  }
  FileRef* f = open_file(path);  // after the fork: the child has no FileRef
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  expect_pattern(f, ra, 0, 60000, 60000, 18);
  ASSERT_EQ(write(go[1], "x", 1), 1);
  char c;
  ASSERT_EQ(read(done[0], &c, 1), 1);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  std::vector<char> buf(60000);
  ASSERT_EQ(read_at(f, ra, 0, buf), 60000);
  for (uint64_t i = 0; i < 60000; ++i) {
    uint8_t want = (i >= 20000 && i < 30000) ? pattern_byte(i, 19) : pattern_byte(i, 18);
    ASSERT_EQ(static_cast<uint8_t>(buf[i]), want) << i;
  }
  for (int fd : {go[0], go[1], done[0], done[1]}) close(fd);
}

}  // namespace
}  // namespace upcache

namespace upcache {
namespace {

// A sequential reader after scattered random reads: every byte right, and
// the whole file cached after one pass (a second reads nothing).
TEST_F(CacheTest, SequentialReadAfterRandomReadsIsWhole) {
  make_cache(8 << 20, 16384);
  std::string path = dir + "/f";
  const uint64_t size = 2 << 20;
  ASSERT_TRUE(write_pattern_file(path, size, 22));
  FileRef* f = open_file(path);
  ASSERT_NE(f, nullptr);
  for (uint64_t off : {70000ull, 300001ull, 1000000ull, 16384ull * 3 + 9000}) {
    RaState ra = cache->new_ra_state();
    expect_pattern(f, ra, off, 700, size, 22);
  }
  RaState seq = cache->new_ra_state();
  for (uint64_t pos = 0; pos < size; pos += 10000) expect_pattern(f, seq, pos, 10000, size, 22);
  // Everything is cached whole now: a second pass reads nothing.
  uint64_t before = counter(stats::kDirectBytes) + counter(stats::kBufferedBytes);
  RaState again = cache->new_ra_state();
  for (uint64_t pos = 0; pos < size; pos += 10000) expect_pattern(f, again, pos, 10000, size, 22);
  EXPECT_EQ(counter(stats::kDirectBytes) + counter(stats::kBufferedBytes), before);
}

}  // namespace
}  // namespace upcache

#include "core/fault.h"

namespace upcache {
namespace {

// A forked worker is killed (SIGKILL) right after it took a frame LOCKED for
// a new page, before it unlinked the frame's old page: the old page stays in
// the index, locked by a dead process. Whether the killed child is reaped or
// left a zombie, the others must read every byte, promptly (a reader stuck
// on the frame finishes the dead owner's claim), and the frame must return
// to use.
TEST_F(CacheTest, WorkerKilledWhileClaimingAFrameDoesNotLockThePage) {
  const uint64_t page = 16384, frames = 16, size = 64 * page;
  coherence = Coherence::kOpen;  // forked workers need no lease thread (none may start after a multithreaded fork under TSan)
  make_cache(frames * page, page, 0);  // no readahead: one claim per page read
  FileRef* f = open_pattern_file(size, 23);
  ASSERT_NE(f, nullptr);
  for (int reap_first = 0; reap_first < 2; ++reap_first) {
    // Fill every frame with a page (the last `frames` pages read stay).
    RaState ra = cache->new_ra_state();
    expect_pattern(f, ra, 0, size, size, 23);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      cache->after_fork_child();
      fault_arm_kill_in_claim();
      RaState mine = cache->new_ra_state();
      std::vector<char> buf(page);
      iovec iov{buf.data(), buf.size()};
      cache->read(f, mine, 0, &iov, 1);  // page 0 is not cached: a claim
      _exit(3);                          // not reached
    }
    int status = 0;
    if (reap_first) {
      ASSERT_EQ(waitpid(pid, &status, 0), pid);
    } else {
      siginfo_t info{};
      ASSERT_EQ(waitid(P_PID, pid, &info, WEXITED | WNOWAIT), 0);  // a zombie now
    }
    // Every page, twice over: the locked page among them is read in full.
    for (int pass = 0; pass < 2; ++pass) {
      RaState again = cache->new_ra_state();
      for (uint64_t pos = 0; pos < size; pos += page) expect_pattern(f, again, pos, page, size, 23);
    }
    if (!reap_first) {
      ASSERT_EQ(waitpid(pid, &status, 0), pid);
    }
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  }
  // No frame was lost: with readahead off, a full pass over `frames` pages
  // that are all cached reads nothing.
  RaState last = cache->new_ra_state();
  for (uint64_t pos = size - frames * page; pos < size; pos += page)
    expect_pattern(f, last, pos, page, size, 23);
  uint64_t before = counter(stats::kDirectBytes) + counter(stats::kBufferedBytes);
  RaState check = cache->new_ra_state();
  for (uint64_t pos = size - frames * page; pos < size; pos += page)
    expect_pattern(f, check, pos, page, size, 23);
  EXPECT_EQ(counter(stats::kDirectBytes) + counter(stats::kBufferedBytes), before);
}

// A forked worker is killed while it ends a read: after it named the read
// ended in io_owner, before it cleared IO. The page must not stay in flight
// for good: the next reader finds the issuer gone and has the read failed
// and done again. Before io_owner was tagged ENDED instead of cleared, the
// kill left IO set with nobody named, and every reader of the page waited
// for ever (rel_fork_kill_tmpfs, CI of 2026-12-04). Zombie or reaped alike.
TEST_F(CacheTest, WorkerKilledWhileEndingAReadLeavesNoPageInFlight) {
  const uint64_t page = 16384, frames = 16, size = 64 * page;
  coherence = Coherence::kOpen;  // forked workers need no lease thread (none may start after a multithreaded fork under TSan)
  make_cache(frames * page, page, 0);  // no readahead: the read is page 5 alone
  FileRef* f = open_pattern_file(size, 31);
  ASSERT_NE(f, nullptr);
  for (int reap_first = 0; reap_first < 2; ++reap_first) {
    const uint64_t pos = (5 + 10 * reap_first) * page;
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      cache->after_fork_child();
      fault_arm_kill_in_finish();
      RaState mine = cache->new_ra_state();
      std::vector<char> buf(page);
      iovec iov{buf.data(), buf.size()};
      cache->read(f, mine, pos, &iov, 1);  // a miss: killed as its read ends
      _exit(3);                            // not reached
    }
    int status = 0;
    if (reap_first) {
      ASSERT_EQ(waitpid(pid, &status, 0), pid);
    } else {
      siginfo_t info{};
      ASSERT_EQ(waitid(P_PID, pid, &info, WEXITED | WNOWAIT), 0);  // a zombie now
    }
    // A hang is the failure: SIGALRM's default action ends the test.
    alarm(60);
    RaState ra = cache->new_ra_state();
    expect_pattern(f, ra, pos, page, size, 31);
    expect_pattern(f, ra, pos - page, 3 * page, size, 31);
    alarm(0);
    if (!reap_first) {
      ASSERT_EQ(waitpid(pid, &status, 0), pid);
    }
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  }
}

TEST_F(CacheTest, FramesLeftInFlightByADeadWorkerAreReapedByAClaim) {
  // A forked worker killed with its readahead in flight leaves those frames
  // in flight for good. When they are every frame there is, a reader of
  // another page finds no frame to claim and nothing to wait on: the claim
  // itself must reap them (found by rel_fork_kill: a read that never
  // returned, every frame in flight by two killed workers).
  const uint64_t page = 16384, frames = 16, size = 64 * page;
  coherence = Coherence::kOpen;  // forked workers need no lease thread (none may start after a multithreaded fork under TSan)
  make_cache(frames * page, page, 0);
  FileRef* f = open_pattern_file(size, 29);
  ASSERT_NE(f, nullptr);
  for (int reap_first = 0; reap_first < 2; ++reap_first) {
    const uint64_t base = reap_first * frames * page;  // pages not cached yet
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      cache->after_fork_child();
      fault_arm_lose_async();
      // WILLNEED takes at most half the cache at a time: twice, every frame.
      cache->prefetch(f, base, frames / 2 * page);
      cache->prefetch(f, base + frames / 2 * page, frames / 2 * page);
      _exit(0);  // dies with all of them in flight
    }
    int status = 0;
    if (reap_first) {
      ASSERT_EQ(waitpid(pid, &status, 0), pid);
    } else {
      siginfo_t info{};
      ASSERT_EQ(waitid(P_PID, pid, &info, WEXITED | WNOWAIT), 0);  // a zombie now
    }
    uint64_t errors_before = counter(stats::kIoErrors);
    // Pages the dead worker never read, then the ones it left in flight.
    for (uint64_t pos = size - frames * page; pos < size; pos += page) {
      RaState ra = cache->new_ra_state();
      expect_pattern(f, ra, pos, page, size, 29);
    }
    for (uint64_t pos = base; pos < base + frames * page; pos += page) {
      RaState ra = cache->new_ra_state();
      expect_pattern(f, ra, pos, page, size, 29);
    }
    EXPECT_EQ(counter(stats::kIoErrors), errors_before) << "reaping is not a device error";
    if (!reap_first) {
      ASSERT_EQ(waitpid(pid, &status, 0), pid);
    }
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
}

TEST_F(CacheTest, StarvedReadIsLeftWholeToTheKernelNotShortened) {
  // A read that got its first page from the cache and then no frame for the
  // next must not return the first page's count: for a regular file that
  // has more, a short count is not what the kernel gives. -ENOBUFS makes the
  // caller (the shim) have the kernel serve the whole read.
  const uint64_t page = 16384, size = 8 * page;
  make_cache(16 * page, page, 0);
  FileRef* f = open_pattern_file(size, 31);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  expect_pattern(f, ra, 0, page, size, 31);  // page 0 cached
  fault_arm_starve_claims();
  std::vector<char> buf(2 * page);
  EXPECT_EQ(read_at(f, ra, 0, buf), -ENOBUFS) << "page 0 served, page 1 starved";
  std::vector<char> one(page);
  EXPECT_EQ(read_at(f, ra, page, one), -ENOBUFS);
  EXPECT_EQ(read_at(f, ra, 0, one), static_cast<int64_t>(page)) << "a cached page needs no frame";
  fault_arm_starve_claims(false);
  expect_pattern(f, ra, 0, 2 * page, size, 31);
}

TEST_F(CacheTest, PinsOfAWorkerKilledMidCopyAreGivenBack) {
  // A forked worker killed while it copies from a pinned frame leaves the
  // pin. With one frame in the cache that frame is then all there is: the
  // next claim must give the pin back (pin journals) instead of starving.
  const uint64_t page = 16384, size = 16 * page;
  coherence = Coherence::kOpen;  // forked workers need no lease thread (none may start after a multithreaded fork under TSan)
  make_cache(1 * page, page, 0);
  FileRef* f = open_pattern_file(size, 37);
  ASSERT_NE(f, nullptr);
  for (int reap_first = 0; reap_first < 2; ++reap_first) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      cache->after_fork_child();
      fault_arm_kill_after_pin();
      RaState ra = cache->new_ra_state();
      std::vector<char> buf(page);
      read_at(f, ra, 3 * page, buf);  // killed holding the only frame pinned
      _exit(3);
    }
    int status = 0;
    if (reap_first) {
      ASSERT_EQ(waitpid(pid, &status, 0), pid);
    } else {
      siginfo_t info{};
      ASSERT_EQ(waitid(P_PID, pid, &info, WEXITED | WNOWAIT), 0);  // a zombie now
    }
    RaState ra = cache->new_ra_state();
    for (uint64_t pos = 0; pos < size; pos += page) expect_pattern(f, ra, pos, page, size, 37);
    if (!reap_first) {
      ASSERT_EQ(waitpid(pid, &status, 0), pid);
    }
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  }
}

TEST_F(CacheTest, LeakedPinsAreGivenBackWithoutStarvation) {
  // In a cache with room to spare a leaked pin never starves anyone, so no
  // claim waits: the pins of the dead are given back now and then anyway.
  const uint64_t page = 16384, frames = 4, size = 1536 * page;
  coherence = Coherence::kOpen;  // forked workers need no lease thread (none may start after a multithreaded fork under TSan)
  make_cache(frames * page, page, 0);
  FileRef* f = open_pattern_file(size, 41);
  ASSERT_NE(f, nullptr);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    cache->after_fork_child();
    fault_arm_kill_after_pin();
    RaState ra = cache->new_ra_state();
    std::vector<char> buf(page);
    read_at(f, ra, 0, buf);
    _exit(3);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  // More claims than one reap period (1024), each passing the pinned frame.
  RaState ra = cache->new_ra_state();
  for (uint64_t pos = page; pos < size; pos += page) expect_pattern(f, ra, pos, page, size, 41);
  // All four frames usable again: four pages read twice, the second time
  // without any I/O.
  for (uint64_t pos = 0; pos < frames * page; pos += page) expect_pattern(f, ra, pos, page, size, 41);
  uint64_t before = counter(stats::kDirectBytes) + counter(stats::kBufferedBytes);
  for (uint64_t pos = 0; pos < frames * page; pos += page) expect_pattern(f, ra, pos, page, size, 41);
  EXPECT_EQ(counter(stats::kDirectBytes) + counter(stats::kBufferedBytes), before);
}

}  // namespace
}  // namespace upcache
