// The fixture of the core::Cache tests: a scratch directory, a statistics
// segment in ordinary memory with its sink, a cache made by make_cache(), and
// files attached by open_file() (or written and attached by
// open_pattern_file()), all released at the end of the test.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/cache.h"
#include "core/config.h"
#include "core/stats.h"
#include "core/stats_sink.h"
#include "test_files.h"

namespace upcache::testing {

class CacheFixture : public ::testing::Test {
 protected:
  explicit CacheFixture(const char* name) : name_(name) {}
  void SetUp() override {
    dir = scratch_dir(name_);
    ASSERT_FALSE(dir.empty());
    seg = std::make_unique<stats::Segment>();
    memset(static_cast<void*>(seg.get()), 0, sizeof(stats::Segment));
    sink = std::make_unique<StatsSink>(seg.get());
  }
  void TearDown() override {
    for (FileRef* f : refs) cache->release(f);
    for (int fd : fds) close(fd);
    cache.reset();
    remove_dir(dir);
  }
  // Tests of the cache's own mechanics that write the file they read while
  // holding it open for writing set kOpen: under leases (the default) such
  // a file goes to the kernel (tests/unit/coherence_test.cc).
  Coherence coherence = Coherence::kLease;
  void make_cache(uint64_t bytes, uint64_t page, uint64_t ra_max = 1 << 20, const char* fault = "") {
    Config c;
    c.coherence = coherence;
    c.min_file_bytes = 0;
    c.cache_bytes = bytes;
    c.page_size = page;
    c.ra_max_bytes = ra_max;
    c.fault = fault;
    std::string err;
    cache = Cache::create(c, sink.get(), &err);
    ASSERT_TRUE(cache) << err;
  }
  FileRef* open_file(const std::string& path, int flags = O_RDONLY) {
    int fd = open(path.c_str(), flags);
    EXPECT_GE(fd, 0) << path;
    fds.push_back(fd);
    FileRef* f = cache->attach(fd, path.c_str(), flags);
    if (f) refs.push_back(f);
    return f;
  }
  // Writes the pattern file dir/f (test_files.h) of `size` bytes and
  // attaches it; null (and a test failure) if either fails.
  FileRef* open_pattern_file(uint64_t size, uint64_t salt, int flags = O_RDONLY) {
    const std::string path = dir + "/f";
    if (!write_pattern_file(path, size, salt)) {
      ADD_FAILURE() << "cannot write " << path;
      return nullptr;
    }
    return open_file(path, flags);
  }
  uint64_t counter(stats::Counter c) { return StatsSink::total(*seg, c); }

  std::string dir;
  std::unique_ptr<stats::Segment> seg;
  std::unique_ptr<StatsSink> sink;
  std::unique_ptr<Cache> cache;
  std::vector<FileRef*> refs;
  std::vector<int> fds;

 private:
  const char* name_;
};

}  // namespace upcache::testing
