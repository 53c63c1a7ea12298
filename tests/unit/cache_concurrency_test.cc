// Several threads read random ranges (random sizes, random offsets, some past
// end of file) of a file whose bytes encode their own offsets, through a
// cache much smaller than the file, and check every byte.
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
#include "core/stats.h"
#include "core/stats_sink.h"
#include "test_files.h"

namespace upcache {
namespace {

using upcache::testing::pattern_byte;

struct Scenario {
  uint64_t file_size;
  uint64_t cache_bytes;
  uint64_t page_size;
  int threads;
  int reads_per_thread;
  const char* engine;
};

void run(const Scenario& s, uint64_t seed) {
  std::string dir = upcache::testing::scratch_dir("conc");
  std::string path = dir + "/f";
  ASSERT_TRUE(upcache::testing::write_pattern_file(path, s.file_size, seed));
  auto seg = std::make_unique<stats::Segment>();
  memset(static_cast<void*>(seg.get()), 0, sizeof(stats::Segment));
  StatsSink sink(seg.get());
  Config c;
  c.min_file_bytes = 0;
  c.cache_bytes = s.cache_bytes;
  c.page_size = s.page_size;
  c.ra_max_bytes = 256 << 10;
  c.async_engine = strcmp(s.engine, "uring") == 0 ? AsyncEngine::kUring : AsyncEngine::kThreads;
  std::string err;
  auto cache = Cache::create(c, &sink, &err);
  ASSERT_TRUE(cache) << err;
  int fd = open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  FileRef* f = cache->attach(fd, path.c_str(), O_RDONLY);
  ASSERT_NE(f, nullptr);

  std::atomic<uint64_t> bad{0}, checked{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < s.threads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed * 1000 + t);
      RaState ra = cache->new_ra_state();
      std::vector<char> buf(1 << 20);
      for (int i = 0; i < s.reads_per_thread; ++i) {
        // Mostly random, sometimes a sequential run, sometimes past EOF.
        uint64_t pos = rng() % (s.file_size + s.file_size / 16);
        uint64_t n = 1 + rng() % (rng() % 4 == 0 ? buf.size() : 9000);
        iovec iov{buf.data(), n};
        int64_t got = cache->read(f, ra, pos, &iov, 1);
        uint64_t expect = pos >= s.file_size ? 0 : std::min(n, s.file_size - pos);
        if (got != static_cast<int64_t>(expect)) {
          bad.fetch_add(1);
          continue;
        }
        for (uint64_t k = 0; k < expect; ++k)
          if (static_cast<uint8_t>(buf[k]) != pattern_byte(pos + k, seed)) {
            bad.fetch_add(1);
            break;
          }
        checked.fetch_add(expect);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GT(checked.load(), 0u);
  EXPECT_GT(StatsSink::total(*seg, stats::kEvictions), 0u);
  cache->release(f);
  close(fd);
  cache.reset();
  upcache::testing::remove_dir(dir);
}

TEST(CacheConcurrency, FourThreadsTinyCacheThreadEngine) {
  run({32 << 20, 2 << 20, 4096, 4, 1500, "threads"}, 21);
}

TEST(CacheConcurrency, FourThreadsTinyCacheUringEngine) {
  run({32 << 20, 2 << 20, 4096, 4, 1500, "uring"}, 22);
}

// Reads larger than the whole cache, from four threads at once: frames run
// out in the middle of windows, and nobody may get a short read.
TEST(CacheConcurrency, ReadsLargerThanTheCache) {
  run({16 << 20, 1 << 20, 4096, 4, 150, "uring"}, 24);
}

// 16 KiB pages and mostly small random reads: partial pages (core/frame.h)
// read, completed by readers and windows, evicted, all at once.
TEST(CacheConcurrency, PartialPagesTinyCache) {
  run({32 << 20, 2 << 20, 16384, 4, 1500, "threads"}, 25);
}

TEST(CacheConcurrency, LargePagesEighthOfTheFile) {
  run({64 << 20, 8 << 20, 65536, 4, 800, "uring"}, 23);
}

// Forked processes reading through one shared arena, with a parent thread
// reading at the same time.
TEST(CacheConcurrency, ForkedReadersShareFramesSafely) {
  std::string dir = upcache::testing::scratch_dir("conc-fork");
  std::string path = dir + "/f";
  const uint64_t size = 16 << 20;
  ASSERT_TRUE(upcache::testing::write_pattern_file(path, size, 31));
  auto seg = std::make_unique<stats::Segment>();
  memset(static_cast<void*>(seg.get()), 0, sizeof(stats::Segment));
  StatsSink sink(seg.get());
  Config c;
  c.coherence = Coherence::kOpen;  // forked readers need no lease thread (none may start after a multithreaded fork under TSan)
  c.min_file_bytes = 0;
  c.cache_bytes = 2 << 20;
  c.page_size = 16384;
  c.ra_max_bytes = 256 << 10;
  std::string err;
  auto cache = Cache::create(c, &sink, &err);
  ASSERT_TRUE(cache) << err;
  int fd = open(path.c_str(), O_RDONLY);
  FileRef* f = cache->attach(fd, path.c_str(), O_RDONLY);
  ASSERT_NE(f, nullptr);
  auto reader = [&](uint64_t seed, int count) {
    std::mt19937_64 rng(seed);
    RaState ra = cache->new_ra_state();
    std::vector<char> buf(200000);
    for (int i = 0; i < count; ++i) {
      uint64_t pos = rng() % size, n = 1 + rng() % buf.size();
      iovec iov{buf.data(), n};
      int64_t got = cache->read(f, ra, pos, &iov, 1);
      uint64_t expect = std::min(n, size - pos);
      if (got != static_cast<int64_t>(expect)) return false;
      for (uint64_t k = 0; k < expect; ++k)
        if (static_cast<uint8_t>(buf[k]) != pattern_byte(pos + k, 31)) return false;
    }
    return true;
  };
  std::vector<pid_t> kids;
  for (int k = 0; k < 3; ++k) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      cache->after_fork_child();
      _exit(reader(100 + k, 400) ? 0 : 1);
    }
    kids.push_back(pid);
  }
  EXPECT_TRUE(reader(99, 400));
  for (pid_t pid : kids) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  cache->release(f);
  close(fd);
  cache.reset();
  upcache::testing::remove_dir(dir);
}

}  // namespace
}  // namespace upcache
